"""Payload and state-record schemas of both families, as strict ``Record`` dataclasses.

Every payload and state record carries ``schema_version`` (currently 1). Identities are compressed
secp256k1 public keys (66 lowercase hex); hashes are sha512 hex (128 lowercase hex).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Literal

from trustmesh.contracts.schema import Len, Match, Range, Record

SCHEMA_VERSION = 1
MAX_PARTICIPANTS = 1024
MAX_COMPUTE_NODES = 64
MAX_INLINE_UPDATE = 64 * 1024
MAX_METRICS = 16

Version = Literal[1]
PublicKey = Annotated[str, Match(r"0[23][0-9a-f]{64}")]
Sha512Hex = Annotated[str, Match(r"[0-9a-f]{128}")]
Ident = Annotated[str, Match(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")]
RoundNo = Annotated[int, Range(1, 1_000_000)]
Seconds = Annotated[int, Range(1, 30 * 86400)]
BlockTime = Annotated[int, Range(0, 1 << 62)]
Fraction = Annotated[float, Range(0.0, 1.0)]
Metrics = Annotated[dict[Annotated[str, Len(1, 32)], float], Len(0, MAX_METRICS)]
Participants = Annotated[tuple[PublicKey, ...], Len(0, MAX_PARTICIPANTS)]
ComputeNodes = Annotated[tuple[PublicKey, ...], Len(1, MAX_COMPUTE_NODES)]

ModelName = Literal["mlp", "cnn"]
AggregatorName = Literal[
    "fedavg", "perffedavg", "median", "trimmed_mean", "krum", "multi_krum", "cosine_trim", "trend_trim",
    "fedadam", "fedyogi",
]
ROBUST_AGGREGATORS = frozenset({"median", "trimmed_mean", "krum", "multi_krum", "cosine_trim", "trend_trim"})
ExclusionReason = Literal[
    "hash_mismatch", "blob_unavailable", "wrong_shape", "non_finite", "norm_bound", "duplicate"
]
EXCLUSION_REASONS: tuple[str, ...] = (
    "hash_mismatch", "blob_unavailable", "wrong_shape", "non_finite", "norm_bound", "duplicate"
)
TaskName = Literal["aggregate", "evaluate"]


# ---------------------------------------------------------------- workflow spec (part of payload + state)


@dataclass(frozen=True, kw_only=True)
class TrainingSpec(Record):
    """Local training settings every participant uses."""

    lr: Annotated[float, Range(1e-9, 10.0)]
    momentum: Annotated[float, Range(0.0, 1.0)]
    batch_size: Annotated[int, Range(1, 1 << 16)]
    local_epochs: Annotated[int, Range(1, 1000)]
    fedprox_mu: Annotated[float, Range(0.0, 100.0)]


@dataclass(frozen=True, kw_only=True)
class AggregationSpec(Record):
    """The aggregator, its numeric parameters and the delta norm bound (None = no bound)."""

    name: AggregatorName
    params: Annotated[dict[Annotated[str, Len(1, 32)], float], Len(0, 16)] = field(default_factory=dict)
    norm_bound: Annotated[float, Range(0.0, 1e12)] | None = None


@dataclass(frozen=True, kw_only=True)
class DPSpec(Record):
    """Differential privacy: mode, clip norm, noise multiplier and the (epsilon, delta) budget."""

    mode: Literal["none", "client", "sample"]
    clip: Annotated[float, Range(0.0, 1e12)] | None = None
    noise_multiplier: Annotated[float, Range(0.0, 1e6)] | None = None
    epsilon: Annotated[float, Range(0.0, 1e6)] | None = None
    delta: Fraction | None = None


@dataclass(frozen=True, kw_only=True)
class SecureAggregationSpec(Record):
    """Pairwise-mask secure aggregation: its Shamir threshold and the SecAgg+ neighbour degree k.

    ``neighbours`` None is the complete graph (everyone masks with everyone); k makes each participant
    share secrets and masks with about k neighbours only, and t then counts within a neighbourhood.
    """

    enabled: bool
    threshold: Annotated[int, Range(2, MAX_PARTICIPANTS)] | None = None
    phase_timeout: Seconds = 15
    neighbours: Annotated[int, Range(2, MAX_PARTICIPANTS)] | None = None


@dataclass(frozen=True, kw_only=True)
class PrivacySpec(Record):
    dp: DPSpec
    secure_aggregation: SecureAggregationSpec


@dataclass(frozen=True, kw_only=True)
class GateSpec(Record):
    """Validation gate: a new model is accepted if accuracy >= min_accuracy and it drops <= max_drop."""

    min_accuracy: Fraction
    max_drop: Fraction


@dataclass(frozen=True, kw_only=True)
class DataSpec(Record):
    dataset: Literal["mnist", "digits"]
    partition: Literal["iid", "dirichlet", "shards"]
    num_partitions: Annotated[int, Range(1, MAX_PARTICIPANTS)]
    alpha: Annotated[float, Range(1e-6, 1e6)] | None = None
    shards_per_node: Annotated[int, Range(1, 10_000)] | None = None


@dataclass(frozen=True, kw_only=True)
class WorkflowSpec(Record):
    """Everything about a workflow that is not membership or progress."""

    app_id: Ident
    model: ModelName
    rounds: Annotated[int, Range(1, 100_000)]
    round_timeout: Seconds
    min_nodes_required: Annotated[int, Range(1, MAX_PARTICIPANTS)]
    expected_nodes: Annotated[int, Range(1, MAX_PARTICIPANTS)]
    enrolment: Literal["open", "closed"]
    attestations_required: Annotated[int, Range(0, MAX_COMPUTE_NODES - 1)]
    lease_seconds: Seconds
    max_samples_per_node: Annotated[int, Range(1, 1_000_000_000)]
    training: TrainingSpec
    aggregation: AggregationSpec
    privacy: PrivacySpec
    gate: GateSpec
    data: DataSpec


# ---------------------------------------------------------------- federation payloads


@dataclass(frozen=True, kw_only=True)
class RegisterWorkflow(Record):
    """Register a workflow; the signer becomes its coordinator."""

    schema_version: Version
    action: Literal["register_workflow"]
    workflow_id: Ident
    spec: WorkflowSpec
    participants: Participants
    compute_nodes: ComputeNodes
    privacy_cap: Annotated[int, Range(1, 100_000)]
    initial_model_hash: Sha512Hex


@dataclass(frozen=True, kw_only=True)
class Enroll(Record):
    """The signer asks to join an open-enrolment workflow."""

    schema_version: Version
    action: Literal["enroll"]
    workflow_id: Ident


@dataclass(frozen=True, kw_only=True)
class Approve(Record):
    """The coordinator admits an enrolled node as a participant."""

    schema_version: Version
    action: Literal["approve"]
    workflow_id: Ident
    node: PublicKey


@dataclass(frozen=True, kw_only=True)
class OpenRound(Record):
    """The coordinator opens round ``round`` (= last + 1) under its own ``schedule_id``."""

    schema_version: Version
    action: Literal["open_round"]
    workflow_id: Ident
    round: RoundNo
    schedule_id: Ident
    epsilon_spent: Annotated[float, Range(0.0, 1e6)] | None = None


@dataclass(frozen=True, kw_only=True)
class Heartbeat(Record):
    """A participant or compute node records that it is alive (and moves block time on)."""

    schema_version: Version
    action: Literal["heartbeat"]
    workflow_id: Ident


@dataclass(frozen=True, kw_only=True)
class CloseRound(Record):
    schema_version: Version
    action: Literal["close_round"]
    workflow_id: Ident
    round: RoundNo


@dataclass(frozen=True, kw_only=True)
class ClaimTask(Record):
    schema_version: Version
    action: Literal["claim_task"]
    workflow_id: Ident
    round: RoundNo
    task: TaskName


@dataclass(frozen=True, kw_only=True)
class PostResult(Record):
    """The aggregate lease holder's result: new model hash and a verdict on every indexed submission."""

    schema_version: Version
    action: Literal["post_result"]
    workflow_id: Ident
    round: RoundNo
    model_hash: Sha512Hex
    aggregator_state_hash: Sha512Hex | None = None
    included: Participants
    excluded: Annotated[dict[PublicKey, ExclusionReason], Len(0, MAX_PARTICIPANTS)]


@dataclass(frozen=True, kw_only=True)
class AttestResult(Record):
    """Another compute node's recomputation of the posted result."""

    schema_version: Version
    action: Literal["attest_result"]
    workflow_id: Ident
    round: RoundNo
    model_hash: Sha512Hex
    aggregator_state_hash: Sha512Hex | None = None


@dataclass(frozen=True, kw_only=True)
class RecordEvaluation(Record):
    schema_version: Version
    action: Literal["record_evaluation"]
    workflow_id: Ident
    round: RoundNo
    accuracy: Fraction
    loss: Annotated[float, Range(0.0, 1e12)] | None = None
    metrics: Metrics = field(default_factory=dict)


# ---------------------------------------------------------------- secure-aggregation payloads

X25519Public = Annotated[bytes, Len(32, 32)]
Commitment = Annotated[bytes, Len(32, 32)]
ShareBytes = Annotated[bytes, Len(16, 64)]
ShareTable = Annotated[dict[PublicKey, ShareBytes], Len(0, MAX_PARTICIPANTS)]


@dataclass(frozen=True, kw_only=True)
class SecAggAdvertise(Record):
    """Phase advertise: a participant's two X25519 public keys and its self-mask seed commitment."""

    schema_version: Version
    action: Literal["secagg_advertise"]
    workflow_id: Ident
    round: RoundNo
    enc_public: X25519Public
    mask_public: X25519Public
    seed_commitment: Commitment


@dataclass(frozen=True, kw_only=True)
class SecAggShares(Record):
    """Phase share: the hash of the participant's encrypted share envelopes (carried through Redis)."""

    schema_version: Version
    action: Literal["secagg_shares"]
    workflow_id: Ident
    round: RoundNo
    bundle_hash: Sha512Hex


@dataclass(frozen=True, kw_only=True)
class SecAggReveal(Record):
    """Phase unmask: a survivor's shares — of each survivor's seed, of each dropped member's mask key."""

    schema_version: Version
    action: Literal["secagg_reveal"]
    workflow_id: Ident
    round: RoundNo
    seed_shares: ShareTable
    key_shares: ShareTable


@dataclass(frozen=True, kw_only=True)
class SecAggAdvance(Record):
    """Anyone ends the current secure-aggregation phase once all have acted or its deadline passed."""

    schema_version: Version
    action: Literal["secagg_advance"]
    workflow_id: Ident
    round: RoundNo


MAX_STEPS = 8
MAX_STEP_BYTES = 256 * 1024


@dataclass(frozen=True, kw_only=True)
class Steps(Record):
    """Several federation actions of one signer as one transaction, applied in order, all or none:
    what a batch of those actions does, in one execution instead of one per action. Each step is a
    federation payload of the same workflow (canonical CBOR), and none is itself ``steps``."""

    schema_version: Version
    action: Literal["steps"]
    workflow_id: Ident
    steps: Annotated[tuple[Annotated[bytes, Len(1, MAX_STEP_BYTES)], ...], Len(2, MAX_STEPS)]


FederationPayload = (
    RegisterWorkflow | Enroll | Approve | OpenRound | Heartbeat | CloseRound | ClaimTask
    | PostResult | AttestResult | RecordEvaluation
    | SecAggAdvertise | SecAggShares | SecAggReveal | SecAggAdvance | Steps
)
FEDERATION_ACTIONS: dict[str, type[Record]] = {
    "register_workflow": RegisterWorkflow,
    "enroll": Enroll,
    "approve": Approve,
    "open_round": OpenRound,
    "heartbeat": Heartbeat,
    "close_round": CloseRound,
    "claim_task": ClaimTask,
    "post_result": PostResult,
    "attest_result": AttestResult,
    "record_evaluation": RecordEvaluation,
    "secagg_advertise": SecAggAdvertise,
    "secagg_shares": SecAggShares,
    "secagg_reveal": SecAggReveal,
    "secagg_advance": SecAggAdvance,
    "steps": Steps,
}


# ---------------------------------------------------------------- iot-data payload


@dataclass(frozen=True, kw_only=True)
class SubmitUpdate(Record):
    """A participant's model update for a round: inline envelope bytes, or none (by reference)."""

    schema_version: Version
    workflow_id: Ident
    round: RoundNo
    schedule_id: Ident
    update_hash: Sha512Hex
    inline: Annotated[bytes, Len(1, MAX_INLINE_UPDATE)] | None = None
    num_samples: Annotated[int, Range(1, 1 << 40)]
    metrics: Metrics = field(default_factory=dict)


# ---------------------------------------------------------------- state records


@dataclass(frozen=True, kw_only=True)
class WorkflowRecord(Record):
    """State of a workflow: spec, members, current model and progress."""

    schema_version: Version
    workflow_id: Ident
    coordinator: PublicKey
    spec: WorkflowSpec
    participants: Participants
    compute_nodes: ComputeNodes
    privacy_cap: Annotated[int, Range(1, 100_000)]
    status: Literal["active", "completed"]
    model_hash: Sha512Hex
    model_version: Annotated[int, Range(0, 1_000_000)]
    model_accuracy: Fraction | None = None
    aggregator_state_hash: Sha512Hex | None = None
    last_round: Annotated[int, Range(0, 1_000_000)]

    @property
    def final_round(self) -> int:
        """The last round that may ever open: the fewer of ``rounds`` and the privacy cap."""
        return min(self.spec.rounds, self.privacy_cap)


@dataclass(frozen=True, kw_only=True)
class Lease(Record):
    task: TaskName
    holder: PublicKey
    until: BlockTime


@dataclass(frozen=True, kw_only=True)
class Result(Record):
    aggregator: PublicKey
    model_hash: Sha512Hex
    aggregator_state_hash: Sha512Hex | None = None
    included: Participants
    excluded: Annotated[dict[PublicKey, ExclusionReason], Len(0, MAX_PARTICIPANTS)]
    posted_at: BlockTime


@dataclass(frozen=True, kw_only=True)
class Dispute(Record):
    aggregator: PublicKey
    attester: PublicKey
    posted_hash: Sha512Hex
    attested_hash: Sha512Hex


@dataclass(frozen=True, kw_only=True)
class Evaluation(Record):
    evaluator: PublicKey
    accuracy: Fraction
    loss: Annotated[float, Range(0.0, 1e12)] | None = None
    metrics: Metrics = field(default_factory=dict)
    verdict: Literal["accepted", "rejected"]
    previous_model_hash: Sha512Hex
    previous_accuracy: Fraction | None = None
    at: BlockTime


RoundStatus = Literal["open", "unmasking", "ready", "failed", "aggregated", "verified", "accepted", "rejected"]


@dataclass(frozen=True, kw_only=True)
class RoundRecord(Record):
    """State of one round: from ``open`` to a verdict."""

    schema_version: Version
    workflow_id: Ident
    round: RoundNo
    schedule_id: Ident
    base_model_hash: Sha512Hex
    opened_at: BlockTime
    deadline: BlockTime
    status: RoundStatus
    epsilon_spent: Annotated[float, Range(0.0, 1e6)] | None = None
    closed_at: BlockTime | None = None
    submitted: Annotated[int, Range(0, MAX_PARTICIPANTS)] | None = None
    lease: Lease | None = None
    barred: Annotated[tuple[PublicKey, ...], Len(0, MAX_COMPUTE_NODES)] = ()
    result: Result | None = None
    attestations: Annotated[tuple[PublicKey, ...], Len(0, MAX_COMPUTE_NODES)] = ()
    disputes: Annotated[tuple[Dispute, ...], Len(0, MAX_COMPUTE_NODES)] = ()
    evaluation: Evaluation | None = None


@dataclass(frozen=True, kw_only=True)
class ScheduleRecord(Record):
    """Which round a schedule id names (makes schedule ids unique within a workflow)."""

    schema_version: Version
    workflow_id: Ident
    schedule_id: Ident
    round: RoundNo


@dataclass(frozen=True, kw_only=True)
class NodeRecord(Record):
    """A node's standing in a workflow: enrolment state and last heartbeat (block time)."""

    schema_version: Version
    workflow_id: Ident
    key: PublicKey
    enrolment: Literal["pending", "approved"] | None = None
    last_heartbeat: BlockTime | None = None


@dataclass(frozen=True, kw_only=True)
class IndexEntry(Record):
    update_hash: Sha512Hex
    num_samples: Annotated[int, Range(1, 1_000_000_000)]
    metrics: Metrics = field(default_factory=dict)
    txn_id: Annotated[str, Len(1, 256)]
    inline: bool


@dataclass(frozen=True, kw_only=True)
class SubmissionIndex(Record):
    """The round's submissions keyed by signer key (iot-data family; read by the federation rules)."""

    schema_version: Version
    workflow_id: Ident
    round: RoundNo
    schedule_id: Ident
    entries: Annotated[dict[PublicKey, IndexEntry], Len(0, MAX_PARTICIPANTS)]


# ---------------------------------------------------------------- secure-aggregation state

SecAggPhase = Literal["advertise", "share", "input", "unmask", "complete", "failed"]


@dataclass(frozen=True, kw_only=True)
class SecAggKeys(Record):
    """One participant's advertised keys, and the hash of its share envelopes once it sent them."""

    enc_public: X25519Public
    mask_public: X25519Public
    seed_commitment: Commitment
    bundle_hash: Sha512Hex | None = None


@dataclass(frozen=True, kw_only=True)
class SecAggRevealed(Record):
    seed_shares: ShareTable
    key_shares: ShareTable


@dataclass(frozen=True, kw_only=True)
class SecAggRecord(Record):
    """A secure-aggregation round's phases on-chain: roster (keys), members, survivors and reveals.

    roster = the participants that advertised (fixed when ``advertise`` ends); members = those that
    also sent their shares (fixed when ``share`` ends); survivors = members that submitted a masked
    input (fixed by ``close_round``); dropped = members - survivors. ``neighbours`` is the workflow's
    SecAgg+ degree k when the round opened (None = complete graph); the graph is over the roster.
    """

    schema_version: Version
    workflow_id: Ident
    round: RoundNo
    threshold: Annotated[int, Range(2, MAX_PARTICIPANTS)]
    phase: SecAggPhase
    phase_deadline: BlockTime
    keys: Annotated[dict[PublicKey, SecAggKeys], Len(0, MAX_PARTICIPANTS)] = field(default_factory=dict)
    members: Participants = ()
    survivors: Participants = ()
    reveals: Annotated[dict[PublicKey, SecAggRevealed], Len(0, MAX_PARTICIPANTS)] = field(default_factory=dict)
    failure: Annotated[str, Len(1, 200)] | None = None
    neighbours: Annotated[int, Range(2, MAX_PARTICIPANTS)] | None = None

    @property
    def dropped(self) -> tuple[str, ...]:
        return tuple(m for m in self.members if m not in self.survivors)
