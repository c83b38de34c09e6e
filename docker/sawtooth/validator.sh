#!/bin/bash
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
