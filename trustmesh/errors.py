"""The project's exception tree. Each docstring says when it is raised and what a caller does.

Third-party errors (zmq, redis, HTTP) are mapped to these once, at the boundary that meets them.
The CLI prints ``str(error)`` of any :class:`TrustMeshError` as one line and exits non-zero.
"""


class TrustMeshError(Exception):
    """Base of every error this project raises on purpose. Not retried by default."""


class ConfigError(TrustMeshError):
    """Bad user input: a file, flag or workflow that does not validate. Fix the input; no retry."""


class LedgerError(TrustMeshError):
    """The ledger answered with an error or could not be reached. Retry may help."""


class LedgerTimeout(LedgerError):
    """The ledger did not answer within the named timeout. Retry later."""


class TransactionRejected(LedgerError):
    """A batch was INVALID: the transaction processor's reason is in the message. Do not retry as is."""


class DataPlaneError(TrustMeshError):
    """Redis failed or is unreachable. Retry later; nothing was half-written."""


class HistoryError(TrustMeshError):
    """CouchDB failed or is unreachable. Writes stay in the outbox and are retried."""


class UpdateRejected(TrustMeshError):
    """A model update failed validation (shape, dtype, non-finite, norm bound, hash). Exclude it."""


class ServiceFailed(TrustMeshError):
    """A process the run started (ledger, TP, node) exited unexpectedly. Its log tail is in the message."""
