"""Federation handler: decode nothing itself, call the pure rule, write what it returns."""
from __future__ import annotations

from typing import Any

from sawtooth_sdk.processor.exceptions import InternalError, InvalidTransaction
from sawtooth_sdk.processor.handler import TransactionHandler

from trustmesh.contracts.errors import StateCorrupt
from trustmesh.contracts.families import FEDERATION
from trustmesh.contracts.rules import RuleViolation, apply_federation
from trustmesh.tp.common import ContextStateView, write_outcome


class FederationHandler(TransactionHandler):  # type: ignore[misc]
    """Every federation action of DESIGN.md §4; the actor is the transaction's signer."""

    @property
    def family_name(self) -> str:
        return FEDERATION.name

    @property
    def family_versions(self) -> list[str]:
        return [FEDERATION.version]

    @property
    def namespaces(self) -> list[str]:
        return [FEDERATION.namespace]

    def apply(self, transaction: Any, context: Any) -> None:
        view = ContextStateView.for_transaction(transaction, context)
        try:
            outcome = apply_federation(
                view, signer=transaction.header.signer_public_key, payload=transaction.payload
            )
        except RuleViolation as exc:
            raise InvalidTransaction(str(exc)) from exc
        except StateCorrupt as exc:
            raise InternalError(f"undecodable state: {exc}") from exc
        write_outcome(context, outcome.changes, outcome.events)
