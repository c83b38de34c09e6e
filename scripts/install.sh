#!/usr/bin/env bash
# Installs what is missing for TrustMesh-FL on a fresh Debian machine, and nothing that is there.
#   - redis-server (Debian package) for the data plane
#   - the Python package with its pinned requirements (and the test extra with --test)
#   - PouchDB Server (npm, into .local/pouchdb) for the CouchDB HTTP API and Fauxton
set -euo pipefail
cd "$(dirname "$0")/.."
extra=""
[ "${1:-}" = "--test" ] && extra="[test]"

if ! command -v redis-server >/dev/null 2>&1; then
  echo "install: redis-server (apt-get)"
  if [ "$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq redis-server >/dev/null
fi

stamp=".local/pip-installed"
want="$(cat setup.py requirements.txt requirements-test.txt | sha256sum | cut -c1-16)$extra"
have="$(cat "$stamp" 2>/dev/null || true)"
# An install with the test extra also satisfies a plain one.
if { [ "$have" != "$want" ] && [ "$have" != "${want}[test]" ]; } || ! python3 -c "import trustmesh" >/dev/null 2>&1; then
  echo "install: python packages (pip install -e .$extra)"
  python3 -m pip install -q -e ".$extra"
  mkdir -p .local && echo "$want" > "$stamp"
fi

if [ ! -x .local/pouchdb/node_modules/.bin/pouchdb-server ]; then
  if command -v npm >/dev/null 2>&1; then
    echo "install: pouchdb-server (npm, into .local/pouchdb)"
    mkdir -p .local/pouchdb
    (cd .local/pouchdb && npm install --ignore-scripts --no-audit --no-fund --silent pouchdb-server@4.2.0 >/dev/null)
  else
    echo "install: npm not found; CouchDB history needs a CouchDB URL (--couchdb) instead" >&2
  fi
fi
