"""Exceptions of the on-chain rules: what a transaction processor maps to which Sawtooth error.

``RuleViolation`` (and its subclass ``SchemaError``) means the transaction is wrong, the same way on
every validator: answer ``InvalidTransaction``. ``StateCorrupt`` means state the rules wrote cannot be
read back: answer ``InternalError`` so the validator retries, and alert an operator.
"""
from __future__ import annotations

from trustmesh.errors import TrustMeshError


class RuleViolation(TrustMeshError):
    """The transaction breaks an on-chain rule; its message is the human reason. Reject, never retry."""


class SchemaError(RuleViolation):
    """A payload is not well-formed (bad CBOR, missing/unknown field, wrong type or range). Reject."""


class StateCorrupt(TrustMeshError):
    """A state record does not decode against its schema. The processor is in trouble: retry, alert."""
