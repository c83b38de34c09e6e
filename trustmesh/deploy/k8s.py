"""Render plain Kubernetes manifests for `dev` (devnet ledger, small) or `prod` (Sawtooth PBFT).

Both share one shape: ledger StatefulSet with the TPs as sidecars, Redis Cluster and CouchDB as
StatefulSets, compute nodes as a scalable Deployment, participants as a StatefulSet whose pod
index is the partition, a Job that makes keys into Secrets, and NetworkPolicies per role.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, replace
from typing import Any

from trustmesh.deploy import yamlio
from trustmesh.deploy.scripts import SCRIPTS
from trustmesh.deploy.topology import (
    COUCHDB_DATABASES,
    IMAGES,
    KEY_DIR,
    PORTS,
    PUBLIC_KEY_DIR,
    Topology,
    aclfile_template,
    redis_cluster_url,
    redis_conf,
)
from trustmesh.errors import ConfigError

__all__ = ["ENVS", "PLACEHOLDER_WORKFLOW_ID", "render_k8s"]

CREDENTIALS_SECRET = "trustmesh-credentials"
NODE_UID = 10001
REDIS_UID = 999
CURL_UID = 100
Doc = dict[str, Any]


@dataclass(frozen=True, kw_only=True)
class Env:
    """A deployment profile: namespace, topology shape, sizes."""

    name: str
    namespace: str
    ledger: str
    validators: int
    redis_replicas_per_master: int
    couchdb_nodes: int
    compute_nodes: int
    disk: dict[str, str]
    sizes: dict[str, tuple[str, str, str, str]]  # role -> (cpu req, mem req, cpu limit, mem limit)


_SMALL = {
    "ledger": ("100m", "256Mi", "1", "1Gi"), "sidecar": ("25m", "64Mi", "250m", "256Mi"),
    "tp": ("50m", "128Mi", "500m", "512Mi"), "redis": ("50m", "128Mi", "500m", "512Mi"),
    "couchdb": ("100m", "256Mi", "1", "1Gi"), "compute": ("250m", "512Mi", "2", "2Gi"),
    "participant": ("250m", "512Mi", "1", "2Gi"), "coordinator": ("50m", "256Mi", "500m", "1Gi"),
    "job": ("25m", "64Mi", "250m", "256Mi"),
}
_LARGE = {
    "ledger": ("500m", "1Gi", "2", "4Gi"), "sidecar": ("50m", "128Mi", "500m", "512Mi"),
    "tp": ("250m", "256Mi", "1", "1Gi"), "redis": ("250m", "512Mi", "1", "2Gi"),
    "couchdb": ("500m", "1Gi", "2", "4Gi"), "compute": ("1", "2Gi", "4", "8Gi"),
    "participant": ("500m", "1Gi", "2", "4Gi"), "coordinator": ("100m", "512Mi", "1", "1Gi"),
    "job": ("50m", "64Mi", "500m", "256Mi"),
}
ENVS: dict[str, Env] = {
    "dev": Env(name="dev", namespace="trustmesh-dev", ledger="devnet", validators=1,
               redis_replicas_per_master=0, couchdb_nodes=1, compute_nodes=2,
               disk={"ledger": "1Gi", "redis": "1Gi", "couchdb": "1Gi", "keys": "16Mi"}, sizes=_SMALL),
    "prod": Env(name="prod", namespace="trustmesh", ledger="pbft", validators=4,
                redis_replicas_per_master=1, couchdb_nodes=3, compute_nodes=2,
                disk={"ledger": "20Gi", "redis": "10Gi", "couchdb": "20Gi", "keys": "16Mi"}, sizes=_LARGE),
}

PLACEHOLDER_WORKFLOW_ID = "replace-me"
_PLACEHOLDER_WORKFLOW = {
    "_replace_me": "put the workflow JSON here (trustmesh deploy k8s --workflow FILE renders it in), "
                   "then kubectl apply this file; `trustmesh workflow validate` refuses this placeholder",
}


class _Render:
    """Builds the documents for one profile and participant count."""

    def __init__(self, *, env: Env, participants: int, workflow_json: str | None,
                 workflow_id: str) -> None:
        self.env = env
        self.ns = env.namespace
        self.topology = Topology(participants=participants, ledger=env.ledger,
                                 validators=env.validators, compute_nodes=env.compute_nodes,
                                 redis_replicas_per_master=env.redis_replicas_per_master,
                                 couchdb_nodes=env.couchdb_nodes)
        self.workflow_json = workflow_json
        self.workflow_id = workflow_id

    # ------------------------------------------------------------------ small helpers

    def meta(self, name: str, component: str, **extra: Any) -> Doc:
        return {"name": name, "namespace": self.ns, "labels": self.labels(component), **extra}

    @staticmethod
    def labels(component: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": "trustmesh", "app.kubernetes.io/part-of": "trustmesh-fl",
                "app.kubernetes.io/component": component}

    @staticmethod
    def selector(component: str) -> dict[str, str]:
        return {"app.kubernetes.io/name": "trustmesh", "app.kubernetes.io/component": component}

    def resources(self, role: str) -> Doc:
        cpu, mem, cpu_max, mem_max = self.env.sizes[role]
        return {"requests": {"cpu": cpu, "memory": mem}, "limits": {"cpu": cpu_max, "memory": mem_max}}

    def host(self, service: str, ordinal: int) -> str:
        return f"{service}-{ordinal}.{service}.{self.ns}.svc.cluster.local"

    def validator_urls(self) -> str:
        return ",".join(f"tcp://{self.host('validator', i)}:{PORTS['component']}"
                        for i in range(self.topology.validators))

    def validator_targets(self) -> str:
        return ",".join(f"{self.host('validator', i)}:{PORTS['component']}"
                        for i in range(self.topology.validators))

    def redis_url(self, role: str) -> str:
        return redis_cluster_url(role=role, password=f"$(REDIS_{role.upper()}_PASSWORD)",
                                 host=self.host("redis", 0))

    def couchdb_url(self) -> str:
        return (f"http://$(COUCHDB_USER):$(COUCHDB_PASSWORD)@couchdb-http.{self.ns}.svc.cluster.local:"
                f"{PORTS['couchdb']}")

    @staticmethod
    def secret_env(*names: str) -> list[Doc]:
        return [{"name": n, "valueFrom": {"secretKeyRef": {"name": CREDENTIALS_SECRET, "key": n}}}
                for n in names]

    @staticmethod
    def field_env(name: str, path: str) -> Doc:
        return {"name": name, "valueFrom": {"fieldRef": {"fieldPath": path}}}

    @staticmethod
    def node_security() -> Doc:
        return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                "runAsNonRoot": True, "runAsUser": NODE_UID, "runAsGroup": NODE_UID,
                "capabilities": {"drop": ["ALL"]}}

    @staticmethod
    def third_party_security() -> Doc:
        return {"allowPrivilegeEscalation": False}

    @staticmethod
    def health_probes(targets: str) -> dict[str, Doc]:
        probe = {"exec": {"command": ["python", "-m", "trustmesh.deploy.health"]},
                 "timeoutSeconds": 5}
        return {
            "readinessProbe": {**probe, "periodSeconds": 10, "failureThreshold": 3},
            "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 30,
                              "failureThreshold": 5},
        }

    def node_container(self, name: str, args: list[str], *, role: str, health: str,
                       env: list[Doc] | None = None, mounts: list[Doc] | None = None,
                       keygen: str | None = None) -> Doc:
        """A container of the project image running `trustmesh ARGS` (through trustmesh-node
        when it makes its own key on first start)."""
        container: Doc = {"name": name, "image": IMAGES["trustmesh"], "imagePullPolicy": "IfNotPresent"}
        environment = [{"name": "TRUSTMESH_HEALTH_TCP", "value": health}, *(env or [])]
        if keygen:
            container["command"] = ["trustmesh-node"]
            environment[:0] = [{"name": "TRUSTMESH_KEYGEN", "value": keygen},
                               {"name": "TRUSTMESH_KEY_DIR", "value": KEY_DIR}]
        container["args"] = args
        container["env"] = environment
        container["resources"] = self.resources(role)
        container.update(self.health_probes(health))
        container["securityContext"] = self.node_security()
        container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}, *(mounts or [])]
        return container

    @staticmethod
    def node_pod_security() -> Doc:
        return {"fsGroup": NODE_UID, "seccompProfile": {"type": "RuntimeDefault"}}

    @staticmethod
    def tmp_volume() -> Doc:
        return {"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}}

    def pvc(self, name: str, size: str) -> Doc:
        return {"metadata": {"name": name}, "spec": {"accessModes": ["ReadWriteOnce"],
                                                     "resources": {"requests": {"storage": size}}}}

    def headless(self, name: str, component: str, ports: dict[str, int]) -> Doc:
        return {
            "apiVersion": "v1", "kind": "Service", "metadata": self.meta(name, component),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True,
                     "selector": self.selector(component),
                     "ports": [{"name": n, "port": p, "targetPort": p} for n, p in ports.items()]},
        }

    def script_map(self, name: str, component: str, files: dict[str, str]) -> Doc:
        return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": self.meta(name, component),
                "data": files}

    # ------------------------------------------------------------------ namespace, workflow, keys

    def namespace(self) -> list[Doc]:
        return [{
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": self.ns, "labels": {
                "app.kubernetes.io/part-of": "trustmesh-fl",
                # Sawtooth's and CouchDB's images start as root; everything of ours runs restricted.
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
            }},
        }]

    def workflow(self) -> list[Doc]:
        text = self.workflow_json or json.dumps(_PLACEHOLDER_WORKFLOW, indent=2) + "\n"
        return [{"apiVersion": "v1", "kind": "ConfigMap",
                 "metadata": self.meta("trustmesh-workflow", "coordinator"),
                 "data": {"workflow.json": text, "workflow_id": self.workflow_id}}]

    def node_names(self, role: str) -> list[str]:
        count = {"compute": self.topology.compute_nodes, "participant": self.topology.participants,
                 "validator": self.topology.validators if self.topology.ledger == "pbft" else 0}[role]
        return [f"{role}-{i}" for i in range(count)]

    def scripts(self) -> Doc:
        return self.script_map("trustmesh-scripts", "keygen", {
            "make-keys.sh": SCRIPTS["make-keys.sh"], "install-key.sh": SCRIPTS["install-key.sh"]})

    def keys(self) -> list[Doc]:
        """A Job that makes every named node's key before the network starts, into one Secret per
        role: the workflow names its nodes, so their public keys must exist before registration."""
        groups = {"trustmesh-coordinator-key": ["coordinator"],
                  "trustmesh-compute-keys": self.node_names("compute"),
                  "trustmesh-participant-keys": self.node_names("participant"),
                  "trustmesh-validator-keys": self.node_names("validator")}
        groups = {secret: names for secret, names in groups.items() if names}
        account = "trustmesh-keygen"
        mounts = [{"name": "keys", "mountPath": KEY_DIR}]
        make = {
            "name": "make-keys", "image": IMAGES["trustmesh"], "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "/scripts/make-keys.sh"],
            "env": [{"name": "KEY_DIR", "value": KEY_DIR},
                    {"name": "KEY_NAMES", "value": " ".join(n for names in groups.values() for n in names)}],
            "resources": self.resources("job"), "securityContext": self.node_security(),
            "volumeMounts": [*mounts, {"name": "scripts", "mountPath": "/scripts", "readOnly": True}],
        }
        publish_args = ["deploy", "secrets", "--dir", KEY_DIR, "--namespace", "$(POD_NAMESPACE)"]
        for secret, names in groups.items():
            publish_args += ["--secret", f"{secret}={','.join(names)}"]
        return [
            self.scripts(),
            {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": self.meta(account, "keygen")},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": self.meta(account, "keygen"),
             "rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["create"]},
                       {"apiGroups": [""], "resources": ["secrets"], "resourceNames": sorted(groups),
                        "verbs": ["get", "patch"]}]},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": self.meta(account, "keygen"),
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
             "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": self.ns}]},
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": self.meta("trustmesh-keygen", "keygen"),
             "spec": {"backoffLimit": 4, "template": {
                 "metadata": {"labels": self.labels("keygen")},
                 "spec": {
                     "serviceAccountName": account, "restartPolicy": "OnFailure",
                     "securityContext": self.node_pod_security(),
                     "initContainers": [make],
                     "containers": [{
                         "name": "publish", "image": IMAGES["trustmesh"],
                         "imagePullPolicy": "IfNotPresent", "args": publish_args,
                         "env": [self.field_env("POD_NAMESPACE", "metadata.namespace")],
                         "resources": self.resources("job"),
                         "securityContext": self.node_security(), "volumeMounts": mounts,
                     }],
                     "volumes": [{"name": "keys", "emptyDir": {"medium": "Memory", "sizeLimit": "4Mi"}},
                                 {"name": "scripts", "configMap": {"name": "trustmesh-scripts"}}],
                 }}}},
        ]

    # ------------------------------------------------------------------ ledger

    def tp_sidecars(self) -> list[Doc]:
        local = f"tcp://127.0.0.1:{PORTS['component']}"
        health = f"127.0.0.1:{PORTS['component']}"
        return [
            self.node_container("federation-tp", Topology.federation_tp_args(validator=local),
                                role="tp", health=health),
            self.node_container("iot-data-tp",
                                Topology.iot_data_tp_args(validator=local, redis_url=self.redis_url("tps")),
                                role="tp", health=health, env=self.secret_env("REDIS_TPS_PASSWORD")),
        ]

    def sawtooth_sidecar(self, name: str, image: str, command: list[str], *, port: int) -> Doc:
        """A Sawtooth component beside the validator; healthy while the validator port it uses answers
        (the process itself exits, and restarts, when it loses the validator)."""
        probe = {"exec": {"command": ["bash", "-c", f"exec 3<>/dev/tcp/127.0.0.1/{port}"]},
                 "timeoutSeconds": 3}
        return {"name": name, "image": image, "imagePullPolicy": "IfNotPresent", "command": command,
                "resources": self.resources("sidecar"),
                "readinessProbe": {**probe, "periodSeconds": 10},
                "livenessProbe": {**probe, "initialDelaySeconds": 30, "periodSeconds": 30},
                "securityContext": self.third_party_security()}

    def ledger(self) -> list[Doc]:
        t = self.topology
        local = f"tcp://127.0.0.1:{PORTS['component']}"
        tcp = {"tcpSocket": {"port": PORTS["component"]}}
        probes = {"readinessProbe": {**tcp, "periodSeconds": 10},
                  "livenessProbe": {**tcp, "initialDelaySeconds": 30, "periodSeconds": 30}}
        volumes: list[Doc] = [self.tmp_volume()]
        if t.ledger == "devnet":
            main = self.node_container("devnet", Topology.devnet_args(data_dir="/data"), role="ledger",
                                       health=f"127.0.0.1:{PORTS['component']}",
                                       mounts=[{"name": "data", "mountPath": "/data"}])
            main["ports"] = [{"name": "component", "containerPort": PORTS["component"]}]
            main.update(probes)
            containers = [main, *self.tp_sidecars()]
            security = self.node_pod_security()
            ports = {"component": PORTS["component"]}
            docs: list[Doc] = []
        else:
            main = {
                "name": "validator", "image": IMAGES["validator"], "imagePullPolicy": "IfNotPresent",
                "command": ["bash", "/scripts/validator.sh"],
                "env": [
                    {"name": "SAWTOOTH_HOME", "value": "/sawtooth"},
                    {"name": "VALIDATORS", "value": str(t.validators)},
                    {"name": "VALIDATOR_DOMAIN", "value": f"validator.{self.ns}.svc.cluster.local"},
                    {"name": "VALIDATOR_KEYS", "value": "/validator-keys"},
                ],
                "ports": [{"name": "component", "containerPort": PORTS["component"]},
                          {"name": "consensus", "containerPort": PORTS["consensus"]},
                          {"name": "network", "containerPort": PORTS["network"]}],
                "resources": self.resources("ledger"),
                **probes,
                "securityContext": self.third_party_security(),
                "volumeMounts": [{"name": "data", "mountPath": "/sawtooth"},
                                 {"name": "scripts", "mountPath": "/scripts", "readOnly": True},
                                 {"name": "validator-keys", "mountPath": "/validator-keys", "readOnly": True}],
            }
            rest = self.sawtooth_sidecar("rest-api", IMAGES["rest_api"],
                                         ["sawtooth-rest-api", "-v", "-C", local, "--bind",
                                          f"0.0.0.0:{PORTS['rest_api']}"], port=PORTS["rest_api"])
            rest["ports"] = [{"name": "rest-api", "containerPort": PORTS["rest_api"]}]
            containers = [
                main,
                self.sawtooth_sidecar("pbft-engine", IMAGES["pbft"],
                                      ["pbft-engine", "-v", "--connect", f"tcp://127.0.0.1:{PORTS['consensus']}"],
                                      port=PORTS["consensus"]),
                self.sawtooth_sidecar("settings-tp", IMAGES["settings_tp"], ["settings-tp", "-v", "-C", local],
                                      port=PORTS["component"]),
                self.sawtooth_sidecar("block-info-tp", IMAGES["block_info_tp"],
                                      ["block-info-tp", "-v", "-C", local], port=PORTS["component"]),
                rest,
                *self.tp_sidecars(),
            ]
            volumes += [
                {"name": "scripts", "configMap": {"name": "validator-scripts"}},
                {"name": "validator-keys", "secret": {"secretName": "trustmesh-validator-keys",
                                                      "defaultMode": 0o400}},
            ]
            security = {"seccompProfile": {"type": "RuntimeDefault"}}
            ports = {"component": PORTS["component"], "network": PORTS["network"],
                     "rest-api": PORTS["rest_api"]}
            docs = [self.script_map("validator-scripts", "ledger",
                                    {"validator.sh": SCRIPTS["validator.sh"],
                                     "genesis.sh": SCRIPTS["genesis.sh"]})]
        statefulset = {
            "apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": self.meta("validator", "ledger"),
            "spec": {
                "serviceName": "validator", "replicas": t.validators,
                "podManagementPolicy": "Parallel",
                "selector": {"matchLabels": self.selector("ledger")},
                "template": {"metadata": {"labels": self.labels("ledger")}, "spec": {
                    "automountServiceAccountToken": False, "securityContext": security,
                    "terminationGracePeriodSeconds": 30,
                    "containers": containers, "volumes": volumes}},
                "volumeClaimTemplates": [self.pvc("data", self.env.disk["ledger"])],
            },
        }
        return [*docs, self.headless("validator", "ledger", ports), statefulset]

    # ------------------------------------------------------------------ Redis Cluster

    def redis(self) -> list[Doc]:
        t = self.topology
        passwords = ["REDIS_ADMIN_PASSWORD"] + [f"REDIS_{r.upper()}_PASSWORD"
                                                for r in ("tps", "compute", "participant", "coordinator")]
        ping = {"exec": {"command": ["sh", "-c", 'REDISCLI_AUTH="$REDIS_ADMIN_PASSWORD" '
                                                 "redis-cli --user admin ping | grep -q PONG"]},
                "timeoutSeconds": 3}
        security = {"runAsNonRoot": True, "runAsUser": REDIS_UID, "runAsGroup": REDIS_UID,
                    "fsGroup": REDIS_UID, "seccompProfile": {"type": "RuntimeDefault"}}
        container_security = {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                              "capabilities": {"drop": ["ALL"]}}
        node = {
            "name": "redis", "image": IMAGES["redis"], "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "/conf/redis-start.sh"],
            "env": [self.field_env("POD_NAME", "metadata.name"),
                    {"name": "REDIS_ANNOUNCE_HOSTNAME", "value": f"$(POD_NAME).redis.{self.ns}.svc.cluster.local"},
                    *self.secret_env(*passwords)],
            "ports": [{"name": "client", "containerPort": PORTS["redis"]},
                      {"name": "bus", "containerPort": PORTS["redis_bus"]}],
            "resources": self.resources("redis"),
            "readinessProbe": {**ping, "periodSeconds": 5},
            "livenessProbe": {**ping, "initialDelaySeconds": 15, "periodSeconds": 20},
            "securityContext": container_security,
            "volumeMounts": [{"name": "data", "mountPath": "/data"},
                             {"name": "conf", "mountPath": "/conf", "readOnly": True}],
        }
        nodes = " ".join(f"redis-{i}.redis.{self.ns}.svc.cluster.local" for i in range(t.redis_nodes))
        init_job = {
            "apiVersion": "batch/v1", "kind": "Job", "metadata": self.meta("redis-cluster-init", "redis-setup"),
            "spec": {"backoffLimit": 10, "template": {
                "metadata": {"labels": self.labels("redis-setup")},
                "spec": {
                    "restartPolicy": "OnFailure", "automountServiceAccountToken": False,
                    "securityContext": security,
                    "containers": [{
                        "name": "cluster-init", "image": IMAGES["redis"], "imagePullPolicy": "IfNotPresent",
                        "command": ["sh", "/conf/redis-cluster-init.sh"],
                        "env": [{"name": "REDIS_NODES", "value": nodes},
                                {"name": "REDIS_REPLICAS", "value": str(t.redis_replicas_per_master)},
                                *self.secret_env("REDIS_ADMIN_PASSWORD")],
                        "resources": self.resources("job"), "securityContext": container_security,
                        "volumeMounts": [{"name": "conf", "mountPath": "/conf", "readOnly": True}],
                    }],
                    "volumes": [{"name": "conf", "configMap": {"name": "redis-config"}}],
                }}},
        }
        return [
            self.script_map("redis-config", "redis", {
                "redis.conf": redis_conf(), "users.acl": aclfile_template(),
                "redis-start.sh": SCRIPTS["redis-start.sh"],
                "redis-cluster-init.sh": SCRIPTS["redis-cluster-init.sh"]}),
            self.headless("redis", "redis", {"client": PORTS["redis"], "bus": PORTS["redis_bus"]}),
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": self.meta("redis", "redis"),
             "spec": {
                 "serviceName": "redis", "replicas": t.redis_nodes, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": self.selector("redis")},
                 "template": {"metadata": {"labels": self.labels("redis")}, "spec": {
                     "automountServiceAccountToken": False, "securityContext": security,
                     "containers": [node],
                     "volumes": [{"name": "conf", "configMap": {"name": "redis-config"}}]}},
                 "volumeClaimTemplates": [self.pvc("data", self.env.disk["redis"])],
             }},
            init_job,
        ]

    # ------------------------------------------------------------------ CouchDB

    def couchdb(self) -> list[Doc]:
        t = self.topology
        creds = self.secret_env("COUCHDB_USER", "COUCHDB_PASSWORD", "COUCHDB_SECRET", "COUCHDB_ERLANG_COOKIE")
        up = {"httpGet": {"path": "/_up", "port": PORTS["couchdb"]}, "timeoutSeconds": 3}
        node = {
            "name": "couchdb", "image": IMAGES["couchdb"], "imagePullPolicy": "IfNotPresent",
            "env": [self.field_env("POD_NAME", "metadata.name"),
                    {"name": "NODENAME", "value": f"$(POD_NAME).couchdb.{self.ns}.svc.cluster.local"},
                    {"name": "ERL_FLAGS", "value": f"-kernel inet_dist_listen_min {PORTS['erlang_dist']} "
                                                   f"-kernel inet_dist_listen_max {PORTS['erlang_dist']}"},
                    *creds],
            "ports": [{"name": "http", "containerPort": PORTS["couchdb"]},
                      {"name": "epmd", "containerPort": PORTS["epmd"]},
                      {"name": "erlang", "containerPort": PORTS["erlang_dist"]}],
            "resources": self.resources("couchdb"),
            "readinessProbe": {**up, "periodSeconds": 10},
            "livenessProbe": {**up, "initialDelaySeconds": 30, "periodSeconds": 30},
            "securityContext": self.third_party_security(),
            "volumeMounts": [{"name": "data", "mountPath": "/opt/couchdb/data"}],
        }
        hosts = " ".join(self.host("couchdb", i) for i in range(t.couchdb_nodes))
        curl_security = {"runAsNonRoot": True, "runAsUser": CURL_UID, "runAsGroup": CURL_UID + 1,
                         "seccompProfile": {"type": "RuntimeDefault"}}
        return [
            self.script_map("couchdb-setup", "couchdb-setup", {"couchdb-setup.sh": SCRIPTS["couchdb-setup.sh"]}),
            self.headless("couchdb", "couchdb", {"http": PORTS["couchdb"], "epmd": PORTS["epmd"],
                                                 "erlang": PORTS["erlang_dist"]}),
            {"apiVersion": "v1", "kind": "Service", "metadata": self.meta("couchdb-http", "couchdb"),
             "spec": {"selector": self.selector("couchdb"),
                      "ports": [{"name": "http", "port": PORTS["couchdb"], "targetPort": PORTS["couchdb"]}]}},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": self.meta("couchdb", "couchdb"),
             "spec": {
                 "serviceName": "couchdb", "replicas": t.couchdb_nodes, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": self.selector("couchdb")},
                 "template": {"metadata": {"labels": self.labels("couchdb")}, "spec": {
                     "automountServiceAccountToken": False,
                     "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
                     "containers": [node]}},
                 "volumeClaimTemplates": [self.pvc("data", self.env.disk["couchdb"])],
             }},
            {"apiVersion": "batch/v1", "kind": "Job", "metadata": self.meta("couchdb-setup", "couchdb-setup"),
             "spec": {"backoffLimit": 10, "template": {
                 "metadata": {"labels": self.labels("couchdb-setup")},
                 "spec": {
                     "restartPolicy": "OnFailure", "automountServiceAccountToken": False,
                     "securityContext": curl_security,
                     "containers": [{
                         "name": "setup", "image": IMAGES["curl"], "imagePullPolicy": "IfNotPresent",
                         "command": ["sh", "/scripts/couchdb-setup.sh"],
                         "env": [{"name": "COUCHDB_NODES", "value": hosts},
                                 {"name": "COUCHDB_DATABASES", "value": " ".join(COUCHDB_DATABASES)},
                                 *self.secret_env("COUCHDB_USER", "COUCHDB_PASSWORD")],
                         "resources": self.resources("job"),
                         "securityContext": {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                             "capabilities": {"drop": ["ALL"]}},
                         "volumeMounts": [{"name": "scripts", "mountPath": "/scripts", "readOnly": True}],
                     }],
                     "volumes": [{"name": "scripts", "configMap": {"name": "couchdb-setup"}}],
                 }}}},
        ]

    # ------------------------------------------------------------------ FL nodes

    def install_key(self, secret: str) -> Doc:
        """Init container: copy the pod's own key pair out of its role's Secret into its volume."""
        return {
            "name": "install-key", "image": IMAGES["trustmesh"], "imagePullPolicy": "IfNotPresent",
            "command": ["sh", "/scripts/install-key.sh"],
            "env": [self.field_env("NODE_NAME", "metadata.name"),
                    {"name": "KEYS_FROM", "value": "/role-keys"}, {"name": "KEY_DIR", "value": KEY_DIR}],
            "resources": self.resources("job"), "securityContext": self.node_security(),
            "volumeMounts": [{"name": "keys", "mountPath": KEY_DIR},
                             {"name": "role-keys", "mountPath": "/role-keys", "readOnly": True},
                             {"name": "scripts", "mountPath": "/scripts", "readOnly": True}],
        }

    def node_statefulset(self, role: str, secret: str, container: Doc, *, replicas: int) -> list[Doc]:
        """Compute nodes and participants: stable names (the workflow lists them), each pod's key and
        state on its own volume, its key installed from the role's Secret at first start."""
        return [
            {"apiVersion": "v1", "kind": "Service", "metadata": self.meta(role, role),
             "spec": {"clusterIP": "None", "selector": self.selector(role)}},
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "metadata": self.meta(role, role),
             "spec": {
                 "serviceName": role, "replicas": replicas, "podManagementPolicy": "Parallel",
                 "selector": {"matchLabels": self.selector(role)},
                 "template": {"metadata": {"labels": self.labels(role)}, "spec": {
                     "automountServiceAccountToken": False, "securityContext": self.node_pod_security(),
                     "initContainers": [self.install_key(secret)],
                     "containers": [container],
                     "volumes": [
                         {"name": "role-keys", "secret": {"secretName": secret, "defaultMode": 0o440}},
                         {"name": "scripts", "configMap": {"name": "trustmesh-scripts"}},
                         self.tmp_volume()]}},
                 "volumeClaimTemplates": [self.pvc("keys", self.env.disk["keys"])],
             }},
        ]

    def workflow_id_env(self) -> Doc:
        return {"name": "TRUSTMESH_WORKFLOW_ID", "valueFrom": {"configMapKeyRef": {
            "name": "trustmesh-workflow", "key": "workflow_id"}}}

    def compute(self) -> list[Doc]:
        container = self.node_container(
            "compute",
            Topology.compute_args(key=f"{KEY_DIR}/$(NODE_NAME).priv", urls=self.validator_urls(),
                                  redis_url=self.redis_url("compute"), couchdb_url=self.couchdb_url(),
                                  workflow_id="$(TRUSTMESH_WORKFLOW_ID)"),
            role="compute", health=self.validator_targets(),
            env=[self.field_env("NODE_NAME", "metadata.name"), self.workflow_id_env(),
                 *self.secret_env("REDIS_COMPUTE_PASSWORD", "COUCHDB_USER", "COUCHDB_PASSWORD")],
            mounts=[{"name": "keys", "mountPath": KEY_DIR}])
        return self.node_statefulset("compute", "trustmesh-compute-keys", container,
                                     replicas=self.topology.compute_nodes)

    def coordinator(self) -> list[Doc]:
        workflow_mount = {"name": "workflow", "mountPath": "/workflow", "readOnly": True}
        check = {
            "name": "workflow-validate", "image": IMAGES["trustmesh"], "imagePullPolicy": "IfNotPresent",
            "args": Topology.workflow_validate_args(), "resources": self.resources("job"),
            "securityContext": self.node_security(),
            "volumeMounts": [workflow_mount, {"name": "tmp", "mountPath": "/tmp"}],
        }
        container = self.node_container(
            "coordinator",
            Topology.coordinator_args(key=f"{KEY_DIR}/coordinator.priv", urls=self.validator_urls(),
                                      redis_url=self.redis_url("coordinator")),
            role="coordinator", health=self.validator_targets(),
            env=self.secret_env("REDIS_COORDINATOR_PASSWORD"),
            mounts=[workflow_mount, {"name": "key", "mountPath": KEY_DIR, "readOnly": True},
                    {"name": "public-keys", "mountPath": PUBLIC_KEY_DIR, "readOnly": True}])
        del container["readinessProbe"]  # a Job's pod needs no readiness
        # Only the public halves of the other nodes' keys: the workflow's names resolve to them.
        public = [{"secret": {"name": secret, "items": [{"key": f"{n}.pub", "path": f"{n}.pub"} for n in names]}}
                  for secret, names in [("trustmesh-coordinator-key", ["coordinator"]),
                                        ("trustmesh-compute-keys", self.node_names("compute")),
                                        ("trustmesh-participant-keys", self.node_names("participant"))]]
        return [{
            "apiVersion": "batch/v1", "kind": "Job", "metadata": self.meta("coordinator", "coordinator"),
            "spec": {"backoffLimit": 20, "template": {
                "metadata": {"labels": self.labels("coordinator")},
                "spec": {
                    "restartPolicy": "OnFailure", "automountServiceAccountToken": False,
                    "securityContext": self.node_pod_security(),
                    "initContainers": [check], "containers": [container],
                    "volumes": [
                        {"name": "workflow", "configMap": {"name": "trustmesh-workflow",
                                                           "items": [{"key": "workflow.json", "path": "workflow.json"}]}},
                        {"name": "key", "secret": {"secretName": "trustmesh-coordinator-key", "defaultMode": 0o440}},
                        {"name": "public-keys", "projected": {"sources": public, "defaultMode": 0o444}},
                        self.tmp_volume()],
                }}},
        }]

    def participants(self) -> list[Doc]:
        container = self.node_container(
            "participant",
            Topology.participant_args(workflow_id="$(TRUSTMESH_WORKFLOW_ID)", key=f"{KEY_DIR}/$(NODE_NAME).priv",
                                      partition="$(PARTITION)", urls=self.validator_urls(),
                                      redis_url=self.redis_url("participant")),
            role="participant", health=self.validator_targets(),
            env=[
                self.field_env("NODE_NAME", "metadata.name"),
                # The StatefulSet pod index is this participant's data partition.
                self.field_env("PARTITION", "metadata.labels['apps.kubernetes.io/pod-index']"),
                self.workflow_id_env(),
                *self.secret_env("REDIS_PARTICIPANT_PASSWORD"),
            ],
            mounts=[{"name": "keys", "mountPath": KEY_DIR}])
        return self.node_statefulset("participant", "trustmesh-participant-keys", container,
                                     replicas=self.topology.participants)

    def disruption_budgets(self) -> list[Doc]:
        """Voluntary evictions (node drains) take at most one ledger, Redis or CouchDB pod at a
        time: PBFT with 4 validators and Redis with a replica per master survive one loss."""
        return [{"apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": self.meta(name, name),
                 "spec": {"maxUnavailable": 1, "selector": {"matchLabels": self.selector(component)}}}
                for name, component in [("ledger", "ledger"), ("redis", "redis"), ("couchdb", "couchdb")]]

    # ------------------------------------------------------------------ NetworkPolicies

    def policy(self, name: str, component: str | None, *, ingress: list[Doc] | None = None,
               egress: list[Doc] | None = None) -> Doc:
        spec: Doc = {"podSelector": {"matchLabels": self.selector(component)} if component else {},
                     "policyTypes": []}
        if ingress is not None:
            spec["policyTypes"].append("Ingress")
            spec["ingress"] = ingress
        if egress is not None:
            spec["policyTypes"].append("Egress")
            spec["egress"] = egress
        return {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
                "metadata": self.meta(name, component or "network"), "spec": spec}

    def rule(self, direction: str, components: list[str], ports: list[int]) -> Doc:
        peers = [{"podSelector": {"matchLabels": self.selector(c)}} for c in components]
        return {direction: peers, "ports": [{"protocol": "TCP", "port": p} for p in ports]}

    def network_policies(self) -> list[Doc]:
        P = PORTS
        ledger_ports = [P["network"]]
        dns = {"to": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "kube-system"}}}],
               "ports": [{"protocol": "UDP", "port": 53}, {"protocol": "TCP", "port": 53}]}
        return [
            self.policy("default-deny", None, ingress=[], egress=[]),
            self.policy("allow-dns", None, egress=[dns]),
            self.policy("ledger", "ledger",
                        ingress=[self.rule("from", ["ledger"], ledger_ports),
                                 self.rule("from", ["compute", "coordinator", "participant"], [P["component"]])],
                        egress=[self.rule("to", ["ledger"], ledger_ports),
                                self.rule("to", ["redis"], [P["redis"]])]),
            self.policy("redis", "redis",
                        ingress=[self.rule("from", ["redis"], [P["redis"], P["redis_bus"]]),
                                 self.rule("from", ["ledger", "compute", "coordinator", "participant", "redis-setup"],
                                           [P["redis"]])],
                        egress=[self.rule("to", ["redis"], [P["redis"], P["redis_bus"]])]),
            self.policy("couchdb", "couchdb",
                        ingress=[self.rule("from", ["couchdb"], [P["couchdb"], P["epmd"], P["erlang_dist"]]),
                                 self.rule("from", ["compute", "couchdb-setup"], [P["couchdb"]])],
                        egress=[self.rule("to", ["couchdb"], [P["couchdb"], P["epmd"], P["erlang_dist"]])]),
            self.policy("compute", "compute", ingress=[],
                        egress=[self.rule("to", ["ledger"], [P["component"]]),
                                self.rule("to", ["redis"], [P["redis"]]),
                                self.rule("to", ["couchdb"], [P["couchdb"]])]),
            self.policy("coordinator", "coordinator", ingress=[],
                        egress=[self.rule("to", ["ledger"], [P["component"]]),
                                self.rule("to", ["redis"], [P["redis"]])]),
            self.policy("participant", "participant", ingress=[],
                        egress=[self.rule("to", ["ledger"], [P["component"]]),
                                self.rule("to", ["redis"], [P["redis"]])]),
            self.policy("redis-setup", "redis-setup", ingress=[],
                        egress=[self.rule("to", ["redis"], [P["redis"]])]),
            self.policy("couchdb-setup", "couchdb-setup", ingress=[],
                        egress=[self.rule("to", ["couchdb"], [P["couchdb"]])]),
            # The key Job talks only to the API server, whose address differs per cluster.
            self.policy("keygen", "keygen", ingress=[],
                        egress=[{"ports": [{"protocol": "TCP", "port": 443}, {"protocol": "TCP", "port": 6443}]}]),
        ]


def _writable_home(docs: list[Doc]) -> None:
    """Our containers run with a read-only root file system: give each a writable /tmp (an
    emptyDir) and HOME=/tmp, for the caches Python libraries write."""
    for doc in docs:
        pod = doc.get("spec", {}).get("template", {}).get("spec")
        if not pod:
            continue
        ours = [c for c in pod.get("initContainers", []) + pod["containers"] if c["image"] == IMAGES["trustmesh"]]
        if not ours:
            continue
        if not any(v["name"] == "tmp" for v in pod.setdefault("volumes", [])):
            pod["volumes"].append({"name": "tmp", "emptyDir": {"sizeLimit": "512Mi"}})
        for container in ours:
            env = container.setdefault("env", [])
            if not any(e["name"] == "HOME" for e in env):
                env.insert(0, {"name": "HOME", "value": "/tmp"})
            mounts = container.setdefault("volumeMounts", [])
            if not any(m["mountPath"] == "/tmp" for m in mounts):
                mounts.insert(0, {"name": "tmp", "mountPath": "/tmp"})


def render_k8s(*, env: str, participants: int, compute_nodes: int | None = None,
               workflow_json: str | None = None, workflow_id: str = PLACEHOLDER_WORKFLOW_ID) -> dict[str, str]:
    """Every manifest file for one profile: file name -> YAML text."""
    if env not in ENVS:
        raise ConfigError(f"unknown environment {env!r}; choose one of {sorted(ENVS)}")
    profile = ENVS[env]
    flags = f"--env {env} --participants {participants}"
    if compute_nodes is not None and compute_nodes != profile.compute_nodes:
        profile = replace(profile, compute_nodes=compute_nodes)
        flags += f" --compute-nodes {compute_nodes}"
    if workflow_json is not None:
        flags += " --workflow FILE"
    r = _Render(env=profile, participants=participants, workflow_json=workflow_json,
                workflow_id=workflow_id)
    header = f"# Rendered by `trustmesh deploy k8s {flags} --out DIR`; do not edit by hand.\n"
    parts = {
        "00-namespace.yaml": r.namespace(),
        "05-workflow.yaml": r.workflow(),
        "10-keys.yaml": r.keys(),
        "20-ledger.yaml": r.ledger(),
        "30-redis.yaml": r.redis(),
        "40-couchdb.yaml": r.couchdb(),
        "50-compute.yaml": r.compute(),
        "60-coordinator.yaml": r.coordinator(),
        "70-participants.yaml": r.participants(),
        "80-disruption-budgets.yaml": r.disruption_budgets(),
        "90-network-policies.yaml": r.network_policies(),
    }
    for docs in parts.values():
        _writable_home(docs)
    return {name: yamlio.dump_all(docs, header=header) for name, docs in parts.items()}
