"""Transaction processors: ``trustmesh.tp.federation`` and ``trustmesh.tp.iot_data``."""
