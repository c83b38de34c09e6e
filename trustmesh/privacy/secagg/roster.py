"""What participants and the server must compute identically: share indices, pair contexts, masks."""
from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from trustmesh.contracts.secagg_graph import graph_degree, neighbour_graph
from trustmesh.privacy.errors import PrivacyConfigError, SecAggMessageInvalid
from trustmesh.privacy.secagg.crypto import PRG_KEY_BYTES, MaskPad, derive_key
from trustmesh.privacy.secagg.messages import PublicKeys


def share_indices(participant_ids: Iterable[str]) -> dict[str, int]:
    """Shamir index of each holder: 1..n in sorted id order (the on-chain index order)."""
    return {pid: index for index, pid in enumerate(sorted(participant_ids), start=1)}


def neighbourhood_indices(graph: Mapping[str, frozenset[str]], owner: str) -> dict[str, int]:
    """Shamir index of each holder of ``owner``'s shares: 1..d+1 in sorted id order over the owner and its
    neighbours. Every owner's shares then sit at the same points, so the server rebuilds most secrets
    with one set of Lagrange coefficients; over the complete graph these are the roster indices."""
    return share_indices(graph[owner] | {owner})


def check_roster(roster: Mapping[str, PublicKeys], threshold: int) -> None:
    """A roster is usable when ids match their keys, keys are distinct and 2 <= t <= n."""
    for pid, keys in roster.items():
        if keys.participant_id != pid:
            raise SecAggMessageInvalid(f"roster entry {pid!r} carries keys of {keys.participant_id!r}")
    if len({keys.mask_public for keys in roster.values()}) != len(roster) or \
            len({keys.enc_public for keys in roster.values()}) != len(roster):
        raise SecAggMessageInvalid("two roster entries share a public key")
    if not 2 <= threshold <= len(roster):
        raise PrivacyConfigError(f"threshold must be in [2, {len(roster)}] for {len(roster)} participants, "
                                 f"got {threshold}")


def roster_graph(roster: Mapping[str, PublicKeys], threshold: int, neighbours: int | None, *,
                 round_id: str) -> dict[str, frozenset[str]]:
    """The round's neighbour graph over the roster; t counts the owner's own share, so t <= degree + 1."""
    try:
        graph = neighbour_graph(roster, neighbours, context=round_id)
    except ValueError as exc:
        raise PrivacyConfigError(str(exc)) from exc
    degree = graph_degree(graph)
    if threshold > degree + 1:
        raise PrivacyConfigError(f"threshold {threshold} exceeds a neighbourhood of {degree + 1} (degree {degree} "
                                 "plus the owner): no secret could be rebuilt")
    return graph


def pair_context(round_id: str, a: str, b: str) -> bytes:
    """Binds a derived key to the round and to the unordered pair {a, b}."""
    low, high = sorted((a, b))
    return f"{round_id}\x00{low}\x00{high}".encode()


def share_context(round_id: str, sender: str, recipient: str) -> bytes:
    """Binds a share envelope to the round and to its direction (sender -> recipient)."""
    return f"{round_id}\x00{sender}\x00{recipient}".encode()


def add_pairwise_mask(total: np.ndarray, pad: MaskPad, private: X25519PrivateKey, peer_public: bytes, *,
                      round_id: str, me: str, peer: str) -> None:
    """Add, in place, the mask ``me`` shares with ``peer``, signed as ``me`` adds it: + if me < peer, else −."""
    seed = derive_key(private, peer_public, purpose="mask", context=pair_context(round_id, me, peer),
                      length=PRG_KEY_BYTES)
    if me < peer:
        pad.add(total, seed)
    else:
        pad.subtract(total, seed)
