"""Send an IoT node's data (a model update envelope) to a round, in the source design's three modes.

- coordinator (``is_coordinator=True``): open the workflow's next round under a fresh ``schedule_id``
  and submit this node's data to it if the node is also a participant;
- participant (``schedule_id`` given): submit to that existing round;
- single node (neither): the backward-compatible path — a workflow whose coordinator opens each
  round for its one participant; the round gets its own ``schedule_id`` as in coordinator mode.

Raw data never leaves the node: ``iot_data`` is the update envelope, never training data. Updates
up to 64 KiB travel inline in the transaction; larger ones are stored in Redis under their content
hash first and the transaction carries only the hash.
"""
from __future__ import annotations

from trustmesh.chain import Chain
from trustmesh.contracts.payloads import submission_payload
from trustmesh.dataplane.store import DataPlane
from trustmesh.errors import ConfigError
from trustmesh.iot.coordinator import new_schedule_id

UPDATE_BLOB_TTL = 7 * 24 * 3600
"""Seconds Redis keeps an update blob sent by reference. Rounds settle in minutes; afterwards the
chain keeps its hash and CouchDB the resulting model, and verify-round reports a blob gone after
this as "no longer available" (exit 3), never as a mismatch."""


def submit_envelope(chain: Chain, dataplane: DataPlane | None, *, workflow_id: str, round_no: int,
                    schedule_id: str, envelope: bytes, num_samples: int,
                    metrics: dict[str, float] | None = None) -> str:
    """Submit one update envelope to round ``round_no``; return its hash (the on-chain record)."""
    built = submission_payload(workflow_id=workflow_id, round=round_no, schedule_id=schedule_id,
                               envelope=envelope, num_samples=num_samples, metrics=metrics)
    if built.by_reference:
        if dataplane is None:
            raise ConfigError(f"an update of {len(envelope)} bytes travels by reference: a Redis URL is needed")
        dataplane.put_update_blob(workflow_id, schedule_id, built.update_hash, envelope, ttl=UPDATE_BLOB_TTL)
    chain.submit_update(workflow_id=workflow_id, round=round_no, schedule_id=schedule_id,
                        update_hash=built.update_hash, inline=None if built.by_reference else envelope,
                        num_samples=num_samples, metrics=dict(metrics or {}))
    return built.update_hash


def create_and_send_transactions(
    chain: Chain,
    iot_data: bytes,
    workflow_id: str,
    *,
    num_samples: int,
    metrics: dict[str, float] | None = None,
    dataplane: DataPlane | None = None,
    schedule_id: str | None = None,
    is_coordinator: bool = False,
) -> str:
    """Send ``iot_data`` in the mode the arguments select; return the round's ``schedule_id``."""
    workflow = chain.workflow(workflow_id)
    if workflow is None:
        raise ConfigError(f"workflow {workflow_id!r} is not registered")
    if schedule_id is None:  # coordinator or single-node mode: this node opens the round
        round_no = workflow.last_round + 1
        schedule_id = new_schedule_id(round_no)
        chain.act("open_round", workflow_id=workflow_id, round=round_no, schedule_id=schedule_id)
        if chain.public_key not in workflow.participants and not is_coordinator:
            raise ConfigError("single-node mode: this key opened the round but is not its participant")
    else:
        record = chain.round(workflow_id, workflow.last_round) if workflow.last_round else None
        if record is None or record.schedule_id != schedule_id:
            raise ConfigError(f"schedule_id {schedule_id!r} is not the current round of {workflow_id!r}")
        round_no = record.round
    if chain.public_key in workflow.participants:
        submit_envelope(chain, dataplane, workflow_id=workflow_id, round_no=round_no, schedule_id=schedule_id,
                        envelope=iot_data, num_samples=num_samples, metrics=metrics)
    return schedule_id
