"""An IoT participant: trains on its own partition and submits its delta to each open round.

Raw data never leaves the node: only the delta (local model − the round's base model) does, in the
canonical update envelope. The base model is fetched from Redis and checked against the hash the
chain records for the round; a model that does not match is refused and the round skipped.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trustmesh.chain import Chain
from trustmesh.contracts.errors import StateCorrupt
from trustmesh.contracts.records import MAX_INLINE_UPDATE, RoundRecord, WorkflowRecord
from trustmesh.contracts.state import decode_record
from trustmesh.dataplane.store import DataPlane
from trustmesh.errors import LedgerError, TransactionRejected, TrustMeshError
from trustmesh.fl.codecs import ErrorFeedback, decode_params, encode_update, model_hash
from trustmesh.fl.initial import initial_model
from trustmesh.fl.models import build_model
from trustmesh.fl.params import Params, delta, get_params, set_params, spec_for_model
from trustmesh.fl.partition import client_partition
from trustmesh.fl.train import evaluate, train_local
from trustmesh.iot.secagg_participant import SecAggRounds
from trustmesh.iot.transaction_initiator import submit_envelope
from trustmesh.wakeup import PARTICIPANT_EVENTS, ROUND_OPENED, wake_only_on, woken_by

LOGGER = logging.getLogger(__name__)

LIVENESS_TTL = 15
"""Seconds a participant's Redis liveness key lives; refreshed every loop."""

ALIVE_EVERY = LIVENESS_TTL / 3
"""Seconds between two refreshes of the liveness key (a wake-up sooner than this skips the write)."""

_KEPT_MODELS = 3
"""Decoded models a participant keeps by hash: the current base and a posted result, one to spare."""


class BaseModelRefused(TrustMeshError):
    """The round's base model is missing or does not match its on-chain hash: skip this round."""


@dataclass(frozen=True)
class SubmittedRound:
    round: int
    update_hash: str
    num_samples: int
    train_seconds: float
    inline: bool


@dataclass(frozen=True)
class LocalUpdate:
    """One round's local training outcome: the delta to send (already privatized) and its metrics."""

    update: Params
    num_samples: int
    seconds: float
    metrics: dict[str, float]


class Participant:
    """One participant's loop over the rounds of one workflow."""

    def __init__(
        self,
        *,
        chain: Chain,
        dataplane: DataPlane,
        workflow_id: str,
        partition: int,
        codec: str = "f32",
        poll_interval: float = 0.3,
        wait: Callable[[float], object] = time.sleep,
        transform: Callable[[dict[str, np.ndarray]], dict[str, np.ndarray]] | None = None,
    ) -> None:
        self.chain = chain
        self.dataplane = dataplane
        self.workflow_id = workflow_id
        self.partition = partition
        self.codec = codec
        self.poll_interval = poll_interval
        self.wait = wait
        self.transform = transform  # tests use it to play a misbehaving participant
        self._data: tuple[np.ndarray, np.ndarray] | None = None
        self._done_rounds: set[int] = set()
        self._privatizer: Any = None
        self._dpsgd_rounds: set[int] = set()  # rounds DP-SGD already ran for (each spends budget)
        # Lossy codecs drop part of each delta; error feedback carries it into the next round's.
        self._residual = ErrorFeedback() if codec != "f32" else None
        self._models: dict[str, Params] = {}  # model hash -> decoded, read-only arrays (checked on fetch)
        self._prefetched: set[int] = set()  # rounds whose posted model is in _models
        self._first_round: int | None = None  # the round that was current when this process started
        self._alive_at = float("-inf")
        self._module: tuple[str, Any] | None = None  # (model name, torch module) reused across rounds
        self._secagg = SecAggRounds(self)

    def run(self, *, stop: Callable[[], bool] = lambda: False) -> list[SubmittedRound]:
        """Submit to every open round until the workflow completes or ``stop()`` is true."""
        submitted: list[SubmittedRound] = []
        wake_only_on(self.wait, PARTICIPANT_EVENTS)
        workflow: WorkflowRecord | None = None
        while not stop():
            try:
                workflow, opened = self._fresh(workflow)
                if workflow is not None:
                    self.local_data(workflow)  # ready to train before announcing liveness
                    if time.monotonic() - self._alive_at >= ALIVE_EVERY:
                        self.dataplane.mark_alive(self.workflow_id, self.chain.public_key, LIVENESS_TTL)
                        self._alive_at = time.monotonic()
                if workflow is not None and workflow.status == "completed":
                    return submitted
                outcome = self.step(workflow, opened) if workflow is not None else None
                if outcome is not None:
                    # No re-read now: the round stays open until the others submit, and what comes
                    # next (its result, the next round) arrives as an event.
                    submitted.append(outcome)
            except (LedgerError, TrustMeshError) as exc:
                LOGGER.warning("participant %s: %s", self.partition, exc)
            self.wait(self.poll_interval)
        return submitted

    def _fresh(self, known: WorkflowRecord | None) -> tuple[WorkflowRecord | None, RoundRecord | None]:
        """The workflow as it stands, and the round when the wake-up was its round-opened event.

        The workflow's spec and members never change; when a round-opened event woke this node and
        the workflow is known, the round's record (open, with its base model hash) comes with the
        event and nothing is read; otherwise the workflow is read from the chain."""
        if known is not None and not known.spec.privacy.secure_aggregation.enabled:
            record = self._opened_by_event(known)
            if record is not None:
                return dataclasses.replace(known, last_round=record.round, model_hash=record.base_model_hash), record
        return self.chain.workflow(self.workflow_id), None

    def _opened_by_event(self, known: WorkflowRecord) -> RoundRecord | None:
        """The newest round a round-opened event of this wake-up carries, when it is newer than what
        this node knows. The event's data is the round record the federation TP wrote in that block,
        as the validator reports it, so no read is needed; the submission is checked on-chain anyway."""
        newest: RoundRecord | None = None
        for event in woken_by(self.wait):
            if event.event_type != ROUND_OPENED:
                continue
            try:
                record = decode_record(RoundRecord, event.data)
            except StateCorrupt as exc:
                LOGGER.warning("participant %s: undecodable round-opened event (%s); reading the chain",
                               self.partition, exc)
                return None
            if record.workflow_id == self.workflow_id and (newest is None or record.round > newest.round):
                newest = record
        if newest is None or newest.status != "open" or newest.round <= known.last_round:
            return None
        return newest

    def step(self, workflow: WorkflowRecord, record: RoundRecord | None = None) -> SubmittedRound | None:
        """Submit to the current round if it is open and this node has not submitted yet (``record``:
        that round's record when the caller has just read it)."""
        if self.chain.public_key not in workflow.participants or not workflow.last_round:
            return None
        secagg = workflow.spec.privacy.secure_aggregation.enabled
        if self._first_round is None:
            self._first_round = workflow.last_round
        if not secagg and workflow.last_round in self._done_rounds and workflow.last_round in self._prefetched:
            return None  # submitted, and its posted model is here: nothing to do until the next round opens
        if record is None or record.round != workflow.last_round:
            record = self.chain.round(self.workflow_id, workflow.last_round)
        if record is not None and workflow.spec.privacy.secure_aggregation.enabled:
            return self._secagg.step(workflow, record)
        if record is None:
            return None
        if record.status != "open" or record.round in self._done_rounds:
            self._prefetch(workflow, record)
            return None
        if record.round == self._first_round:  # this node may have submitted before a restart
            index = self.chain.index(self.workflow_id, record.round)
            if index is not None and self.chain.public_key in index.entries:
                self._done_rounds.add(record.round)
                return None
        self._done_rounds.add(record.round)  # one attempt per round; a missed deadline waits for the next
        try:
            return self.submit(workflow, record)
        except BaseModelRefused as exc:
            LOGGER.error("round %s: %s", record.round, exc)
            return None
        except TransactionRejected as exc:
            LOGGER.warning("round %s: submission refused: %s", record.round, exc)
            return None

    def base_model(self, workflow: WorkflowRecord, record: RoundRecord) -> dict[str, np.ndarray]:
        """The round's base model, checked against the hash on the chain (fetched once per hash)."""
        return dict(self._model(workflow, record.base_model_hash))

    def _model(self, workflow: WorkflowRecord, digest: str) -> Params:
        """The model with hash ``digest`` (the chain names it), decoded; a blob that does not hash
        right is refused."""
        if digest in self._models:
            return self._models[digest]
        blob = self.dataplane.get_model(self.workflow_id, digest)
        if blob is None:
            initial, initial_digest = initial_model(workflow.spec.model)
            blob = initial if initial_digest == digest else None
        if blob is None or model_hash(blob) != digest:
            raise BaseModelRefused(f"base model {digest[:12]}… unavailable or tampered")
        params = decode_params(blob, spec_for_model(workflow.spec.model))
        for array in params.values():
            array.flags.writeable = False
        self._models[digest] = params
        while len(self._models) > _KEPT_MODELS:
            self._models.pop(next(iter(self._models)))
        return params

    def _prefetch(self, workflow: WorkflowRecord, record: RoundRecord) -> None:
        """Fetch and check the model a settled round made current (its hash is on the chain): it is
        the next round's base, and training starts the moment that round opens."""
        if record.round in self._prefetched or record.status not in ("accepted", "rejected", "failed"):
            return
        try:
            self._model(workflow, workflow.model_hash)
        except BaseModelRefused as exc:
            LOGGER.debug("round %s: no prefetch (%s)", record.round, exc)
            return
        self._prefetched.add(record.round)

    def local_data(self, workflow: WorkflowRecord) -> tuple[np.ndarray, np.ndarray]:
        if self._data is None:
            data = workflow.spec.data
            self._data = client_partition(
                data.dataset, data.partition, data.num_partitions, self.partition,
                alpha=data.alpha if data.alpha is not None else 0.5,
                shards_per_client=data.shards_per_node or 2,
            )
        return self._data

    def _privatize(self, workflow: WorkflowRecord, round_no: int, update: Params) -> Params:
        """Client-level DP: clip to C and add this node's noise share, exactly once per round."""
        from trustmesh.privacy.dp import RoundPrivatizer
        from trustmesh.privacy.rounds import client_dp

        spec = workflow.spec
        if spec.privacy.dp.mode != "client":  # none, or DP-SGD: its noise is already in the trained model
            return update
        plan = client_dp(spec.privacy.dp, expected_nodes=spec.expected_nodes, min_nodes=spec.min_nodes_required)
        if plan is None:
            return update
        if self._privatizer is None:
            self._privatizer = RoundPrivatizer(noise=plan.noise)
        done = self._privatizer.applied(round_no)
        return (done or self._privatizer.privatize(round_no, update)).params

    def _train(self, workflow: WorkflowRecord, round_no: int, model: Any, x: np.ndarray, y: np.ndarray,
               base: Params) -> Any:
        """Local training from ``base``: plain SGD, or Opacus DP-SGD (privacy.dp.mode "sample"), once a round."""
        from trustmesh.privacy.dpsgd import make_private_trainer
        from trustmesh.privacy.errors import PrivacyAlreadyApplied, PrivacyError
        from trustmesh.privacy.rounds import sample_dp

        training, dp = workflow.spec.training, workflow.spec.privacy.dp
        plan = sample_dp(dp, training=training, sizes=[len(x)]) if dp.mode == "sample" else None
        if plan is None:
            return train_local(model, x, y, lr=training.lr, momentum=training.momentum,
                               batch_size=training.batch_size, epochs=training.local_epochs,
                               seed=round_no * 100 + self.partition,
                               prox_mu=training.fedprox_mu, base_params=base)
        # The cap on-chain came from the coordinator's accounting; check this partition's own spend.
        spent = plan.epsilon_of(len(x), round_no)
        if plan.epsilon is not None and spent > plan.epsilon * (1 + 1e-9):
            raise PrivacyError(f"round {round_no} would spend epsilon {spent:.4g} on this partition, beyond "
                               f"the budget {plan.epsilon:g}; not training")
        if round_no in self._dpsgd_rounds:
            raise PrivacyAlreadyApplied(f"DP-SGD already ran for round {round_no}; a second run spends twice")
        self._dpsgd_rounds.add(round_no)
        # No seed: a guessable one (round, partition) would let anyone redraw and subtract the noise.
        return make_private_trainer(model, x, y, noise_multiplier=plan.noise_multiplier, clip=plan.clip,
                                    batch_size=plan.batch_size, epochs=plan.local_epochs, lr=training.lr,
                                    momentum=training.momentum).train()

    def _local_model(self, workflow: WorkflowRecord) -> Any:
        """The torch module to train, built once and reloaded each round (``set_params`` loads the whole
        state). DP-SGD gets a fresh one each round: Opacus attaches hooks to the module it trains."""
        name = workflow.spec.model
        if workflow.spec.privacy.dp.mode == "sample":
            return build_model(name)
        if self._module is None or self._module[0] != name:
            self._module = (name, build_model(name))
        return self._module[1]

    def train_update(self, workflow: WorkflowRecord, record: RoundRecord) -> LocalUpdate:
        """Train on this node's partition from the round's base model; the (privatized) delta and its metrics."""
        base = self.base_model(workflow, record)
        x, y = self.local_data(workflow)
        model = self._local_model(workflow)
        set_params(model, base)
        result = self._train(workflow, record.round, model, x, y, base)
        # Plain training reports its last epoch's accuracy as it went (like its loss); DP-SGD's
        # trainer does not, so its model is evaluated on the partition afterwards.
        accuracy = getattr(result, "accuracy", float("nan"))
        if not math.isfinite(accuracy):
            _, accuracy = evaluate(model, x, y)
        update = delta(get_params(model), base)
        if self.transform is not None:
            update = self.transform(update)
        update = self._privatize(workflow, record.round, update)
        return LocalUpdate(update=update, num_samples=int(result.num_samples), seconds=result.seconds,
                           metrics={"accuracy": float(accuracy), "loss": float(result.loss)})

    def submit(self, workflow: WorkflowRecord, record: RoundRecord) -> SubmittedRound:
        trained = self.train_update(workflow, record)
        blob = encode_update(trained.update, self.codec, residual=self._residual)
        digest = submit_envelope(
            self.chain, self.dataplane, workflow_id=self.workflow_id, round_no=record.round,
            schedule_id=record.schedule_id, envelope=blob, num_samples=trained.num_samples,
            metrics=trained.metrics,
        )
        inline = len(blob) <= MAX_INLINE_UPDATE
        LOGGER.info("round %s: submitted %d samples (%s, %d bytes)", record.round, trained.num_samples,
                    "inline" if inline else "by reference", len(blob))
        return SubmittedRound(record.round, digest, trained.num_samples, trained.seconds, inline)
