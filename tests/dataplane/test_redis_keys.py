"""Key names: the documented shapes, one cluster slot per round, and refused key parts."""
import pytest
from redis.crc import key_slot

from trustmesh.dataplane import keys

H = "ab" * 64
PK = "02" + "cd" * 32


def test_documented_shapes():
    assert keys.update_key("wf", "s1", H) == f"update:{{wf:s1}}:{H}"
    assert keys.federated_list_key("wf", "s1", "mnist") == "iot_data:{wf:s1}:mnist:federated"
    assert keys.seen_key("wf", "s1") == "iot_data_seen:{wf:s1}"
    assert keys.federation_state_key("wf", "s1") == "federation_state:{wf:s1}"
    assert keys.model_key("wf", H) == f"model:{{wf}}:{H}"
    assert keys.heartbeat_key("wf", PK) == f"heartbeat:{{wf}}:{PK}"


@pytest.mark.parametrize("wf,sched", [("wf", "s1"), ("mnist-federated", "round-7.x"), ("a", "b_c")])
def test_every_key_of_a_round_is_on_one_slot(wf, sched):
    round_keys = [keys.update_key(wf, sched, H), keys.update_key(wf, sched, "00" * 64),
                  keys.federated_list_key(wf, sched, "app"), keys.seen_key(wf, sched),
                  keys.federation_state_key(wf, sched)]
    assert len({key_slot(k.encode()) for k in round_keys}) == 1
    workflow_keys = [keys.model_key(wf, H), keys.heartbeat_key(wf, PK), keys.heartbeat_key(wf, "03" + "0" * 64)]
    assert len({key_slot(k.encode()) for k in workflow_keys}) == 1


def test_rounds_spread_over_slots():
    slots = {key_slot(keys.seen_key("wf", f"s{i}").encode()) for i in range(50)}
    assert len(slots) > 40


@pytest.mark.parametrize("bad", ["", "a}b", "a{b", "a:b", "a*", "a b", "-lead"])
def test_key_parts_that_would_break_the_tag_are_refused(bad):
    with pytest.raises(ValueError):
        keys.seen_key(bad, "s1")
    with pytest.raises(ValueError):
        keys.seen_key("wf", bad)


def test_hashes_must_be_lowercase_hex():
    with pytest.raises(ValueError):
        keys.update_key("wf", "s1", "AB" * 64)
    with pytest.raises(ValueError):
        keys.model_key("wf", "*")
