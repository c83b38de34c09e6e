"""Workflow files: the JSON Schema check, the cross-field checks, and the register_workflow payload.

``validate_workflow`` returns one message per problem, each naming the JSON path of the field.
``register_payload`` turns a valid document into the ``register_workflow`` payload; key names are
resolved by the caller's ``resolve`` function and the privacy cap comes from the caller's accountant.
"""
from __future__ import annotations

import copy
import json
import re
from collections.abc import Callable
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError

from trustmesh.contracts.errors import SchemaError
from trustmesh.contracts.records import SCHEMA_VERSION, WorkflowSpec
from trustmesh.contracts.spec_checks import spec_problems
from trustmesh.errors import ConfigError

__all__ = [
    "Resolver",
    "apply_defaults",
    "coordinator_key",
    "load_workflow",
    "read_workflow_file",
    "register_payload",
    "resolve_node",
    "validate_workflow",
    "workflow_schema",
]

Resolver = Callable[[str], str]
_PUBLIC_KEY = re.compile(r"0[23][0-9a-f]{64}")


@cache
def workflow_schema() -> dict[str, Any]:
    """The workflow JSON Schema shipped with the package (contracts/workflow.schema.json)."""
    text = resources.files("trustmesh.contracts").joinpath("workflow.schema.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    Draft202012Validator.check_schema(schema)
    return schema


# JSON Schema counts 3.0 as an integer; the on-chain schema does not, so neither do we.
_StrictValidator = validators.extend(
    Draft202012Validator,
    type_checker=Draft202012Validator.TYPE_CHECKER.redefine(
        "integer", lambda _checker, value: isinstance(value, int) and not isinstance(value, bool)
    ),
)


def _json_path(parts: Any) -> str:
    path = ""
    for part in parts:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _messages(error: ValidationError) -> list[str]:
    where = list(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        missing = [name for name in error.validator_value if name not in error.instance]
        return [f"{_json_path([*where, name])}: required property missing" for name in missing[:1]]
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = set(error.schema.get("properties", {}))
        return [f"{_json_path([*where, name])}: unknown property" for name in sorted(set(error.instance) - known)]
    return [f"{_json_path(where) or '(workflow)'}: {error.message}"]


def apply_defaults(doc: dict[str, Any]) -> dict[str, Any]:
    """A copy of a schema-valid document with every optional setting filled in from the schema's defaults."""
    out = copy.deepcopy(doc)

    def fill(instance: dict[str, Any], schema: dict[str, Any]) -> None:
        for name, sub in schema.get("properties", {}).items():
            if name not in instance and "default" in sub:
                instance[name] = copy.deepcopy(sub["default"])
            if isinstance(instance.get(name), dict) and sub.get("type") == "object":
                fill(instance[name], sub)

    fill(out, workflow_schema())
    fed = out["federation_config"]
    fed.setdefault("attestations_required", 0 if len(fed["compute_nodes"]) == 1 else 1)
    out["data"].setdefault("num_partitions", len(fed["participant_nodes"]))
    return out


def _spec(full: dict[str, Any]) -> WorkflowSpec:
    fed = full["federation_config"]
    return WorkflowSpec.from_obj(
        {
            "app_id": full["app_id"],
            "model": full["model"]["name"],
            "rounds": full["rounds"],
            "round_timeout": fed["round_timeout"],
            "min_nodes_required": fed["min_nodes_required"],
            "expected_nodes": full["expected_nodes"],
            "enrolment": fed["enrolment"],
            "attestations_required": fed["attestations_required"],
            "lease_seconds": fed["lease_seconds"],
            "max_samples_per_node": fed["max_samples_per_node"],
            "training": full["local_training"],
            "aggregation": full["aggregation"],
            "privacy": full["privacy"],
            "gate": full["validation_gate"],
            "data": full["data"],
        }
    )


def validate_workflow(doc: Any) -> list[str]:
    """Every problem of a workflow document, one message each naming its JSON path; [] when valid."""
    validator = _StrictValidator(workflow_schema())
    errors = sorted(validator.iter_errors(doc), key=lambda e: (list(map(str, e.absolute_path)), e.message))
    messages = [m for error in errors for m in _messages(error)]
    if messages:
        return messages
    full = apply_defaults(doc)
    try:
        spec = _spec(full)
    except SchemaError as exc:
        return [str(exc)]
    fed = full["federation_config"]
    return spec_problems(spec, participants=len(fed["participant_nodes"]), compute_nodes=len(fed["compute_nodes"]))


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def read_workflow_file(path: str | Path) -> Any:
    """The parsed JSON of a workflow file (NaN and Infinity refused); ConfigError if unreadable."""
    try:
        return json.loads(Path(path).read_text("utf-8"), parse_constant=_refuse_constant)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from exc
    except ValueError as exc:  # JSONDecodeError is a ValueError
        raise ConfigError(f"{path}: not JSON: {exc}") from exc


def load_workflow(path: str | Path) -> dict[str, Any]:
    """Read and validate a workflow file; ConfigError with every problem (one per line) if it is not valid."""
    doc = read_workflow_file(path)
    problems = validate_workflow(doc)
    if problems:
        raise ConfigError(f"{path}: " + "\n".join(problems))
    return doc


def resolve_node(node: str, resolve: Resolver | None) -> str:
    """A public key as is, or a key name turned into one by ``resolve`` (checked to be a key)."""
    if _PUBLIC_KEY.fullmatch(node):
        return node
    if resolve is None:
        raise ConfigError(f"{node!r} is a key name, and no resolver was given to turn it into a public key")
    key = resolve(node)
    if not isinstance(key, str) or not _PUBLIC_KEY.fullmatch(key):
        raise ConfigError(f"key name {node!r} did not resolve to a compressed secp256k1 public key")
    return key


def coordinator_key(doc: dict[str, Any], resolve: Resolver | None = None) -> str:
    """The public key that must sign the workflow's register_workflow transaction."""
    return resolve_node(doc["federation_config"]["coordinator_node"], resolve)


def register_payload(
    doc: dict[str, Any],
    *,
    initial_model_hash: str,
    privacy_cap: int | None = None,
    resolve: Resolver | None = None,
) -> dict[str, Any]:
    """The register_workflow payload (plain map for ``cbor.encode``) of a workflow document.

    ``privacy_cap`` is the number of rounds the DP budget allows (from the accountant); without DP
    it defaults to ``rounds``. Sign the transaction with ``coordinator_key(doc, resolve)``.
    """
    problems = validate_workflow(doc)
    if problems:
        raise ConfigError("invalid workflow: " + "; ".join(problems))
    full = apply_defaults(doc)
    spec = _spec(full)
    if privacy_cap is None:
        if spec.privacy.dp.mode != "none":
            raise ConfigError("differential privacy is on: pass the privacy cap computed by the accountant")
        privacy_cap = spec.rounds
    if not isinstance(privacy_cap, int) or isinstance(privacy_cap, bool) or privacy_cap < 1:
        raise ConfigError(f"privacy cap must be an integer >= 1, got {privacy_cap!r}")
    fed = full["federation_config"]
    participants = [resolve_node(n, resolve) for n in fed["participant_nodes"]]
    compute = [resolve_node(n, resolve) for n in fed["compute_nodes"]]
    if len(set(participants)) != len(participants) or len(set(compute)) != len(compute):
        raise ConfigError("two node names resolve to the same public key")
    if not re.fullmatch(r"[0-9a-f]{128}", initial_model_hash or ""):
        raise ConfigError("initial_model_hash must be 128 lowercase hex digits (sha512)")
    return {
        "schema_version": SCHEMA_VERSION,
        "action": "register_workflow",
        "workflow_id": full["workflow_id"],
        "spec": spec.to_obj(),
        "participants": sorted(participants),
        "compute_nodes": sorted(compute),
        "privacy_cap": privacy_cap,
        "initial_model_hash": initial_model_hash,
    }
