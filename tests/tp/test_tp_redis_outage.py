"""Redis stopped mid-run: the iot-data TP answers an internal error, the ledger keeps retrying and
commits nothing; once Redis is back (same data dir and port, AOF) the same submission commits
with its record."""
from __future__ import annotations

import time
from pathlib import Path

from tp_harness import Federation, batch_of, signed_transaction, submission_fields

from trustmesh.contracts.families import IOT_DATA
from trustmesh.dataplane.client import DEFAULT_TIMEOUT
from trustmesh.runner.stack import LocalStack

OUTAGE_WAIT = 3.0
"""Seconds the submission is given while Redis is down (the devnet retries it meanwhile)."""

SLOW_PAUSE = DEFAULT_TIMEOUT + 2.0
"""Seconds Redis holds writes back: longer than the TP's Redis timeout, so its append times out."""

COMMIT_WAIT = 60.0
"""Seconds the retried submission has to commit once Redis is back."""


def test_a_submission_commits_only_once_redis_is_back(stack: LocalStack, fed: Federation) -> None:
    coordinator, early, late = fed.node(), fed.node(), fed.node()
    fed.register("tp-redis-outage", coordinator=coordinator, participants=[early, late], compute=[fed.node()])
    rnd = fed.open_round(coordinator, "tp-redis-outage")
    assert early.submit_update(**submission_fields(rnd, "early")).committed
    assert stack.redis is not None
    stack.redis.stop()
    try:
        txn = signed_transaction(late.signer, IOT_DATA, submission_fields(rnd, "late"))
        batch = batch_of(late.signer, txn)
        fed.client.submit([batch], wait=None)
        [status] = fed.client.batch_status([batch.header_signature], wait=OUTAGE_WAIT)
        assert status.status == "PENDING"
        index = coordinator.index(rnd.workflow_id, rnd.round)
        assert index is not None and list(index.entries) == [early.public_key]
    finally:
        stack.redis.start()
    [status] = fed.client.batch_status([batch.header_signature], wait=COMMIT_WAIT)
    assert status.status == "COMMITTED"
    index = coordinator.index(rnd.workflow_id, rnd.round)
    assert index is not None and sorted(index.entries) == sorted([early.public_key, late.public_key])
    late_records = [r for r in fed.records(rnd) if r.signer == late.public_key]
    assert [r.txn_id for r in late_records] == [txn.header_signature] == [index.entries[late.public_key].txn_id]
    assert _log_has(stack.run_dir / "logs" / "tp-iot-data.log", "redis append failed, the ledger will retry")


def test_a_slow_redis_delays_a_submission_but_never_doubles_it(stack: LocalStack, fed: Federation) -> None:
    """Writes held back longer than the TP's Redis timeout: the append times out and is sent again
    (by the Redis client, or by the ledger after an internal error); the submission stays pending
    until Redis answers, then commits with exactly one record."""
    coordinator, participant = fed.node(), fed.node()
    fed.register("tp-redis-slow", coordinator=coordinator, participants=[participant], compute=[fed.node()])
    rnd = fed.open_round(coordinator, "tp-redis-slow")
    assert stack.redis is not None
    admin = stack.redis.admin_client()
    try:
        admin.execute_command("CLIENT", "PAUSE", int(SLOW_PAUSE * 1000), "WRITE")
        txn = signed_transaction(participant.signer, IOT_DATA, submission_fields(rnd, "p"))
        batch = batch_of(participant.signer, txn)
        fed.client.submit([batch], wait=None)
        [status] = fed.client.batch_status([batch.header_signature], wait=DEFAULT_TIMEOUT)
        assert status.status == "PENDING"
    finally:
        admin.execute_command("CLIENT", "UNPAUSE")
        admin.close()
    [status] = fed.client.batch_status([batch.header_signature], wait=COMMIT_WAIT)
    assert status.status == "COMMITTED"
    assert [r.txn_id for r in fed.records(rnd)] == [txn.header_signature]


def test_records_appended_before_a_restart_survive_it(stack: LocalStack, fed: Federation) -> None:
    coordinator, participant = fed.node(), fed.node()
    fed.register("tp-redis-restart", coordinator=coordinator, participants=[participant], compute=[fed.node()])
    rnd = fed.open_round(coordinator, "tp-redis-restart")
    sent = participant.submit_update(**submission_fields(rnd, "p"))
    assert [r.txn_id for r in fed.records(rnd)] == [sent.transaction_id]
    assert stack.redis is not None
    stack.redis.restart()
    assert [r.txn_id for r in fed.records(rnd)] == [sent.transaction_id]


def _log_has(path: Path, text: str, timeout: float = 5.0) -> bool:
    """True once ``text`` appears in the log at ``path`` (the TP writes it asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return True
        time.sleep(0.1)
    return False
