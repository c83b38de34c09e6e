#!/bin/bash
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
