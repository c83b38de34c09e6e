"""Committed transactions per second through the ledger, end to end, and where the time goes.

Starts devnet and the trivial ``tm-kv`` transaction processor as subprocesses, signs N
transactions into batches, sends them from several submitter threads without waiting, then waits
for every batch to commit. Reports the committed rate, one-transaction commit latency, the CPU
each process spent per transaction (read from /proc), and the secp256k1 verify rate measured in
the same run (the ceiling signature checking puts on the rate). A table, then one JSON line.

    python bench/ledger_throughput.py [--transactions 2000] [--batch-size 10] [--submitters 4]
        [--processors 3] [--profile]

Several TP processes of the family share the load, as on a real network: one SDK processor is a
single Python process (one core at most, its threads taking turns) and sets the pace on its own.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from sawtooth_sdk.protobuf.batch_pb2 import Batch
from sawtooth_sdk.protobuf.block_pb2 import BlockHeader
from sawtooth_sdk.protobuf.client_block_pb2 import ClientBlockGetByBatchIdRequest, ClientBlockGetResponse
from sawtooth_sdk.protobuf.validator_pb2 import Message
from sawtooth_signing import create_context
from sawtooth_signing.secp256k1 import Secp256k1PublicKey

from trustmesh.devnet.demo_tp import FAMILY_NAME, FAMILY_VERSION, NAMESPACE
from trustmesh.devnet.demo_tp import address as kv_address
from trustmesh.devnet.launch import DevnetProcess
from trustmesh.errors import TransactionRejected
from trustmesh.ledger.batch import make_batch, make_transaction
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.keys import new_signer
from trustmesh.net import free_port

FAMILY, VERSION = FAMILY_NAME, FAMILY_VERSION
GOAL_TPS = 500.0


def kv_namespace() -> str:
    return NAMESPACE


def build_batches(*, transactions: int, batch_size: int, signers: int) -> tuple[list[Batch], float]:
    """Sign ``transactions`` set-operations into batches; (batches, CPU seconds spent signing)."""
    keys = [new_signer() for _ in range(signers)]
    started = time.process_time()  # CPU time: the machine is shared, wall time would measure the neighbours
    batches = []
    for first in range(0, transactions, batch_size):
        signer = keys[(first // batch_size) % len(keys)]
        txns = []
        for i in range(first, min(first + batch_size, transactions)):
            key = f"k{i}"
            txns.append(
                make_transaction(
                    signer,
                    family_name=FAMILY,
                    family_version=VERSION,
                    payload=f"set {key} {i}".encode(),
                    inputs=[kv_address(key)],
                    outputs=[kv_address(key)],
                )
            )
        batches.append(make_batch(signer, txns))
    return batches, time.process_time() - started


def verify_all(batches: list[Batch]) -> tuple[int, float]:
    """Verify every batch and transaction signature as a validator does; (count, CPU seconds)."""
    from sawtooth_sdk.protobuf.batch_pb2 import BatchHeader
    from sawtooth_sdk.protobuf.transaction_pb2 import TransactionHeader

    context = create_context("secp256k1")
    count = 0
    started = time.process_time()
    for batch in batches:
        header = BatchHeader.FromString(batch.header)
        assert context.verify(batch.header_signature, batch.header, Secp256k1PublicKey.from_hex(header.signer_public_key))
        count += 1
        for txn in batch.transactions:
            txn_header = TransactionHeader.FromString(txn.header)
            key = Secp256k1PublicKey.from_hex(txn_header.signer_public_key)
            assert context.verify(txn.header_signature, txn.header, key)
            assert hashlib.sha512(txn.payload).hexdigest() == txn_header.payload_sha512
            count += 1
    return count, time.process_time() - started


def cpu_seconds(pid: int | None) -> float:
    """User + system CPU seconds a process has used so far (Linux /proc), 0.0 if unknown."""
    if pid is None:
        return 0.0
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def submit_open_loop(client: LedgerClient, batches: list[Batch], *, threads: int) -> tuple[float, int, list[str]]:
    """Submitter threads send their share of batches without waiting; then wait for every batch.

    Returns (seconds from the first submit until every batch settled, transactions committed,
    failures)."""
    shares = [batches[i::threads] for i in range(threads)]
    failures: list[str] = []

    def send(share: list[Batch]) -> None:
        for batch in share:
            try:
                client.submit([batch], wait=None)
            except Exception as exc:  # report, don't hang the run
                failures.append(str(exc))

    started = time.perf_counter()
    workers = [threading.Thread(target=send, args=(share,), daemon=True) for share in shares]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    ids = [batch.header_signature for batch in batches]
    statuses = client.batch_status(ids, wait=300)
    elapsed = time.perf_counter() - started
    failures += [f"{s.batch_id[:12]} {s.status}" for s in statuses if not s.committed]
    sizes = {batch.header_signature: len(batch.transactions) for batch in batches}
    committed = sum(sizes[s.batch_id] for s in statuses if s.committed)
    return elapsed, committed, failures


def commit_latencies(client: LedgerClient, count: int) -> list[float]:
    """Seconds from submit to COMMITTED for ``count`` one-transaction batches sent one at a time."""
    signer = new_signer()
    latencies = []
    for i in range(count):
        key = f"latency-{i}"
        sent = time.perf_counter()
        result = client.submit_transaction(
            signer, FAMILY, VERSION, f"set {key} {i}".encode(), [kv_address(key)], [kv_address(key)], wait=60
        )
        if result.committed:
            latencies.append(time.perf_counter() - sent)
    return latencies


# -- optional CPU profiles of devnet and the TP (--profile) ----------------------------------------
_CATEGORIES = (
    ("protobuf (pure Python)", ("google/protobuf",)),
    ("zmq send/recv/poll", ("zmq/",)),
    ("secp256k1 verify/sign", ("secp256k1", "sawtooth_signing")),
    ("sqlite (state write, commit)", ("sqlite3",)),
    ("sha512 / hashing", ("_hashlib", "sha512", "hashlib")),
    ("threads, locks, queues", ("_thread", "threading.py", "queue.py", "concurrent/futures")),
    ("SDK processor + handler", ("sawtooth_sdk/", "demo_tp")),
    ("devnet code", ("/devnet/",)),
)


def _profile_child(out: str, module: str, argv: list[str]) -> int:
    """Run ``module`` as __main__ under cProfile counting CPU time; write the stats to ``out``."""
    import cProfile
    import runpy

    sys.argv = [module, *argv]
    profile = cProfile.Profile(time.process_time)
    profile.enable()
    try:
        runpy.run_module(module, run_name="__main__")
    except (SystemExit, KeyboardInterrupt):
        pass
    finally:
        profile.disable()
        profile.dump_stats(out)
    return 0


_BUILTIN_KINDS = (
    ("sqlite (state write, commit)", "sqlite3"),
    ("secp256k1 verify/sign", "secp256k1"),
    ("sha512 / hashing", "_hashlib"),
    ("threads, locks, queues", "_thread"),
)


def _category(filename: str, function: str) -> str | None:
    if filename == "~" or filename.startswith("<frozen"):
        # a built-in: its own kind when it names one, else charged to whoever called it
        return next((name for name, mark in _BUILTIN_KINDS if mark in function), None)
    where = f"{filename}:{function}"
    return next((name for name, marks in _CATEGORIES if any(m in where for m in marks)), "other")


def cpu_split(path: Path) -> dict[str, float]:
    """Share (%) of a profiled process's CPU by kind of work; built-ins are charged to their callers."""
    import pstats

    totals = dict.fromkeys([name for name, _ in _CATEGORIES] + ["other"], 0.0)
    stats = pstats.Stats(str(path)).stats  # type: ignore[attr-defined]
    for (filename, _line, function), (_cc, _nc, tottime, _ct, callers) in stats.items():
        name = _category(filename, function)
        if name is not None:
            totals[name] += tottime
            continue
        for (c_file, _c_line, c_function), edge in callers.items():
            totals[_category(c_file, c_function) or "other"] += edge[2]
    grand = sum(totals.values()) or 1.0
    return {name: round(100 * seconds / grand, 1) for name, seconds in totals.items() if seconds > 0}


def _command(module: str, argv: list[str], profile_out: Path | None) -> list[str]:
    if profile_out is None:
        return [sys.executable, "-m", module, *argv]
    return [sys.executable, str(Path(__file__).resolve()), "--profile-child", str(profile_out), module, *argv]


class _ProfiledDevnet:
    """devnet under the CPU profiler (DevnetProcess cannot wrap its interpreter); stopped by PID."""

    def __init__(self, *, data_dir: Path, port: int, profile_out: Path) -> None:
        self.url = f"tcp://127.0.0.1:{port}"
        self._argv = ["--bind", self.url, "--data", str(data_dir)]
        self._out = profile_out
        self._log = data_dir.parent / "devnet.log"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> None:
        from trustmesh.devnet.launch import ping

        with open(self._log, "ab") as log:
            self._process = subprocess.Popen(
                _command("trustmesh.devnet", self._argv, self._out), stdout=log, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 60
        while not ping(self.url, timeout=0.5):
            if self._process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"profiled devnet did not start; see {self._log}")

    def stop(self) -> None:
        if self._process is not None:
            _stop([self._process], signum=signal.SIGINT)


def _start_processors(
    url: str, count: int, log_dir: Path, profile_dir: Path | None
) -> list[subprocess.Popen[bytes]]:
    processes = []
    for index in range(count):
        out = profile_dir / f"tp-{index}.prof" if profile_dir is not None else None
        log = open(log_dir / f"tp-{index}.log", "wb")  # noqa: SIM115 — closed with the process
        processes.append(
            subprocess.Popen(
                _command("trustmesh.devnet.demo_tp", ["--url", url], out), stdout=log, stderr=subprocess.STDOUT
            )
        )
    return processes


def _stop(processes: list[subprocess.Popen[bytes]], *, signum: int = signal.SIGTERM) -> None:
    for process in processes:
        if process.poll() is None:
            process.send_signal(signum)
    for process in processes:
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(5)


def run(args: argparse.Namespace) -> dict[str, object]:
    batches, sign_seconds = build_batches(
        transactions=args.transactions, batch_size=args.batch_size, signers=args.submitters
    )
    with tempfile.TemporaryDirectory(prefix="ledger-bench-") as tmp:
        profile_dir = Path(tmp) if args.profile else None
        devnet: DevnetProcess | _ProfiledDevnet
        if profile_dir is not None:
            devnet = _ProfiledDevnet(data_dir=Path(tmp) / "ledger", port=free_port(), profile_out=profile_dir / "devnet.prof")
        else:
            devnet = DevnetProcess(data_dir=Path(tmp) / "ledger", port=free_port())
        devnet.start()
        processors = _start_processors(devnet.url, args.processors, Path(tmp), profile_dir)
        client = LedgerClient(urls=[devnet.url], timeout=30.0)
        try:
            signer = new_signer()
            warm = client.submit_transaction(  # waits until a processor has registered
                signer, FAMILY, VERSION, b"set warm 0", [kv_address("warm")], [kv_address("warm")], wait=60
            )
            assert warm.committed, warm
            devnet_pid = _pid(devnet)
            cpu_before = (
                _own_cpu(),
                cpu_seconds(devnet_pid),
                sum(cpu_seconds(p.pid) for p in processors),
            )
            elapsed, committed, failures = submit_open_loop(client, batches, threads=args.submitters)
            cpu_after = (
                _own_cpu(),
                cpu_seconds(devnet_pid),
                sum(cpu_seconds(p.pid) for p in processors),
            )
            block_count = len(blocks_holding(client, batches))
            checks_on = tampered_batch_refused(client)
            latencies = sorted(commit_latencies(client, args.latency_samples))
            sample = [f"k{i}" for i in range(0, args.transactions, max(1, args.transactions // 10))]
            readback_ok = all(client.get_state(kv_address(key)) is not None for key in sample)
            listed = sum(1 for _ in client.list_state(kv_namespace()))
            stats = getattr(devnet, "stats", None)
            devnet_stats = stats() if callable(stats) else {}
        finally:
            client.close()
            _stop(processors, signum=signal.SIGINT if profile_dir is not None else signal.SIGTERM)
            devnet.stop()
        splits: dict[str, object] = {}
        if profile_dir is not None:
            splits["devnet_cpu_split_pct"] = cpu_split(profile_dir / "devnet.prof")
            splits["tp_cpu_split_pct"] = cpu_split(profile_dir / "tp-0.prof")
    verified, verify_seconds = verify_all(batches)
    per_txn_verifies = 1 + 1 / args.batch_size
    verify_rate = verified / verify_seconds
    n = args.transactions
    client_cpu, devnet_cpu, tp_cpu = (after - before for after, before in zip(cpu_after, cpu_before, strict=True))
    return {
        "transactions": n,
        "batch_size": args.batch_size,
        "submitters": args.submitters,
        "processors": args.processors,
        "committed": committed,
        "failures": len(failures),
        "first_failure": failures[0] if failures else None,
        "elapsed_s": elapsed,
        "committed_tps": committed / elapsed,
        "blocks": block_count,
        "txns_per_block": committed / max(1, block_count),
        "commit_latency_p50_ms": 1000 * statistics.median(latencies) if latencies else None,
        "commit_latency_max_ms": 1000 * latencies[-1] if latencies else None,
        "client_sign_us_per_txn": 1e6 * sign_seconds / n,
        "client_cpu_us_per_txn": 1e6 * client_cpu / n,
        "devnet_cpu_us_per_txn": 1e6 * devnet_cpu / n,
        "tp_cpu_us_per_txn": 1e6 * tp_cpu / n,
        "cpu_busy_fraction": (client_cpu + devnet_cpu + tp_cpu) / (elapsed * (os.cpu_count() or 1)),
        # The machine is shared: the rate these processes' CPU needs would allow if its cores were
        # ours alone. devnet is one process, TPs share the load, everything shares the cores.
        "cpu_bound_tps_estimate": n / max(
            devnet_cpu, tp_cpu / args.processors, (client_cpu + devnet_cpu + tp_cpu) / (os.cpu_count() or 1), 1e-9
        ),
        "signature_checks_on": checks_on,
        "verify_per_s": verify_rate,
        "signature_checks_us_per_txn": 1e6 * per_txn_verifies / verify_rate,
        "verify_ceiling_tps": verify_rate / per_txn_verifies,
        "readback_ok": readback_ok,
        "listed_entries": listed,
        "devnet": devnet_stats,
        "profiled": bool(args.profile),
        **splits,
        "machine_load_1m": round(os.getloadavg()[0], 1),
        "goal_tps": GOAL_TPS,
        "goal_met": committed / elapsed >= GOAL_TPS and not failures and checks_on,
    }


def _pid(devnet: DevnetProcess | _ProfiledDevnet) -> int | None:
    for name in ("pid", "process"):
        value = getattr(devnet, name, None)
        if isinstance(value, int):
            return value
        if value is not None and isinstance(getattr(value, "pid", None), int):
            return int(value.pid)
    return None


def _own_cpu() -> float:
    times = os.times()
    return times.user + times.system


def tampered_batch_refused(client: LedgerClient) -> bool:
    """True if the ledger refuses a batch whose one defect is a transaction signed by the wrong key."""
    signer = new_signer()
    txn = make_transaction(
        signer,
        family_name=FAMILY,
        family_version=VERSION,
        payload=b"set t 1",
        inputs=[kv_address("t")],
        outputs=[kv_address("t")],
    )
    txn.header_signature = new_signer().sign(txn.header)  # header still names ``signer``
    try:
        client.submit([make_batch(signer, [txn])], wait=10)
    except TransactionRejected:
        return True
    return False


def blocks_holding(client: LedgerClient, batches: list[Batch]) -> set[int]:
    """Numbers of the blocks that hold ``batches`` (CLIENT_BLOCK_GET_BY_BATCH_ID_REQUEST)."""
    numbers: set[int] = set()
    for batch in batches:
        request = ClientBlockGetByBatchIdRequest(batch_id=batch.header_signature)
        _, reply = client.request(Message.CLIENT_BLOCK_GET_BY_BATCH_ID_REQUEST, request.SerializeToString())
        response = ClientBlockGetResponse.FromString(reply.content)
        if response.status == ClientBlockGetResponse.OK:
            numbers.add(BlockHeader.FromString(response.block.header).block_num)
    return numbers


def print_table(figures: dict[str, object]) -> None:
    f = figures

    def num(key: str, fmt: str = "{:.0f}") -> str:
        value = f.get(key)
        return fmt.format(value) if isinstance(value, int | float) else "n/a"

    rows = [
        ("committed transactions", f"{f['committed']} / {f['transactions']}"),
        ("batch size / submitters / TPs", f"{f['batch_size']} / {f['submitters']} / {f['processors']}"),
        ("elapsed (first submit → all committed)", num("elapsed_s", "{:.2f} s")),
        ("committed tx/s", f"{num('committed_tps')}  (goal {GOAL_TPS:.0f})"),
        ("blocks, tx per block", f"{f['blocks']}, {num('txns_per_block', '{:.1f}')}"),
        ("one-tx commit latency p50 / max", f"{num('commit_latency_p50_ms')} / {num('commit_latency_max_ms')} ms"),
        ("per tx: client sign + build", num("client_sign_us_per_txn", "{:.0f} µs CPU (before the run)")),
        ("per tx: client CPU (submit, status)", num("client_cpu_us_per_txn", "{:.0f} µs")),
        ("per tx: devnet CPU (all of it)", num("devnet_cpu_us_per_txn", "{:.0f} µs")),
        ("  of which signature checks", num("signature_checks_us_per_txn", "{:.0f} µs (from the verify rate)")),
        ("per tx: TP CPU (SDK + handler)", num("tp_cpu_us_per_txn", "{:.0f} µs")),
        ("CPU busy (all processes / cores)", num("cpu_busy_fraction", "{:.0%}")),
        ("machine load average (1 min, shared)", num("machine_load_1m", "{:.1f}")),
        ("tx/s if the cores were ours alone", num("cpu_bound_tps_estimate") + " (CPU-bound estimate from CPU per tx)"),
        ("signature checks on (tampered batch refused)", str(f.get("signature_checks_on"))),
        ("secp256k1 verify rate (per CPU second)", f"{num('verify_per_s')} /s → ceiling {num('verify_ceiling_tps')} tx/s per core"),
        ("read back / listed", f"{f['readback_ok']} / {f['listed_entries']} entries"),
        ("failures", str(f["failures"])),
    ]
    devnet_stats = f.get("devnet")
    if isinstance(devnet_stats, dict):
        rows += [(f"devnet: {key}", str(value)) for key, value in devnet_stats.items()]
    for process in ("devnet", "tp"):
        split = f.get(f"{process}_cpu_split_pct")
        if isinstance(split, dict):
            rows += [(f"{process} CPU share (profiled): {name}", f"{pct}%") for name, pct in split.items()]
    if f.get("profiled"):
        rows.append(("note", "profiled run: rates and CPU figures include the profiler's overhead"))
    width = max(len(name) for name, _ in rows)
    for name, value in rows:
        print(f"{name:<{width}}  {value}")


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--profile-child"]:
        return _profile_child(argv[1], argv[2], argv[3:])
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--transactions", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=10)
    parser.add_argument("--submitters", type=int, default=4)
    parser.add_argument(
        "--processors", type=int, default=3, help="demo TP processes sharing the family's load (default 3)"
    )
    parser.add_argument("--latency-samples", type=int, default=10, help="one-transaction commits timed after the run")
    parser.add_argument(
        "--profile", action="store_true", help="run devnet and the TP under a CPU profiler and split their CPU by kind"
    )
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    figures = run(args)
    print_table(figures)
    print(json.dumps(figures, default=str))
    return 0 if figures["committed"] == args.transactions else 1


if __name__ == "__main__":
    sys.exit(main())
