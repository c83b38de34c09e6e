"""Secure aggregation by pairwise masks with Shamir-shared secrets (Bonawitz et al., CCS 2017), over
the complete graph or a sparse SecAgg+ neighbour graph (Bell et al., CCS 2020).

The aggregator learns only the sum of the survivors' quantized, pre-weighted, self-clipped deltas.
"""
from trustmesh.contracts.secagg_graph import neighbour_graph, recommended_degree
from trustmesh.privacy.secagg.messages import (
    PublicKeys,
    Reveal,
    decode_masked_input,
    encode_masked_input,
)
from trustmesh.privacy.secagg.participant import Participant
from trustmesh.privacy.secagg.ring import RingQuantizer
from trustmesh.privacy.secagg.server import Server, weighted_mean

__all__ = [
    "Participant",
    "PublicKeys",
    "Reveal",
    "RingQuantizer",
    "Server",
    "decode_masked_input",
    "encode_masked_input",
    "neighbour_graph",
    "recommended_degree",
    "weighted_mean",
]
