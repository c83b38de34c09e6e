"""A workflow's initial model: built from the model name with seed 0, the same bytes on every node.

The coordinator records its hash at registration; any node that finds the blob missing from Redis
can rebuild it and check it against that on-chain hash instead of trusting a copy.
"""
from __future__ import annotations

import functools

from trustmesh.fl.codecs import encode_params, model_hash
from trustmesh.fl.models import build_model
from trustmesh.fl.params import get_params

INITIAL_SEED = 0


@functools.cache
def initial_model(name: str) -> tuple[bytes, str]:
    """(model envelope bytes, its sha512 hex) of model ``name`` initialised with seed 0."""
    blob = encode_params(get_params(build_model(name, seed=INITIAL_SEED)))
    return blob, model_hash(blob)
