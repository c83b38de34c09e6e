"""Secure aggregation in the round protocol: what participants, compute nodes and verify-round share.

The chain's :class:`SecAggRecord` holds the roster (advertised keys), the members, the survivors and
the revealed shares; this module turns it into the secure-aggregation library's objects, fixes the
ring and the pre-weighting, and unmasks a round's sum. Every compute node and ``verify-round``
unmask from the same chain record and the same masked inputs, so they reach the same bytes.

With a SecAgg+ neighbour graph (``SecAggRecord.neighbours``), participants and the server build the
same graph from the round context and the roster (``trustmesh.contracts.secagg_graph``, which the TPs also run).

Pre-weighting: a participant masks ``w * delta`` with ``w = min(n, max_samples_per_node) /
max_samples_per_node`` (n its sample count, the capped count the chain's index records); the
aggregate delta is the unmasked sum divided by the survivors' sum of ``w`` — sample-weighted FedAvg.
"""
from __future__ import annotations

import hashlib

import cbor2
import numpy as np

from trustmesh.contracts.records import SecAggKeys, SecAggRecord, SubmissionIndex, WorkflowRecord
from trustmesh.contracts.secagg_graph import neighbour_graph, round_context
from trustmesh.errors import UpdateRejected
from trustmesh.fl.params import Params, ParamSpec
from trustmesh.privacy.errors import SecAggFailed, SecAggMessageInvalid
from trustmesh.privacy.secagg import PublicKeys, Reveal, RingQuantizer, Server, decode_masked_input
from trustmesh.privacy.secagg.roster import neighbourhood_indices

QUANTIZER = RingQuantizer(step=2.0 ** -24)
"""Ring Z/2^32 with a step of 2^-24 (about 6e-8): pre-weighted deltas of up to 128/n per coordinate fit."""

BUNDLE_VERSION = 1


def weight_of(num_samples: int, workflow: WorkflowRecord) -> float:
    """A participant's pre-weight: its capped sample count over the workflow's cap, in (0, 1]."""
    cap = workflow.spec.max_samples_per_node
    return min(int(num_samples), cap) / cap


def flatten(params: Params, spec: ParamSpec) -> np.ndarray:
    """The parameters as one float64 vector in the model spec's order."""
    return np.concatenate([np.asarray(params[name], dtype=np.float64).ravel() for name, _ in spec])


def unflatten(vector: np.ndarray, spec: ParamSpec) -> Params:
    """Inverse of :func:`flatten` (float32 tensors)."""
    out: Params = {}
    offset = 0
    for name, shape in spec:
        size = int(np.prod(shape))
        out[name] = np.asarray(vector[offset:offset + size], dtype=np.float32).reshape(shape)
        offset += size
    if offset != vector.size:
        raise UpdateRejected(f"a vector of {vector.size} values does not fit the model's {offset}")
    return out


def self_clip(vector: np.ndarray, *, weight: float, members: int, norm_bound: float | None) -> np.ndarray:
    """Clip a delta before masking: L2 to the workflow's norm bound, then into the ring's capacity.

    No one sees a single update under secure aggregation, so each participant bounds its own.
    """
    out = np.asarray(vector, dtype=np.float64)
    if norm_bound is not None:
        norm = float(np.linalg.norm(out))
        if norm > norm_bound:
            out = out * (norm_bound / norm)
    limit = QUANTIZER.capacity(members) / weight
    return np.clip(out, -limit, limit)


def graph_of(sec: SecAggRecord, schedule_id: str) -> dict[str, frozenset[str]]:
    """The round's neighbour graph over the roster (the complete graph without ``neighbours``)."""
    return neighbour_graph(sec.keys, sec.neighbours, context=round_context(sec.workflow_id, schedule_id))


def neighbours_of(sec: SecAggRecord, schedule_id: str, participant_id: str) -> frozenset[str]:
    """Whom ``participant_id`` shares secrets and masks with this round (everyone else without a graph)."""
    return graph_of(sec, schedule_id).get(participant_id, frozenset())


def roster_of(sec: SecAggRecord) -> dict[str, PublicKeys]:
    """The advertised keys of the round as the library's roster (participant id = public key)."""
    return {pid: _public_keys(pid, keys) for pid, keys in sorted(sec.keys.items())}


def _public_keys(pid: str, keys: SecAggKeys) -> PublicKeys:
    return PublicKeys(participant_id=pid, enc_public=keys.enc_public, mask_public=keys.mask_public,
                      seed_commitment=keys.seed_commitment)


def reveals_of(sec: SecAggRecord, schedule_id: str) -> dict[str, Reveal]:
    """The on-chain reveals as the library's Reveal messages (a share's x is its revealer's index in the
    owner's neighbourhood; shares of non-neighbours, which the chain refuses, are left out)."""
    graph = graph_of(sec, schedule_id)
    index = {owner: neighbourhood_indices(graph, owner) for owner in graph}

    def table(pid: str, shares: dict[str, bytes]) -> dict[str, tuple[int, bytes]]:
        return {owner: (index[owner][pid], share) for owner, share in shares.items()
                if pid in index.get(owner, {})}

    return {pid: Reveal(participant_id=pid, seed_shares=table(pid, revealed.seed_shares),
                        key_shares=table(pid, revealed.key_shares))
            for pid, revealed in sec.reveals.items()}


def reveal_fields(reveal: Reveal) -> dict[str, dict[str, bytes]]:
    """A Reveal as the ``secagg_reveal`` action's fields (share bytes only; x is implied)."""
    return {"seed_shares": {owner: share for owner, (_, share) in reveal.seed_shares.items()},
            "key_shares": {owner: share for owner, (_, share) in reveal.key_shares.items()}}


def encode_bundle(envelopes: dict[str, bytes]) -> tuple[bytes, str]:
    """A sender's share envelopes (recipient -> envelope) as canonical CBOR, and its sha512 hex."""
    data = cbor2.dumps({"v": BUNDLE_VERSION, "kind": "share-bundle", "to": dict(sorted(envelopes.items()))},
                       canonical=True)
    return data, hashlib.sha512(data).hexdigest()


def envelope_for(bundle: bytes, recipient: str) -> bytes | None:
    """The envelope a bundle holds for ``recipient`` (None if it holds none); malformed bundles raise."""
    try:
        body = cbor2.loads(bundle)
    except Exception as exc:  # cbor2 raises several types for malformed input
        raise SecAggMessageInvalid(f"share bundle is not CBOR ({exc})") from exc
    if not isinstance(body, dict) or body.get("v") != BUNDLE_VERSION or not isinstance(body.get("to"), dict):
        raise SecAggMessageInvalid("share bundle: wrong kind or version")
    envelope = body["to"].get(recipient)
    return envelope if isinstance(envelope, bytes) else None


def unmask_delta(*, workflow: WorkflowRecord, schedule_id: str, sec: SecAggRecord, index: SubmissionIndex,
                 masked: dict[str, bytes], spec: ParamSpec) -> Params:
    """The round's FedAvg delta from the survivors' masked inputs and the on-chain reveals.

    ``masked`` maps each survivor to its masked-input bytes (already checked against the index's
    hash). Fails with :class:`SecAggFailed` (reason in the message) if anything does not add up.
    """
    if sec.phase not in ("complete", "unmask"):
        raise SecAggFailed(f"secure aggregation is in phase {sec.phase!r}; nothing to unmask")
    survivors = tuple(sorted(sec.survivors))
    missing = [pid for pid in survivors if pid not in masked]
    if missing:
        raise SecAggFailed(f"the masked input of survivor {missing[0][:12]}… is unavailable: the sum cannot be unmasked")
    inputs = {pid: decode_masked_input(masked[pid]) for pid in survivors}
    if any(vector.size != spec.num_params for vector in inputs.values()):
        raise SecAggFailed("a masked input does not have the model's number of parameters")
    server = Server(roster=roster_of(sec), threshold=sec.threshold, round_id=round_context(workflow.workflow_id,
                    schedule_id), neighbours=sec.neighbours, quantizer=QUANTIZER, members=sec.members)
    total = server.unmask(inputs, reveals_of(sec, schedule_id))
    weight = sum(weight_of(index.entries[pid].num_samples, workflow) for pid in survivors)
    mean = np.asarray(total, dtype=np.float64) / weight
    return unflatten(mean, spec)
