"""The aggregate task of a secure-aggregation round: unmask the survivors' sum, then the server step.

No single update is visible, so nothing can be screened or excluded one by one: every survivor's
masked input must be available and hash right, or the round's sum cannot be unmasked and the task
fails with the reason. The unmasked FedAvg delta then goes through the workflow's strategy as one
update of weight 1 (FedAvg of one update is that update; FedAdam and FedYogi take their server step
from it), in the same canonical arithmetic as any other round.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

from trustmesh.contracts.records import RoundRecord, SecAggRecord, SubmissionIndex, WorkflowRecord
from trustmesh.dataplane.records import SubmissionRecord
from trustmesh.errors import UpdateRejected
from trustmesh.fl.codecs import model_hash
from trustmesh.fl.params import Params, ParamSpec
from trustmesh.privacy.errors import PrivacyError
from trustmesh.privacy.secagg_round import unmask_delta

if TYPE_CHECKING:
    from trustmesh.compute.roundwork import BlobFetch, RoundResult


def secagg_result(*, workflow: WorkflowRecord, round_record: RoundRecord, index: SubmissionIndex | None,
                  secagg: SecAggRecord, base: Params, spec: ParamSpec, records: list[SubmissionRecord],
                  fetch_update: BlobFetch, optimizer_state: bytes | None, started: float) -> RoundResult:
    """The new model of a secure-aggregation round (raises UpdateRejected when it cannot be unmasked)."""
    from trustmesh.compute.roundwork import RoundResult, blob_for, indexed_records, server_step

    if index is None:
        raise UpdateRejected(f"round {round_record.round} has no masked inputs on-chain")
    entries = dict(sorted(index.entries.items()))
    by_signer = indexed_records(entries, records)
    masked: dict[str, bytes] = {}
    for signer in secagg.survivors:
        entry = entries.get(signer)
        if entry is None:
            raise UpdateRejected(f"survivor {signer[:12]}… has no index entry")
        blob, reason = blob_for(signer, entry.update_hash, entry.inline, by_signer, fetch_update)
        if blob is None:
            raise UpdateRejected(f"the masked input of survivor {signer[:12]}… is not usable ({reason}); "
                                 "the sum cannot be unmasked")
        masked[signer] = blob
    try:
        mean = unmask_delta(workflow=workflow, schedule_id=round_record.schedule_id, sec=secagg, index=index,
                            masked=masked, spec=spec)
    except PrivacyError as exc:
        raise UpdateRejected(f"secure aggregation: {exc}") from exc
    model_bytes, state_bytes, state_hash = server_step(workflow, base, spec, [mean], [1.0], [{}], optimizer_state)
    return RoundResult(model_bytes=model_bytes, model_hash=model_hash(model_bytes), included=tuple(secagg.survivors),
                       excluded={}, state_bytes=state_bytes, state_hash=state_hash,
                       seconds=time.perf_counter() - started,
                       notes={"secure_aggregation": f"{len(secagg.survivors)} survivors, "
                                                    f"{len(secagg.dropped)} dropped"})
