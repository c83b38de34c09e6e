"""Secure-aggregation phases on-chain: advertise keys, hand out shares, submit masked inputs, reveal.

A secure-aggregation round is ``open`` through three phases and ``unmasking`` through the fourth:

- ``advertise``: each participant records its two X25519 public keys and a seed commitment;
- ``share``: each advertised participant records the hash of its encrypted share envelopes (the
  envelopes travel through Redis); the roster is frozen;
- ``input``: members (advertised and shared) submit masked inputs through the iot-data family;
  ``close_round`` fixes the survivors (members that submitted) and starts
- ``unmask``: each survivor reveals, per member, the seed share (survivor) or the mask-key share
  (dropped) — the chain refuses any other combination — and the round becomes ``ready``.

``secagg_advance`` ends a key or reveal phase once everyone acted or its block-time deadline
passed; a phase that ends with fewer than ``threshold`` participants fails the round with that
reason. Everything here is a pure function of state and block time.

With a SecAgg+ neighbour graph (``neighbours`` k), a reveal may carry only shares of the revealer's
neighbours (and its own), and a round fails on-chain when some member's neighbourhood cannot give t
shares: at ``close_round`` counting survivors, at the end of ``unmask`` counting the revealed shares.
The graph is a pure function of the roster and the round (``trustmesh.contracts.secagg_graph``,
hashlib only); the secure-aggregation library uses the very same function.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable

from trustmesh.contracts.addresses import round_address, secagg_address, workflow_address
from trustmesh.contracts.errors import RuleViolation
from trustmesh.contracts.records import (
    SCHEMA_VERSION,
    RoundRecord,
    SecAggAdvance,
    SecAggAdvertise,
    SecAggKeys,
    SecAggRecord,
    SecAggReveal,
    SecAggRevealed,
    SecAggShares,
    SecureAggregationSpec,
    SubmissionIndex,
    WorkflowRecord,
)
from trustmesh.contracts.rules.common import (
    Event,
    Outcome,
    advance,
    complete_if_last,
    encode_record,
    load_round,
    load_workflow,
    read_record,
    round_event,
    short,
)
from trustmesh.contracts.secagg_graph import neighbour_graph, round_context
from trustmesh.contracts.view import StateView, block_time

__all__ = [
    "close_secagg",
    "graph_of",
    "load_secagg",
    "opening_record",
    "require_member",
    "secagg_advance",
    "secagg_advertise",
    "secagg_of",
    "secagg_reveal",
    "secagg_shares",
]


def graph_of(sec: SecAggRecord, schedule_id: str) -> dict[str, frozenset[str]] | None:
    """The round's SecAgg+ neighbour graph over the roster, or None for the complete graph."""
    if sec.neighbours is None:
        return None
    return neighbour_graph(sec.keys, sec.neighbours, context=round_context(sec.workflow_id, schedule_id))


def _short_neighbourhood(sec: SecAggRecord, graph: dict[str, frozenset[str]] | None,
                         holders: Callable[[str], Iterable[str]]) -> tuple[str, int] | None:
    """The first member (sorted) whose secret fewer than t holders can rebuild, with their count."""
    for owner in sorted(sec.members):
        neighbourhood = (graph[owner] if graph is not None else frozenset(sec.members)) | {owner}
        count = len(neighbourhood & set(holders(owner)))
        if count < sec.threshold:
            return owner, count
    return None


def secagg_of(workflow: WorkflowRecord) -> SecureAggregationSpec | None:
    """The workflow's secure-aggregation settings, or None when it is off."""
    spec = workflow.spec.privacy.secure_aggregation
    return spec if spec.enabled else None


def opening_record(workflow: WorkflowRecord, round_no: int, now: int) -> SecAggRecord | None:
    """The secure-aggregation record a new round starts with (None without secure aggregation)."""
    spec = secagg_of(workflow)
    if spec is None:
        return None
    assert spec.threshold is not None  # register_workflow refuses secure aggregation without one
    return SecAggRecord(schema_version=SCHEMA_VERSION, workflow_id=workflow.workflow_id, round=round_no,
                        threshold=spec.threshold, phase="advertise", phase_deadline=now + spec.phase_timeout,
                        neighbours=spec.neighbours)


def load_secagg(view: StateView, workflow_id: str, round_no: int) -> SecAggRecord:
    record = read_record(view, secagg_address(workflow_id, round_no), SecAggRecord)
    if record is None:
        raise RuleViolation(f"round {round_no} of workflow {workflow_id!r} has no secure aggregation")
    return record


def _phase(sec: SecAggRecord, phase: str, now: int, *, deadline: bool = True) -> None:
    if sec.phase != phase:
        raise RuleViolation(f"round {sec.round}'s secure aggregation is in phase {sec.phase!r}, not {phase!r}")
    if deadline and now > sec.phase_deadline:
        raise RuleViolation(f"phase {phase!r} of round {sec.round} ended at {sec.phase_deadline} (now {now})")


def _phase_event(sec: SecAggRecord, record: RoundRecord) -> Event:
    return Event(event_type="federation/secagg-phase",
                 attributes=(("workflow_id", sec.workflow_id), ("schedule_id", record.schedule_id),
                             ("round", str(sec.round)), ("phase", sec.phase)),
                 data=encode_record(sec))


def _acted(sec: SecAggRecord, signer: str) -> Event:
    """One participant did its part of the current phase (wakes whoever ends the phase)."""
    return Event(event_type="federation/secagg-acted",
                 attributes=(("workflow_id", sec.workflow_id), ("round", str(sec.round)), ("phase", sec.phase),
                             ("signer", signer)))


def _save(sec: SecAggRecord, *events: Event) -> Outcome:
    return Outcome(changes={secagg_address(sec.workflow_id, sec.round): encode_record(sec)}, events=list(events))


def _open_round(view: StateView, signer: str, workflow_id: str, round_no: int) -> tuple[WorkflowRecord, RoundRecord]:
    """The workflow and its open round; the signer must be one of its participants."""
    workflow = load_workflow(view, workflow_id)
    if signer not in workflow.participants:
        raise RuleViolation(f"{short(signer)} is not a participant of workflow {workflow_id!r}")
    return workflow, load_round(view, workflow_id, round_no)


def secagg_advertise(view: StateView, signer: str, payload: SecAggAdvertise) -> Outcome:
    """A participant records its public keys and seed commitment, once, during ``advertise``."""
    _, record = _open_round(view, signer, payload.workflow_id, payload.round)
    sec = load_secagg(view, payload.workflow_id, payload.round)
    _phase(sec, "advertise", block_time(view))
    if signer in sec.keys:
        raise RuleViolation(f"{short(signer)} already advertised its keys for round {sec.round}")
    taken = {k.enc_public for k in sec.keys.values()} | {k.mask_public for k in sec.keys.values()}
    if payload.enc_public == payload.mask_public or {payload.enc_public, payload.mask_public} & taken:
        raise RuleViolation("public keys must be fresh: this key is already in the round's roster")
    keys = SecAggKeys(enc_public=payload.enc_public, mask_public=payload.mask_public,
                      seed_commitment=payload.seed_commitment)
    sec = dataclasses.replace(sec, keys={**sec.keys, signer: keys})
    return _save(sec, _acted(sec, signer))


def secagg_shares(view: StateView, signer: str, payload: SecAggShares) -> Outcome:
    """An advertised participant records the hash of its share envelopes, once, during ``share``."""
    _open_round(view, signer, payload.workflow_id, payload.round)
    sec = load_secagg(view, payload.workflow_id, payload.round)
    _phase(sec, "share", block_time(view))
    mine = sec.keys.get(signer)
    if mine is None:
        raise RuleViolation(f"{short(signer)} did not advertise keys in round {sec.round}")
    if mine.bundle_hash is not None:
        raise RuleViolation(f"{short(signer)} already recorded its shares for round {sec.round}")
    keys = {**sec.keys, signer: dataclasses.replace(mine, bundle_hash=payload.bundle_hash)}
    sec = dataclasses.replace(sec, keys=keys)
    return _save(sec, _acted(sec, signer))


def secagg_reveal(view: StateView, signer: str, payload: SecAggReveal) -> Outcome:
    """A survivor reveals seed shares of survivors and mask-key shares of dropped members, never both."""
    _, record = _open_round(view, signer, payload.workflow_id, payload.round)
    sec = load_secagg(view, payload.workflow_id, payload.round)
    _phase(sec, "unmask", block_time(view))
    if signer not in sec.survivors:
        raise RuleViolation(f"{short(signer)} is not a survivor of round {sec.round}")
    if signer in sec.reveals:
        raise RuleViolation(f"{short(signer)} already revealed its shares for round {sec.round}")
    survivors, dropped = set(sec.survivors), set(sec.dropped)
    wrong_seed = sorted(set(payload.seed_shares) - survivors)
    if wrong_seed:
        raise RuleViolation(f"seed share of {short(wrong_seed[0])} refused: it is not a survivor")
    wrong_key = sorted(set(payload.key_shares) - dropped)
    if wrong_key:
        raise RuleViolation(f"mask-key share of {short(wrong_key[0])} refused: it did not drop out")
    graph = graph_of(sec, record.schedule_id)
    if graph is not None:
        strangers = sorted((set(payload.seed_shares) | set(payload.key_shares)) - graph[signer] - {signer})
        if strangers:
            raise RuleViolation(f"share of {short(strangers[0])} refused: it is not a neighbour of {short(signer)}")
    revealed = SecAggRevealed(seed_shares=dict(payload.seed_shares), key_shares=dict(payload.key_shares))
    sec = dataclasses.replace(sec, reveals={**sec.reveals, signer: revealed})
    return _save(sec, _acted(sec, signer))


def secagg_advance(view: StateView, signer: str, payload: SecAggAdvance) -> Outcome:
    """End the current key or reveal phase once everyone acted or its deadline passed."""
    workflow = load_workflow(view, payload.workflow_id)
    if signer not in workflow.participants and signer not in workflow.compute_nodes and signer != workflow.coordinator:
        raise RuleViolation(f"{short(signer)} is not a member of workflow {workflow.workflow_id!r}")
    record = load_round(view, workflow.workflow_id, payload.round)
    sec = load_secagg(view, workflow.workflow_id, payload.round)
    now = block_time(view)
    spec = secagg_of(workflow)
    timeout = spec.phase_timeout if spec is not None else 1
    if sec.phase == "advertise":
        if len(sec.keys) < workflow.spec.expected_nodes and now <= sec.phase_deadline:
            raise _not_yet(sec, len(sec.keys), workflow.spec.expected_nodes, now)
        if len(sec.keys) < sec.threshold:
            return _fail(workflow, record, sec, now, f"{len(sec.keys)} participant(s) advertised keys, "
                                                     f"fewer than the threshold {sec.threshold}")
        sec = dataclasses.replace(sec, phase="share", phase_deadline=now + timeout)
        return _save(sec, _phase_event(sec, record))
    if sec.phase == "share":
        shared = tuple(sorted(pid for pid, k in sec.keys.items() if k.bundle_hash is not None))
        if len(shared) < len(sec.keys) and now <= sec.phase_deadline:
            raise _not_yet(sec, len(shared), len(sec.keys), now)
        if len(shared) < sec.threshold:
            return _fail(workflow, record, sec, now, f"{len(shared)} participant(s) handed out their shares, "
                                                     f"fewer than the threshold {sec.threshold}")
        sec = dataclasses.replace(sec, phase="input", members=shared, phase_deadline=now + workflow.spec.round_timeout)
        # Members train and submit after the key phases: the submission deadline starts now.
        record = dataclasses.replace(record, deadline=now + workflow.spec.round_timeout)
        outcome = _save(sec, _phase_event(sec, record))
        outcome.changes[round_address(workflow.workflow_id, record.round)] = encode_record(record)
        return outcome
    if sec.phase == "unmask":
        if len(sec.reveals) < len(sec.survivors) and now <= sec.phase_deadline:
            raise _not_yet(sec, len(sec.reveals), len(sec.survivors), now)
        if len(sec.reveals) < sec.threshold:
            return _fail(workflow, record, sec, now, f"{len(sec.reveals)} survivor(s) revealed their shares, "
                                                     f"fewer than the threshold {sec.threshold}")
        survivors = set(sec.survivors)

        def revealed(owner: str) -> list[str]:
            return [pid for pid, r in sec.reveals.items()
                    if owner in (r.seed_shares if owner in survivors else r.key_shares)]

        short_of = _short_neighbourhood(sec, graph_of(sec, record.schedule_id), revealed)
        if short_of is not None:
            owner, count = short_of
            secret = "self-mask seed" if owner in survivors else "mask key"
            return _fail(workflow, record, sec, now, f"{count} share(s) of the {secret} of {short(owner)} were "
                                                     f"revealed, fewer than the threshold {sec.threshold}")
        sec = dataclasses.replace(sec, phase="complete")
        record = advance(record, "ready")
        outcome = _save(sec, _phase_event(sec, record))
        outcome.changes[round_address(workflow.workflow_id, record.round)] = encode_record(record)
        outcome.events.append(round_event("round-ready", record, ("submitted", str(len(sec.survivors))),
                                          ("min_nodes_required", str(workflow.spec.min_nodes_required))))
        return outcome
    if sec.phase == "input":
        raise RuleViolation(f"round {sec.round} takes masked inputs: close_round ends that phase")
    raise RuleViolation(f"round {sec.round}'s secure aggregation is already {sec.phase}")


def close_secagg(workflow: WorkflowRecord, record: RoundRecord, sec: SecAggRecord,
                 index: SubmissionIndex | None, now: int) -> Outcome:
    """``close_round`` of a secure-aggregation round: fix the survivors, then reveal (or fail)."""
    if sec.phase != "input":
        raise RuleViolation(f"round {record.round}'s secure aggregation is in phase {sec.phase!r}, not 'input'")
    survivors = tuple(sorted(index.entries)) if index else ()
    if len(survivors) < len(sec.members) and now <= record.deadline:
        raise RuleViolation(f"round {record.round} has {len(survivors)} of {len(sec.members)} masked inputs and is "
                            f"open until {record.deadline} (now {now})")
    needed = max(sec.threshold, workflow.spec.min_nodes_required)
    if len(survivors) < needed:
        return _fail(workflow, record, sec, now, f"{len(survivors)} survivor(s) submitted a masked input, fewer "
                                                 f"than the {needed} required (threshold {sec.threshold})",
                     submitted=len(survivors))
    graph = graph_of(sec, record.schedule_id)
    short_of = _short_neighbourhood(sec, graph, lambda _owner: survivors)
    if short_of is not None:
        owner, count = short_of
        who = "survivor" if owner in survivors else "dropped member"
        return _fail(workflow, record, sec, now, f"{who} {short(owner)} has {count} survivor(s) in its "
                                                 f"neighbourhood, fewer than the threshold {sec.threshold}",
                     submitted=len(survivors))
    spec = secagg_of(workflow)
    sec = dataclasses.replace(sec, phase="unmask", survivors=survivors,
                              phase_deadline=now + (spec.phase_timeout if spec else 1))
    record = advance(record, "unmasking", submitted=len(survivors), closed_at=now)
    outcome = _save(sec, _phase_event(sec, record))
    outcome.changes[round_address(workflow.workflow_id, record.round)] = encode_record(record)
    return outcome


def require_member(view: StateView, workflow: WorkflowRecord, round_no: int, signer: str) -> None:
    """A masked input is accepted only from a member, during the ``input`` phase."""
    if secagg_of(workflow) is None:
        return
    sec = load_secagg(view, workflow.workflow_id, round_no)
    if sec.phase != "input":
        raise RuleViolation(f"round {round_no} takes masked inputs only in phase 'input', not {sec.phase!r}")
    if signer not in sec.members:
        raise RuleViolation(f"{short(signer)} is not a secure-aggregation member of round {round_no} "
                            "(it did not advertise keys and hand out shares in time)")


def _not_yet(sec: SecAggRecord, done: int, wanted: int, now: int) -> RuleViolation:
    return RuleViolation(f"phase {sec.phase!r} of round {sec.round} has {done} of {wanted} and lasts until "
                         f"{sec.phase_deadline} (now {now})")


def _fail(workflow: WorkflowRecord, record: RoundRecord, sec: SecAggRecord, now: int, reason: str,
          *, submitted: int | None = None) -> Outcome:
    """The round fails cleanly with ``reason``, recorded with its secure-aggregation phases."""
    failed_in = sec.phase
    sec = dataclasses.replace(sec, phase="failed", failure=reason)
    record = advance(record, "failed", closed_at=now,
                     submitted=submitted if submitted is not None else record.submitted)
    changes: dict[str, bytes | None] = {
        secagg_address(workflow.workflow_id, sec.round): encode_record(sec),
        round_address(workflow.workflow_id, record.round): encode_record(record),
    }
    finished = complete_if_last(workflow, record)
    if finished is not workflow:
        changes[workflow_address(workflow.workflow_id)] = encode_record(finished)
    events = [_phase_event(sec, record),
              round_event("round-failed", record, ("reason", reason), ("phase", failed_in))]
    return Outcome(changes=changes, events=events)

