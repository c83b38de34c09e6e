"""Local servers and nodes as child processes, started and stopped by PID (DESIGN §6)."""
from trustmesh.services.errors import ServiceError
from trustmesh.services.pouch import PouchServer
from trustmesh.services.process import Child, ProcessGroup, spawn
from trustmesh.services.redis_acl import ROLES
from trustmesh.services.redis_server import RedisCluster, RedisServer

__all__ = ["ROLES", "Child", "PouchServer", "ProcessGroup", "RedisCluster", "RedisServer", "ServiceError",
           "spawn"]
