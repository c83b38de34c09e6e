"""Exceptions of the privacy library, all under the project's tree (trustmesh.errors)."""
from trustmesh.errors import ConfigError, TrustMeshError


class PrivacyError(TrustMeshError):
    """A privacy rule was broken by the caller. Not retried: fix the call."""


class PrivacyAlreadyApplied(PrivacyError):
    """Clipping and noise were already applied for this round; a second draw would leak. Reuse the first."""


class PrivacyConfigError(ConfigError):
    """A privacy setting (clip, noise multiplier, epsilon, delta, rate) is out of range. Fix the workflow."""


class SecAggFailed(PrivacyError):
    """Secure aggregation cannot finish this round (too few survivors, tampered share). The round fails."""


class RevealRefused(PrivacyError):
    """A participant was asked for both secrets of one peer (or shares for a set it cannot trust)."""


class SecAggMessageInvalid(PrivacyError):
    """A secure-aggregation message does not decode or fails its checks. Treat the sender as dropped."""
