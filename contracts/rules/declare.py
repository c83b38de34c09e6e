"""Which addresses a transaction reads and writes, so clients declare exactly those in its header."""
from __future__ import annotations

from typing import Any

from trustmesh.contracts.addresses import (
    BLOCKINFO_NAMESPACE,
    node_address,
    round_address,
    schedule_address,
    secagg_address,
    submission_index_address,
    workflow_address,
)
from trustmesh.contracts.families import FEDERATION, IOT_DATA, Family, family_by_name
from trustmesh.contracts.records import (
    Approve,
    AttestResult,
    ClaimTask,
    CloseRound,
    Enroll,
    Heartbeat,
    OpenRound,
    PostResult,
    RecordEvaluation,
    RegisterWorkflow,
    SecAggAdvance,
    SecAggAdvertise,
    SecAggReveal,
    SecAggShares,
    Steps,
)
from trustmesh.contracts.schema import Record


def _federation(p: Any, signer: str) -> tuple[list[str], list[str]]:
    if isinstance(p, Steps):  # every address any of its steps reads or writes
        from trustmesh.contracts.rules import parse_steps

        declared = [_federation(step, signer) for step in parse_steps(p)]
        return [a for ins, _ in declared for a in ins], [a for _, outs in declared for a in outs]
    wf = workflow_address(p.workflow_id)
    if isinstance(p, RegisterWorkflow):
        return [wf], [wf]
    if isinstance(p, Enroll):
        node = node_address(p.workflow_id, signer)
        return [wf, node], [node]
    if isinstance(p, Approve):
        node = node_address(p.workflow_id, p.node)
        return [wf, node], [wf, node]
    if isinstance(p, Heartbeat):
        node = node_address(p.workflow_id, signer)
        return [wf, node, BLOCKINFO_NAMESPACE], [node]
    if isinstance(p, OpenRound):
        rnd = round_address(p.workflow_id, p.round)
        sched = schedule_address(p.workflow_id, p.schedule_id)
        sec = secagg_address(p.workflow_id, p.round)
        inputs = [wf, rnd, sched, sec, BLOCKINFO_NAMESPACE]
        if p.round > 1:
            inputs.append(round_address(p.workflow_id, p.round - 1))
        return inputs, [wf, rnd, sched, sec]
    rnd = round_address(p.workflow_id, p.round)
    index = submission_index_address(p.workflow_id, p.round)
    sec = secagg_address(p.workflow_id, p.round)
    if isinstance(p, CloseRound):
        return [wf, rnd, index, sec, BLOCKINFO_NAMESPACE], [wf, rnd, sec]
    if isinstance(p, (SecAggAdvertise, SecAggShares, SecAggReveal)):
        return [wf, rnd, sec, BLOCKINFO_NAMESPACE], [sec]
    if isinstance(p, SecAggAdvance):
        return [wf, rnd, sec, BLOCKINFO_NAMESPACE], [wf, rnd, sec]
    if isinstance(p, ClaimTask):
        return [wf, rnd, BLOCKINFO_NAMESPACE], [rnd]
    if isinstance(p, PostResult):
        return [wf, rnd, index, BLOCKINFO_NAMESPACE], [rnd]
    if isinstance(p, AttestResult):
        return [wf, rnd], [rnd]
    if isinstance(p, RecordEvaluation):
        return [wf, rnd, BLOCKINFO_NAMESPACE], [wf, rnd]
    raise TypeError(f"no declaration for {type(p).__name__}")


def declared_addresses(
    family: Family | str, payload: bytes | dict[str, Any] | Record, signer: str
) -> tuple[list[str], list[str]]:
    """(inputs, outputs) for a transaction of ``family`` with ``payload`` signed by ``signer``, sorted."""
    from trustmesh.contracts.rules import parse_federation, parse_submission

    fam = family_by_name(family) if isinstance(family, str) else family
    if fam == FEDERATION:
        inputs, outputs = _federation(parse_federation(payload), signer)
    elif fam == IOT_DATA:
        p = parse_submission(payload)
        index = submission_index_address(p.workflow_id, p.round)
        inputs = [workflow_address(p.workflow_id), round_address(p.workflow_id, p.round), index,
                  secagg_address(p.workflow_id, p.round), BLOCKINFO_NAMESPACE]
        outputs = [index]
    else:
        raise ValueError(f"unknown family {fam.name!r}")
    return sorted(set(inputs)), sorted(set(outputs))
