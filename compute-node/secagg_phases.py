"""What a compute node does for a secure-aggregation round before it can aggregate.

It ends each key phase once everyone acted or the phase's block-time deadline passed
(``secagg_advance``), closes the input phase like any round (``close_round`` fixes the survivors),
and ends the reveal phase the same way; meanwhile it keeps block time moving. The aggregate itself
waits for the round to become ``ready`` (:mod:`trustmesh.compute.secagg_work`).
"""
from __future__ import annotations

from typing import TYPE_CHECKING

from trustmesh.contracts.records import RoundRecord, SecAggRecord, WorkflowRecord

if TYPE_CHECKING:
    from trustmesh.compute.node import ComputeNode


def phase_done(sec: SecAggRecord, workflow: WorkflowRecord, *, submitted: int, deadline: int, now: int) -> bool:
    """True once the current phase may end: everyone acted, or its deadline passed on block time."""
    if sec.phase == "advertise":
        return len(sec.keys) >= workflow.spec.expected_nodes or now > sec.phase_deadline
    if sec.phase == "share":
        return all(k.bundle_hash is not None for k in sec.keys.values()) or now > sec.phase_deadline
    if sec.phase == "input":
        return submitted >= len(sec.members) or now > deadline
    if sec.phase == "unmask":
        return len(sec.reveals) >= len(sec.survivors) or now > sec.phase_deadline
    return False


def drive(node: ComputeNode, workflow: WorkflowRecord, record: RoundRecord) -> str:
    """One reconcile step of an ``open`` or ``unmasking`` secure-aggregation round."""
    sec = node.chain.secagg(workflow.workflow_id, record.round)
    if sec is None:
        return "waiting"
    index = node.chain.index(workflow.workflow_id, record.round) if sec.phase == "input" else None
    submitted = len(index.entries) if index else 0
    if phase_done(sec, workflow, submitted=submitted, deadline=record.deadline, now=node.chain.now()):
        action = "close_round" if sec.phase == "input" else "secagg_advance"
        if node._try(action, workflow_id=workflow.workflow_id, round=record.round):
            return "acted"
    return node._keep_time_moving(workflow)
