"""Follow a run on the chain: live progress per round, then the run's outputs on disk."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from trustmesh.chain import Chain
from trustmesh.errors import ServiceFailed, TrustMeshError
from trustmesh.ledger.client import LedgerClient
from trustmesh.ledger.keys import new_signer
from trustmesh.runner.report import RoundRow, plot_rounds, round_row, write_tables
from trustmesh.runner.stack import LocalStack

SETTLED = ("accepted", "rejected", "failed")


@dataclass
class RunSession:
    stack: LocalStack
    workflow_id: str
    plan: dict[str, Any]
    run_dir: Path
    poll: float = 0.5
    console: Console = field(default_factory=Console)
    rows: dict[int, RoundRow] = field(default_factory=dict)
    _opened_at: dict[int, float] = field(default_factory=dict)
    _chain: Chain | None = None

    @property
    def chain(self) -> Chain:
        if self._chain is None:  # a read-only view: this key never signs anything
            self._chain = Chain(client=LedgerClient(urls=self.stack.ledger_url.split(",")), signer=new_signer())
        return self._chain

    def _check_children(self) -> None:
        dead = self.stack.dead_nodes()
        if dead:
            child = dead[0]
            raise ServiceFailed(f"{child.name} exited with code {child.returncode}; last log lines:\n"
                                f"{child.log_tail(15)}")

    def follow(self, *, timeout: float) -> str:
        """Show each round until the workflow completes; 'completed' or raise on failure/timeout."""
        total = int(self.plan.get("rounds", 1))
        deadline = time.monotonic() + timeout
        columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total} rounds"),
                   TimeElapsedColumn())
        with Progress(*columns, console=self.console, transient=True) as progress:
            task = progress.add_task("registering the workflow", total=total)
            while time.monotonic() < deadline:
                self._check_children()
                workflow = self.chain.workflow(self.workflow_id)
                if workflow is None:
                    time.sleep(self.poll)
                    continue
                final = workflow.final_round
                progress.update(task, total=final)
                for r in range(1, workflow.last_round + 1):
                    if r in self.rows:
                        continue
                    record = self.chain.round(self.workflow_id, r)
                    if record is None:
                        continue
                    self._opened_at.setdefault(r, time.monotonic())
                    index = self.chain.index(self.workflow_id, r)
                    if record.status in SETTLED:
                        row = round_row(record, index, time.monotonic() - self._opened_at[r])
                        self.rows[r] = row
                        progress.console.print(_line(row, final))
                        progress.update(task, completed=len(self.rows))
                    else:
                        got = len(index.entries) if index else 0
                        progress.update(task, description=f"round {r}: {record.status}, "
                                        f"{got}/{workflow.spec.expected_nodes} submissions")
                if workflow.status == "completed" or (
                    workflow.last_round >= final and workflow.last_round in self.rows
                ):
                    return "completed"
                time.sleep(self.poll)
        raise TrustMeshError(f"the run did not finish within {timeout:g}s (see {self.run_dir}/logs)")

    def wait_for_nodes(self, timeout: float = 30.0) -> None:
        """Let the nodes finish by themselves (compute nodes flush their history outbox on exit)."""
        deadline = time.monotonic() + timeout
        for child in self.stack.nodes.values():
            child.wait(max(0.1, deadline - time.monotonic()))

    def write_outputs(self) -> None:
        rows = [self.rows[r] for r in sorted(self.rows)]
        json_path, csv_path = write_tables(rows, self.run_dir)
        plot = plot_rounds(rows, self.run_dir / "accuracy.png", title=f"{self.workflow_id}")
        model_path = self._save_final_model()
        self.console.print(f"round table: {json_path} and {csv_path}")
        if plot:
            self.console.print(f"plot: {plot}")
        if model_path:
            self.console.print(f"final model: {model_path}")
        if self.stack.fauxton_url:
            self.console.print(f"history in Fauxton: {self.stack.fauxton_url} (fl_rounds, fl_models)")

    def _save_final_model(self) -> Path | None:
        from trustmesh.dataplane.store import RedisDataPlane
        from trustmesh.fl.codecs import decode_params
        from trustmesh.fl.models import save_model
        from trustmesh.fl.params import spec_for_model

        workflow = self.chain.workflow(self.workflow_id)
        if workflow is None:
            return None
        blob = RedisDataPlane(self.stack.redis_for("compute")).get_model(self.workflow_id, workflow.model_hash)
        if blob is None:
            return None
        path = self.run_dir / "final_model.safetensors"
        save_model(decode_params(blob, spec_for_model(workflow.spec.model)), path)
        return path


def _line(row: RoundRow, total: int) -> str:
    acc = f"accuracy {row.accuracy:.4f}" if row.accuracy is not None else "no evaluation"
    loss = f", loss {row.loss:.4f}" if row.loss is not None else ""
    excluded = f", {row.excluded} excluded" if row.excluded else ""
    return (f"round {row.round}/{total}  {row.status:<8}  {acc}{loss}  "
            f"{row.participants} submissions{excluded}  {row.seconds:.1f}s")
