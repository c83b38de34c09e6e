"""Turn a workflow file plus `trustmesh run` options into the concrete workflow of one run.

Node names become the public keys generated for this run, so the registered workflow names its
members by key; options override the file's rounds, model, partition and local epochs.
"""
from __future__ import annotations

import copy
import re
from collections.abc import Callable
from typing import Any

from trustmesh.errors import ConfigError

COORDINATOR = "coordinator"


def participant_name(i: int) -> str:
    return f"participant-{i}"


def compute_name(i: int) -> str:
    return f"compute-{i}"


def parse_partition(value: str) -> dict[str, Any]:
    """``iid``, ``dirichlet:0.5`` or ``shards:2`` → the workflow's data fields."""
    match = re.fullmatch(r"(iid|dirichlet|shards)(?::([0-9.]+))?", value.strip())
    if match is None:
        raise ConfigError(f"--partition {value!r}: use iid, dirichlet:ALPHA or shards:N")
    scheme, arg = match.group(1), match.group(2)
    out: dict[str, Any] = {"partition": scheme}
    if scheme == "dirichlet":
        out["alpha"] = float(arg) if arg else 0.5
    if scheme == "shards":
        out["shards_per_node"] = int(float(arg)) if arg else 2
    return out


def plan_workflow(
    doc: dict[str, Any],
    *,
    participants: int,
    compute_nodes: int,
    key_of: Callable[[str], str],
    rounds: int | None = None,
    model: str | None = None,
    partition: str | None = None,
    local_epochs: int | None = None,
    round_timeout: int | None = None,
    workflow_id: str | None = None,
) -> dict[str, Any]:
    """A copy of ``doc`` for this run, with every node named by its public key."""
    if participants < 1:
        raise ConfigError("--participants must be at least 1")
    if compute_nodes < 1:
        raise ConfigError("at least one compute node is needed")
    out = copy.deepcopy(doc)
    fed = out.setdefault("federation_config", {})
    fed["coordinator_node"] = key_of(COORDINATOR)
    fed["participant_nodes"] = [key_of(participant_name(i)) for i in range(participants)]
    fed["compute_nodes"] = [key_of(compute_name(i)) for i in range(compute_nodes)]
    out["expected_nodes"] = participants
    fed["min_nodes_required"] = min(int(fed.get("min_nodes_required", participants)), participants)
    if compute_nodes == 1:
        fed["attestations_required"] = 0
    else:
        fed["attestations_required"] = min(int(fed.get("attestations_required", 1)), compute_nodes - 1)
    if round_timeout is not None:
        fed["round_timeout"] = round_timeout
    data = out.setdefault("data", {})
    data["num_partitions"] = participants
    if partition is not None:
        data.update({"alpha": None, "shards_per_node": None})
        data.update(parse_partition(partition))
    if rounds is not None:
        out["rounds"] = rounds
    if model is not None:
        out.setdefault("model", {})["name"] = model
    if local_epochs is not None:
        out.setdefault("local_training", {})["local_epochs"] = local_epochs
    if workflow_id is not None:
        out["workflow_id"] = workflow_id
    return out


DP_DEFAULTS = {"clip": 1.0, "noise_multiplier": 1.0, "delta": 1e-5}
"""Used when ``--dp`` switches DP on and neither the file nor the command line gives a value."""


def apply_privacy_options(doc: dict[str, Any], *, secure_aggregation: int | None = None,
                          neighbours: int | None = None, dp: str | None = None,
                          epsilon: float | None = None, clip: float | None = None,
                          noise_multiplier: float | None = None) -> dict[str, Any]:
    """A copy of ``doc`` with the command line's privacy choices in its ``privacy`` section.

    ``secure_aggregation``: the Shamir threshold (0 switches it off); ``neighbours``: the SecAgg+
    neighbour-graph degree (masks and shares only between neighbours); ``dp``: none, client or sample,
    with the budget ``epsilon`` and optionally the clip norm and noise multiplier.
    """
    out = copy.deepcopy(doc)
    privacy = out.setdefault("privacy", {})
    if secure_aggregation is not None:
        if secure_aggregation < 0:
            raise ConfigError("--secure-aggregation takes a threshold >= 2, or 0 to switch it off")
        secagg = privacy.setdefault("secure_aggregation", {})
        secagg.update({"enabled": secure_aggregation > 0, "threshold": secure_aggregation or None})
    if neighbours is not None:
        secagg = privacy.setdefault("secure_aggregation", {})
        if not secagg.get("enabled"):
            raise ConfigError("--neighbours needs secure aggregation: --secure-aggregation T")
        secagg["neighbours"] = neighbours
    given = {"epsilon": epsilon, "clip": clip, "noise_multiplier": noise_multiplier}
    if dp is None and any(v is not None for v in given.values()):
        raise ConfigError("--epsilon, --clip and --noise-multiplier need --dp client or --dp sample")
    if dp is not None:
        section = privacy.setdefault("dp", {})
        section["mode"] = dp
        if dp != "none":
            for name, default in DP_DEFAULTS.items():
                if section.get(name) is None:
                    section[name] = default
            section.update({name: value for name, value in given.items() if value is not None})
            if section.get("epsilon") is None:
                raise ConfigError(f"--dp {dp} needs a privacy budget: --epsilon E")
    return out
