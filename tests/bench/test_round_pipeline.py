"""The round's fast path, in-process on the in-memory ledger with both real transaction handlers.

One compute node leads (the first key in order) and posts; the other computes the same result and
sends its attestation, the evaluate claim and the evaluation as one batch (one block), refused when
it comes before the post. A silent leader is replaced after the grace. A participant's waker stops
receiving the events its node does not act on.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from trustmesh.chain import Chain
from trustmesh.compute.node import ComputeNode
from trustmesh.dataplane.store import MemoryDataPlane
from trustmesh.iot.coordinator import Coordinator
from trustmesh.iot.participant import Participant
from trustmesh.ledger.keys import new_signer
from trustmesh.ledger.memory import MemoryLedger
from trustmesh.tp.federation.handler import FederationHandler
from trustmesh.tp.iot_data.handler import IotDataHandler
from trustmesh.wakeup import PARTICIPANT_EVENTS, Waker

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "mnist-federated.json"
WF = "pipeline"


class Round:
    """A ledger, a data plane, a coordinator, three participants and two compute nodes."""

    def __init__(self, *, leader_grace: float = 2.0, hand_off: bool = False) -> None:
        self.plane = MemoryDataPlane()
        self.ledger = MemoryLedger(handlers=[FederationHandler(), IotDataHandler(dataplane=self.plane)])
        chains = {name: Chain(client=self.ledger, signer=new_signer())
                  for name in ("coordinator", "p0", "p1", "p2", "c0", "c1")}
        self.reader = chains["coordinator"]
        doc = json.loads(EXAMPLE.read_text())
        doc.update(workflow_id=WF, expected_nodes=3, rounds=2)
        doc["local_training"]["local_epochs"] = 1
        doc["data"]["num_partitions"] = 3
        doc["federation_config"].update(
            coordinator_node=chains["coordinator"].public_key, min_nodes_required=3,
            participant_nodes=[chains[p].public_key for p in ("p0", "p1", "p2")],
            compute_nodes=[chains["c0"].public_key, chains["c1"].public_key], attestations_required=1,
        )
        self.coordinator = Coordinator(chain=chains["coordinator"], doc=doc, dataplane=self.plane, start_wait=0,
                                       hand_off=hand_off)
        self.coordinator.register()
        self.participants = [Participant(chain=chains[p], dataplane=self.plane, workflow_id=WF, partition=i)
                             for i, p in enumerate(("p0", "p1", "p2"))]
        nodes = [ComputeNode(chain=chains[c], dataplane=self.plane, workflow_ids=[WF], heartbeat_every=1e9,
                             leader_grace=leader_grace) for c in ("c0", "c1")]
        self.leader, self.follower = sorted(nodes, key=lambda n: n.key)

    def submit_all(self) -> None:
        for participant in self.participants:
            assert participant.step(self.reader.workflow(WF)) is not None

    def current(self) -> Any:
        return self.reader.round(WF, self.reader.workflow(WF).last_round)


@pytest.fixture(scope="module")
def settled() -> tuple[Round, list[tuple[str, int, str]]]:
    """Round 1 driven step by step; the block height and round status after each step."""
    stack = Round()
    seen = []
    assert stack.coordinator.step() == "opened"
    stack.participants[0].step(stack.reader.workflow(WF))
    stack.follower.step(WF)  # one submission in: the follower screens it ahead
    stack.participants[1].step(stack.reader.workflow(WF))
    stack.participants[2].step(stack.reader.workflow(WF))
    for who, node in (("follower", stack.follower), ("leader", stack.leader), ("follower", stack.follower)):
        node.step(WF)
        seen.append((who, stack.ledger.head_block_num, stack.current().status))
    return stack, seen


def test_the_leader_posts_and_the_other_node_attests_and_evaluates_in_one_block(settled: Any) -> None:
    stack, seen = settled
    (_, before, status_1), (_, posted, status_2), (_, attested, status_3) = seen
    assert status_1 == "open"  # the follower's attestation came before the post: refused, no block
    assert (status_2, posted) == ("aggregated", before + 1)  # close, claim and post: one block
    assert (status_3, attested) == ("accepted", posted + 1)  # attest, claim, evaluation: one block
    record = stack.current()
    assert record.result.aggregator == stack.leader.key
    assert record.attestations == (stack.follower.key,)
    assert record.evaluation.evaluator == stack.follower.key
    assert len(record.result.included) == 3


def test_the_next_round_opens_in_the_block_of_the_verdict() -> None:
    """The coordinator hands each compute node its signed open_round of the next round; the node
    that records the verdict sends it in the same batch: round 2 opens in round 1's verdict block."""
    stack = Round(hand_off=True)
    assert stack.coordinator.step() == "opened"
    handed = stack.plane.get_next_open(WF, 2, stack.follower.key)
    assert handed is not None and stack.plane.get_next_open(WF, 2, stack.leader.key) is not None
    stack.submit_all()
    stack.leader.step(WF)  # close, claim, post
    verdict_block = stack.ledger.head_block_num + 1
    stack.follower.step(WF)  # attest, claim, evaluate + the coordinator's open_round(2)
    assert stack.ledger.head_block_num == verdict_block
    assert stack.reader.round(WF, 1).status == "accepted"
    second = stack.reader.round(WF, 2)
    assert second is not None and second.status == "open" and second.schedule_id.startswith("r2-")
    assert stack.coordinator.step() == "waiting"  # round 2 is open: nothing to open
    assert stack.plane.get_next_open(WF, 3, stack.follower.key) is None  # beyond the workflow's 2 rounds


def test_a_refused_hand_off_does_not_cost_the_verdict() -> None:
    """A handed-over open_round the chain refuses (here: a stale one) is dropped, the verdict still lands."""
    stack = Round(hand_off=True)
    assert stack.coordinator.step() == "opened"
    stack.submit_all()
    stack.leader.step(WF)
    # replace the handed-over open by one the chain refuses: its schedule id is round 1's
    record = stack.reader.round(WF, 1)
    stale = stack.coordinator.chain.presign("open_round", batcher_public_key=stack.follower.key,
                                             workflow_id=WF, round=2, schedule_id=record.schedule_id)
    stack.plane.put_next_open(WF, 2, stack.follower.key, stale.SerializeToString(), ttl=60)
    stack.follower.step(WF)
    assert stack.reader.round(WF, 1).status == "accepted"
    assert stack.reader.round(WF, 2) is None  # the refused open was dropped; the coordinator opens it
    assert stack.coordinator.step() == "opened"


def test_the_accepted_model_is_fetched_at_the_verdict(settled: Any) -> None:
    stack, _ = settled
    participant = stack.participants[0]
    workflow = stack.reader.workflow(WF)
    assert participant.step(workflow) is None  # round 1 is settled: nothing to submit
    key = f"model:{{{WF}}}:{workflow.model_hash}"
    original = stack.plane.get_model(WF, workflow.model_hash)
    assert original is not None
    stack.plane.tamper(key, b"not the model")  # Redis loses it: the checked copy is already here
    assert participant.base_model(workflow, stack.current()) is not None
    stack.plane.tamper(key, original)


def test_a_silent_leader_is_replaced_after_the_grace() -> None:
    patient, eager = Round(leader_grace=3600), Round(leader_grace=0)
    for stack in (patient, eager):
        assert stack.coordinator.step() == "opened"
        stack.submit_all()
        stack.follower.step(WF)
    assert patient.current().status == "open"  # waits for its leader
    record = eager.current()
    assert record.status == "aggregated" and record.result.aggregator == eager.follower.key


def test_a_narrowed_waker_is_not_woken_by_submissions() -> None:
    stack = Round()
    broad, narrow = Waker(stack.ledger, WF), Waker(stack.ledger, WF)
    narrow.wake_on(PARTICIPANT_EVENTS)
    assert stack.coordinator.step() == "opened"
    assert broad.wait(1.0) and narrow.wait(1.0)  # round-opened wakes both
    stack.participants[0].step(stack.reader.workflow(WF))
    assert broad.wait(1.0)
    assert not narrow.wait(0.05)  # a submitted event is not sent to it at all
    broad.close()
    narrow.close()


class _CountingReads:
    """The ledger, counting state reads."""

    def __init__(self, inner: MemoryLedger) -> None:
        self.inner, self.reads = inner, 0

    def get_state(self, address: str) -> bytes | None:
        self.reads += 1
        return self.inner.get_state(address)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_a_round_opened_wake_costs_no_chain_read(settled: Any) -> None:
    """Woken by round-opened, a participant that knows the workflow takes the round's record from
    the event (the record the TP wrote in that block) and reads nothing before training."""
    stack, _ = settled
    waker = Waker(stack.ledger, WF)
    waker.wake_on(PARTICIPANT_EVENTS)
    counting = _CountingReads(stack.ledger)
    signer = stack.participants[1].chain.signer
    participant = Participant(chain=Chain(client=counting, signer=signer), dataplane=stack.plane,  # type: ignore[arg-type]
                              workflow_id=WF, partition=1, wait=waker.wait)
    known = stack.reader.workflow(WF)
    assert stack.coordinator.step() == "opened"
    assert waker.wait(1.0)
    workflow, record = participant._fresh(known)
    assert (workflow.last_round, record.round, record.status, counting.reads) == (2, 2, "open", 0)
    assert record == stack.reader.round(WF, 2)
    assert workflow.model_hash == record.base_model_hash == stack.reader.workflow(WF).model_hash
    assert participant.step(workflow, record) is not None  # trains on round 2 and submits
    assert stack.participants[1].chain.public_key in stack.reader.index(WF, 2).entries
    waker.close()


def test_woken_by_submissions_the_leader_reads_only_the_index_before_posting() -> None:
    """Submissions never change the workflow or the round record: a compute node that only they
    woke goes straight to the round's index, and closes, claims and posts from there."""
    stack = Round()
    counting = _CountingReads(stack.ledger)
    waker = Waker(stack.ledger, WF)
    leader = ComputeNode(chain=Chain(client=counting, signer=stack.leader.chain.signer),  # type: ignore[arg-type]
                         dataplane=stack.plane, workflow_ids=[WF], heartbeat_every=1e9, wait=waker.wait)
    assert stack.coordinator.step() == "opened"
    assert leader.step(WF) == "waiting"  # sees round 1 open and watches it
    assert waker.wait(1.0)  # round-opened
    stack.submit_all()
    assert waker.wait(1.0) and {e.event_type for e in waker.woken_by} == {"iot-data/submitted"}
    counting.reads = 0
    assert leader.step(WF) == "acted"
    assert counting.reads == 1  # the index; the workflow and round came from what it watched
    assert stack.current().status == "aggregated" and stack.current().result.aggregator == leader.key
    assert waker.wait(1.0)  # the post's own events: not submissions only, so the chain is read again
    counting.reads = 0
    leader.step(WF)
    assert counting.reads >= 2
    waker.close()
