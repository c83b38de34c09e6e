"""A participant's side of a secure-aggregation round, driven by the chain's record of its phases.

Each call of :meth:`SecAggRounds.step` reads the round and its phase and does the one thing this
node owes it: advertise fresh keys, hand out encrypted shares (through Redis, their hash on-chain)
and train meanwhile, submit the masked input, reveal shares for the survivors and the dropped.
Secrets live in this process only; a node that restarts mid-round simply drops out of it.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from trustmesh.contracts.records import RoundRecord, SecAggRecord, WorkflowRecord
from trustmesh.errors import TrustMeshError
from trustmesh.fl.params import spec_for_model
from trustmesh.privacy import secagg_round as protocol
from trustmesh.privacy.errors import PrivacyError
from trustmesh.privacy.secagg import Participant as SecAggClient
from trustmesh.privacy.secagg import encode_masked_input

if TYPE_CHECKING:
    from trustmesh.iot.participant import LocalUpdate, Participant, SubmittedRound

LOGGER = logging.getLogger(__name__)

BUNDLE_TTL = 7 * 24 * 3600
"""Seconds Redis keeps a share bundle (like an update blob; the chain keeps its hash)."""


@dataclass
class _RoundState:
    client: SecAggClient
    trained: LocalUpdate | None = None
    shared: bool = False
    submitted: bool = False
    revealed: bool = False


class SecAggRounds:
    """The phases of every secure-aggregation round this participant takes part in."""

    def __init__(self, participant: Participant) -> None:
        self.node = participant
        self._rounds: dict[int, _RoundState] = {}

    @property
    def me(self) -> str:
        return self.node.chain.public_key

    def step(self, workflow: WorkflowRecord, record: RoundRecord) -> SubmittedRound | None:
        """Do what the round's current phase asks of this node; a SubmittedRound once it submitted."""
        sec = self.node.chain.secagg(workflow.workflow_id, record.round)
        if sec is None:
            return None
        state = self._rounds.get(record.round)
        if record.status == "open" and sec.phase == "advertise":
            if state is None and self.me not in sec.keys:
                self._advertise(workflow, record, sec)
            return None
        if state is None:
            return None  # this process did not advertise in this round (it started late or restarted)
        try:
            if record.status == "open" and sec.phase == "share" and not state.shared and self.me in sec.keys:
                self._share(workflow, record, sec, state)
            elif record.status == "open" and sec.phase == "input" and not state.submitted and self.me in sec.members:
                return self._submit(workflow, record, sec, state)
            elif record.status == "unmasking" and not state.revealed and self.me in sec.survivors \
                    and self.me not in sec.reveals:
                self._reveal(workflow, record, sec, state)
        except PrivacyError as exc:
            LOGGER.error("round %s: secure aggregation: %s", record.round, exc)
            self._rounds.pop(record.round, None)  # drop out of this round; the others recover our masks
        if record.status != "open" and record.status != "unmasking":
            self._rounds.pop(record.round, None)
        return None

    def _advertise(self, workflow: WorkflowRecord, record: RoundRecord, sec: SecAggRecord) -> None:
        client = SecAggClient(participant_id=self.me, threshold=sec.threshold, neighbours=sec.neighbours,
                              quantizer=protocol.QUANTIZER,
                              round_id=protocol.round_context(workflow.workflow_id, record.schedule_id))
        self._rounds[record.round] = _RoundState(client=client)
        keys = client.advertise()
        self.node.chain.act("secagg_advertise", workflow_id=workflow.workflow_id, round=record.round,
                            enc_public=keys.enc_public, mask_public=keys.mask_public,
                            seed_commitment=keys.seed_commitment)
        LOGGER.info("round %s: advertised secure-aggregation keys", record.round)

    def _share(self, workflow: WorkflowRecord, record: RoundRecord, sec: SecAggRecord, state: _RoundState) -> None:
        envelopes = state.client.share_keys(protocol.roster_of(sec))
        bundle, digest = protocol.encode_bundle(envelopes)
        self.node.dataplane.put_update_blob(workflow.workflow_id, record.schedule_id, digest, bundle, ttl=BUNDLE_TTL)
        self.node.chain.act("secagg_shares", workflow_id=workflow.workflow_id, round=record.round, bundle_hash=digest)
        state.shared = True
        LOGGER.info("round %s: handed out %d encrypted share envelopes (neighbours: %s)", record.round,
                    len(envelopes), "all" if sec.neighbours is None else sec.neighbours)
        try:
            state.trained = self.node.train_update(workflow, record)  # train while the others share
        except TrustMeshError as exc:
            LOGGER.error("round %s: training failed (%s); dropping out, the survivors recover this node's masks",
                         record.round, exc)
            self._rounds.pop(record.round, None)

    def _submit(self, workflow: WorkflowRecord, record: RoundRecord, sec: SecAggRecord,
                state: _RoundState) -> SubmittedRound:
        from trustmesh.iot.participant import SubmittedRound
        from trustmesh.iot.transaction_initiator import submit_envelope

        trained = state.trained or self.node.train_update(workflow, record)
        spec = spec_for_model(workflow.spec.model)
        weight = protocol.weight_of(trained.num_samples, workflow)
        vector = protocol.self_clip(protocol.flatten(trained.update, spec), weight=weight, members=len(sec.members),
                                    norm_bound=workflow.spec.aggregation.norm_bound)
        masked = state.client.masked_input(vector, weight, members=sec.members)
        blob = encode_masked_input(masked)
        state.submitted = True
        digest = submit_envelope(self.node.chain, self.node.dataplane, workflow_id=workflow.workflow_id,
                                 round_no=record.round, schedule_id=record.schedule_id, envelope=blob,
                                 num_samples=trained.num_samples, metrics=trained.metrics)
        LOGGER.info("round %s: submitted a masked input (%d bytes)", record.round, len(blob))
        return SubmittedRound(record.round, digest, trained.num_samples, trained.seconds, False)

    def _reveal(self, workflow: WorkflowRecord, record: RoundRecord, sec: SecAggRecord, state: _RoundState) -> None:
        envelopes: dict[str, bytes] = {}
        neighbours = protocol.neighbours_of(sec, record.schedule_id, self.me)  # only they sent this node shares
        for sender in sorted(neighbours & set(sec.members)):
            bundle_hash = sec.keys[sender].bundle_hash
            if bundle_hash is None:
                continue
            fetched = self.node.dataplane.fetch_update_blob(workflow.workflow_id, record.schedule_id, bundle_hash)
            if fetched.data is None:
                LOGGER.warning("round %s: share bundle of %s… unavailable (%s)", record.round, sender[:12],
                               fetched.reason)
                continue
            envelope = protocol.envelope_for(fetched.data, self.me)
            if envelope is not None:
                envelopes[sender] = envelope
        reveal = state.client.unmask_reveal(sec.survivors, sec.dropped, envelopes)
        state.revealed = True
        self.node.chain.act("secagg_reveal", workflow_id=workflow.workflow_id, round=record.round,
                            **protocol.reveal_fields(reveal))
        LOGGER.info("round %s: revealed %d seed and %d mask-key shares", record.round, len(reveal.seed_shares),
                    len(reveal.key_shares))
