"""`trustmesh deploy secrets` against a stand-in API server (no cluster runs here: the mock
answers the one call the key Job makes), and the container health check on real sockets."""
from __future__ import annotations

import base64
import json
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from trustmesh.cli import main
from trustmesh.deploy.health import check
from trustmesh.deploy.secrets import SecretSpec, publish_secrets
from trustmesh.errors import ConfigError, TrustMeshError
from trustmesh.ledger.keys import write_key_pair


class _FakeApiServer(BaseHTTPRequestHandler):
    """The three calls the key Job makes: POST a Secret (201, or 409 when the name exists), GET it,
    and PATCH it with a JSON merge patch."""

    store: dict[str, dict] = {}
    refuse: bool = False
    tokens: list[str] = []

    def _reply(self, code: int, body: dict) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps(body).encode())

    def _body(self) -> dict:
        type(self).tokens.append(self.headers.get("Authorization", ""))
        return json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}")

    def do_POST(self) -> None:  # noqa: N802 — the http.server interface
        body = self._body()
        name = body["metadata"]["name"]
        if type(self).refuse:
            return self._reply(403, {})
        if name in type(self).store:
            return self._reply(409, {})
        type(self).store[name] = {"path": self.path, **body}
        self._reply(201, body)

    def do_GET(self) -> None:  # noqa: N802
        self._body()
        name = self.path.rsplit("/", 1)[1]
        self._reply(200, type(self).store[name]) if name in type(self).store else self._reply(404, {})

    def do_PATCH(self) -> None:  # noqa: N802
        assert self.headers["Content-Type"] == "application/merge-patch+json"
        patch = self._body()
        name = self.path.rsplit("/", 1)[1]
        type(self).store[name]["data"].update(patch["data"])
        self._reply(200, type(self).store[name])

    def log_message(self, *args) -> None:
        pass


@pytest.fixture
def api():
    _FakeApiServer.store, _FakeApiServer.refuse, _FakeApiServer.tokens = {}, False, []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApiServer)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def keys(tmp_path):
    for name in ("coordinator", "validator-0", "validator-1", "compute-0", "compute-1"):
        write_key_pair(name, tmp_path)
    return tmp_path


def test_publishes_each_key_pair_once_and_keeps_existing_secrets(api, keys):
    specs = [SecretSpec.parse("trustmesh-validator-keys=validator-0,validator-1"),
             SecretSpec.parse("trustmesh-coordinator-key=coordinator")]
    assert publish_secrets(key_dir=keys, namespace="tm", specs=specs, api=api, token="t0k") == {
        "trustmesh-validator-keys": "created", "trustmesh-coordinator-key": "created"}
    stored = _FakeApiServer.store["trustmesh-validator-keys"]
    assert stored["path"] == "/api/v1/namespaces/tm/secrets"
    assert set(stored["data"]) == {"validator-0.priv", "validator-0.pub", "validator-1.priv", "validator-1.pub"}
    assert base64.b64decode(stored["data"]["validator-1.pub"]) == (keys / "validator-1.pub").read_bytes()
    assert set(_FakeApiServer.tokens) == {"Bearer t0k"}
    # A retried Job never replaces keys a running network uses.
    assert publish_secrets(key_dir=keys, namespace="tm", specs=specs[1:], api=api) == {
        "trustmesh-coordinator-key": "kept"}


def test_a_node_added_later_extends_its_secret_without_replacing_keys(api, keys, tmp_path):
    publish_secrets(key_dir=keys, namespace="tm", specs=[SecretSpec.parse("c=compute-0")], api=api)
    before = dict(_FakeApiServer.store["c"]["data"])
    rerun = tmp_path / "rerun"  # a re-run Job makes fresh keys for every name
    for name in ("compute-0", "compute-1"):
        write_key_pair(name, rerun)
    outcome = publish_secrets(key_dir=rerun, namespace="tm", specs=[SecretSpec.parse("c=compute-0,compute-1")],
                              api=api)
    assert outcome == {"c": "extended with compute-1.priv, compute-1.pub"}
    data = _FakeApiServer.store["c"]["data"]
    assert {k: data[k] for k in before} == before, "an existing node's key must never change"
    assert base64.b64decode(data["compute-1.pub"]) == (rerun / "compute-1.pub").read_bytes()


def test_cli_publishes_and_reports(api, keys, capsys):
    assert main(["deploy", "secrets", "--dir", str(keys), "--namespace", "tm", "--api", api,
                 "--secret", "trustmesh-coordinator-key=coordinator"]) == 0
    assert "secret tm/trustmesh-coordinator-key: created" in capsys.readouterr().out


def test_refusals_and_missing_keys_are_errors(api, keys):
    with pytest.raises(ConfigError, match="missing"):
        publish_secrets(key_dir=keys, namespace="tm", specs=[SecretSpec.parse("s=absent")], api=api)
    _FakeApiServer.refuse = True
    with pytest.raises(TrustMeshError, match="HTTP 403"):
        publish_secrets(key_dir=keys, namespace="tm", specs=[SecretSpec.parse("s=coordinator")], api=api)
    with pytest.raises(ConfigError):
        SecretSpec.parse("no-equals-sign")
    with pytest.raises(ConfigError, match="not inside a Kubernetes pod"):
        publish_secrets(key_dir=keys, namespace="tm", specs=[])


def test_health_check_passes_when_any_ledger_endpoint_answers():
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]
        with socket.socket() as closed:
            closed.bind(("127.0.0.1", 0))
            dead = closed.getsockname()[1]
        assert check(f"127.0.0.1:{dead},tcp://127.0.0.1:{port}", timeout=1) is None
    reason = check(f"127.0.0.1:{port}", timeout=1)
    assert reason is not None and f"127.0.0.1:{port}" in reason
    assert check("not-a-target", timeout=1) is not None
