"""verify-round recomputes a stateful aggregator (FedAdam, FedYogi, trend_trim) from the state the
round really started from: that of the last accepted round, since a rejected round leaves the
workflow's state where it was (as the ledger's record_evaluation does)."""
from __future__ import annotations

from types import SimpleNamespace

from trustmesh.compute.verify import _state_in_effect


class Rounds:
    def __init__(self, **by_round: tuple[str, str | None]) -> None:
        self._rounds = {int(k[1:]): SimpleNamespace(status=status, result=SimpleNamespace(aggregator_state_hash=h))
                        for k, (status, h) in by_round.items()}

    def round(self, workflow_id: str, round_no: int):
        return self._rounds.get(round_no)


def test_a_rejected_round_does_not_move_the_state_on():
    chain = Rounds(r1=("accepted", "A"), r2=("rejected", "B"), r3=("accepted", "C"))
    assert _state_in_effect(chain, "wf", 2) == "A"
    assert _state_in_effect(chain, "wf", 3) == "A"  # round 2 was rejected: round 3 started from A
    assert _state_in_effect(chain, "wf", 4) == "C"


def test_before_any_accepted_round_there_is_no_state():
    chain = Rounds(r1=("rejected", "B"), r2=("failed", None))
    assert _state_in_effect(chain, "wf", 1) is None
    assert _state_in_effect(chain, "wf", 3) is None
