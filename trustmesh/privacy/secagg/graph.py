"""The SecAgg+ neighbour graph: the contracts' pure function (the TPs check reveals with the same code)."""
from trustmesh.contracts.secagg_graph import (
    LABEL,
    Graph,
    graph_degree,
    neighbour_graph,
    recommended_degree,
    round_context,
)

__all__ = ["LABEL", "Graph", "graph_degree", "neighbour_graph", "recommended_degree", "round_context"]
