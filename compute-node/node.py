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

from trustmesh.chain import Chain
from trustmesh.compute import secagg_phases
from trustmesh.compute.history_docs import round_history
from trustmesh.compute.roundwork import RoundResult, compute_result
from trustmesh.contracts.records import RoundRecord, WorkflowRecord
from trustmesh.contracts.rules import RuleViolation
from trustmesh.dataplane.store import DataPlane
from trustmesh.errors import LedgerError, TransactionRejected, TrustMeshError
from trustmesh.fl.codecs import decode_params
from trustmesh.fl.data import load_dataset
from trustmesh.fl.initial import initial_model
from trustmesh.fl.models import build_model
from trustmesh.fl.params import set_params, spec_for_model
from trustmesh.fl.train import evaluate

LOGGER = logging.getLogger(__name__)

SETTLED = ("accepted", "rejected", "failed")

HEARTBEAT_EVERY = 2.0
"""Seconds between heartbeat transactions while a round waits on block time."""


@dataclass
class _Progress:
    """What this node already did, so a loop iteration does not repeat an action."""

    attested: set[tuple[str, int, str]] = field(default_factory=set)
    history_written: set[tuple[str, int]] = field(default_factory=set)
    timings: dict[tuple[str, int], dict[str, float]] = field(default_factory=dict)
    last_heartbeat: float = 0.0


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
        self._progress = _Progress()
        self._test_sets: dict[str, Any] = {}
        self._precomputed: dict[tuple[str, int, str], RoundResult] = {}

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
                self.wait(self.poll_interval)

    def step(self, workflow_id: str) -> str:
        """One reconcile pass over a workflow: 'acted', 'waiting', 'idle' or 'completed'."""
        workflow = self.chain.workflow(workflow_id)
        if workflow is None or self.key not in workflow.compute_nodes:
            return "idle"
        record = self.chain.round(workflow_id, workflow.last_round) if workflow.last_round else None
        if record is not None:
            self._write_history_once(workflow, record)
        if workflow.status == "completed":
            return "completed"
        if record is not None and record.status in SETTLED and record.round >= workflow.final_round:
            return "completed"  # the last round failed: nothing can open after it
        if record is None:
            return "idle"
        handler = getattr(self, f"_on_{record.status}", None)
        if handler is None:  # accepted, rejected, failed: the coordinator opens the next round
            return "idle"
        return str(handler(workflow, record))

    # -- per status -------------------------------------------------------------------------------
    def _on_open(self, workflow: WorkflowRecord, record: RoundRecord) -> str:
        if workflow.spec.privacy.secure_aggregation.enabled:
            return secagg_phases.drive(self, workflow, record)
        index = self.chain.index(workflow.workflow_id, record.round)
        submitted = len(index.entries) if index else 0
        now = self.chain.now()
        if submitted >= workflow.spec.expected_nodes or now > record.deadline:
            # Once a round may close its index can no longer change (every expected node submitted,
            # or the deadline passed on block time): aggregate now, then close, claim and post in
            # one batch — one block instead of three.
            quorum = submitted >= workflow.spec.min_nodes_required
            if quorum and not self.aggregate_delay and self.key not in record.barred:
                if self._post_batch(workflow, record, close=True):
                    return "acted"
            if self._try("close_round", workflow_id=workflow.workflow_id, round=record.round):
                self._timing(workflow, record)["closed"] = time.time()
                return "acted"
        return self._keep_time_moving(workflow)

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
            elif self._post_batch(workflow, record, close=False):
                return "acted"
        else:
            self._precompute(workflow, record)  # another node aggregates: be ready to attest at once
        return self._keep_time_moving(workflow)

    def _post_batch(self, workflow: WorkflowRecord, record: RoundRecord, *, close: bool) -> bool:
        """Aggregate, then [close_round,] claim_task and post_result in one batch; False if refused."""
        result = self._result_for(workflow, record)
        if result is None:
            return False
        self._store(workflow, result)
        wid, r = workflow.workflow_id, record.round
        actions = [("close_round", {"workflow_id": wid, "round": r})] if close else []
        actions += [("claim_task", {"workflow_id": wid, "round": r, "task": "aggregate"}),
                    ("post_result", self._post_fields(workflow, record, result))]
        if not self._try_many(actions):
            return False
        timing = self._timing(workflow, record)
        timing["aggregate_seconds"] = result.seconds
        timing["posted"] = time.time()
        LOGGER.info("round %s: aggregated %d submissions (%d excluded) in %.2fs and posted", record.round,
                    len(result.included), len(result.excluded), result.seconds)
        return True

    def _result_for(self, workflow: WorkflowRecord, record: RoundRecord) -> RoundResult | None:
        """This round's result, computed once per node (it serves posting and attesting alike)."""
        self._precompute(workflow, record)
        return self._precomputed.get((workflow.workflow_id, record.round, record.base_model_hash))

    def _store(self, workflow: WorkflowRecord, result: RoundResult) -> None:
        self.dataplane.put_model(workflow.workflow_id, result.model_hash, result.model_bytes)
        if result.state_bytes is not None and result.state_hash is not None:
            self.dataplane.put_model(workflow.workflow_id, result.state_hash, result.state_bytes)

    @staticmethod
    def _post_fields(workflow: WorkflowRecord, record: RoundRecord, result: RoundResult) -> dict[str, Any]:
        return {"workflow_id": workflow.workflow_id, "round": record.round, "model_hash": result.model_hash,
                "aggregator_state_hash": result.state_hash, "included": list(result.included),
                "excluded": dict(result.excluded)}

    def _precompute(self, workflow: WorkflowRecord, record: RoundRecord) -> None:
        """Recompute the round's result while another node holds the aggregate lease.

        The index is frozen once a round is ready, so this equals what attestation would compute.
        """
        mark = (workflow.workflow_id, record.round, record.base_model_hash)
        if mark in self._precomputed:
            return
        try:
            self._precomputed[mark] = self._recompute(workflow, record)
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
        if recomputed.model_hash != result.model_hash:
            LOGGER.warning("round %s: posted model %s… but recomputed %s…; disputing",
                           record.round, result.model_hash[:12], recomputed.model_hash[:12])
        self._try(
            "attest_result", workflow_id=workflow.workflow_id, round=record.round,
            model_hash=recomputed.model_hash, aggregator_state_hash=recomputed.state_hash,
        )
        return "acted"

    def _on_verified(self, workflow: WorkflowRecord, record: RoundRecord) -> str:
        lease, now = record.lease, self.chain.now()
        if lease is not None and lease.task == "evaluate" and lease.holder == self.key and now <= lease.until:
            return self._evaluate(workflow, record)
        if lease is None or lease.task != "evaluate" or now > lease.until:
            # Evaluate first, then claim and record in one batch: one block instead of two.
            fields = self._evaluation_fields(workflow, record)
            claim = {"workflow_id": workflow.workflow_id, "round": record.round, "task": "evaluate"}
            if self._try_many([("claim_task", claim), ("record_evaluation", fields)]):
                return "acted"
        return self._keep_time_moving(workflow)

    # -- tasks ------------------------------------------------------------------------------------
    def _recompute(self, workflow: WorkflowRecord, record: RoundRecord) -> RoundResult:
        base = self.dataplane.get_model(workflow.workflow_id, record.base_model_hash)
        if base is None:
            base = self._initial_model_if(workflow, record.base_model_hash)
        if base is None:
            raise TrustMeshError(f"base model {record.base_model_hash[:12]}… of round {record.round} is unavailable")
        state = None
        if workflow.aggregator_state_hash:
            state = self.dataplane.get_model(workflow.workflow_id, workflow.aggregator_state_hash)
        index = self.chain.index(workflow.workflow_id, record.round)
        records = self.dataplane.read_submissions(workflow.workflow_id, record.schedule_id, workflow.spec.app_id)
        return compute_result(
            workflow=workflow, round_record=record, index=index, base_model=base, records=records,
            fetch_update=lambda h: self.dataplane.fetch_update_blob(workflow.workflow_id, record.schedule_id, h),
            optimizer_state=state, secagg=self.chain.secagg(workflow.workflow_id, record.round),
        )

    def _initial_model_if(self, workflow: WorkflowRecord, wanted: str) -> bytes | None:
        blob, digest = initial_model(workflow.spec.model)
        if digest != wanted:
            return None
        self.dataplane.put_model(workflow.workflow_id, digest, blob)
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

    def _evaluation_fields(self, workflow: WorkflowRecord, record: RoundRecord) -> dict[str, Any]:
        """Evaluate the round's posted model on the held-out test set."""
        assert record.result is not None
        blob = self.dataplane.get_model(workflow.workflow_id, record.result.model_hash)
        if blob is None:
            raise TrustMeshError(f"model {record.result.model_hash[:12]}… of round {record.round} is unavailable")
        model = build_model(workflow.spec.model)
        set_params(model, decode_params(blob, spec_for_model(workflow.spec.model)))
        x_test, y_test = self._test_set(workflow.spec.data.dataset)
        started = time.perf_counter()
        loss, accuracy = evaluate(model, x_test, y_test)
        self._timing(workflow, record)["evaluate_seconds"] = time.perf_counter() - started
        LOGGER.info("round %s: accuracy %.4f, loss %.4f", record.round, accuracy, loss)
        return {"workflow_id": workflow.workflow_id, "round": record.round,
                "accuracy": float(min(max(accuracy, 0.0), 1.0)), "loss": float(max(loss, 0.0))}

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
        """Send several actions as one batch; a refusal of any of them (a race lost) is not an error."""
        try:
            self.chain.act_many(actions)
            return True
        except TransactionRejected as exc:
            LOGGER.debug("%s refused: %s", "+".join(a for a, _ in actions), exc)
            return False

    def _keep_time_moving(self, workflow: WorkflowRecord) -> str:
        if time.monotonic() - self._progress.last_heartbeat >= self.heartbeat_every:
            self._progress.last_heartbeat = time.monotonic()
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
                            secagg=self.chain.secagg(workflow.workflow_id, record.round))
        model_blob = None
        if record.status == "accepted" and record.result is not None:
            model_blob = self.dataplane.get_model(workflow.workflow_id, record.result.model_hash)
        self.history.record_round(doc, model_blob=model_blob, workflow=workflow)
        if self.on_result is not None:
            self.on_result(workflow.workflow_id, record)


def _safe(fn: Callable[[], Any], default: Any) -> Any:
    try:
        return fn()
    except (TrustMeshError, RuleViolation):
        return default
