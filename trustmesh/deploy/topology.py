"""One description of a deployment, shared by the compose and Kubernetes renderers.

Images are pinned here; every `trustmesh ...` command a container runs is built here, so the
renderers cannot invent flags the CLI does not have (tests/deploy parses each one).
"""
from __future__ import annotations

from dataclasses import dataclass

from trustmesh.dataplane.client import CLUSTER_SCHEME
from trustmesh.errors import ConfigError
from trustmesh.services.redis_acl import ADMIN_USER, DEFAULT_USER_LINE, ROLE_RULES

__all__ = [
    "COUCHDB_DATABASES", "CREDENTIALS", "IMAGES", "PORTS", "Topology", "aclfile_template",
    "redis_cluster_url", "redis_conf",
]

# Third-party images, pinned. Sawtooth's own published 1.2 images and PBFT engine 1.0 (its
# release for Sawtooth 1.2), Redis 7.2 (ACL key selectors), CouchDB 3.
IMAGES: dict[str, str] = {
    "validator": "hyperledger/sawtooth-validator:1.2",
    "pbft": "hyperledger/sawtooth-pbft-engine:1.0",
    "settings_tp": "hyperledger/sawtooth-settings-tp:1.2",
    "block_info_tp": "hyperledger/sawtooth-block-info-tp:1.2",
    "rest_api": "hyperledger/sawtooth-rest-api:1.2",
    "redis": "redis:7.2.5-bookworm",
    "couchdb": "couchdb:3.3.3",
    "curl": "curlimages/curl:8.8.0",
    "trustmesh": "trustmesh:0.1.0",
}

PORTS: dict[str, int] = {
    "component": 4004, "consensus": 5050, "network": 8800, "rest_api": 8008,
    "redis": 6379, "redis_bus": 16379, "couchdb": 5984, "epmd": 4369, "erlang_dist": 9100,
}

COUCHDB_DATABASES = ("fl_workflows", "fl_rounds", "fl_nodes", "fl_models")

# Every credential comes from the environment (docker/.env, or the Secret `trustmesh-credentials`).
# All are hex strings (`openssl rand -hex 24`), so they are safe inside URLs, JSON and sed.
CREDENTIALS: dict[str, str] = {
    "REDIS_ADMIN_PASSWORD": "Redis admin user: cluster creation, replication, health checks",
    **{f"REDIS_{role.upper()}_PASSWORD": f"Redis ACL user `{role}`" for role in ROLE_RULES},
    "COUCHDB_USER": "CouchDB admin user name",
    "COUCHDB_PASSWORD": "CouchDB admin password",
    "COUCHDB_SECRET": "CouchDB cookie-auth secret, the same on every node",
    "COUCHDB_ERLANG_COOKIE": "Erlang distribution cookie, the same on every CouchDB node",
}

WORKFLOW_PATH = "/workflow/workflow.json"
KEY_DIR = "/keys"
PUBLIC_KEY_DIR = "/public-keys"


@dataclass(frozen=True, kw_only=True)
class Topology:
    """How many of each role run, and whether the ledger is a PBFT network or the devnet."""

    participants: int = 3
    ledger: str = "pbft"  # "pbft": Sawtooth validators; "devnet": one embedded ledger (small setups)
    validators: int = 4
    compute_nodes: int = 2
    redis_masters: int = 3
    redis_replicas_per_master: int = 1
    couchdb_nodes: int = 3

    def __post_init__(self) -> None:
        if self.participants < 1:
            raise ConfigError("--participants must be at least 1")
        if self.ledger not in {"pbft", "devnet"}:
            raise ConfigError(f"unknown ledger {self.ledger!r}")
        if self.ledger == "pbft" and self.validators < 4:
            raise ConfigError("a PBFT network needs at least 4 validators to tolerate one fault")
        if self.ledger == "devnet" and self.validators != 1:
            raise ConfigError("the devnet ledger is a single node")
        if self.redis_masters < 3:
            raise ConfigError("a Redis Cluster needs at least 3 masters")
        if self.compute_nodes < 1 or self.couchdb_nodes < 1:
            raise ConfigError("at least one compute node and one CouchDB node are needed")

    @property
    def redis_nodes(self) -> int:
        return self.redis_masters * (1 + self.redis_replicas_per_master)

    # ---------------------------------------------------------------- commands (args after `trustmesh`)

    @staticmethod
    def devnet_args(*, data_dir: str) -> list[str]:
        return ["devnet", "--bind", f"tcp://0.0.0.0:{PORTS['component']}", "--data", data_dir]

    @staticmethod
    def federation_tp_args(*, validator: str) -> list[str]:
        return ["tp", "federation", "--url", validator]

    @staticmethod
    def iot_data_tp_args(*, validator: str, redis_url: str) -> list[str]:
        return ["tp", "iot-data", "--url", validator, "--redis", redis_url]

    @staticmethod
    def keygen_args(*, name: str, key_dir: str = KEY_DIR) -> list[str]:
        return ["keygen", name, "--dir", key_dir]

    @staticmethod
    def compute_args(*, key: str, urls: str, redis_url: str, couchdb_url: str, workflow_id: str) -> list[str]:
        # The history outbox defaults to a file beside the key, so the key's volume must persist.
        return ["compute", "--key", key, "--url", urls, "--redis", redis_url, "--couchdb", couchdb_url,
                "--workflow-id", workflow_id]

    @staticmethod
    def workflow_validate_args() -> list[str]:
        return ["workflow", "validate", WORKFLOW_PATH]

    @staticmethod
    def coordinator_args(*, key: str, urls: str, redis_url: str) -> list[str]:
        # The workflow names its nodes; --keys-dir holds their NAME.pub files.
        return ["iot", "coordinator", "--workflow", WORKFLOW_PATH, "--key", key, "--url", urls,
                "--redis", redis_url, "--keys-dir", PUBLIC_KEY_DIR]

    @staticmethod
    def participant_args(*, workflow_id: str, key: str, partition: str, urls: str,
                         redis_url: str) -> list[str]:
        return ["iot", "participant", "--workflow-id", workflow_id, "--key", key,
                "--partition", partition, "--url", urls, "--redis", redis_url]

    @staticmethod
    def verify_round_args(*, workflow_id: str, round_: str, urls: str, redis_url: str,
                          couchdb_url: str) -> list[str]:
        return ["verify-round", "--workflow-id", workflow_id, "--round", round_, "--url", urls,
                "--redis", redis_url, "--couchdb", couchdb_url]


def redis_cluster_url(*, role: str, password: str, host: str) -> str:
    """A role's Redis Cluster URL: the cluster client discovers every node from this one."""
    return f"{CLUSTER_SCHEME}{role}:{password}@{host}:{PORTS['redis']}/0"


def aclfile_template() -> str:
    """The Redis aclfile with `@<VAR>_SHA256@` placeholders that redis-start.sh fills at start.

    The rules per role are the ones `trustmesh.services.redis_acl` defines for the local servers.
    """
    # An aclfile takes no comments: every line is a user.
    lines = [
        DEFAULT_USER_LINE,
        f"user {ADMIN_USER} on #@REDIS_ADMIN_PASSWORD_SHA256@ resetchannels ~* &* +@all",
    ]
    for role, rules in ROLE_RULES.items():
        lines.append(f"user {role} on #@REDIS_{role.upper()}_PASSWORD_SHA256@ resetchannels {rules}")
    return "\n".join(lines) + "\n"


def redis_conf() -> str:
    """Static settings of every Redis Cluster node; redis-start.sh appends the per-node ones."""
    return "\n".join([
        "# Redis Cluster node (TrustMesh-FL data plane). AOF on; the ACL file is the only way in.",
        f"port {PORTS['redis']}",
        "bind * -::*",
        "protected-mode no",
        "cluster-enabled yes",
        "cluster-config-file nodes.conf",
        "cluster-node-timeout 5000",
        "cluster-preferred-endpoint-type hostname",
        "appendonly yes",
        "appendfsync everysec",
        'save ""',
        f"masteruser {ADMIN_USER}",
        "",
    ])
