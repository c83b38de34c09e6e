"""Privacy for federated rounds: client-level DP (distributed Gaussian noise, RDP accounting) and
secure aggregation. See docs/privacy.md for the choices and their consequences."""
from trustmesh.privacy.accountant import epsilon_after, privacy_record, rounds_allowed
from trustmesh.privacy.dp import (
    DistributedNoise,
    RoundPrivatizer,
    add_gaussian_noise,
    clip_delta,
    weighted_noise_multiplier,
)
from trustmesh.privacy.errors import (
    PrivacyAlreadyApplied,
    PrivacyConfigError,
    PrivacyError,
    RevealRefused,
    SecAggFailed,
    SecAggMessageInvalid,
)

__all__ = [
    "DistributedNoise",
    "PrivacyAlreadyApplied",
    "PrivacyConfigError",
    "PrivacyError",
    "RevealRefused",
    "RoundPrivatizer",
    "SecAggFailed",
    "SecAggMessageInvalid",
    "add_gaussian_noise",
    "clip_delta",
    "epsilon_after",
    "privacy_record",
    "rounds_allowed",
    "weighted_noise_multiplier",
]
