"""The TPs' state view reads every declared address in one request, then serves the rules from it."""
from __future__ import annotations

from types import SimpleNamespace

import pytest
from sawtooth_sdk.processor.exceptions import AuthorizationException, InvalidTransaction

from trustmesh.contracts import blockinfo
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
