"""Shell scripts the containers run, kept here so compose and Kubernetes run the same text.

Each is written into the compose folder and into a ConfigMap; tests run shellcheck on them.
"""
from __future__ import annotations

__all__ = ["SCRIPTS"]

_REDIS_START = r"""#!/bin/sh
# Start one Redis Cluster node: fill the ACL file's password digests from the environment,
# add this node's own settings to the static config, then run redis-server in the foreground.
set -eu
conf_dir="${REDIS_CONF_DIR:-/conf}"
run_dir="${REDIS_RUN_DIR:-/data}"
announce="${REDIS_ANNOUNCE_HOSTNAME:-$(hostname)}"

digest() {
  case "$2" in
    '' | *[!0-9a-f]*)
      echo "redis-start: $1 must be a lowercase hex string (openssl rand -hex 24)" >&2
      exit 1 ;;
  esac
  printf '%s' "$2" | sha256sum | cut -d ' ' -f 1
}

admin="$(digest REDIS_ADMIN_PASSWORD "${REDIS_ADMIN_PASSWORD:-}")"
tps="$(digest REDIS_TPS_PASSWORD "${REDIS_TPS_PASSWORD:-}")"
compute="$(digest REDIS_COMPUTE_PASSWORD "${REDIS_COMPUTE_PASSWORD:-}")"
participant="$(digest REDIS_PARTICIPANT_PASSWORD "${REDIS_PARTICIPANT_PASSWORD:-}")"
coordinator="$(digest REDIS_COORDINATOR_PASSWORD "${REDIS_COORDINATOR_PASSWORD:-}")"

mkdir -p "$run_dir"
umask 077
sed -e "s/@REDIS_ADMIN_PASSWORD_SHA256@/$admin/" \
    -e "s/@REDIS_TPS_PASSWORD_SHA256@/$tps/" \
    -e "s/@REDIS_COMPUTE_PASSWORD_SHA256@/$compute/" \
    -e "s/@REDIS_PARTICIPANT_PASSWORD_SHA256@/$participant/" \
    -e "s/@REDIS_COORDINATOR_PASSWORD_SHA256@/$coordinator/" \
    "$conf_dir/users.acl" > "$run_dir/users.acl"

{
  cat "$conf_dir/redis.conf"
  echo "dir $run_dir"
  echo "aclfile $run_dir/users.acl"
  echo "masterauth $REDIS_ADMIN_PASSWORD"
  echo "cluster-announce-hostname $announce"
  if [ -n "${REDIS_PORT:-}" ]; then echo "port $REDIS_PORT"; fi
  if [ -n "${REDIS_BUS_PORT:-}" ]; then echo "cluster-port $REDIS_BUS_PORT"; fi
  if [ -n "${REDIS_BIND:-}" ]; then echo "bind $REDIS_BIND"; fi
} > "$run_dir/redis.conf"

exec redis-server "$run_dir/redis.conf"
"""

_REDIS_CLUSTER_INIT = r"""#!/bin/sh
# Create the Redis Cluster once every node answers (masters first, then the replicas), unless the
# first node already reports a healthy cluster. Runs to completion; safe to run again.
# REDIS_NODES: space-separated HOST or HOST:PORT (PORT defaults to REDIS_PORT, else 6379).
set -eu
nodes="${REDIS_NODES:?space-separated host names of every node}"
replicas="${REDIS_REPLICAS:-1}"
default_port="${REDIS_PORT:-6379}"
tries="${WAIT_TRIES:-150}"
export REDISCLI_AUTH="${REDIS_ADMIN_PASSWORD:?}"

host_of() { echo "${1%%:*}"; }
port_of() { case "$1" in *:*) echo "${1##*:}" ;; *) echo "$default_port" ;; esac; }
cli() { target="$1"; shift; redis-cli --user admin -h "$(host_of "$target")" -p "$(port_of "$target")" "$@"; }

for node in $nodes; do
  n=0
  until cli "$node" ping > /dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -ge "$tries" ]; then echo "cluster-init: $node never answered" >&2; exit 1; fi
    sleep 2
  done
done

first="${nodes%% *}"
if cli "$first" cluster info | grep -q '^cluster_state:ok'; then
  echo "cluster-init: the cluster is already formed"
  exit 0
fi

addresses=""
for node in $nodes; do
  ip="$(getent hosts "$(host_of "$node")" | awk '{ print $1; exit }')"
  if [ -z "$ip" ]; then echo "cluster-init: cannot resolve $node" >&2; exit 1; fi
  addresses="$addresses $ip:$(port_of "$node")"
done

# shellcheck disable=SC2086 # one word per node address
redis-cli --user admin --cluster create $addresses --cluster-replicas "$replicas" --cluster-yes
"""

_COUCHDB_SETUP = r"""#!/bin/sh
# Join the CouchDB nodes into one cluster through the _cluster_setup API (or finish a single
# node), then create the round-history databases. Runs to completion; safe to run again.
set -eu
nodes="${COUCHDB_NODES:?space-separated host names, the first one coordinates}"
dbs="${COUCHDB_DATABASES:-fl_workflows fl_rounds fl_nodes fl_models}"
user="${COUCHDB_USER:?}"
pass="${COUCHDB_PASSWORD:?}"
port=5984
tries="${WAIT_TRIES:-150}"
first="${nodes%% *}"
base="http://$first:$port"

case "$user$pass" in
  *[!0-9A-Za-z_-]*) echo "couchdb-setup: use letters, digits, - and _ in the credentials" >&2; exit 1 ;;
esac

post() { curl -fsS -u "$user:$pass" -H 'Content-Type: application/json' -X POST "$base/_cluster_setup" -d "$1"; echo; }

count=0
for host in $nodes; do
  count=$((count + 1))
  n=0
  until curl -fsS "http://$host:$port/_up" > /dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -ge "$tries" ]; then echo "couchdb-setup: $host never came up" >&2; exit 1; fi
    sleep 2
  done
done

state="$(curl -fsS -u "$user:$pass" "$base/_cluster_setup")"
case "$state" in
  *cluster_finished* | *single_node_enabled*) echo "couchdb-setup: already set up" ;;
  *)
    if [ "$count" -eq 1 ]; then
      post "{\"action\":\"enable_single_node\",\"bind_address\":\"0.0.0.0\",\"port\":$port,\"username\":\"$user\",\"password\":\"$pass\"}"
    else
      for host in $nodes; do
        if [ "$host" = "$first" ]; then continue; fi
        post "{\"action\":\"enable_cluster\",\"bind_address\":\"0.0.0.0\",\"port\":$port,\"node_count\":\"$count\",\"username\":\"$user\",\"password\":\"$pass\",\"remote_node\":\"$host\",\"remote_current_user\":\"$user\",\"remote_current_password\":\"$pass\"}"
        post "{\"action\":\"add_node\",\"host\":\"$host\",\"port\":$port,\"username\":\"$user\",\"password\":\"$pass\"}"
      done
      post '{"action":"finish_cluster"}'
    fi ;;
esac

for db in $dbs; do
  code="$(curl -sS -o /dev/null -w '%{http_code}' -u "$user:$pass" -X PUT "$base/$db")"
  case "$code" in
    201 | 202 | 412) echo "couchdb-setup: $db ready ($code)" ;;
    *) echo "couchdb-setup: creating $db answered $code" >&2; exit 1 ;;
  esac
done
"""

_GENESIS = r"""#!/bin/bash
# Write the genesis batch of a Sawtooth PBFT network into validator 0's data directory, once:
# the PBFT membership (every validator's public key) and the block-info batch injector, which
# gives the federation TP its on-chain clock.
#   compose:    VALIDATOR_HOMES=/validators holds 0..N-1, each a SAWTOOTH_HOME; missing keys are made
#   Kubernetes: VALIDATOR_PUBKEYS=/validator-keys holds validator-0.pub .. validator-(N-1).pub
set -euo pipefail
count="${VALIDATORS:?number of validators}"
members=""

if [ -n "${VALIDATOR_HOMES:-}" ]; then
  for ((i = 0; i < count; i++)); do
    home="$VALIDATOR_HOMES/$i"
    mkdir -p "$home/keys" "$home/data" "$home/logs"
    if [ ! -f "$home/keys/validator.priv" ]; then
      SAWTOOTH_HOME="$home" sawadm keygen --quiet
    fi
    members+="${members:+,}\"$(tr -d '[:space:]' < "$home/keys/validator.pub")\""
  done
  export SAWTOOTH_HOME="$VALIDATOR_HOMES/0"
else
  for ((i = 0; i < count; i++)); do
    members+="${members:+,}\"$(tr -d '[:space:]' < "${VALIDATOR_PUBKEYS:?}/validator-$i.pub")\""
  done
fi

data="${SAWTOOTH_HOME:?}/data"
if [ -e "$data/genesis.batch" ] || [ -e "$data/block-chain-id" ]; then
  echo "genesis: already written"
  exit 0
fi
mkdir -p "$data"
signer="$SAWTOOTH_HOME/keys/validator.priv"
work="$(mktemp -d)"
sawset genesis --key "$signer" -o "$work/config-genesis.batch"
sawset proposal create --key "$signer" -o "$work/config-consensus.batch" \
  sawtooth.consensus.algorithm.name=pbft \
  sawtooth.consensus.algorithm.version=1.0 \
  "sawtooth.consensus.pbft.members=[$members]" \
  sawtooth.validator.batch_injectors=block_info \
  "sawtooth.validator.block_validation_rules=NofX:1,block_info;XatY:block_info,0;local:0" \
  sawtooth.publisher.max_batches_per_block=200
sawadm genesis "$work/config-genesis.batch" "$work/config-consensus.batch"
rm -rf "$work"
echo "genesis: written for $count validators"
"""

_VALIDATOR = r"""#!/bin/bash
# Start validator N (N = the number at the end of the host name) with static peering to every
# validator with a lower number, so the N validators form a full mesh. In Kubernetes it first
# installs its own key from the key Secret and, on validator 0, writes the genesis batch.
set -euo pipefail
ordinal="${HOSTNAME##*-}"
domain="${VALIDATOR_DOMAIN:-}"
host() { echo "validator-$1${domain:+.$domain}"; }

if [ -n "${VALIDATOR_KEYS:-}" ]; then
  mkdir -p "$SAWTOOTH_HOME/keys" "$SAWTOOTH_HOME/data" "$SAWTOOTH_HOME/logs"
  if [ ! -f "$SAWTOOTH_HOME/keys/validator.priv" ]; then
    cp "$VALIDATOR_KEYS/validator-$ordinal.priv" "$SAWTOOTH_HOME/keys/validator.priv"
    cp "$VALIDATOR_KEYS/validator-$ordinal.pub" "$SAWTOOTH_HOME/keys/validator.pub"
    chmod 600 "$SAWTOOTH_HOME/keys/validator.priv"
  fi
  if [ "$ordinal" = 0 ]; then
    VALIDATOR_PUBKEYS="$VALIDATOR_KEYS" bash "$(dirname "$0")/genesis.sh"
  fi
fi

peers=""
for ((i = 0; i < ordinal; i++)); do
  peers+="${peers:+,}tcp://$(host "$i"):8800"
done
args=(-v --endpoint "tcp://$(host "$ordinal"):8800"
  --bind component:tcp://0.0.0.0:4004 --bind consensus:tcp://0.0.0.0:5050
  --bind network:tcp://0.0.0.0:8800 --scheduler parallel --peering static
  --maximum-peer-connectivity "${MAX_PEERS:-16}")
if [ -n "$peers" ]; then args+=(--peers "$peers"); fi
exec sawtooth-validator "${args[@]}"
"""

_MAKE_KEYS = r"""#!/bin/sh
# Make a key pair for every name in KEY_NAMES (skipping those already there) into KEY_DIR.
set -eu
dir="${KEY_DIR:-/keys}"
for name in ${KEY_NAMES:?space-separated key names}; do
  if [ ! -f "$dir/$name.priv" ]; then
    trustmesh keygen "$name" --dir "$dir"
  fi
done
"""

_INSTALL_KEY = r"""#!/bin/sh
# Copy this node's own key pair (NODE_NAME, the pod name) out of its role's key Secret, mounted
# whole at KEYS_FROM, into the node's own volume; the main container never sees the others.
set -eu
name="${NODE_NAME:?}"
from="${KEYS_FROM:?}"
to="${KEY_DIR:-/keys}"
if [ -f "$to/$name.priv" ]; then
  exit 0
fi
if [ ! -f "$from/$name.priv" ]; then
  echo "install-key: no key $name in the Secret; re-run the key Job with more nodes and list $name in the workflow" >&2
  exit 1
fi
umask 077
cp "$from/$name.priv" "$from/$name.pub" "$to/"
"""

SCRIPTS: dict[str, str] = {
    "make-keys.sh": _MAKE_KEYS,
    "install-key.sh": _INSTALL_KEY,
    "redis-start.sh": _REDIS_START,
    "redis-cluster-init.sh": _REDIS_CLUSTER_INIT,
    "couchdb-setup.sh": _COUCHDB_SETUP,
    "genesis.sh": _GENESIS,
    "validator.sh": _VALIDATOR,
}
