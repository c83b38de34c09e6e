#!/usr/bin/env bash
# Installs what is missing, then runs the main job: a federated training on the embedded default
# (devnet ledger, both TPs, Redis, PouchDB Server, compute nodes and participants on this machine).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
exec trustmesh run examples/mnist-federated.json --participants 3 --rounds 3 "$@"
