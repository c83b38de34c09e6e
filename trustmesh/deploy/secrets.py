"""`trustmesh deploy secrets`: publish key files as Kubernetes Secrets from inside the cluster.

Run by the key-generation Job after `trustmesh keygen` made the keys. It talks to the API server
with the pod's service-account token; a Secret that already exists is left as it is, so a retried
Job never replaces the keys a running network already uses.
"""
from __future__ import annotations

import base64
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import requests

from trustmesh.errors import ConfigError, TrustMeshError

__all__ = ["SERVICE_ACCOUNT_DIR", "SecretSpec", "publish_secrets"]

log = logging.getLogger(__name__)

SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
TIMEOUT = 10.0


class PublishError(TrustMeshError):
    """The API server refused a Secret (other than "already exists"); retry the Job."""


@dataclass(frozen=True, kw_only=True)
class SecretSpec:
    """A Secret named `name` holding NAME.priv and NAME.pub for each key name."""

    name: str
    keys: tuple[str, ...]

    @classmethod
    def parse(cls, text: str) -> SecretSpec:
        name, sep, keys = text.partition("=")
        names = tuple(k.strip() for k in keys.split(",") if k.strip())
        if not sep or not name.strip() or not names:
            raise ConfigError(f"--secret wants SECRET=KEY[,KEY...], got {text!r}")
        return cls(name=name.strip(), keys=names)


def _in_cluster() -> tuple[str, str, str | bool]:
    host, port = os.environ.get("KUBERNETES_SERVICE_HOST"), os.environ.get("KUBERNETES_SERVICE_PORT", "443")
    token_file = SERVICE_ACCOUNT_DIR / "token"
    if not host or not token_file.exists():
        raise ConfigError("not inside a Kubernetes pod with a service account; pass --api and --token-file")
    if ":" in host:
        host = f"[{host}]"
    return f"https://{host}:{port}", token_file.read_text().strip(), str(SERVICE_ACCOUNT_DIR / "ca.crt")


def publish_secrets(*, key_dir: Path, namespace: str, specs: list[SecretSpec], api: str | None = None,
                    token: str | None = None, verify: str | bool = True) -> dict[str, str]:
    """Create each Secret from the key files; returns secret name -> "created" or "kept"."""
    if api is None:
        api, token, verify = _in_cluster()
    results: dict[str, str] = {}
    session = requests.Session()
    if token:
        session.headers["Authorization"] = f"Bearer {token}"
    for spec in specs:
        data: dict[str, str] = {}
        for key in spec.keys:
            for suffix in ("priv", "pub"):
                path = key_dir / f"{key}.{suffix}"
                if not path.exists():
                    raise ConfigError(f"{path} is missing; run `trustmesh keygen {key} --dir {key_dir}` first")
                data[path.name] = base64.b64encode(path.read_bytes()).decode()
        body = {
            "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": spec.name, "namespace": namespace,
                         "labels": {"app.kubernetes.io/part-of": "trustmesh-fl",
                                    "app.kubernetes.io/component": "keys"}},
            "data": data,
        }
        url = f"{api.rstrip('/')}/api/v1/namespaces/{namespace}/secrets"
        response = _call(session, "post", url, json=body, verify=verify)
        if response.status_code in (200, 201):
            results[spec.name] = "created"
        elif response.status_code == 409:
            results[spec.name] = _extend(session, f"{url}/{spec.name}", data, verify=verify)
        else:
            raise PublishError(f"creating Secret {spec.name} failed: HTTP {response.status_code} "
                               f"{response.text[:200]}")
        log.info("secret %s/%s %s", namespace, spec.name, results[spec.name])
    return results


def _call(session: requests.Session, method: str, url: str, *, verify: str | bool, **kwargs: object
          ) -> requests.Response:
    try:
        return session.request(method, url, timeout=TIMEOUT, verify=verify, **kwargs)  # type: ignore[arg-type]
    except requests.RequestException as exc:
        raise PublishError(f"cannot reach the API server at {url}: {exc}") from exc


def _extend(session: requests.Session, url: str, data: dict[str, str], *, verify: str | bool) -> str:
    """Add the key files a Secret lacks (a node added later); never replace one it holds."""
    current = _call(session, "get", url, verify=verify)
    if current.status_code != 200:
        raise PublishError(f"reading {url} failed: HTTP {current.status_code}")
    held = current.json().get("data") or {}
    missing = {name: value for name, value in data.items() if name not in held}
    if not missing:
        return "kept"
    patch = _call(session, "patch", url, verify=verify, data=json.dumps({"data": missing}),
                  headers={"Content-Type": "application/merge-patch+json"})
    if patch.status_code != 200:
        raise PublishError(f"extending {url} failed: HTTP {patch.status_code} {patch.text[:200]}")
    return f"extended with {', '.join(sorted(missing))}"
