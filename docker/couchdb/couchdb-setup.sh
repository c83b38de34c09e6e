#!/bin/sh
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
