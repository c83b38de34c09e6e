"""The SecAgg+ neighbour graph (Bell et al., CCS 2020): who shares secrets and masks with whom.

Pure and standard-library only (hashlib), so the transaction processors run this same file to check
reveals. The graph is a circulant (Harary-style) graph over a seeded permutation of the sorted
roster: each party is joined to the ⌈k/2⌉ nearest parties on either side of the ring, so the degree
is k rounded up to an even number (at most n − 1). The permutation's seed is sha256 of the round
context and the sorted roster, so every party computes the same graph and no one picks it.
``degree=None`` (or k ≥ n − 1) is the complete graph of the original protocol (Bonawitz et al.).
"""
from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping

LABEL = b"trustmesh-secagg/graph/v1\x00"

Graph = Mapping[str, frozenset[str]]


def round_context(workflow_id: str, schedule_id: str) -> str:
    """Binds every derived key, share envelope and the neighbour graph to one round of one workflow."""
    return f"trustmesh/{workflow_id}/{schedule_id}"


def neighbour_graph(participant_ids: Iterable[str], degree: int | None, *, context: str) -> dict[str, frozenset[str]]:
    """Each participant's neighbours (never itself); symmetric. ``degree`` k >= 2, or None = complete."""
    ids = sorted(set(participant_ids))
    n = len(ids)
    if degree is not None and degree < 2:
        raise ValueError(f"a neighbour graph needs degree >= 2 (or None for the complete graph), got {degree}")
    half = n if degree is None else -(-degree // 2)
    if 2 * half >= n - 1:
        everyone = frozenset(ids)
        return {pid: everyone - {pid} for pid in ids}
    seed = hashlib.sha256(LABEL + context.encode() + b"\x00" + "\x00".join(ids).encode()).digest()
    ring = sorted(ids, key=lambda pid: (hashlib.sha256(seed + pid.encode()).digest(), pid))
    return {pid: frozenset(ring[(position + step) % n] for step in range(-half, half + 1) if step)
            for position, pid in enumerate(ring)}


def graph_degree(graph: Graph) -> int:
    """The smallest number of neighbours any party has (the graph is regular unless it is tiny)."""
    return min((len(peers) for peers in graph.values()), default=0)


def recommended_degree(participants: int) -> int:
    """SecAgg+'s O(log n) choice used by default here: 2·⌈log2 n⌉, capped at n − 1 (complete below ~8)."""
    return max(2, min(participants - 1, 2 * (participants - 1).bit_length()))
