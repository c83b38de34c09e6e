"""Both TPs over devnet refuse what the rules forbid, each with its reason, and commit nothing
(no index entry, no Redis record) for a refused submission."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from tp_harness import Federation, Round, digest, submission_fields

from trustmesh.chain import Chain
from trustmesh.errors import TransactionRejected

LATE_TIMEOUT = 1
"""round_timeout (s) of the late-submission workflow; heartbeats then move block time past it."""

HEARTBEAT_LIMIT = 30.0
"""Seconds the heartbeats may take to move block time past a deadline before the test fails."""


def rejected(send: Callable[[], Any], reason: str) -> None:
    """``send`` must be refused by the chain with ``reason`` in the TP's message."""
    with pytest.raises(TransactionRejected) as caught:
        send()
    assert reason in str(caught.value), str(caught.value)


class Members:
    """One workflow's keys: coordinator, two participants, two compute nodes, an outsider."""

    def __init__(self, fed: Federation) -> None:
        self.coordinator, self.p1, self.p2 = fed.node(), fed.node(), fed.node()
        self.c1, self.c2, self.outsider = fed.node(), fed.node(), fed.node()


@pytest.fixture(scope="module")
def round_one(fed: Federation) -> tuple[Members, Round]:
    """A workflow with round 1 open: two participants expected, at least one required, k = 1."""
    members = Members(fed)
    fed.register("tp-rules", coordinator=members.coordinator, participants=[members.p1, members.p2],
                 compute=[members.c1, members.c2], expected=2, min_nodes=1)
    return members, fed.open_round(members.coordinator, "tp-rules")


def test_submissions_refused_with_their_reason(fed: Federation, round_one: tuple[Members, Round]) -> None:
    m, rnd = round_one
    rejected(lambda: m.outsider.submit_update(**submission_fields(rnd, "outsider")), "is not a participant")
    rejected(lambda: m.p1.submit_update(**submission_fields(rnd, "p1", round=2)), "has no round 2")
    rejected(lambda: m.p1.submit_update(**submission_fields(rnd, "p1", schedule_id="tp-rules-forged")),
             "has schedule_id 'tp-rules-r1', not 'tp-rules-forged'")
    rejected(lambda: m.p1.submit_update(**submission_fields(rnd, "p1", update_hash=digest("other"))),
             "update_hash is not the sha512 of the inline update")
    assert m.p1.index(rnd.workflow_id, rnd.round) is None and fed.list_length(rnd) == 0
    assert m.p1.submit_update(**submission_fields(rnd, "p1")).committed
    rejected(lambda: m.p1.submit_update(**submission_fields(rnd, "p1-again")), "has already submitted to round 1")
    index = m.p1.index(rnd.workflow_id, rnd.round)
    assert index is not None and list(index.entries) == [m.p1.public_key]
    assert [r.signer for r in fed.records(rnd)] == [m.p1.public_key]


def test_only_the_coordinator_opens_rounds(fed: Federation, round_one: tuple[Members, Round]) -> None:
    m, rnd = round_one
    rejected(lambda: m.outsider.act("open_round", workflow_id=rnd.workflow_id, round=2, schedule_id="forged-2"),
             "only the workflow's coordinator may open a round")
    rejected(lambda: m.p1.act("open_round", workflow_id=rnd.workflow_id, round=2, schedule_id="forged-2"),
             "only the workflow's coordinator may open a round")
    rejected(lambda: m.coordinator.act("open_round", workflow_id=rnd.workflow_id, round=2, schedule_id="next"),
             "round 1 is still open")
    assert fed.round_record(rnd).status == "open"
    assert m.p1.workflow(rnd.workflow_id).last_round == 1  # type: ignore[union-attr]


def test_results_and_attestations_refused_with_their_reason(fed: Federation, round_one: tuple[Members, Round]) -> None:
    m, rnd = round_one
    if m.p1.index(rnd.workflow_id, rnd.round) is None:  # run alone: p1's submission first
        m.p1.submit_update(**submission_fields(rnd, "p1"))
    m.p2.submit_update(**submission_fields(rnd, "p2"))
    m.outsider.act("close_round", workflow_id=rnd.workflow_id, round=rnd.round)  # all expected: anyone closes
    assert fed.round_record(rnd).status == "ready"
    where = {"workflow_id": rnd.workflow_id, "round": rnd.round}
    both = sorted([m.p1.public_key, m.p2.public_key])
    rejected(lambda: m.outsider.act("claim_task", task="aggregate", **where), "is not a compute node")
    m.c1.act("claim_task", task="aggregate", **where)
    rejected(lambda: m.c2.act("claim_task", task="aggregate", **where), "lease of round 1 is held by")
    rejected(lambda: m.c2.act("post_result", model_hash=digest("m"), included=both, excluded={}, **where),
             f"the aggregate lease of round 1 is held by {m.c1.public_key[:12]}")
    rejected(lambda: m.c1.act("post_result", model_hash=digest("m"), included=[m.p1.public_key], excluded={},
                              **where),
             f"the result omits 1 indexed submission(s), e.g. {m.p2.public_key[:12]}")
    rejected(lambda: m.c1.act("post_result", model_hash=digest("m"), included=both,
                              excluded={m.outsider.public_key: "hash_mismatch"}, **where),
             "which has no indexed submission")
    assert fed.round_record(rnd).status == "ready"
    m.c1.act("post_result", model_hash=digest("m"), included=both, excluded={}, **where)
    assert fed.round_record(rnd).status == "aggregated"
    rejected(lambda: m.c1.act("attest_result", model_hash=digest("m"), **where),
             "the aggregator cannot attest its own result")
    rejected(lambda: m.outsider.act("attest_result", model_hash=digest("m"), **where), "is not a compute node")
    rejected(lambda: m.c1.act("post_result", model_hash=digest("m2"), included=both, excluded={}, **where),
             "round 1 is aggregated")
    m.c2.act("attest_result", model_hash=digest("m"), **where)
    record = fed.round_record(rnd)
    assert record.status == "verified" and record.attestations == (m.c2.public_key,)


def _heartbeat_past(node: Chain, workflow_id: str, deadline: int) -> int:
    """Commit heartbeats until block time passes ``deadline`` (block time moves only on commits)."""
    limit = time.monotonic() + HEARTBEAT_LIMIT
    while time.monotonic() < limit:
        node.act("heartbeat", workflow_id=workflow_id)
        now = node.now()
        if now > deadline:
            return now
        time.sleep(0.3)
    pytest.fail(f"block time did not pass {deadline} within {HEARTBEAT_LIMIT:g} s of heartbeats")


def test_a_late_submission_is_refused(fed: Federation) -> None:
    m = Members(fed)
    fed.register("tp-late", coordinator=m.coordinator, participants=[m.p1, m.p2], compute=[m.c1],
                 round_timeout=LATE_TIMEOUT)
    rnd = fed.open_round(m.coordinator, "tp-late")
    deadline = fed.round_record(rnd).deadline
    rejected(lambda: m.outsider.act("heartbeat", workflow_id=rnd.workflow_id),
             "is neither a participant nor a compute node")
    now = _heartbeat_past(m.c1, rnd.workflow_id, deadline)
    rejected(lambda: m.p1.submit_update(**submission_fields(rnd, "late")),
             f"round 1 closed for submissions at {deadline}")
    assert fed.list_length(rnd) == 0 and m.p1.index(rnd.workflow_id, rnd.round) is None
    m.p2.act("close_round", workflow_id=rnd.workflow_id, round=rnd.round)
    record = fed.round_record(rnd)
    assert record.status == "failed" and record.submitted == 0 and record.closed_at >= now  # type: ignore[operator]
