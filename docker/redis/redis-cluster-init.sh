#!/bin/sh
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
