"""Bytes that go on-chain: per submission (payload, transaction header, transaction, batch) for
both W1 models, inline vs by reference, and per W1 round for every action.

A block stores batches; a batch holds its header, its signature and its transactions (header,
signature, payload). Those serialized batch bytes are what a submission adds to the chain. State
is on-chain too: the "state" column is the bytes of every record the action (re)writes — the
round's submission index is rewritten in full by each submission, so it grows with the round.

State bytes of the round's index grow with the square of its participants (each submission
rewrites the whole index); "index after the last submission" is its final size.

Updates above 64 KiB travel by reference (the payload carries only the sha512; the blob goes to
Redis), so both W1 models go by reference with every dense codec. The inline rows show what the
same update would cost in the payload; rows over the limit are refused by the schema (and would be
by the TP). Sizes come from real encoders, keys and signatures: an update is a seeded random delta
with the model's shapes (codec sizes do not depend on the values; top-k keeps a fixed share).

    python bench/onchain_bytes.py [--models mlp,cnn] [--codecs f32,f16,int8,topk:0.01,topk:0.1] [--clients 10]

A table, then one JSON line.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sawtooth_sdk.protobuf.batch_pb2 import Batch
from sawtooth_sdk.protobuf.block_info_pb2 import BlockInfo, BlockInfoConfig
from sawtooth_signing import Signer

from trustmesh.contracts import blockinfo, cbor
from trustmesh.contracts.families import FEDERATION, IOT_DATA, Family
from trustmesh.contracts.records import MAX_INLINE_UPDATE, SCHEMA_VERSION
from trustmesh.contracts.rules import (
    MAX_SUBMISSION_PAYLOAD,
    Outcome,
    apply_federation,
    apply_submission,
    declared_addresses,
)
from trustmesh.contracts.view import MappingView
from trustmesh.contracts.workflow import load_workflow, register_payload
from trustmesh.fl.codecs import encode_params, encode_update
from trustmesh.fl.models import build_model
from trustmesh.fl.params import get_params
from trustmesh.ledger.batch import make_batch, make_transaction
from trustmesh.ledger.keys import new_signer, public_key_hex

EXAMPLE = "examples/mnist-federated.json"
WORKFLOW_ID = "w1-onchain-bytes"
SCHEDULE_ID = "w1-r1"


@dataclass(frozen=True)
class Sizes:
    """One transaction in its own batch: what each layer adds."""

    payload: int
    txn_header: int
    transaction: int
    batch: int

    @classmethod
    def of(cls, batch: Batch) -> Sizes:
        [txn] = batch.transactions
        return cls(len(txn.payload), len(txn.header), txn.ByteSize(), batch.ByteSize())


def signed_batch(signer: Signer, family: Family, payload: bytes, *, declare_as: bytes | None = None) -> Batch:
    """One signed transaction in one batch, declaring the addresses a client declares (those of
    ``declare_as`` for an over-limit payload the schema refuses)."""
    inputs, outputs = declared_addresses(family, declare_as or payload, public_key_hex(signer))
    txn = make_transaction(signer, family_name=family.name, family_version=family.version, payload=payload,
                           inputs=inputs, outputs=outputs)
    return make_batch(signer, [txn])


def random_delta(model: str) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {name: rng.normal(0.0, 1e-3, arr.shape).astype(np.float32)
            for name, arr in get_params(build_model(model)).items()}


def envelope(delta: dict[str, np.ndarray], label: str) -> bytes:
    codec, _, fraction = label.partition(":")
    return encode_update(delta, codec, topk_fraction=float(fraction) if fraction else 0.01)


def submission_body(envelope_bytes: bytes, *, inline: bool, num_samples: int = 400) -> bytes:
    """The iot-data payload (canonical CBOR) built field by field, so over-limit sizes can be measured."""
    return cbor.encode({
        "schema_version": SCHEMA_VERSION,
        "workflow_id": WORKFLOW_ID,
        "round": 1,
        "schedule_id": SCHEDULE_ID,
        "update_hash": hashlib.sha512(envelope_bytes).hexdigest(),
        "inline": envelope_bytes if inline else None,
        "num_samples": num_samples,
        "metrics": {"loss": 0.25, "accuracy": 0.91},
    })


# ------------------------------------------------------------------------------- a round, replayed


@dataclass
class Chain:
    """State in a dict with BlockInfo laid out as the injector does; every action is signed, sized and applied."""

    state: dict[str, bytes] = field(default_factory=dict)
    block: int = 0
    now: int = 1_700_000_000
    rows: list[tuple[str, Sizes, int]] = field(default_factory=list)

    def tick(self) -> None:
        self.block += 1
        self.now += 1
        info = BlockInfo(block_num=self.block, timestamp=self.now, previous_block_id="0" * 128)
        self.state[blockinfo.block_address(self.block)] = info.SerializeToString()
        self.state[blockinfo.CONFIG_ADDRESS] = BlockInfoConfig(
            latest_block=self.block, oldest_block=1, target_count=256, sync_tolerance=300).SerializeToString()

    def _commit(self, label: str, batch: Batch, outcome: Outcome) -> None:
        written = 0
        for address, value in outcome.changes.items():
            if value is None:
                self.state.pop(address, None)
            else:
                self.state[address] = value
                written += len(value)
        self.rows.append((label, Sizes.of(batch), written))

    def act(self, signer: Signer, action: str, **fields: Any) -> None:
        self.tick()
        payload = cbor.encode({"schema_version": SCHEMA_VERSION, "action": action, **fields})
        batch = signed_batch(signer, FEDERATION, payload)
        [txn] = batch.transactions
        outcome = apply_federation(MappingView(state=self.state), signer=public_key_hex(signer), payload=txn.payload)
        self._commit(action, batch, outcome)

    def submit(self, signer: Signer, payload: bytes) -> None:
        self.tick()
        batch = signed_batch(signer, IOT_DATA, payload)
        [txn] = batch.transactions
        outcome = apply_submission(MappingView(state=self.state), signer=public_key_hex(signer),
                                   payload=txn.payload, txn_id=txn.header_signature)
        self._commit("submit", batch, outcome)


def play_round(clients: int, submission: Callable[[int], bytes], model: str) -> Chain:
    """Register a W1 workflow (``clients`` participants, 2 compute nodes, k = 1) and play round 1 through."""
    coordinator, participants = new_signer(), [new_signer() for _ in range(clients)]
    aggregator, attester = new_signer(), new_signer()
    doc = load_workflow(EXAMPLE)
    doc["workflow_id"] = WORKFLOW_ID
    doc["expected_nodes"] = clients
    doc["model"]["name"] = model
    doc["data"]["num_partitions"] = clients
    doc["federation_config"].update(
        coordinator_node=public_key_hex(coordinator),
        participant_nodes=[public_key_hex(p) for p in participants],
        compute_nodes=[public_key_hex(aggregator), public_key_hex(attester)],
        min_nodes_required=max(1, clients // 2), attestations_required=1, round_timeout=3600)
    initial = hashlib.sha512(encode_params(get_params(build_model(model)))).hexdigest()
    registration = {k: v for k, v in register_payload(doc, initial_model_hash=initial).items()
                    if k not in ("schema_version", "action")}
    chain = Chain()
    chain.act(coordinator, "register_workflow", **registration)
    where = {"workflow_id": WORKFLOW_ID, "round": 1}
    chain.act(coordinator, "open_round", schedule_id=SCHEDULE_ID, **where)
    for number, participant in enumerate(participants):
        chain.submit(participant, submission(number))
    chain.act(attester, "heartbeat", workflow_id=WORKFLOW_ID)
    chain.act(aggregator, "close_round", **where)
    chain.act(aggregator, "claim_task", task="aggregate", **where)
    new_model = hashlib.sha512(b"aggregate of round 1").hexdigest()
    keys = sorted(public_key_hex(p) for p in participants)
    chain.act(aggregator, "post_result", model_hash=new_model, included=keys, excluded={}, **where)
    chain.act(attester, "attest_result", model_hash=new_model, **where)
    chain.act(attester, "claim_task", task="evaluate", **where)
    chain.act(attester, "record_evaluation", accuracy=0.9, loss=0.3, metrics={}, **where)
    return chain


def round_totals(chain: Chain) -> dict[str, dict[str, int]]:
    """Per action of the round (registration and the heartbeat left out): count, batch and state bytes."""
    totals: dict[str, dict[str, int]] = {}
    for label, sizes, written in chain.rows:
        if label in ("register_workflow", "heartbeat"):
            continue
        row = totals.setdefault(label, {"count": 0, "batch_bytes": 0, "state_bytes": 0})
        row["count"] += 1
        row["batch_bytes"] += sizes.batch
        row["state_bytes"] += written
    return totals


# ------------------------------------------------------------------------------- report


def report_round(model: str, clients: int, inline: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Play one round by reference (and inline with the smallest codec, if it fits); print and return totals."""
    delta = random_delta(model)
    reference_body = submission_body(envelope(delta, "f32"), inline=False)
    plans: dict[str, Callable[[int], bytes]] = {"by_reference": lambda _n: reference_body}
    smallest = min(inline, key=lambda label: inline[label]["update"])
    if inline[smallest]["allowed"]:
        inline_body = submission_body(envelope(delta, smallest), inline=True)
        plans[f"inline {smallest}"] = lambda _n: inline_body
    out: dict[str, Any] = {}
    for name, submission in plans.items():
        chain = play_round(clients, submission, model)
        totals = round_totals(chain)
        print(f"\nPer W1 round, {model}, {name} ({clients} participants, 2 compute nodes, 1 attestation)")
        print(f"{'action':<18} {'count':>5} {'batch bytes':>12} {'state bytes':>12}")
        for action, row in totals.items():
            print(f"{action:<18} {row['count']:>5} {row['batch_bytes']:>12,} {row['state_bytes']:>12,}")
        batch_total = sum(r["batch_bytes"] for r in totals.values())
        state_total = sum(r["state_bytes"] for r in totals.values())
        print(f"{'round total':<18} {sum(r['count'] for r in totals.values()):>5} {batch_total:>12,} "
              f"{state_total:>12,}")
        one_off = {label: sizes.batch for label, sizes, _ in chain.rows if label in ("register_workflow", "heartbeat")}
        index_bytes = max(written for label, _, written in chain.rows if label == "submit")
        print(f"(index after the last submission {index_bytes:,} B; once per workflow: register_workflow "
              f"{one_off['register_workflow']:,} B; each heartbeat {one_off['heartbeat']:,} B)")
        out[name] = {"actions": totals, "batch_bytes": batch_total, "state_bytes": state_total,
                     "index_bytes": index_bytes, "register_workflow_batch": one_off["register_workflow"],
                     "heartbeat_batch": one_off["heartbeat"]}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="mlp,cnn")
    parser.add_argument("--codecs", default="f32,f16,int8,topk:0.01,topk:0.1")
    parser.add_argument("--clients", type=int, default=10, help="participants per round (W1: 10)")
    args = parser.parse_args()
    signer = new_signer()
    figures: dict[str, Any] = {"inline_limit": MAX_INLINE_UPDATE, "max_submission_payload": MAX_SUBMISSION_PAYLOAD,
                               "clients": args.clients, "models": {}}
    print(f"Per submission (one transaction in its own batch); inline limit {MAX_INLINE_UPDATE:,} B of update, "
          f"payload limit {MAX_SUBMISSION_PAYLOAD:,} B")
    head = f"{'model':<5} {'params':>9} {'codec':<10} {'mode':<9} {'update':>10} {'payload':>10} {'txn hdr':>8} " \
           f"{'txn':>10} {'batch':>10}  allowed"
    print(head)
    print("-" * len(head))
    for model in args.models.split(","):
        delta = random_delta(model)
        params = sum(int(a.size) for a in delta.values())
        entry: dict[str, Any] = {"params": params, "inline": {}}
        by_reference = submission_body(envelope(delta, "f32"), inline=False)
        reference = Sizes.of(signed_batch(signer, IOT_DATA, by_reference))
        entry["by_reference"] = reference.__dict__
        print(f"{model:<5} {params:>9,} {'any':<10} {'reference':<9} {'-':>10} {reference.payload:>10,} "
              f"{reference.txn_header:>8,} {reference.transaction:>10,} {reference.batch:>10,}  yes")
        for label in args.codecs.split(","):
            blob = envelope(delta, label)
            body = submission_body(blob, inline=True)
            allowed = len(blob) <= MAX_INLINE_UPDATE and len(body) <= MAX_SUBMISSION_PAYLOAD
            sizes = Sizes.of(signed_batch(signer, IOT_DATA, body, declare_as=None if allowed else by_reference))
            entry["inline"][label] = {"update": len(blob), **sizes.__dict__, "allowed": allowed}
            print(f"{model:<5} {params:>9,} {label:<10} {'inline':<9} {len(blob):>10,} {sizes.payload:>10,} "
                  f"{sizes.txn_header:>8,} {sizes.transaction:>10,} {sizes.batch:>10,}  {'yes' if allowed else 'no'}")
        figures["models"][model] = entry

    figures["round"] = {}
    for model in args.models.split(","):
        figures["round"][model] = report_round(model, args.clients, figures["models"][model]["inline"])
    print(json.dumps(figures, sort_keys=True))


if __name__ == "__main__":
    main()
