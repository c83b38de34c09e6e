"""The genesis and validator start scripts, run for real with stand-ins for Sawtooth's own
commands (sawadm, sawset, sawtooth-validator exist only inside Sawtooth's images): the genesis
batch carries every validator's key and the block-info injector, it is written once, and each
validator peers with every lower-numbered one and installs its own key."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
from deploy_support import DOCKER

# Each stand-in appends its argv (as JSON) to $CALLS and does the file work the real one does.
_STUBS = {
    "sawadm": r"""#!/bin/bash
printf '%s\n' "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' sawadm "$@")" >> "$CALLS"
case "$1" in
  keygen) mkdir -p "$SAWTOOTH_HOME/keys"
          echo "priv-$(basename "$SAWTOOTH_HOME")" > "$SAWTOOTH_HOME/keys/validator.priv"
          echo "02pub$(basename "$SAWTOOTH_HOME")" > "$SAWTOOTH_HOME/keys/validator.pub" ;;
  genesis) cat "$2" "$3" > "$SAWTOOTH_HOME/data/genesis.batch" ;;
esac
""",
    "sawset": r"""#!/bin/bash
printf '%s\n' "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' sawset "$@")" >> "$CALLS"
out=""; prev=""
for arg in "$@"; do if [ "$prev" = "-o" ]; then out="$arg"; fi; prev="$arg"; done
echo "$*" > "$out"
""",
    "sawtooth-validator": r"""#!/bin/bash
printf '%s\n' "$(python3 -c 'import json,sys; print(json.dumps(sys.argv[1:]))' sawtooth-validator "$@")" >> "$CALLS"
""",
}


@pytest.fixture
def stubs(tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name, text in _STUBS.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    calls = tmp_path / "calls.jsonl"
    env = dict(os.environ, PATH=f"{bin_dir}:{os.environ['PATH']}", CALLS=str(calls))
    return env, calls


def _calls(path: Path) -> list[list[str]]:
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


def test_compose_genesis_makes_keys_and_writes_membership_once(tmp_path, stubs):
    env, calls = stubs
    homes = tmp_path / "validators"
    env.update(VALIDATORS="4", VALIDATOR_HOMES=str(homes))
    subprocess.run(["bash", str(DOCKER / "sawtooth" / "genesis.sh")], env=env, check=True, timeout=60)
    proposal = next(c for c in _calls(calls) if c[:3] == ["sawset", "proposal", "create"])
    members = next(a for a in proposal if a.startswith("sawtooth.consensus.pbft.members="))
    assert json.loads(members.split("=", 1)[1]) == [f"02pub{i}" for i in range(4)]
    assert "sawtooth.validator.batch_injectors=block_info" in proposal
    assert "sawtooth.consensus.algorithm.name=pbft" in proposal
    assert (homes / "0" / "data" / "genesis.batch").exists()
    assert proposal[proposal.index("--key") + 1] == str(homes / "0" / "keys" / "validator.priv")
    before = len(_calls(calls))
    again = subprocess.run(["bash", str(DOCKER / "sawtooth" / "genesis.sh")], env=env, capture_output=True,
                           text=True, check=True, timeout=60)
    assert "already written" in again.stdout
    assert len(_calls(calls)) == before, "a second run makes no key and no batch"


@pytest.mark.parametrize("ordinal", [0, 2])
def test_kubernetes_validator_installs_its_key_and_peers_with_lower_ordinals(tmp_path, stubs, ordinal):
    env, calls = stubs
    keys = tmp_path / "validator-keys"
    keys.mkdir()
    for i in range(4):
        (keys / f"validator-{i}.priv").write_text(f"priv{i}\n")
        (keys / f"validator-{i}.pub").write_text(f"02pub{i}\n")
    home = tmp_path / "sawtooth"
    env.update(HOSTNAME=f"validator-{ordinal}", SAWTOOTH_HOME=str(home), VALIDATORS="4",
               VALIDATOR_KEYS=str(keys), VALIDATOR_DOMAIN="validator.tm.svc.cluster.local")
    subprocess.run(["bash", str(DOCKER / "sawtooth" / "validator.sh")], env=env, check=True, timeout=60)
    assert (home / "keys" / "validator.priv").read_text() == f"priv{ordinal}\n"
    assert oct((home / "keys" / "validator.priv").stat().st_mode & 0o777) == "0o600"
    validator = next(c for c in _calls(calls) if c[0] == "sawtooth-validator")
    assert validator[validator.index("--endpoint") + 1] == f"tcp://validator-{ordinal}.validator.tm.svc.cluster.local:8800"
    peers = validator[validator.index("--peers") + 1].split(",") if "--peers" in validator else []
    assert peers == [f"tcp://validator-{i}.validator.tm.svc.cluster.local:8800" for i in range(ordinal)]
    wrote_genesis = (home / "data" / "genesis.batch").exists()
    assert wrote_genesis == (ordinal == 0), "only validator 0 writes the genesis batch"
    if wrote_genesis:
        proposal = next(c for c in _calls(calls) if c[:3] == ["sawset", "proposal", "create"])
        members = next(a for a in proposal if a.startswith("sawtooth.consensus.pbft.members="))
        assert json.loads(members.split("=", 1)[1]) == [f"02pub{i}" for i in range(4)]
