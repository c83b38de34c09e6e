"""Families, addresses, canonical CBOR, the schema layer and the block-time view."""
import hashlib
import math

import cbor2
import pytest
from contracts_harness import P1, Ledger, register_payload
from sawtooth_sdk.protobuf.block_info_pb2 import BlockInfoConfig

from trustmesh.contracts import blockinfo, cbor
from trustmesh.contracts.addresses import (
    make_address,
    node_address,
    round_address,
    schedule_address,
    submission_index_address,
    workflow_address,
)
from trustmesh.contracts.errors import RuleViolation, SchemaError
from trustmesh.contracts.families import FEDERATION, IOT_DATA, family_by_name
from trustmesh.contracts.records import RegisterWorkflow, SubmitUpdate
from trustmesh.contracts.view import MappingView, block_time

KEY = "02" + "ab" * 32


def test_namespaces_are_sha512_prefixes_of_family_names():
    assert FEDERATION.namespace == "818aa9" == hashlib.sha512(b"federation").hexdigest()[:6]
    assert IOT_DATA.namespace == "939a7a" == hashlib.sha512(b"iot-data").hexdigest()[:6]
    assert (FEDERATION.version, IOT_DATA.version) == ("1.0", "1.0")
    assert family_by_name("iot-data") is IOT_DATA


def test_pinned_addresses():
    assert workflow_address("mnist") == "818aa936e9fff51b176c3513ae3356058210ed8356cb8c533a31c358384fdce0f78354"
    assert round_address("mnist", 1) == "818aa93b8d19980e2ab81350b2e2bee4dc26583bed9fb80bbd8344736bf787f213ab97"
    assert node_address("mnist", KEY) == "818aa9e8eb924278c3d29f270034cc66204417bbb42a1b0c241792f09faa4d89299d9e"
    assert submission_index_address("mnist", 1) == (
        "939a7a167a0fa2162a0b5f418be7ed7e3264568e9dc61ff9985efd0e77e83d0069e6ce"
    )
    assert schedule_address("mnist", "s1") == "818aa985e3ede83ea7a9a02b8269d027a267cb1fdaed76f249f6cfd1b67fab41e418d7"


def test_make_address_is_namespace_plus_sha512_of_joined_parts():
    address = make_address(FEDERATION, "round", "w", "7")
    assert address == FEDERATION.namespace + hashlib.sha512(b"round/w/7").hexdigest()[:64]
    assert len(address) == 70
    assert round_address("w", 7) == address


def test_records_of_different_kinds_never_share_an_address():
    addresses = {workflow_address("w"), round_address("w", 1), node_address("w", KEY), schedule_address("w", "1")}
    assert len(addresses) == 4


@pytest.mark.parametrize("parts", [(), ("a/b",), ("",)])
def test_make_address_refuses_ambiguous_parts(parts):
    with pytest.raises(ValueError):
        make_address(FEDERATION, *parts)


def test_cbor_round_trip_is_canonical():
    obj = {"b": [1, 2.5, b"\x00", None, True], "a": {"z": -1}}
    data = cbor.encode(obj)
    assert data == cbor2.dumps({"a": {"z": -1}, "b": [1, 2.5, b"\x00", None, True]}, canonical=True)
    assert cbor.decode(data, max_bytes=100) == obj


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"\x01\x02",  # trailing bytes
        bytes.fromhex("fb3ff8000000000000"),  # 1.5 as float64: not the shortest form
        bytes.fromhex("c11a514b67b0"),  # tag 1 (epoch datetime)
        bytes.fromhex("d9d9f7a0"),  # self-describe tag 55799
        bytes.fromhex("c249010000000000000000"),  # bignum tag
        bytes.fromhex("a2616101616102"),  # duplicate key
        bytes.fromhex("a10102"),  # integer map key
        bytes.fromhex("9f01ff"),  # indefinite array
        bytes.fromhex("5bffffffffffffffff"),  # byte string claiming 2^64 bytes
        bytes.fromhex("9bffffffffffffffff"),  # array claiming 2^64 items
        bytes.fromhex("f7"),  # undefined
        bytes.fromhex("d81c01"),  # shared reference tag
        b"\x81" * 40 + b"\x01",  # nested too deep
    ],
)
def test_cbor_decode_refuses_hostile_bytes(data):
    with pytest.raises(SchemaError):
        cbor.decode(data, max_bytes=1000)


def test_cbor_decode_enforces_size_limit():
    data = cbor.encode({"x": b"\x00" * 100})
    with pytest.raises(SchemaError, match="exceeds the limit"):
        cbor.decode(data, max_bytes=50)


def test_record_round_trip():
    payload = RegisterWorkflow.from_obj(register_payload())
    assert RegisterWorkflow.from_obj(payload.to_obj()) == payload


def _submission(**changes):
    obj = {
        "schema_version": 1,
        "workflow_id": "w",
        "round": 1,
        "schedule_id": "s1",
        "update_hash": "a" * 128,
        "num_samples": 5,
    }
    obj.update(changes)
    return obj


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"schema_version": 2}, "schema_version"),
        ({"schema_version": True}, "schema_version"),
        ({"round": True}, "round: expected int, got bool"),
        ({"round": 0}, "round: 0 outside"),
        ({"round": 1.0}, "round: expected int"),
        ({"num_samples": "5"}, "num_samples"),
        ({"update_hash": "A" * 128}, "update_hash"),
        ({"update_hash": "a" * 127}, "update_hash"),
        ({"workflow_id": "a/b"}, "workflow_id"),
        ({"workflow_id": "x" * 65}, "workflow_id"),
        ({"schedule_id": ""}, "schedule_id"),
        ({"inline": b""}, "inline: length 0"),
        ({"inline": b"x" * (64 * 1024 + 1)}, "inline: length"),
        ({"inline": "text"}, "inline: expected bytes"),
        ({"metrics": {"loss": math.nan}}, "metrics.loss: nan is not finite"),
        ({"metrics": {"loss": math.inf}}, "not finite"),
        ({"metrics": {f"m{i}": 1.0 for i in range(17)}}, "metrics: length 17"),
        ({"metrics": {"": 1.0}}, "metrics"),
        ({"metrics": [1.0]}, "metrics: expected map"),
        ({"extra": 1}, "unknown field 'extra'"),
    ],
)
def test_submission_schema_rejections(changes, message):
    with pytest.raises(SchemaError, match=message.replace("[", r"\[")):
        SubmitUpdate.from_obj(_submission(**changes))


def test_missing_required_field_is_named():
    obj = _submission()
    del obj["num_samples"]
    with pytest.raises(SchemaError, match="num_samples: required field missing"):
        SubmitUpdate.from_obj(obj)


def test_nested_error_names_the_path():
    payload = register_payload()
    payload["spec"]["training"]["lr"] = "fast"
    with pytest.raises(SchemaError, match="spec.training.lr: expected number"):
        RegisterWorkflow.from_obj(payload)
    payload = register_payload(participants=[P1, "not-a-key"])
    with pytest.raises(SchemaError, match=r"participants\[1\]"):
        RegisterWorkflow.from_obj(payload)


def test_block_time_reads_the_latest_block_named_by_the_config():
    ledger = Ledger(now=1234)
    assert block_time(ledger.view) == 1234
    ledger.set_time(1300)
    assert block_time(ledger.view) == 1300


def test_block_time_without_block_info_is_a_rule_violation():
    with pytest.raises(RuleViolation, match="no block info"):
        block_time(MappingView(state={}))
    config = BlockInfoConfig(latest_block=9).SerializeToString()
    with pytest.raises(RuleViolation, match="no block info for block 9"):
        block_time(MappingView(state={blockinfo.CONFIG_ADDRESS: config}))
    with pytest.raises(RuleViolation, match="no block info"):
        block_time(MappingView(state={blockinfo.CONFIG_ADDRESS: b"\xff\xff\xff"}))


def test_contracts_stay_pure():
    """No module under contracts/ imports I/O, clocks or randomness."""
    import ast
    from pathlib import Path

    import trustmesh.contracts as package

    banned = {"redis", "zmq", "requests", "socket", "time", "datetime", "random", "sqlite3", "subprocess", "threading"}
    root = Path(package.__file__).parent
    for path in root.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] not in banned, f"{path.name} imports {name}"
