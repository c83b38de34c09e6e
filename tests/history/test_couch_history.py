"""CouchHistory against a real PouchDB Server: databases, views, idempotent and conflict-safe writes."""
import threading

import pytest
import requests
from history_builders import PK, make_round

from trustmesh.history import DATABASES, CouchHistory, HistoryUnavailable, ModelVersion
from trustmesh.net import free_port

JSON = {"Accept": "application/json"}


@pytest.fixture(scope="module")
def history(pouch):
    client = CouchHistory(pouch.url)
    client.ensure_databases()
    client.ensure_databases()  # idempotent
    return client


def test_databases_and_design_docs_exist(pouch, history):
    dbs = requests.get(f"{pouch.base_url}/_all_dbs", auth=pouch.admin, headers=JSON, timeout=10).json()
    assert set(DATABASES) <= set(dbs)
    for db, ddoc, view in [("fl_rounds", "rounds", "by_workflow"), ("fl_nodes", "participation", "by_node"),
                           ("fl_models", "models", "by_workflow"), ("fl_workflows", "workflows", "by_status")]:
        doc = requests.get(f"{pouch.base_url}/{db}/_design/{ddoc}", auth=pouch.admin, headers=JSON,
                           timeout=10).json()
        assert view in doc["views"]


def test_round_written_and_read_back(history, wf):
    history.record_round(make_round(wf, 1))
    assert history.get_round(wf, 1) == make_round(wf, 1)
    assert history.get_round(wf, 2) is None


def test_rewrite_is_idempotent_and_updates_overwrite(history, wf):
    history.record_round(make_round(wf, 1))
    rev = history.get_doc("fl_rounds", f"{wf}:1")["_rev"]
    history.record_round(make_round(wf, 1))
    assert history.get_doc("fl_rounds", f"{wf}:1")["_rev"] == rev
    history.record_round(make_round(wf, 1, status="rejected"))
    assert history.get_round(wf, 1).status == "rejected"


def test_views_list_rounds_in_numeric_order_and_participation(history, wf):
    for r in (10, 2, 1):
        history.record_round(make_round(wf, r))
    history.record_round(make_round(wf + "-other", 1))
    assert [h.round for h in history.list_rounds(wf)] == [1, 2, 10]
    mine = [p for p in history.node_participation(PK[1]) if p["workflow_id"] == wf]
    assert [(p["round"], p["reason"]) for p in mine] == [(1, "norm_bound"), (2, "norm_bound"), (10, "norm_bound")]


def test_concurrent_writers_of_one_document_all_succeed(history, wf):
    errors = []

    def write(i):
        try:
            history.record_round(make_round(wf, 1, accuracy=i / 10))
        except Exception as exc:
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert history.get_round(wf, 1).accuracy in {i / 10 for i in range(6)}


def test_model_attachment_round_trip_survives_doc_updates(history, wf):
    weights = bytes(range(256)) * 300
    version = ModelVersion(workflow_id=wf, model_hash="d" * 128, version=1, round=1,
                           filename="model.safetensors")
    history.record_model(version, weights)
    history.record_model(version, weights)
    history.record_model(ModelVersion(**{**version.__dict__, "accuracy": 0.91}), weights)
    assert history.get_model_attachment(wf, "d" * 128) == weights
    assert [m["accuracy"] for m in history.list_models(wf)] == [0.91]
    assert history.get_model_attachment(wf, "e" * 128) is None


def test_unreachable_couchdb_is_history_unavailable():
    client = CouchHistory(f"http://admin:x@127.0.0.1:{free_port()}", timeout=2)
    with pytest.raises(HistoryUnavailable):
        client.get_round("wf", 1)


def test_wrong_password_is_history_unavailable(pouch):
    client = CouchHistory(f"http://admin:wrong@127.0.0.1:{pouch.port}")
    with pytest.raises(HistoryUnavailable, match="401"):
        client.record_workflow("wf", {"status": "active"})
