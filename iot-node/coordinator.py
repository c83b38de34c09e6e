"""The coordinator: registers a workflow and opens each round once the previous one is settled.

The coordinator's key signs ``register_workflow`` and every ``open_round``; the chain refuses a
round beyond the workflow's rounds or its privacy cap, so the budget holds even if this loop
misbehaves. Each round gets a fresh ``schedule_id`` that all participants submit to.
"""
from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable
from typing import Any

from trustmesh.chain import Chain
from trustmesh.contracts.records import WorkflowRecord
from trustmesh.contracts.workflow import apply_defaults, register_payload
from trustmesh.dataplane.store import MODEL_BLOB_TTL, DataPlane
from trustmesh.errors import ConfigError, LedgerError, TransactionRejected, TrustMeshError
from trustmesh.fl.initial import initial_model
from trustmesh.wakeup import COORDINATOR_EVENTS, wake_only_on

LOGGER = logging.getLogger(__name__)

SETTLED = ("accepted", "rejected", "failed")

NEXT_OPEN_TTL = 24 * 3600
"""Seconds a handed-over open_round stays in Redis (a round that waits longer is opened by the loop)."""

START_WAIT = 180.0
"""Seconds the coordinator waits for a quorum of participants to be online before round 1."""


def new_schedule_id(round_no: int) -> str:
    """A fresh schedule id for round ``round_no`` (unique within the workflow; the chain checks)."""
    return f"r{round_no}-{uuid.uuid4().hex[:12]}"


def _dp_plan(doc: dict[str, Any]) -> Any:
    from trustmesh.privacy.rounds import round_privacy

    full = apply_defaults(doc)
    fed = full["federation_config"]
    # DP-SGD's cap follows from every partition's size, batch and local epochs (sampling rate and steps).
    return round_privacy(full["privacy"]["dp"], expected_nodes=int(full["expected_nodes"]),
                         min_nodes=int(fed.get("min_nodes_required", full["expected_nodes"])),
                         training=full["local_training"], data=full["data"])


def privacy_cap(doc: dict[str, Any]) -> int | None:
    """The number of rounds the workflow's DP budget allows (None when DP is off)."""
    plan = _dp_plan(doc)
    if plan is None:
        return None
    cap = plan.round_cap(int(apply_defaults(doc)["rounds"]))
    if cap < 1:
        raise ConfigError("the privacy budget allows no round at all: raise epsilon or the noise multiplier")
    return int(cap)


class Coordinator:
    """Registers ``doc`` (if not yet on-chain) and drives its rounds to the end."""

    def __init__(
        self,
        *,
        chain: Chain,
        doc: dict[str, Any],
        dataplane: DataPlane | None = None,
        resolve: Callable[[str], str] | None = None,
        poll_interval: float = 0.3,
        wait: Callable[[float], object] = time.sleep,
        start_wait: float = START_WAIT,
        hand_off: bool = True,
    ) -> None:
        self.chain = chain
        self.doc = doc
        self.dataplane = dataplane
        self.resolve = resolve
        self.poll_interval = poll_interval
        self.wait = wait
        self.workflow_id: str = doc["workflow_id"]
        self.start_wait = start_wait
        self._started = time.monotonic()
        self._handed_off: set[int] = set()
        self.hand_off = hand_off  # hand the compute nodes each next open_round (see _hand_off)

    def register(self) -> WorkflowRecord:
        """Register the workflow unless the chain already has it; store its initial model."""
        existing = self.chain.workflow(self.workflow_id)
        full = apply_defaults(self.doc)
        blob, digest = initial_model(full["model"]["name"])
        if self.dataplane is not None:
            self.dataplane.put_model(self.workflow_id, digest, blob, ttl=MODEL_BLOB_TTL)
        if existing is not None:
            LOGGER.info("workflow %s is already registered (%s)", self.workflow_id, existing.status)
            return existing
        payload = register_payload(
            self.doc, initial_model_hash=digest, privacy_cap=privacy_cap(self.doc), resolve=self.resolve
        )
        payload.pop("schema_version")
        payload.pop("action")
        self.chain.act("register_workflow", **payload)
        workflow = self.chain.workflow(self.workflow_id)
        if workflow is None:
            raise LedgerError(f"workflow {self.workflow_id} was committed but cannot be read back")
        LOGGER.info("registered workflow %s: %d participants, %d rounds (cap %d)", self.workflow_id,
                    len(workflow.participants), workflow.spec.rounds, workflow.privacy_cap)
        return workflow

    def step(self) -> str:
        """Open the next round when the current one is settled: 'opened', 'waiting' or 'completed'."""
        workflow = self.chain.workflow(self.workflow_id)
        if workflow is None:
            raise ConfigError(f"workflow {self.workflow_id} is not registered")
        if workflow.status == "completed":
            return "completed"
        if workflow.last_round:
            current = self.chain.round(self.workflow_id, workflow.last_round)
            if current is not None and current.status not in SETTLED:
                self._hand_off(workflow, workflow.last_round + 1)
                return "waiting"
        if workflow.last_round >= workflow.final_round:
            return "completed"
        if workflow.last_round == 0 and not self._quorum_online(workflow):
            return "waiting"
        next_round = workflow.last_round + 1
        try:
            self.chain.act("open_round", **self._open_fields(next_round))
        except TransactionRejected as exc:
            LOGGER.warning("open_round %d refused: %s", next_round, exc)
            return "waiting"
        LOGGER.info("opened round %d", next_round)
        self._hand_off(workflow, next_round + 1)
        return "opened"

    def _open_fields(self, round_no: int) -> dict[str, Any]:
        """open_round's fields for ``round_no``: a fresh schedule_id and the epsilon spent by then."""
        plan = _dp_plan(self.doc)
        return {"workflow_id": self.workflow_id, "round": round_no, "schedule_id": new_schedule_id(round_no),
                "epsilon_spent": plan.epsilon_spent(round_no) if plan is not None else None}

    def _hand_off(self, workflow: WorkflowRecord, round_no: int) -> None:
        """Sign ``open_round(round_no)`` once for each compute node and leave it in Redis.

        The node that records the current round's verdict sends it in the same batch, so the next
        round opens in that block instead of one more block later. The chain checks it like any
        open_round (signer, order, privacy cap); if it is refused or never sent, this loop opens the
        round itself once it sees the verdict.
        """
        if not self.hand_off or self.dataplane is None or round_no in self._handed_off \
                or round_no > workflow.final_round:
            return
        fields = self._open_fields(round_no)
        try:
            for node in workflow.compute_nodes:
                signed = self.chain.presign("open_round", batcher_public_key=node, **fields)
                self.dataplane.put_next_open(self.workflow_id, round_no, node, signed.SerializeToString(),
                                             ttl=NEXT_OPEN_TTL)
        except TrustMeshError as exc:
            LOGGER.warning("could not hand round %d's open_round to the compute nodes: %s", round_no, exc)
            return
        self._handed_off.add(round_no)

    def _quorum_online(self, workflow: WorkflowRecord) -> bool:
        """True once min_nodes_required participants keep a liveness key (or the start wait ran out),
        so round 1's deadline is not spent while participant processes are still starting."""
        if self.dataplane is None or time.monotonic() - self._started > self.start_wait:
            return True
        online = self.dataplane.alive_nodes(self.workflow_id) & set(workflow.participants)
        return len(online) >= workflow.spec.min_nodes_required

    def run(self, *, stop: Callable[[], bool] = lambda: False) -> None:
        self.register()
        wake_only_on(self.wait, COORDINATOR_EVENTS)  # a round's verdict; not its ten submissions
        while not stop():
            try:
                if self.step() == "completed":
                    LOGGER.info("workflow %s completed", self.workflow_id)
                    return
            except (LedgerError, TrustMeshError) as exc:
                LOGGER.warning("coordinator: %s; retrying", exc)
            self.wait(self.poll_interval)
