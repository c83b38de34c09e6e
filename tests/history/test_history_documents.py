"""Round documents and participation records, pure: shapes, reasons, JSON safety."""
import json

from history_builders import PK, make_round

from trustmesh.history import RoundHistory
from trustmesh.history.documents import participation_docs
from trustmesh.history.ops import HistoryOp, ops_for_round


def test_round_doc_round_trips_and_is_json():
    history = make_round("wf", 3)
    doc = history.to_doc()
    assert history.doc_id == "wf:3" and doc["type"] == "round"
    assert RoundHistory.from_doc(json.loads(json.dumps(doc))) == history


def test_non_finite_numbers_become_null():
    doc = make_round("wf", accuracy=float("nan"), loss=float("inf")).to_doc()
    assert doc["accuracy"] is None and doc["loss"] is None
    json.dumps(doc, allow_nan=False)


def test_participation_names_included_excluded_and_missing():
    docs = dict(participation_docs(make_round("wf", 2)))
    assert docs[f"wf:2:{PK[0]}"]["included"] is True and docs[f"wf:2:{PK[0]}"]["reason"] is None
    assert docs[f"wf:2:{PK[1]}"]["included"] is False and docs[f"wf:2:{PK[1]}"]["reason"] == "norm_bound"
    assert docs[f"wf:2:{PK[2]}"]["status"] == "missing" and docs[f"wf:2:{PK[2]}"]["reason"] == "no_heartbeat"
    assert docs[f"wf:2:{PK[3]}"]["reason"] == "rejected"


def test_ops_survive_the_outbox_row_format():
    for op in ops_for_round(make_round("wf")):
        assert HistoryOp.from_row(op.header_json(), op.data) == op
