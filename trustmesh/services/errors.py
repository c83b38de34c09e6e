"""Errors of the local service launchers."""
from trustmesh.errors import TrustMeshError

__all__ = ["ServiceError"]


class ServiceError(TrustMeshError):
    """A local server could not be started, did not become ready, or is not installed.

    The message names the cause (and the install command when something is missing); retrying
    the same call rarely helps.
    """
