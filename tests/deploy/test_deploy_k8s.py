"""kubernetes/{dev,prod}: valid for a current Kubernetes by `kubernetes-validate --strict`, and
consistent: references resolve, every container is sized and probed, NetworkPolicies cover every
role and agree on both ends (checked statically: no cluster runs here)."""
from __future__ import annotations

import re
import subprocess

import kubernetes_validate
import pytest
from deploy_support import K8S_PARTICIPANTS, KUBERNETES, tool

from trustmesh.deploy.k8s import CREDENTIALS_SECRET
from trustmesh.deploy.topology import CREDENTIALS

# The newest Kubernetes release whose schemas the installed kubernetes-validate ships.
K8S_VERSION = kubernetes_validate.utils.latest_version()
# Secrets made outside the manifests: by the operator (credentials) or by the key Job.
EXTERNAL_SECRETS = {CREDENTIALS_SECRET, "trustmesh-coordinator-key", "trustmesh-validator-keys",
                    "trustmesh-compute-keys", "trustmesh-participant-keys"}
WORKLOADS = {"StatefulSet", "Deployment", "Job"}


def _pods(docs):
    for doc in docs:
        if doc["kind"] in WORKLOADS:
            yield doc, doc["spec"]["template"]["spec"]


@pytest.mark.parametrize("env", sorted(K8S_PARTICIPANTS))
def test_every_manifest_passes_kubernetes_validate_strict(env):
    files = sorted(str(p) for p in (KUBERNETES / env).glob("*.yaml"))
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", K8S_VERSION, *files],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert K8S_VERSION >= "1.33"


def test_strict_validation_catches_an_unknown_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: x\n  colour: red\n")
    result = subprocess.run([tool("kubernetes-validate"), "--strict", "--quiet", "-k", K8S_VERSION, str(bad)],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0


@pytest.mark.parametrize("env", sorted(K8S_PARTICIPANTS))
def test_references_resolve(k8s_docs, env):
    docs = k8s_docs[env]
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    namespace = next(d["metadata"]["name"] for d in docs if d["kind"] == "Namespace")
    for doc in docs:
        if doc["kind"] != "Namespace":
            assert doc["metadata"]["namespace"] == namespace
    for workload, pod in _pods(docs):
        where = f"{workload['kind']}/{workload['metadata']['name']}"
        claims = {t["metadata"]["name"] for t in workload["spec"].get("volumeClaimTemplates", [])}
        volumes = {v["name"]: v for v in pod.get("volumes", [])}
        if workload["kind"] == "StatefulSet":
            assert ("Service", workload["spec"]["serviceName"]) in names, where
        if "serviceAccountName" in pod:
            assert ("ServiceAccount", pod["serviceAccountName"]) in names, where
        for volume in volumes.values():
            if "configMap" in volume:
                assert ("ConfigMap", volume["configMap"]["name"]) in names, where
            if "secret" in volume:
                assert volume["secret"]["secretName"] in EXTERNAL_SECRETS, where
            for source in volume.get("projected", {}).get("sources", []):
                assert source["secret"]["name"] in EXTERNAL_SECRETS, where
        for c in pod.get("initContainers", []) + pod["containers"]:
            for mount in c.get("volumeMounts", []):
                assert mount["name"] in volumes or mount["name"] in claims, f"{where}/{c['name']}: {mount}"
            for env_var in c.get("env", []):
                source = env_var.get("valueFrom", {})
                if "secretKeyRef" in source:
                    ref = source["secretKeyRef"]
                    assert ref["name"] == CREDENTIALS_SECRET and ref["key"] in CREDENTIALS, where
                if "configMapKeyRef" in source:
                    ref = source["configMapKeyRef"]
                    cm = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == ref["name"])
                    assert ref["key"] in cm["data"], where
            defined = {e["name"] for e in c.get("env", [])}
            seen: set[str] = set()
            for env_var in c.get("env", []):  # $(VAR) in an env value expands only from earlier entries
                for var in re.findall(r"\$\(([A-Z_]+)\)", env_var.get("value", "")):
                    assert var in seen, f"{where}/{c['name']}: {env_var['name']} uses $({var}) before it is set"
                seen.add(env_var["name"])
            for arg in c.get("args", []) + c.get("command", []):
                for var in re.findall(r"\$\(([A-Z_]+)\)", arg):
                    assert var in defined, f"{where}/{c['name']}: $({var}) is not in its env, so never expanded"
    for doc in docs:
        if doc["kind"] == "Service" and "selector" in doc["spec"]:
            assert any(doc["spec"]["selector"].items() <= w["spec"]["template"]["metadata"]["labels"].items()
                       for w, _ in _pods(docs)), f"Service {doc['metadata']['name']} selects no pod"


@pytest.mark.parametrize("env", sorted(K8S_PARTICIPANTS))
def test_every_container_has_resources_and_long_running_ones_have_probes(k8s_docs, env):
    for workload, pod in _pods(k8s_docs[env]):
        for c in pod.get("initContainers", []) + pod["containers"]:
            where = f"{workload['metadata']['name']}/{c['name']}"
            assert set(c["resources"]) == {"requests", "limits"}, where
            assert {"cpu", "memory"} <= set(c["resources"]["limits"]), where
            assert c["securityContext"]["allowPrivilegeEscalation"] is False, where
        if workload["kind"] != "Job":
            for c in pod["containers"]:
                assert "readinessProbe" in c and "livenessProbe" in c, f"{workload['metadata']['name']}/{c['name']}"


def test_prod_shape(k8s_docs):
    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s_docs["prod"]}
    validators = docs[("StatefulSet", "validator")]
    assert validators["spec"]["replicas"] == 4 and validators["spec"]["volumeClaimTemplates"]
    sidecars = {c["name"] for c in validators["spec"]["template"]["spec"]["containers"]}
    assert {"validator", "pbft-engine", "settings-tp", "block-info-tp", "federation-tp", "iot-data-tp"} <= sidecars
    assert docs[("StatefulSet", "redis")]["spec"]["replicas"] == 6
    assert docs[("StatefulSet", "couchdb")]["spec"]["replicas"] == 3
    assert docs[("StatefulSet", "compute")]["spec"]["replicas"] == 2
    participants = docs[("StatefulSet", "participant")]
    assert participants["spec"]["replicas"] == K8S_PARTICIPANTS["prod"]
    env = {e["name"]: e for e in participants["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["PARTITION"]["valueFrom"]["fieldRef"]["fieldPath"] == \
        "metadata.labels['apps.kubernetes.io/pod-index']"
    keygen = docs[("Job", "trustmesh-keygen")]["spec"]["template"]["spec"]
    names = {e["name"]: e["value"] for e in keygen["initContainers"][0]["env"]}["KEY_NAMES"].split()
    assert names == (["coordinator", "compute-0", "compute-1"] + [f"participant-{i}" for i in range(8)]
                     + [f"validator-{i}" for i in range(4)])
    publish = keygen["containers"][0]["args"]
    assert "trustmesh-participant-keys=" + ",".join(f"participant-{i}" for i in range(8)) in publish
    rules = docs[("Role", "trustmesh-keygen")]["rules"]
    assert {verb for rule in rules for verb in rule["verbs"]} == {"create", "get", "patch"}
    assert all(rule["resources"] == ["secrets"] for rule in rules)
    # The coordinator sees only public keys of the nodes its workflow names.
    coordinator = docs[("Job", "coordinator")]["spec"]["template"]["spec"]
    projected = next(v for v in coordinator["volumes"] if v["name"] == "public-keys")["projected"]
    paths = [item["path"] for source in projected["sources"] for item in source["secret"]["items"]]
    assert all(p.endswith(".pub") for p in paths) and "compute-1.pub" in paths and "coordinator.pub" in paths


def test_dev_uses_the_devnet_ledger(k8s_docs):
    docs = {(d["kind"], d["metadata"]["name"]): d for d in k8s_docs["dev"]}
    ledger = docs[("StatefulSet", "validator")]
    assert ledger["spec"]["replicas"] == 1
    assert [c["args"][0] for c in ledger["spec"]["template"]["spec"]["containers"]] == ["devnet", "tp", "tp"]
    assert docs[("StatefulSet", "redis")]["spec"]["replicas"] == 3


def _selects(policy_peer, labels):
    return policy_peer.get("podSelector", {}).get("matchLabels", {}).items() <= labels.items()


@pytest.mark.parametrize("env", sorted(K8S_PARTICIPANTS))
def test_network_policies_cover_every_role_and_agree_on_both_ends(k8s_docs, env):
    docs = k8s_docs[env]
    policies = [d for d in docs if d["kind"] == "NetworkPolicy"]
    default = next(p for p in policies if p["metadata"]["name"] == "default-deny")
    assert default["spec"]["podSelector"] == {} and set(default["spec"]["policyTypes"]) == {"Ingress", "Egress"}
    roles = {w["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/component"]: w
             for w, _ in _pods(docs)}
    own = {}
    for role, workload in roles.items():
        labels = workload["spec"]["template"]["metadata"]["labels"]
        mine = [p for p in policies if p["spec"]["podSelector"]
                and p["spec"]["podSelector"]["matchLabels"].items() <= labels.items()]
        assert len(mine) == 1, f"role {role} needs exactly one NetworkPolicy of its own"
        own[role] = (labels, mine[0])
    # Every egress from A to B on port p needs an ingress rule on B admitting A on p.
    for role, (labels, policy) in own.items():
        for rule in policy["spec"].get("egress", []):
            for peer in rule.get("to", []):
                for target, (target_labels, target_policy) in own.items():
                    if not _selects(peer, target_labels):
                        continue
                    for port in rule["ports"]:
                        admitted = any(
                            any(_selects(src, labels) for src in ingress.get("from", []))
                            and any(p["port"] == port["port"] for p in ingress["ports"])
                            for ingress in target_policy["spec"].get("ingress", []))
                        assert admitted, f"{role} may send to {target}:{port['port']} but {target} refuses it"
    # Participants reach the ledger and Redis, nothing else; the coordinator only the ledger.
    def reach(role):
        return {t for rule in own[role][1]["spec"]["egress"] for peer in rule.get("to", [])
                for t, (tl, _) in own.items() if _selects(peer, tl)}
    assert reach("participant") == {"ledger", "redis"}
    assert reach("coordinator") == {"ledger", "redis"}
    assert reach("compute") == {"ledger", "redis", "couchdb"}
