"""Round-history builders shared by the history tests (a uniquely named module, not conftest)."""
from trustmesh.history import ExcludedSubmission, MissingNode, ParticipantEntry, RoundHistory

PK = ["02" + f"{i:02x}" * 32 for i in range(4)]


def make_round(wf, r=1, **over):
    fields = dict(
        workflow_id=wf, round=r, schedule_id=f"{wf}-s{r}", status="accepted",
        participants=(ParticipantEntry(public_key=PK[0], num_samples=100, update_hash="a" * 128,
                                       metrics={"loss": 0.4}),
                      ParticipantEntry(public_key=PK[1], num_samples=80, update_hash="b" * 128)),
        missing=(MissingNode(public_key=PK[2], reason="no_heartbeat"),
                 MissingNode(public_key=PK[3], reason="rejected", detail="duplicate submission")),
        included=("a" * 128,), excluded=(ExcludedSubmission(update_hash="b" * 128, reason="norm_bound",
                                                            public_key=PK[1]),),
        base_model_hash="0" * 128, model_version=r, model_hash=f"{r:x}" * 128, accuracy=0.8 + r / 100,
        loss=0.5, timings={"round_seconds": 3.5, "aggregate_seconds": 0.1}, epsilon_spent=0.25 * r,
        aggregator="fedavg",
    )
    fields.update(over)
    return RoundHistory(**fields)
