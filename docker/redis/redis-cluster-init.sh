#!/bin/sh
# Create the Redis Cluster once every node answers (masters first, then the replicas), unless the
# first node already reports a healthy cluster. Runs to completion; safe to run again.
set -eu
nodes="${REDIS_NODES:?space-separated host names of every node}"
replicas="${REDIS_REPLICAS:-1}"
port="${REDIS_PORT:-6379}"
tries="${WAIT_TRIES:-150}"
export REDISCLI_AUTH="${REDIS_ADMIN_PASSWORD:?}"

cli() { redis-cli --user admin -p "$port" "$@"; }

for host in $nodes; do
  n=0
  until cli -h "$host" ping > /dev/null 2>&1; do
    n=$((n + 1))
    if [ "$n" -ge "$tries" ]; then echo "cluster-init: $host never answered" >&2; exit 1; fi
    sleep 2
  done
done

first="${nodes%% *}"
if cli -h "$first" cluster info | grep -q '^cluster_state:ok'; then
  echo "cluster-init: the cluster is already formed"
  exit 0
fi

addresses=""
for host in $nodes; do
  ip="$(getent hosts "$host" | awk '{ print $1; exit }')"
  if [ -z "$ip" ]; then echo "cluster-init: cannot resolve $host" >&2; exit 1; fi
  addresses="$addresses $ip:$port"
done

# shellcheck disable=SC2086 # one word per node address
cli --cluster create $addresses --cluster-replicas "$replicas" --cluster-yes
