"""The TPs' state view reads every declared address in one request, then serves the rules from it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from sawtooth_sdk.processor.exceptions import AuthorizationException, InvalidTransaction
from sawtooth_sdk.protobuf.block_info_pb2 import BlockInfo, BlockInfoConfig

from trustmesh.contracts import blockinfo
from trustmesh.contracts.view import block_time
from trustmesh.tp import common
from trustmesh.tp.common import ContextStateView

WF = "818aa9" + "1" * 64
ROUND = "818aa9" + "2" * 64
OTHER = "818aa9" + "3" * 64


class CountingContext:
    """An SDK Context stand-in: state in a dict, every get_state call recorded, inputs enforced."""

    def __init__(self, state: dict[str, bytes], inputs: list[str]) -> None:
        self.state, self.inputs, self.calls = state, inputs, []

    def get_state(self, addresses, timeout=None):
        self.calls.append(list(addresses))
        if any(not any(a.startswith(p) for p in self.inputs) for a in addresses):
            raise AuthorizationException("undeclared")
        return [SimpleNamespace(address=a, data=self.state[a]) for a in addresses if a in self.state]


@pytest.fixture(autouse=True)
def no_block_hint(monkeypatch):
    monkeypatch.setattr(common, "_BLOCK_HINT", common._LatestBlockHint())


def transaction(inputs):
    return SimpleNamespace(header=SimpleNamespace(inputs=inputs))


def test_declared_addresses_and_the_blockinfo_config_come_in_one_request():
    inputs = [WF, ROUND, blockinfo.NAMESPACE]
    context = CountingContext({WF: b"wf", blockinfo.CONFIG_ADDRESS: b"cfg"}, inputs)
    view = ContextStateView.for_transaction(transaction(inputs), context)
    assert context.calls == [[WF, ROUND, blockinfo.CONFIG_ADDRESS]]
    assert (view.get(WF), view.get(ROUND), view.get(blockinfo.CONFIG_ADDRESS)) == (b"wf", None, b"cfg")
    assert len(context.calls) == 1  # served from the prefetch, absent addresses included


def test_without_a_blockinfo_prefix_the_config_is_not_read():
    context = CountingContext({WF: b"wf"}, [WF])
    ContextStateView.for_transaction(transaction([WF]), context)
    assert context.calls == [[WF]]


def test_an_undeclared_read_is_still_refused_with_its_address():
    context = CountingContext({WF: b"wf"}, [WF])
    view = ContextStateView.for_transaction(transaction([WF]), context)
    with pytest.raises(InvalidTransaction, match=f"did not declare input {OTHER}"):
        view.get(OTHER)


def _chain_at(block_num: int) -> dict[str, bytes]:
    """BlockInfo state as the injector leaves it inside block ``block_num`` + 1."""
    state = {blockinfo.CONFIG_ADDRESS: BlockInfoConfig(latest_block=block_num, oldest_block=1,
                                                       target_count=256, sync_tolerance=300).SerializeToString()}
    for n in range(1, block_num + 1):
        state[blockinfo.block_address(n)] = BlockInfo(block_num=n, timestamp=1_000 + n).SerializeToString()
    return state


def test_block_time_rides_along_once_the_latest_block_is_known():
    inputs = [WF, blockinfo.NAMESPACE]

    def now_and_requests(state):
        context = CountingContext({WF: b"wf", **state}, inputs)
        view = ContextStateView.for_transaction(transaction(inputs), context)
        return block_time(view), len(context.calls)

    assert now_and_requests(_chain_at(7)) == (1_007, 2)  # nothing known yet: config, then block 7's record
    assert now_and_requests(_chain_at(7)) == (1_007, 1)  # the same block: one request
    assert now_and_requests(_chain_at(8)) == (1_008, 1)  # the next block: guessed too
    assert now_and_requests(_chain_at(20)) == (1_020, 2)  # a jump: the guess misses, the answer does not
    assert now_and_requests(_chain_at(20)) == (1_020, 1)
