"""Redis ACL users per role (DESIGN §4): each role reaches only its keys and commands.

The rules are Redis 7 ACL strings; ``%R~`` grants read-only access to a key pattern. Commands run
inside a Lua script are checked against the calling user too, so the tps role lists them.
"""
from __future__ import annotations

import hashlib

__all__ = ["ADMIN_USER", "DEFAULT_USER_LINE", "ROLE_RULES", "ROLES", "acl_line"]

ADMIN_USER = "admin"

# What every client library needs to connect, to talk to a cluster, and nothing dangerous.
_CONNECT = (
    "-@all +ping +hello +auth +echo +select +command +client|setname +client|id "
    "+readonly +readwrite +cluster|slots +cluster|shards +cluster|nodes +cluster|info +cluster|myid "
    "+cluster|keyslot"
)

ROLE_RULES: dict[str, str] = {
    # iot-data TP: the idempotent Lua append (list, seen hash, state mirror); reads blobs only.
    "tps": (
        "~iot_data:* ~iot_data_seen:* ~federation_state:* %R~update:* %R~model:* "
        f"{_CONNECT} +eval +evalsha +script|load +script|exists +rpush +lrange +llen +lindex "
        "+hget +hset +hsetnx +hexists +hlen +hgetall +hmget +get +exists +strlen +expire +ttl"
    ),
    # Compute nodes: read submissions and blobs, store models, keep the mirror, read liveness.
    "compute": (
        "%R~iot_data:* %R~iot_data_seen:* %R~update:* ~model:* ~federation_state:* %R~heartbeat:* %R~next_open:* "
        f"{_CONNECT} +get +set +exists +expire +ttl +strlen +lrange +llen +lindex +hget +hset +hsetnx "
        "+hgetall +hmget +hlen +scan"
    ),
    # Participants: store their own update blobs, read models and the mirror, keep a heartbeat.
    "participant": (
        "~update:* %R~model:* %R~federation_state:* ~heartbeat:* "
        f"{_CONNECT} +get +set +exists +expire +ttl +strlen +hgetall +hget +hmget +scan"
    ),
    # The coordinator is a participant that also stores the initial model and hands compute nodes
    # its signed open_round of the next round (next_open:*).
    "coordinator": (
        "~update:* ~model:* ~federation_state:* ~heartbeat:* ~next_open:* "
        f"{_CONNECT} +get +set +exists +expire +ttl +strlen +hgetall +hget +hmget +hset +scan"
    ),
}
ROLES: tuple[str, ...] = tuple(ROLE_RULES)

DEFAULT_USER_LINE = "user default off resetchannels ~* &* +@all"
"""The default user is off, so no client can use it. Redis 7.0 still replays a Lua script's writes
from the AOF as this user and re-checks its permissions (redis/redis#14541): without every key and
command here, a restart silently drops what the iot-data TP's append script wrote."""


def acl_line(user: str, password: str, rules: str) -> str:
    """One aclfile line; the password is stored as its sha256, never in the clear."""
    digest = hashlib.sha256(password.encode()).hexdigest()
    return f"user {user} on #{digest} resetchannels {rules}"
