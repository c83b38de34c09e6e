#!/bin/sh
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
