"""`trustmesh run`: the embedded default on one machine, and what a run leaves behind."""
