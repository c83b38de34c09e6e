"""Batched history writes: the pure plan, and CouchHistory.apply_many against a real PouchDB Server."""
import base64

from history_builders import make_round

from trustmesh.history import CouchHistory, ModelVersion
from trustmesh.history.bulk import attachment_digest, group_by_db, plan_writes
from trustmesh.history.ops import HistoryOp, ops_for_model, ops_for_round, ops_for_workflow


def _doc(db, doc_id, **body):
    return HistoryOp(kind="doc", db=db, doc_id=doc_id, doc=body)


def _attachment(db, doc_id, data, name="w"):
    return HistoryOp(kind="attachment", db=db, doc_id=doc_id, name=name, content_type="application/cbor", data=data)


def test_a_later_operation_on_a_document_wins_and_attachments_fold_into_it():
    grouped = group_by_db([_doc("a", "x", v=1), _attachment("a", "x", b"123"), _doc("a", "x", v=2),
                           _doc("b", "y", v=3)])
    assert set(grouped) == {"a", "b"}
    assert grouped["a"]["x"].body == {"v": 2}
    assert grouped["a"]["x"].attachments == {"w": ("application/cbor", b"123")}


def test_plan_skips_what_is_already_there_and_keeps_other_attachments_as_stubs():
    stub = {"content_type": "application/cbor", "digest": attachment_digest(b"old"), "length": 3, "stub": True}
    current = {
        "same": {"_id": "same", "_rev": "1-a", "v": 1},
        "changed": {"_id": "changed", "_rev": "2-b", "v": 1, "_attachments": {"keep": stub}},
        "attached": {"_id": "attached", "_rev": "3-c", "v": 1, "_attachments": {"w": stub}},
    }
    wanted = group_by_db([
        _doc("db", "same", v=1), _doc("db", "changed", v=2), _doc("db", "new", v=9),
        _attachment("db", "attached", b"old"), _attachment("db", "changed", b"fresh"),
    ])["db"]
    docs = {d["_id"]: d for d in plan_writes(wanted, {**current, "new": None})}
    assert set(docs) == {"changed", "new"}  # "same" and the identical attachment write nothing
    changed = docs["changed"]
    assert changed["_rev"] == "2-b" and changed["v"] == 2
    assert changed["_attachments"]["keep"]["stub"] is True
    assert base64.b64decode(changed["_attachments"]["w"]["data"]) == b"fresh"
    assert "_rev" not in docs["new"] and "_attachments" not in docs["new"]


class CountingService:
    """Wraps the ibmcloudant service and counts the HTTP calls by method name."""

    def __init__(self, inner):
        self.inner, self.calls = inner, []

    def __getattr__(self, name):
        method = getattr(self.inner, name)

        def counted(*args, **kwargs):
            self.calls.append(name)
            return method(*args, **kwargs)
        return counted


def _settled_round_ops(wf, r, weights):
    version = ModelVersion(workflow_id=wf, model_hash=f"{r:x}" * 128, version=r, round=r, filename="model.cbor")
    return (ops_for_workflow(wf, {"status": "active", "last_round": r}) + ops_for_round(make_round(wf, r))
            + ops_for_model(version, weights))


def test_a_settled_round_is_one_read_and_one_write_per_database(pouch, wf):
    history = CouchHistory(pouch.url)
    history.ensure_databases()
    counting = CountingService(history.service)
    history.service = counting
    weights = bytes(range(256)) * 400
    ops = _settled_round_ops(wf, 1, weights)
    history.apply_many(ops)
    assert sorted(counting.calls) == sorted(["post_all_docs", "post_bulk_docs"] * 4)
    assert history.get_round(wf, 1) == make_round(wf, 1)
    assert history.get_workflow(wf)["last_round"] == 1
    assert history.get_model_attachment(wf, "1" * 128) == weights
    assert len(history.node_participation(make_round(wf, 1).participants[0].public_key)) >= 1
    revs = {op.doc_id: history.get_doc(op.db, op.doc_id)["_rev"] for op in ops}
    counting.calls.clear()
    history.apply_many(ops)  # a replay: read only, no new revision
    assert sorted(counting.calls) == ["post_all_docs"] * 4
    assert {op.doc_id: history.get_doc(op.db, op.doc_id)["_rev"] for op in ops} == revs


def test_a_document_changed_between_read_and_write_is_retried_alone(pouch, wf):
    history = CouchHistory(pouch.url)
    history.ensure_databases()
    history.apply_many(ops_for_round(make_round(wf, 1)))
    real = history.service

    class Interloper(CountingService):
        def post_bulk_docs(self, **kwargs):  # another writer updates the round just before our write
            other = CouchHistory(pouch.url)
            other.record_round(make_round(wf, 1, accuracy=0.5))
            return self.inner.post_bulk_docs(**kwargs)

    history.service = Interloper(real)
    history.apply_many(ops_for_round(make_round(wf, 1, accuracy=0.99)))
    history.service = real
    assert history.get_round(wf, 1).accuracy == 0.99  # ours was the later write
