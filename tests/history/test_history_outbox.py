"""HistoryOutbox over the in-memory fake: queues while away, replays in order, resumes after restart."""
import pytest
from history_builders import PK, make_round

from trustmesh.history import HistoryOutbox, HistoryRejected, MemoryHistory, ModelVersion


@pytest.fixture
def memory():
    return MemoryHistory()


def test_writes_reach_the_history(tmp_path, memory):
    with HistoryOutbox(tmp_path / "outbox.sqlite", memory) as outbox:
        outbox.record_workflow("wf", {"status": "active", "rounds": 3})
        outbox.record_round(make_round("wf", 1))
        outbox.record_model(ModelVersion(workflow_id="wf", model_hash="c" * 128, version=1), b"weights")
        assert outbox.flush(10)
        assert outbox.pending() == 0
        assert outbox.get_round("wf", 1) == make_round("wf", 1)
        assert outbox.get_workflow("wf")["rounds"] == 3
        assert outbox.get_model_attachment("wf", "c" * 128) == b"weights"
        assert [p["round"] for p in outbox.node_participation(PK[2])] == [1]


def test_nothing_blocks_or_is_lost_while_the_history_is_away(tmp_path, memory):
    memory.available = False
    with HistoryOutbox(tmp_path / "outbox.sqlite", memory, base_delay=0.01, max_delay=0.05) as outbox:
        for r in (1, 2, 3):
            outbox.record_round(make_round("wf", r))
        assert outbox.flush(0.3) is False
        assert outbox.pending() == 3 * 5  # a round document and four participation documents each
        assert "unavailable" in (outbox.last_error or "")
        memory.available = True
        assert outbox.flush(10)
        assert [h.round for h in memory.list_rounds("wf")] == [1, 2, 3]


def test_a_restarted_outbox_resumes_from_its_file(tmp_path, memory):
    path = tmp_path / "outbox.sqlite"
    memory.available = False
    first = HistoryOutbox(path, memory, base_delay=0.01, max_delay=0.05)
    first.record_round(make_round("wf", 7))
    first.close()  # the process "dies" with the write still queued
    memory.available = True
    with HistoryOutbox(path, memory) as second:
        assert second.flush(10)
    assert memory.get_round("wf", 7) == make_round("wf", 7)


def test_replays_are_idempotent(tmp_path, memory):
    with HistoryOutbox(tmp_path / "o.sqlite", memory) as outbox:
        outbox.record_round(make_round("wf", 1))
        assert outbox.flush(10)
        writes = memory.writes
        outbox.record_round(make_round("wf", 1))
        assert outbox.flush(10)
        assert memory.writes == writes
        outbox.record_round(make_round("wf", 1, accuracy=0.99))
        assert outbox.flush(10)
        assert memory.get_round("wf", 1).accuracy == 0.99


class RefusesFirst:
    """Refuses the first write outright (a malformed request), accepts the rest."""

    def __init__(self, inner):
        self.inner, self.refused = inner, 0

    def apply(self, op):
        if not self.refused:
            self.refused += 1
            raise HistoryRejected("couchdb: HTTP 400: bad_request")
        self.inner.apply(op)

    def apply_many(self, ops):  # a batch holding the refused write is refused as a whole
        for op in ops:
            if op.doc_id == "wf" and not self.refused:
                raise HistoryRejected("couchdb: write fl_workflows/wf: bad_request")
        for op in ops:
            self.apply(op)


def test_refused_writes_go_to_dead_letters_and_do_not_block_the_rest(tmp_path, memory):
    with HistoryOutbox(tmp_path / "o.sqlite", RefusesFirst(memory)) as outbox:
        outbox.record_workflow("wf", {"status": "active"})
        outbox.record_workflow("wf2", {"status": "active"})
        assert outbox.flush(10)
        (op, error), = outbox.dead_letters()
        assert op.doc_id == "wf" and "bad_request" in error
    assert memory.get_workflow("wf2") is not None


def test_a_settled_round_is_queued_in_one_commit(tmp_path, memory):
    from types import SimpleNamespace

    from trustmesh.compute.recorder import HistoryRecorder

    memory.available = False  # nothing is replayed: what the outbox holds is what one call queued
    outbox = HistoryOutbox(tmp_path / "o.sqlite", memory, base_delay=0.01, max_delay=0.05)
    commits = []
    real_submit = outbox._submit
    outbox._submit = lambda ops: (commits.append(len(ops)), real_submit(ops))
    workflow = SimpleNamespace(workflow_id="wf", coordinator=PK[0], participants=PK[:2], compute_nodes=PK[2:],
                               spec=SimpleNamespace(model="mlp", rounds=3), privacy_cap=3, status="active",
                               last_round=1)
    doc = make_round("wf", 1)
    HistoryRecorder(outbox).record_round(doc, model_blob=b"weights", workflow=workflow)
    assert commits == [outbox.pending()] == [1 + 1 + 4 + 2]  # workflow, round, participation x4, model + weights
    memory.available = True
    assert outbox.flush(10)
    assert memory.get_round("wf", 1) == doc and memory.get_workflow("wf")["last_round"] == 1
    assert memory.get_model_attachment("wf", doc.model_hash) == b"weights"
    outbox.close()
