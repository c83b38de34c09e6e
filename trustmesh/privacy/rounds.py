"""DP as a workflow runs it: one place that turns the workflow's privacy section into what each
participant does, the on-chain round cap and the epsilon spent after each round.

Client-level distributed DP (docs/privacy.md): every participant clips its delta to C and adds its
share of the Gaussian noise, so the aggregate stays recomputable from the chain and verify-round is
unchanged. The accountant assumes the smallest quorum that can close a round (min_nodes_required).
Sample-level DP-SGD: every participant trains with Opacus on its partition; the unit is one example
and the accountant assumes the partition that spends the most (smallest N, largest q = B/N).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from trustmesh.privacy.accountant import dpsgd_round_steps, epsilon_after, rounds_allowed
from trustmesh.privacy.dp import DistributedNoise
from trustmesh.privacy.errors import PrivacyConfigError

DEFAULT_DELTA = 1e-5
SAMPLING_RATE = 1.0  # every participant takes part in every round


def _getter(section: Any) -> Any:
    """``get(key, default)`` over a mapping or a record (DPSpec, TrainingSpec, DataSpec)."""
    if isinstance(section, Mapping):
        return section.get
    return lambda k, default=None: getattr(section, k, default)


@dataclass(frozen=True)
class ClientDP:
    noise: DistributedNoise
    epsilon: float | None
    delta: float

    mechanism = "client-dp-gaussian"
    unit = "participant"

    @property
    def clip(self) -> float:
        return self.noise.clip

    @property
    def noise_multiplier(self) -> float:
        return self.noise.noise_multiplier

    def round_cap(self, max_rounds: int) -> int:
        """Rounds the (epsilon, delta) budget allows, at most ``max_rounds`` (recorded on-chain)."""
        if self.epsilon is None:
            return max_rounds
        return rounds_allowed(self.epsilon, self.delta, self.noise.accounting_noise_multiplier,
                              SAMPLING_RATE, max_rounds)

    def epsilon_spent(self, rounds: int) -> float:
        """Epsilon after ``rounds`` rounds, for the round record and the audit trail."""
        return epsilon_after(rounds, noise_multiplier=self.noise.accounting_noise_multiplier,
                             sampling_rate=SAMPLING_RATE, delta=self.delta)


def client_dp(dp: Any, *, expected_nodes: int, min_nodes: int) -> ClientDP | None:
    """The client-level DP plan of a workflow's ``privacy.dp`` section (a mapping or DPSpec); None if off."""
    get = _getter(dp)
    mode = get("mode", "none")
    if mode == "none":
        return None
    if mode != "client":
        raise PrivacyConfigError(f"privacy.dp.mode {mode!r} is not client-level DP (see sample_dp)")
    clip, z = get("clip"), get("noise_multiplier")
    if clip is None or z is None:
        raise PrivacyConfigError("client-level DP needs privacy.dp.clip and privacy.dp.noise_multiplier")
    noise = DistributedNoise(noise_multiplier=float(z), clip=float(clip), expected_nodes=expected_nodes,
                             min_nodes=min_nodes)
    delta = get("delta") or DEFAULT_DELTA
    epsilon = get("epsilon")
    return ClientDP(noise=noise, epsilon=float(epsilon) if epsilon is not None else None, delta=float(delta))


@dataclass(frozen=True)
class SampleDP:
    """Sample-level DP-SGD: each participant runs Opacus (clip each example's gradient to C, noise z)
    for ``local_epochs`` epochs of Poisson batches of expected size B on its partition, every round."""

    noise_multiplier: float
    clip: float
    epsilon: float | None
    delta: float
    batch_size: int
    local_epochs: int
    partition_sizes: tuple[int, ...]

    mechanism = "dp-sgd-opacus"
    unit = "example"

    def accounting(self, samples: int) -> tuple[float, int]:
        """(q, steps a round) of a participant holding ``samples`` examples."""
        return dpsgd_round_steps(samples, batch_size=self.batch_size, epochs=self.local_epochs)

    def epsilon_of(self, samples: int, rounds: int) -> float:
        """Epsilon after ``rounds`` rounds for the examples of a partition of ``samples``."""
        q, steps = self.accounting(samples)
        return epsilon_after(rounds * steps, noise_multiplier=self.noise_multiplier, sampling_rate=q,
                             delta=self.delta)

    def round_cap(self, max_rounds: int) -> int:
        """Rounds every partition's budget allows, at most ``max_rounds`` (recorded on-chain)."""
        if self.epsilon is None:
            return max_rounds
        caps = []
        for samples in sorted(set(self.partition_sizes)):
            q, steps = self.accounting(samples)
            caps.append(rounds_allowed(self.epsilon, self.delta, self.noise_multiplier, q, max_rounds,
                                       steps_per_round=steps))
        return min(caps)

    def epsilon_spent(self, rounds: int) -> float:
        """The largest epsilon any partition has spent after ``rounds`` rounds."""
        return max(self.epsilon_of(samples, rounds) for samples in set(self.partition_sizes))


def partition_sizes(data: Any) -> tuple[int, ...]:
    """How many training examples each participant's partition holds (cut as participants cut them)."""
    from trustmesh.fl.data import load_dataset
    from trustmesh.fl.partition import partition_indices

    get = _getter(data)
    dataset = load_dataset(get("dataset"))
    labels = np.zeros(int(dataset.train_indices.max()) + 1, dtype=np.int64)
    labels[dataset.train_indices] = dataset.y_train
    alpha = get("alpha")
    parts = partition_indices(labels, dataset.train_indices, get("partition"), int(get("num_partitions")),
                              alpha=alpha if alpha is not None else 0.5,
                              shards_per_client=get("shards_per_node") or 2)
    return tuple(len(part) for part in parts)


def sample_dp(dp: Any, *, training: Any, sizes: Sequence[int]) -> SampleDP | None:
    """The DP-SGD plan of a workflow's ``privacy.dp`` and ``local_training``, accounted for partitions
    of ``sizes`` examples (all of them at the coordinator, its own at a participant); None if off."""
    get, train = _getter(dp), _getter(training)
    mode = get("mode", "none")
    if mode == "none":
        return None
    if mode != "sample":
        raise PrivacyConfigError(f"privacy.dp.mode {mode!r} is not sample-level DP-SGD (see client_dp)")
    clip, z = get("clip"), get("noise_multiplier")
    if clip is None or z is None:
        raise PrivacyConfigError("DP-SGD needs privacy.dp.clip and privacy.dp.noise_multiplier")
    if not (float(clip) > 0 and math.isfinite(float(z)) and float(z) >= 0):
        raise PrivacyConfigError(f"DP-SGD needs clip > 0 and a finite z >= 0, got C={clip}, z={z}")
    if float(train("fedprox_mu", 0.0) or 0.0) > 0:
        raise PrivacyConfigError("local_training.fedprox_mu must be 0 with DP-SGD: Opacus clips per-example "
                                 "gradients only, so a proximal term would bypass clipping and noise")
    if not sizes or min(sizes) < 1:
        raise PrivacyConfigError(f"DP-SGD needs every partition to hold at least one example, got {list(sizes)}")
    epsilon = get("epsilon")
    return SampleDP(noise_multiplier=float(z), clip=float(clip),
                    epsilon=float(epsilon) if epsilon is not None else None,
                    delta=float(get("delta") or DEFAULT_DELTA), batch_size=int(train("batch_size")),
                    local_epochs=int(train("local_epochs")), partition_sizes=tuple(int(n) for n in sizes))


def round_privacy(dp: Any, *, expected_nodes: int, min_nodes: int, training: Any,
                  data: Any) -> ClientDP | SampleDP | None:
    """The workflow's DP plan whichever the mode: what the coordinator records on-chain and per round."""
    mode = _getter(dp)("mode", "none")
    if mode == "sample":
        return sample_dp(dp, training=training, sizes=partition_sizes(data))
    return client_dp(dp, expected_nodes=expected_nodes, min_nodes=min_nodes)
