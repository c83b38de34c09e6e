"""The compute node: a reconcile loop over the chain's record of each workflow's current round.

Every few hundred milliseconds (or sooner, when a ledger event arrives) the node reads the round
and does the one thing that moves it on: close it once quorum or the deadline is reached, claim
and run the aggregate task, attest another node's result, claim and run the evaluate task. While a
round waits on block time (a deadline, a lease held by a node that died) it commits heartbeat
transactions, because Sawtooth builds no empty blocks and block time only moves when something
commits. Everything it decides comes from chain state, so a restarted node picks up where the
chain stands, and several nodes can run side by side: the chain serializes their claims.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from google.protobuf.message import DecodeError
from sawtooth_sdk.protobuf.transaction_pb2 import Transaction

from trustmesh.chain import Chain
from trustmesh.compute import secagg_phases
from trustmesh.compute.history_docs import round_history
from trustmesh.compute.roundwork import PreparedUpdates, RoundResult, compute_result, prepare_submissions
from trustmesh.contracts.records import RoundRecord, SubmissionIndex, WorkflowRecord
from trustmesh.contracts.rules import RuleViolation
from trustmesh.dataplane.store import MODEL_BLOB_TTL, Blob, DataPlane
from trustmesh.errors import LedgerError, TransactionRejected, TrustMeshError
from trustmesh.fl.codecs import decode_params
from trustmesh.fl.data import load_dataset
from trustmesh.fl.initial import initial_model
from trustmesh.fl.models import build_model
from trustmesh.fl.params import set_params, spec_for_model
from trustmesh.fl.train import evaluate
from trustmesh.ledger.events import attribute
from trustmesh.wakeup import SUBMITTED, woken_by

LOGGER = logging.getLogger(__name__)

SETTLED = ("accepted", "rejected", "failed")

HEARTBEAT_EVERY = 2.0
"""Seconds between heartbeat transactions while a round waits on block time."""

WATCH_EVERY = 0.02
"""Seconds between two looks at an open round's submission list (one LLEN) while the node waits:
each blob is fetched and screened as the TP appends its record, before the block commits."""

LEADER_GRACE = 2.0
"""Seconds a node lets the round's leader have to aggregate before it does so itself (the leader
may be down); the chain serializes claims either way, this only spares the losing batch."""

_KEPT_MODELS = 4
"""Verified model blobs a node keeps in memory per workflow (the base, the new result, the state)."""


@dataclass
class _Progress:
    """What this node already did, so a loop iteration does not repeat an action."""

    attested: set[tuple[str, int, str]] = field(default_factory=set)
    history_written: set[tuple[str, int]] = field(default_factory=set)
    timings: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    closable_since: dict[tuple[str, int], float] = field(default_factory=dict)
    attested_ahead: set[tuple[str, int]] = field(default_factory=set)
    last_heartbeat: float = 0.0
    marks: dict[tuple[str, str], object] = field(default_factory=dict)
    moved_at: dict[str, float] = field(default_factory=dict)  # workflow -> when its chain state last changed


class ComputeNode:
    """Closes rounds, aggregates, attests and evaluates for the workflows it is a compute node of."""

    def __init__(
        self,
        *,
        chain: Chain,
        dataplane: DataPlane,
        workflow_ids: list[str],
        history: Any | None = None,
        poll_interval: float = 0.3,
        wait: Callable[[float], object] = time.sleep,
        heartbeat_every: float = HEARTBEAT_EVERY,
        on_result: Callable[[str, RoundRecord], None] | None = None,
        aggregate_delay: float = 0.0,
        leader_grace: float = LEADER_GRACE,
    ) -> None:
        self.chain = chain
        self.dataplane = dataplane
        self.workflow_ids = list(workflow_ids)
        self.history = history
        self.poll_interval = poll_interval
        self.wait = wait
        self.heartbeat_every = heartbeat_every
        self.on_result = on_result
        self.aggregate_delay = aggregate_delay  # fault injection for tests: a window to kill the holder
        self.leader_grace = leader_grace
        self._progress = _Progress()
        self._test_sets: dict[str, Any] = {}
        self._precomputed: dict[tuple[str, int, str], RoundResult] = {}
        self._prepared: dict[str, tuple[int, PreparedUpdates]] = {}  # workflow -> (round, its screened blobs)
        self._watched: dict[str, tuple[WorkflowRecord, RoundRecord, int]] = {}  # open rounds: list records seen
        self._models: dict[tuple[str, str], bytes] = {}  # (workflow, hash) -> verified blob, newest last
        self._evaluations: dict[tuple[str, str], tuple[float, float]] = {}  # (workflow, model hash) -> acc, loss
        self.model_ttl: int | None = MODEL_BLOB_TTL

    @property
    def key(self) -> str:
        return self.chain.public_key

    # -- the loop -------------------------------------------------------------------------------
    def run(self, *, stop: Callable[[], bool] = lambda: False) -> None:
        """Reconcile every workflow until ``stop()`` is true or all of them are completed."""
        while not stop():
            busy = False
            done = 0
            for workflow_id in self.workflow_ids:
                try:
                    state = self.step(workflow_id)
                except (LedgerError, TrustMeshError) as exc:
                    LOGGER.warning("workflow %s: %s; retrying", workflow_id, exc)
                    state = "retry"
                busy = busy or state == "acted"
                done += state == "completed"
            if self.workflow_ids and done == len(self.workflow_ids):
                LOGGER.info("every workflow is completed; stopping")
                return
            if not busy:
                self._pause()

    def _pause(self) -> None:
        """Wait for an event up to poll_interval; while a round is open, look at its submission list
        every WATCH_EVERY seconds meanwhile (Redis only: no chain read until something happens)."""
        if not self._watched:
            self.wait(self.poll_interval)
            return
        deadline = time.monotonic() + self.poll_interval
        while (left := deadline - time.monotonic()) > 0:
            if self.wait(min(WATCH_EVERY, left)):
                return
            for workflow_id in list(self._watched):
                self._watch(workflow_id)

    def _watch(self, workflow_id: str) -> None:
        """Screen the blobs of records appended since the last look (their transactions are in flight)."""
        workflow, record, seen = self._watched[workflow_id]
        try:
            wid, sched, app = workflow.workflow_id, record.schedule_id, workflow.spec.app_id
            count = self.dataplane.count_submissions(wid, sched, app)
            if count <= seen or seen >= 2 * workflow.spec.expected_nodes:  # a bound on replayed appends
                return
            self._watched[workflow_id] = (workflow, record, count)
            prepared, spec = self._prepared_for(workflow, record), spec_for_model(workflow.spec.model)
            for submission in self.dataplane.read_submissions(wid, sched, app, start=seen):
                if submission.signer in workflow.participants:
                    prepared.screen_ahead(spec, workflow.spec.aggregation.norm_bound, submission,
                                          self._fetcher(workflow, record))
        except TrustMeshError as exc:
            LOGGER.debug("round %s: watching submissions: %s", record.round, exc)

    def step(self, workflow_id: str) -> str:
        """One reconcile pass over a workflow: 'acted', 'waiting', 'idle' or 'completed'."""
        watched = self._woken_by_submissions_only(workflow_id)
        if watched is not None:
            return str(self._on_open(*watched))
        workflow = self.chain.workflow(workflow_id)
        if workflow is None or self.key not in workflow.compute_nodes:
            return "idle"
        self._test_set(workflow.spec.data.dataset)  # loaded once, before any round needs it
        record = self.chain.round(workflow_id, workflow.last_round) if workflow.last_round else None
        if record is not None:
            if record.round > 1 and (workflow_id, record.round - 1) not in self._progress.history_written:
                # The next round may open in the block of this one's verdict: write the settled one too.
                previous = self.chain.round(workflow_id, record.round - 1)
                if previous is not None:
                    self._write_history_once(workflow, previous)
            self._write_history_once(workflow, record)
            self._note(workflow_id, "round", (record.round, record.status, record.lease, record.attestations))
        if workflow.status == "completed":
            return "completed"
        if record is not None and record.status in SETTLED and record.round >= workflow.final_round:
            return "completed"  # the last round failed: nothing can open after it
        if record is None:
            return "idle"
        if record.status != "open":
            self._watched.pop(workflow_id, None)
        handler = getattr(self, f"_on_{record.status}", None)
        if handler is None:  # accepted, rejected, failed: the coordinator opens the next round
            return "idle"
        return str(handler(workflow, record))

    def _woken_by_submissions_only(self, workflow_id: str) -> tuple[WorkflowRecord, RoundRecord] | None:
        """The open round this node watches, when nothing but its ``submitted`` events ended the wait.

        Submissions change the round's index, never its record or the workflow's (a close, a
        verdict or anything else would come with events of its own), so the node goes straight to
        reading the index instead of reading the workflow and the round again first."""
        kept = self._watched.get(workflow_id)
        events = woken_by(self.wait)
        if kept is None or not events:
            return None
        workflow, record, _ = kept
        if workflow.spec.privacy.secure_aggregation.enabled:
            return None
        for event in events:
            if (event.event_type != SUBMITTED or attribute(event, "workflow_id") != workflow_id
                    or attribute(event, "round") != str(record.round)):
                return None
        return workflow, record

    # -- per status -------------------------------------------------------------------------------
    def _on_open(self, workflow: WorkflowRecord, record: RoundRecord) -> str:
        if workflow.spec.privacy.secure_aggregation.enabled:
            return secagg_phases.drive(self, workflow, record)
        index = self.chain.index(workflow.workflow_id, record.round)
        submitted = len(index.entries) if index else 0
        self._note(workflow.workflow_id, "index", (record.round, submitted))
        if submitted >= workflow.spec.expected_nodes or self.chain.now() > record.deadline:
            # Once a round may close its index can no longer change (every expected node submitted,
            # or the deadline passed on block time): aggregate now, then close, claim and post in
            # one batch — one block instead of three.
            self._watched.pop(workflow.workflow_id, None)  # the index is frozen: nothing more to watch
            quorum = submitted >= workflow.spec.min_nodes_required
            if quorum and not self.aggregate_delay and self.key not in record.barred:
                if not self._my_turn(workflow, record):
                    if self._follow(workflow, record, index):
                        return "acted"
                    return self._keep_time_moving(workflow)
                if self._post_batch(workflow, record, close=True, index=index):
                    return "acted"
            if self._try("close_round", workflow_id=workflow.workflow_id, round=record.round):
                self._timing(workflow, record)["closed"] = time.time()
                return "acted"
        else:
            self._prepare(workflow, record, index)
            kept = self._watched.get(workflow.workflow_id)
            seen = kept[2] if kept is not None and kept[1].round == record.round else 0
            self._watched[workflow.workflow_id] = (workflow, record, seen)
        return self._keep_time_moving(workflow)

    def _prepare(self, workflow: WorkflowRecord, record: RoundRecord, index: SubmissionIndex | None) -> None:
        """Fetch, hash-check, decode and check each indexed submission as it arrives (and the base
        model), so the round's close only has the accumulation left to do."""
        if index is None or not index.entries:
            return
        try:
            self._model_blob(workflow, record.base_model_hash)
            records = []
            if any(entry.inline for entry in index.entries.values()):
                records = self.dataplane.read_submissions(workflow.workflow_id, record.schedule_id,
                                                          workflow.spec.app_id)
            prepare_submissions(self._prepared_for(workflow, record), workflow=workflow, index=index,
                                records=records, fetch_update=self._fetcher(workflow, record))
        except TrustMeshError as exc:
            LOGGER.debug("round %s: submissions not prepared yet (%s)", record.round, exc)

    def _prepared_for(self, workflow: WorkflowRecord, record: RoundRecord) -> PreparedUpdates:
        """The screened submissions of the workflow's current round (an older round's are dropped)."""
        kept = self._prepared.get(workflow.workflow_id)
        if kept is None or kept[0] != record.round:
            kept = (record.round, PreparedUpdates())
            self._prepared[workflow.workflow_id] = kept
        return kept[1]

    def _fetcher(self, workflow: WorkflowRecord, record: RoundRecord) -> Callable[[str], Blob]:
        return lambda h: self.dataplane.fetch_update_blob(workflow.workflow_id, record.schedule_id, h)

    def _on_unmasking(self, workflow: WorkflowRecord, record: RoundRecord) -> str:
        return secagg_phases.drive(self, workflow, record)

    def _on_ready(self, workflow: WorkflowRecord, record: RoundRecord) -> str:
        if self.key in record.barred:
            return "waiting"
        lease, now = record.lease, self.chain.now()
        if lease is not None and lease.task == "aggregate" and lease.holder == self.key and now <= lease.until:
            return self._aggregate(workflow, record)
        if lease is None or lease.task != "aggregate" or now > lease.until:
            if self.aggregate_delay:  # fault injection (tests): claim first, work later, a window to die in
                if self._try("claim_task", workflow_id=workflow.workflow_id, round=record.round, task="aggregate"):
                    return "acted"
            elif not self._my_turn(workflow, record):
                if self._follow(workflow, record, None):
                    return "acted"
            elif self._post_batch(workflow, record, close=False):
                return "acted"
        elif self._follow(workflow, record, None):
            return "acted"
        return self._keep_time_moving(workflow)

    def _my_turn(self, workflow: WorkflowRecord, record: RoundRecord) -> bool:
        """Whether this node aggregates the round now: its leader (the first compute node in key order
        not barred from it) at once, any other once LEADER_GRACE has passed. The leader does not take
        turns: the node that evaluated a round writes its history while the next one starts, and
        should not be the one the next close waits for."""
        candidates = sorted(k for k in workflow.compute_nodes if k not in record.barred)
        if not candidates or candidates[0] == self.key:
            return True
        since = self._progress.closable_since.setdefault((workflow.workflow_id, record.round), time.monotonic())
        return time.monotonic() - since >= self.leader_grace

    def _follow(self, workflow: WorkflowRecord, record: RoundRecord, index: SubmissionIndex | None) -> bool:
        """Another node aggregates: compute the same result, evaluate it, and send the attestation
        with the evaluate claim and record at once, once per round. A batch executes in order and
        atomically, so it commits only if it lands after the leader's post and its hash matches
        (the rules check both); otherwise it is refused and the node attests when the post arrives.
        True if it committed (the round is settled)."""
        result = self._result_for(workflow, record, index=index)
        if result is None or not result.included:
            return False
        try:
            evaluate = self._evaluate_actions(workflow, record, result)
        except TrustMeshError as exc:
            LOGGER.debug("round %s: no evaluation ahead of the post (%s)", record.round, exc)
            return False
        mark = (workflow.workflow_id, record.round)
        if workflow.spec.attestations_required != 1 or mark in self._progress.attested_ahead:
            return False
        self._progress.attested_ahead.add(mark)
        attest = {"workflow_id": workflow.workflow_id, "round": record.round, "model_hash": result.model_hash,
                  "aggregator_state_hash": result.state_hash}
        if not self._try_many([("attest_result", attest), *evaluate]):
            return False
        self._progress.attested.add((workflow.workflow_id, record.round, result.model_hash))
        self._timing(workflow, record)["aggregate_seconds"] = result.seconds
        LOGGER.info("round %s: attested and evaluated right behind the post", record.round)
        return True

    def _post_batch(self, workflow: WorkflowRecord, record: RoundRecord, *, close: bool,
                    index: SubmissionIndex | None = None) -> bool:
        """Aggregate, then [close_round,] claim_task and post_result in one batch; False if refused.

        A workflow that needs no attestation is verified by the post itself: then the same batch
        also claims the evaluate task and records the evaluation, and the round settles in one block.
        """
        ahead = len(self._prepared_for(workflow, record))
        result = self._result_for(workflow, record, index=index)
        if result is None:
            return False
        stored = time.perf_counter()
        self._store(workflow, result)
        stored = time.perf_counter() - stored
        wid, r = workflow.workflow_id, record.round
        actions = [("close_round", {"workflow_id": wid, "round": r})] if close else []
        actions += [("claim_task", {"workflow_id": wid, "round": r, "task": "aggregate"}),
                    ("post_result", self._post_fields(workflow, record, result))]
        if workflow.spec.attestations_required == 0:
            actions += self._evaluate_actions(workflow, record, result)
        sent = time.perf_counter()
        if not self._try_many(actions):
            return False
        timing = self._timing(workflow, record)
        timing.update(aggregate_seconds=result.seconds, screened_ahead=float(ahead), store_seconds=stored,
                      post_seconds=time.perf_counter() - sent, posted=time.time())
        LOGGER.info("round %s: aggregated %d submissions (%d excluded; %d screened ahead) in %.3fs, stored in "
                    "%.3fs, posted in %.3fs", record.round, len(result.included), len(result.excluded), ahead,
                    result.seconds, stored, timing["post_seconds"])
        return True

    def _result_for(self, workflow: WorkflowRecord, record: RoundRecord,
                    index: SubmissionIndex | None = None) -> RoundResult | None:
        """This round's result, computed once per node (it serves posting and attesting alike)."""
        self._precompute(workflow, record, index=index)
        return self._precomputed.get((workflow.workflow_id, record.round, record.base_model_hash))

    def _store(self, workflow: WorkflowRecord, result: RoundResult) -> None:
        self.dataplane.put_model(workflow.workflow_id, result.model_hash, result.model_bytes, ttl=self.model_ttl)
        self._keep_model(workflow, result.model_hash, result.model_bytes)
        if result.state_bytes is not None and result.state_hash is not None:
            self.dataplane.put_model(workflow.workflow_id, result.state_hash, result.state_bytes, ttl=self.model_ttl)
            self._keep_model(workflow, result.state_hash, result.state_bytes)

    def _keep_model(self, workflow: WorkflowRecord, digest: str, blob: bytes) -> None:
        key = (workflow.workflow_id, digest)
        self._models.pop(key, None)
        self._models[key] = blob
        while len(self._models) > _KEPT_MODELS * max(1, len(self.workflow_ids)):
            self._models.pop(next(iter(self._models)))

    def _model_blob(self, workflow: WorkflowRecord, digest: str) -> bytes | None:
        """A model blob by hash, from memory or Redis (verified against its hash either way)."""
        blob = self._models.get((workflow.workflow_id, digest))
        if blob is None:
            blob = self.dataplane.get_model(workflow.workflow_id, digest)
            if blob is not None:
                self._keep_model(workflow, digest, blob)
        return blob

    @staticmethod
    def _post_fields(workflow: WorkflowRecord, record: RoundRecord, result: RoundResult) -> dict[str, Any]:
        return {"workflow_id": workflow.workflow_id, "round": record.round, "model_hash": result.model_hash,
                "aggregator_state_hash": result.state_hash, "included": list(result.included),
                "excluded": dict(result.excluded)}

    def _precompute(self, workflow: WorkflowRecord, record: RoundRecord,
                    index: SubmissionIndex | None = None) -> None:
        """Recompute the round's result while another node holds the aggregate lease.

        The index is frozen once a round is ready, so this equals what attestation would compute.
        """
        mark = (workflow.workflow_id, record.round, record.base_model_hash)
        if mark in self._precomputed:
            return
        try:
            self._precomputed[mark] = self._recompute(workflow, record, index=index)
            for old in [m for m in self._precomputed if m[0] == mark[0] and m[1] < mark[1]]:
                del self._precomputed[old]  # an earlier round's result is never needed again
        except TrustMeshError as exc:
            LOGGER.debug("round %s: no precomputation (%s)", record.round, exc)

    def _on_aggregated(self, workflow: WorkflowRecord, record: RoundRecord) -> str:
        result = record.result
        assert result is not None
        mark = (workflow.workflow_id, record.round, result.model_hash)
        if result.aggregator == self.key or self.key in record.attestations or mark in self._progress.attested:
            return "waiting"
        recomputed = self._result_for(workflow, record) or self._recompute(workflow, record)
        self._progress.attested.add(mark)
        matches = (recomputed.model_hash, recomputed.state_hash) == (result.model_hash, result.aggregator_state_hash)
        if not matches:
            LOGGER.warning("round %s: posted model %s… but recomputed %s…; disputing",
                           record.round, result.model_hash[:12], recomputed.model_hash[:12])
        attest = {"workflow_id": workflow.workflow_id, "round": record.round,
                  "model_hash": recomputed.model_hash, "aggregator_state_hash": recomputed.state_hash}
        if matches and len(record.attestations) + 1 >= workflow.spec.attestations_required:
            # This attestation verifies the result: claim the evaluate task and record the evaluation
            # of the very model it recomputed in the same batch — one block instead of two.
            evaluate = self._evaluate_actions(workflow, record, recomputed)
            if self._try_many([("attest_result", attest), *evaluate]):
                self._timing(workflow, record)["aggregate_seconds"] = recomputed.seconds
                return "acted"
        self._try("attest_result", **attest)
        return "acted"

    def _on_verified(self, workflow: WorkflowRecord, record: RoundRecord) -> str:
        lease, now = record.lease, self.chain.now()
        if lease is not None and lease.task == "evaluate" and lease.holder == self.key and now <= lease.until:
            return self._evaluate(workflow, record)
        if lease is None or lease.task != "evaluate" or now > lease.until:
            # Evaluate first, then claim and record in one batch: one block instead of two.
            if self._try_many(self._evaluate_actions(workflow, record, None)):
                return "acted"
        return self._keep_time_moving(workflow)

    # -- tasks ------------------------------------------------------------------------------------
    def _recompute(self, workflow: WorkflowRecord, record: RoundRecord,
                   index: SubmissionIndex | None = None) -> RoundResult:
        base = self._model_blob(workflow, record.base_model_hash)
        if base is None:
            base = self._initial_model_if(workflow, record.base_model_hash)
        if base is None:
            raise TrustMeshError(f"base model {record.base_model_hash[:12]}… of round {record.round} is unavailable")
        state = None
        if workflow.aggregator_state_hash:
            state = self._model_blob(workflow, workflow.aggregator_state_hash)
        if index is None:
            index = self.chain.index(workflow.workflow_id, record.round)
        records = self.dataplane.read_submissions(workflow.workflow_id, record.schedule_id, workflow.spec.app_id)
        secagg = self._secagg_record(workflow, record)
        return compute_result(
            workflow=workflow, round_record=record, index=index, base_model=base, records=records,
            fetch_update=self._fetcher(workflow, record), prepared=self._prepared_for(workflow, record),
            optimizer_state=state, secagg=secagg,
        )

    def _secagg_record(self, workflow: WorkflowRecord, record: RoundRecord) -> Any:
        """The round's secure-aggregation record; a plain round has none, so nothing is read."""
        if not workflow.spec.privacy.secure_aggregation.enabled:
            return None
        return self.chain.secagg(workflow.workflow_id, record.round)

    def _initial_model_if(self, workflow: WorkflowRecord, wanted: str) -> bytes | None:
        blob, digest = initial_model(workflow.spec.model)
        if digest != wanted:
            return None
        self.dataplane.put_model(workflow.workflow_id, digest, blob, ttl=self.model_ttl)
        self._keep_model(workflow, digest, blob)
        return blob

    def _aggregate(self, workflow: WorkflowRecord, record: RoundRecord) -> str:
        """The lease is already this node's (claimed on its own): run the task and post."""
        if self.aggregate_delay:
            time.sleep(self.aggregate_delay)
        result = self._result_for(workflow, record) or self._recompute(workflow, record)
        self._store(workflow, result)
        posted = self._try("post_result", **self._post_fields(workflow, record, result))
        timing = self._timing(workflow, record)
        timing["aggregate_seconds"] = result.seconds
        timing["posted"] = time.time()
        return "acted" if posted else "waiting"

    def _test_set(self, dataset: str) -> tuple[Any, Any]:
        if dataset not in self._test_sets:
            data = load_dataset(dataset)
            self._test_sets[dataset] = (data.x_test, data.y_test)
        return self._test_sets[dataset]  # type: ignore[no-any-return]

    def _evaluation_fields(self, workflow: WorkflowRecord, record: RoundRecord,
                           result: RoundResult | None = None) -> dict[str, Any]:
        """Evaluate the round's model on the held-out test set: the posted one, or ``result`` (a
        recomputation about to verify it). Each model is evaluated once per node."""
        model_hash = result.model_hash if result is not None else record.result.model_hash if record.result else None
        if model_hash is None:
            raise TrustMeshError(f"round {record.round} has no result to evaluate")
        mark = (workflow.workflow_id, model_hash)
        if mark not in self._evaluations:
            blob = result.model_bytes if result is not None else self._model_blob(workflow, model_hash)
            if blob is not None and result is not None:
                self._keep_model(workflow, model_hash, blob)  # verified: it hashes to model_hash
            if blob is None:
                raise TrustMeshError(f"model {model_hash[:12]}… of round {record.round} is unavailable")
            model = build_model(workflow.spec.model)
            set_params(model, decode_params(blob, spec_for_model(workflow.spec.model)))
            x_test, y_test = self._test_set(workflow.spec.data.dataset)
            started = time.perf_counter()
            loss, accuracy = evaluate(model, x_test, y_test)
            self._timing(workflow, record)["evaluate_seconds"] = time.perf_counter() - started
            self._evaluations = {k: v for k, v in self._evaluations.items() if k[0] != mark[0]}  # newest only
            self._evaluations[mark] = (accuracy, loss)
            LOGGER.info("round %s: model %s… has accuracy %.4f, loss %.4f", record.round, model_hash[:12],
                        accuracy, loss)
        accuracy, loss = self._evaluations[mark]
        return {"workflow_id": workflow.workflow_id, "round": record.round,
                "accuracy": float(min(max(accuracy, 0.0), 1.0)), "loss": float(max(loss, 0.0))}

    def _evaluate_actions(self, workflow: WorkflowRecord, record: RoundRecord,
                          result: RoundResult | None) -> list[tuple[str, dict[str, Any]]]:
        """claim_task(evaluate) then record_evaluation, to send as one batch."""
        claim = {"workflow_id": workflow.workflow_id, "round": record.round, "task": "evaluate"}
        return [("claim_task", claim), ("record_evaluation", self._evaluation_fields(workflow, record, result))]

    def _evaluate(self, workflow: WorkflowRecord, record: RoundRecord) -> str:
        """The evaluate lease is already this node's: evaluate and record."""
        self._try("record_evaluation", **self._evaluation_fields(workflow, record))
        return "acted"

    # -- helpers ------------------------------------------------------------------------------------
    def _try(self, action: str, *, wait: float | None = 30.0, **fields: Any) -> bool:
        """Send an action; a rule refusal (someone else was first, time not yet up) is not an error."""
        try:
            self.chain.act(action, wait=wait, **fields)
            return True
        except TransactionRejected as exc:
            LOGGER.debug("%s refused: %s", action, exc)
            return False

    def _try_many(self, actions: list[tuple[str, dict[str, Any]]]) -> bool:
        """Send several actions as one batch; a refusal of any of them (a race lost) is not an error.

        A batch that records a verdict also carries the coordinator's signed ``open_round`` of the
        next round when the coordinator handed one over, so the next round opens in the same block.
        """
        then = self._next_open(actions)
        refused = self._send_many(actions, then)
        if refused is not None and then and getattr(refused, "transaction_id", None) == then[0].header_signature:
            LOGGER.info("the handed-over open_round was refused (%s); sending the verdict alone", refused)
            refused = self._send_many(actions, [])
        return refused is None

    def _send_many(self, actions: list[tuple[str, dict[str, Any]]],
                   then: list[Transaction]) -> TransactionRejected | None:
        """Send one batch; the refusal, if the chain refused it (a race lost is not an error)."""
        try:
            self.chain.act_many(actions, then=then)
            return None
        except TransactionRejected as exc:
            LOGGER.debug("%s refused: %s", "+".join(a for a, _ in actions), exc)
            return exc

    def _next_open(self, actions: list[tuple[str, dict[str, Any]]]) -> list[Transaction]:
        """The coordinator's signed open_round of the round after the one whose verdict ``actions`` record."""
        verdict = next((fields for action, fields in actions if action == "record_evaluation"), None)
        if verdict is None:
            return []
        try:
            raw = self.dataplane.get_next_open(verdict["workflow_id"], int(verdict["round"]) + 1, self.key)
            return [Transaction.FromString(raw)] if raw else []
        except (TrustMeshError, DecodeError) as exc:
            LOGGER.debug("no handed-over open_round (%s)", exc)
            return []

    def _note(self, workflow_id: str, what: str, mark: object) -> None:
        """Remember when the chain last moved for a workflow (a round's state, a new submission)."""
        if self._progress.marks.get((workflow_id, what)) != mark:
            self._progress.marks[(workflow_id, what)] = mark
            self._progress.moved_at[workflow_id] = time.monotonic()

    def _keep_time_moving(self, workflow: WorkflowRecord) -> str:
        """Commit a heartbeat once the workflow's chain state stood still for heartbeat_every seconds:
        while submissions and results keep committing, block time moves without one."""
        now = time.monotonic()
        quiet = now - self._progress.moved_at.get(workflow.workflow_id, float("-inf"))
        if quiet >= self.heartbeat_every and now - self._progress.last_heartbeat >= self.heartbeat_every:
            self._progress.last_heartbeat = now
            # Fire and forget: the heartbeat only has to commit, nobody waits on it.
            self._try("heartbeat", workflow_id=workflow.workflow_id, wait=None)
        return "waiting"

    def _timing(self, workflow: WorkflowRecord, record: RoundRecord) -> dict[str, float]:
        return self._progress.timings.setdefault((workflow.workflow_id, record.round), {})

    def _write_history_once(self, workflow: WorkflowRecord, record: RoundRecord) -> None:
        """Record a settled round in CouchDB (through the outbox); the evaluator or closer writes it."""
        if self.history is None or record.status not in SETTLED:
            return
        mark = (workflow.workflow_id, record.round)
        if mark in self._progress.history_written:
            return
        mine = (record.evaluation is not None and record.evaluation.evaluator == self.key) or (
            record.status == "failed" and self.key == min(workflow.compute_nodes)
        )
        self._progress.history_written.add(mark)
        if not mine:
            return
        index = self.chain.index(workflow.workflow_id, record.round)
        alive = _safe(lambda: self.dataplane.alive_nodes(workflow.workflow_id), set())
        doc = round_history(workflow=workflow, record=record, index=index, alive=alive,
                            timings=self._progress.timings.get(mark, {}),
                            secagg=self._secagg_record(workflow, record))
        model_blob = None
        if record.status == "accepted" and record.result is not None:
            model_blob = self._model_blob(workflow, record.result.model_hash)
        self.history.record_round(doc, model_blob=model_blob, workflow=workflow)
        if self.on_result is not None:
            self.on_result(workflow.workflow_id, record)


def _safe(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except (TrustMeshError, RuleViolation):
        return default
