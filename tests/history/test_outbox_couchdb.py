"""The outbox against a real PouchDB Server that is stopped mid-run and started again."""
import pytest
from history_builders import make_round

from trustmesh.history import CouchHistory, HistoryOutbox, ModelVersion
from trustmesh.services import PouchServer


@pytest.fixture
def server(tmp_path):
    with PouchServer(data_dir=tmp_path / "pouch") as srv:
        yield srv


def test_history_queues_while_couchdb_is_down_and_catches_up(tmp_path, server):
    client = CouchHistory(server.url, timeout=2)
    client.ensure_databases()
    path = tmp_path / "outbox.sqlite"
    outbox = HistoryOutbox(path, client, base_delay=0.05, max_delay=0.5)
    outbox.record_round(make_round("wf", 1))
    assert outbox.flush(30)

    server.stop()
    outbox.record_round(make_round("wf", 2))
    outbox.record_model(ModelVersion(workflow_id="wf", model_hash="f" * 128, version=2), b"weights v2")
    assert outbox.pending() > 0
    assert outbox.flush(1.0) is False
    outbox.close()  # the compute node dies while CouchDB is away

    server.start()
    with HistoryOutbox(path, client, base_delay=0.05, max_delay=0.5) as resumed:
        assert resumed.flush(30)
    assert [h.round for h in client.list_rounds("wf")] == [1, 2]
    assert client.get_model_attachment("wf", "f" * 128) == b"weights v2"


def test_outbox_creates_databases_on_a_fresh_or_wiped_server(tmp_path):
    with PouchServer(data_dir=tmp_path / "mem", in_memory=True) as server:
        client = CouchHistory(server.url, timeout=2)
        with HistoryOutbox(tmp_path / "o.sqlite", client, base_delay=0.05, max_delay=0.5) as outbox:
            outbox.record_round(make_round("wf", 1))  # no ensure_databases() by the caller
            assert outbox.flush(30)
            server.restart()  # in memory: every database is gone
            outbox.record_round(make_round("wf", 2))
            assert outbox.flush(30)
            assert outbox.dead_letters() == []
        assert [h.round for h in client.list_rounds("wf")] == [2]
