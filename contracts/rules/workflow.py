"""Workflow membership rules: register_workflow, enroll, approve, heartbeat."""
from __future__ import annotations

import dataclasses

from trustmesh.contracts import cbor
from trustmesh.contracts.addresses import node_address, workflow_address
from trustmesh.contracts.errors import RuleViolation
from trustmesh.contracts.records import (
    MAX_PARTICIPANTS,
    SCHEMA_VERSION,
    Approve,
    Enroll,
    Heartbeat,
    NodeRecord,
    RegisterWorkflow,
    WorkflowRecord,
)
from trustmesh.contracts.rules.common import (
    Event,
    Outcome,
    encode_record,
    load_workflow,
    read_record,
    short,
)
from trustmesh.contracts.spec_checks import spec_problems
from trustmesh.contracts.view import StateView, block_time


def _workflow_event(name: str, workflow: WorkflowRecord, *extra: tuple[str, str]) -> Event:
    return Event(
        event_type=f"federation/{name}",
        attributes=(("workflow_id", workflow.workflow_id), *extra),
        data=cbor.encode({"workflow_id": workflow.workflow_id, **dict(extra)}),
    )


def register_workflow(view: StateView, signer: str, payload: RegisterWorkflow) -> Outcome:
    """Record a new workflow with the signer as coordinator; the id must be unused and the spec consistent."""
    address = workflow_address(payload.workflow_id)
    if view.get(address):
        raise RuleViolation(f"workflow {payload.workflow_id!r} already exists")
    if len(set(payload.participants)) != len(payload.participants):
        raise RuleViolation("participants: a key is listed twice")
    if len(set(payload.compute_nodes)) != len(payload.compute_nodes):
        raise RuleViolation("compute_nodes: a key is listed twice")
    problems = spec_problems(
        payload.spec, participants=len(payload.participants), compute_nodes=len(payload.compute_nodes)
    )
    if problems:
        raise RuleViolation(f"workflow spec: {problems[0]}")
    workflow = WorkflowRecord(
        schema_version=SCHEMA_VERSION,
        workflow_id=payload.workflow_id,
        coordinator=signer,
        spec=payload.spec,
        participants=tuple(sorted(payload.participants)),
        compute_nodes=tuple(sorted(payload.compute_nodes)),
        privacy_cap=payload.privacy_cap,
        status="active",
        model_hash=payload.initial_model_hash,
        model_version=0,
        last_round=0,
    )
    event = _workflow_event("workflow-registered", workflow, ("coordinator", signer))
    return Outcome(changes={address: encode_record(workflow)}, events=[event])


def _require_open_enrolment(workflow: WorkflowRecord) -> None:
    if workflow.spec.enrolment != "open":
        raise RuleViolation(f"workflow {workflow.workflow_id!r} does not allow enrolment")


def enroll(view: StateView, signer: str, payload: Enroll) -> Outcome:
    """The signer asks to become a participant of an open-enrolment workflow."""
    workflow = load_workflow(view, payload.workflow_id)
    _require_open_enrolment(workflow)
    if signer in workflow.participants:
        raise RuleViolation(f"{short(signer)} is already a participant")
    address = node_address(workflow.workflow_id, signer)
    node = read_record(view, address, NodeRecord)
    if node is not None and node.enrolment == "pending":
        raise RuleViolation(f"{short(signer)} has already enrolled and awaits approval")
    node = NodeRecord(schema_version=SCHEMA_VERSION, workflow_id=workflow.workflow_id, key=signer) if node is None else node
    node = dataclasses.replace(node, enrolment="pending")
    event = _workflow_event("participant-enrolled", workflow, ("node", signer), ("enrolment", "pending"))
    return Outcome(changes={address: encode_record(node)}, events=[event])


def approve(view: StateView, signer: str, payload: Approve) -> Outcome:
    """The coordinator admits a pending node; it becomes a participant."""
    workflow = load_workflow(view, payload.workflow_id)
    if signer != workflow.coordinator:
        raise RuleViolation("only the workflow's coordinator may approve participants")
    _require_open_enrolment(workflow)
    address = node_address(workflow.workflow_id, payload.node)
    node = read_record(view, address, NodeRecord)
    if node is None or node.enrolment != "pending":
        raise RuleViolation(f"{short(payload.node)} has no pending enrolment")
    if payload.node in workflow.participants:
        raise RuleViolation(f"{short(payload.node)} is already a participant")
    if len(workflow.participants) >= MAX_PARTICIPANTS:
        raise RuleViolation(f"workflow already has the maximum of {MAX_PARTICIPANTS} participants")
    workflow = dataclasses.replace(workflow, participants=tuple(sorted((*workflow.participants, payload.node))))
    node = dataclasses.replace(node, enrolment="approved")
    event = _workflow_event("participant-enrolled", workflow, ("node", payload.node), ("enrolment", "approved"))
    changes = {workflow_address(workflow.workflow_id): encode_record(workflow), address: encode_record(node)}
    return Outcome(changes=changes, events=[event])


def heartbeat(view: StateView, signer: str, payload: Heartbeat) -> Outcome:
    """A participant or compute node records liveness at block time (and so moves block time on)."""
    workflow = load_workflow(view, payload.workflow_id)
    if signer not in workflow.participants and signer not in workflow.compute_nodes:
        raise RuleViolation(f"{short(signer)} is neither a participant nor a compute node of this workflow")
    now = block_time(view)
    address = node_address(workflow.workflow_id, signer)
    node = read_record(view, address, NodeRecord)
    if node is None:
        node = NodeRecord(schema_version=SCHEMA_VERSION, workflow_id=workflow.workflow_id, key=signer)
    node = dataclasses.replace(node, last_heartbeat=now)
    return Outcome(changes={address: encode_record(node)}, events=[])
