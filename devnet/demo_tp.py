"""A trivial key/value TP (family ``tm-kv`` 1.0) on the Sawtooth SDK's own processor core.

For tests and the throughput benchmark. A payload is UTF-8 commands separated by ``;``:

- ``set K V`` / ``del K`` — write or delete key K (address :func:`address` of K)
- ``copy A B`` — B := A's value (reads A)
- ``whoami K`` — K := this TP's ``--name`` (shows which TP ran a transaction)
- ``now K`` — K := block time, read from BlockInfo (declare ``00b10c`` among the inputs)
- ``set-addr ADDRESS V`` / ``get-addr ADDRESS`` — raw access to any address (to probe authorization)
- ``event TYPE [k=v ...]`` — add an event; ``receipt TEXT`` — add receipt data
- ``sleep S`` — pause S seconds inside ``apply``
- ``stall PATH S`` — unless file PATH exists: create it (an off-chain sign, for tests, that a TP is
  inside ``apply``) and pause S seconds
- ``fail [MESSAGE]`` — InvalidTransaction; ``internal`` — InternalError the first time this
  process sees the transaction, then go on with the remaining commands

Run: ``python -m trustmesh.devnet.demo_tp --url tcp://127.0.0.1:4004 [--name NAME] [--raw-headers]``.
"""
from __future__ import annotations

import argparse
import hashlib
import logging
import signal
import sys
import time
from pathlib import Path
from types import FrameType

from sawtooth_sdk.processor.core import TransactionProcessor
from sawtooth_sdk.processor.exceptions import InternalError, InvalidTransaction
from sawtooth_sdk.processor.handler import TransactionHandler
from sawtooth_sdk.protobuf.processor_pb2 import TpRegisterRequest

import trustmesh  # noqa: F401  (installs the SDK stream replacement before the SDK's processor)
from trustmesh.contracts.blockinfo import CONFIG_ADDRESS, block_address, decode_block, decode_config

FAMILY_NAME = "tm-kv"
FAMILY_VERSION = "1.0"
NAMESPACE = hashlib.sha512(FAMILY_NAME.encode()).hexdigest()[:6]

LOGGER = logging.getLogger(__name__)


def address(key: str) -> str:
    """The state address of key ``key``."""
    return NAMESPACE + hashlib.sha512(key.encode()).hexdigest()[:64]


class KvHandler(TransactionHandler):  # type: ignore[misc]
    """Applies the ``tm-kv`` commands; every rule is deterministic except ``internal``/``sleep``."""

    def __init__(self, *, name: str) -> None:
        self._name = name
        self._failed_once: set[str] = set()

    @property
    def family_name(self) -> str:
        return FAMILY_NAME

    @property
    def family_versions(self) -> list[str]:
        return [FAMILY_VERSION]

    @property
    def namespaces(self) -> list[str]:
        return [NAMESPACE]

    def apply(self, transaction: object, context: object) -> None:
        try:
            text = transaction.payload.decode()  # type: ignore[attr-defined]
        except UnicodeDecodeError as exc:
            raise InvalidTransaction("payload is not UTF-8") from exc
        signature = transaction.signature  # type: ignore[attr-defined]
        for command in filter(None, (c.strip() for c in text.split(";"))):
            self._run(command.split(), signature, context)

    def _run(self, words: list[str], signature: str, context: object) -> None:
        verb, args = words[0], words[1:]
        ctx = context
        if verb == "set" and len(args) >= 2:
            ctx.set_state({address(args[0]): " ".join(args[1:]).encode()})  # type: ignore[attr-defined]
        elif verb == "del" and len(args) == 1:
            ctx.delete_state([address(args[0])])  # type: ignore[attr-defined]
        elif verb == "copy" and len(args) == 2:
            found = ctx.get_state([address(args[0])])  # type: ignore[attr-defined]
            if not found:
                raise InvalidTransaction(f"no value at key {args[0]}")
            ctx.set_state({address(args[1]): found[0].data})  # type: ignore[attr-defined]
        elif verb == "whoami" and len(args) == 1:
            ctx.set_state({address(args[0]): self._name.encode()})  # type: ignore[attr-defined]
        elif verb == "now" and len(args) == 1:
            ctx.set_state({address(args[0]): str(_block_time(ctx)).encode()})  # type: ignore[attr-defined]
        elif verb == "set-addr" and len(args) == 2:
            ctx.set_state({args[0]: args[1].encode()})  # type: ignore[attr-defined]
        elif verb == "get-addr" and len(args) == 1:
            ctx.get_state([args[0]])  # type: ignore[attr-defined]
        elif verb == "event" and len(args) >= 1:
            attributes = [tuple(a.split("=", 1)) for a in args[1:] if "=" in a]
            ctx.add_event(args[0], attributes=attributes, data=b"")  # type: ignore[attr-defined]
        elif verb == "receipt" and args:
            ctx.add_receipt_data(" ".join(args).encode())  # type: ignore[attr-defined]
        elif verb == "sleep" and len(args) == 1:
            time.sleep(float(args[0]))
        elif verb == "stall" and len(args) == 2:
            marker = Path(args[0])
            if not marker.exists():
                marker.touch()
                time.sleep(float(args[1]))
        elif verb == "fail":
            raise InvalidTransaction(" ".join(args) or "requested failure")
        elif verb == "internal":
            if signature not in self._failed_once:
                self._failed_once.add(signature)
                raise InternalError("requested internal error")
        else:
            raise InvalidTransaction(f"unknown command: {' '.join(words)}")


def _block_time(context: object) -> int:
    raw = context.get_state([CONFIG_ADDRESS])  # type: ignore[attr-defined]
    if not raw:
        raise InvalidTransaction("no BlockInfo in state")
    latest = decode_config(raw[0].data).latest_block
    record = context.get_state([block_address(latest)])  # type: ignore[attr-defined]
    if not record:
        raise InternalError("BlockInfo config names a missing block")
    return int(decode_block(record[0].data).timestamp)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m trustmesh.devnet.demo_tp", description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="tcp://127.0.0.1:4004", help="validator component endpoint")
    parser.add_argument("--name", default="demo-tp", help="what `whoami` writes")
    parser.add_argument("--raw-headers", action="store_true", help="ask for RAW transaction headers")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    processor = TransactionProcessor(url=args.url)
    if args.raw_headers:
        processor.set_header_style(TpRegisterRequest.RAW)
    processor.add_handler(KvHandler(name=args.name))

    def _interrupt(_signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _interrupt)
    try:
        processor.start()
    except KeyboardInterrupt:
        pass
    finally:
        processor.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
