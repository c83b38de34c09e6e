#!/bin/sh
# Entry point of a TrustMesh node that signs transactions: make its key on first start (kept in
# the node's own volume, never in the image), publish the public half where the coordinator
# resolves the workflow's node names, then run the trustmesh CLI with the given arguments.
set -eu
if [ -n "${TRUSTMESH_KEYGEN:-}" ]; then
  key_dir="${TRUSTMESH_KEY_DIR:-/keys}"
  if [ ! -f "$key_dir/$TRUSTMESH_KEYGEN.priv" ]; then
    trustmesh keygen "$TRUSTMESH_KEYGEN" --dir "$key_dir"
  fi
  if [ -n "${TRUSTMESH_PUBLIC_DIR:-}" ]; then
    cp "$key_dir/$TRUSTMESH_KEYGEN.pub" "$TRUSTMESH_PUBLIC_DIR/$TRUSTMESH_KEYGEN.pub"
  fi
fi
exec trustmesh "$@"
