"""History errors, and the one place where CouchDB client errors become ours."""
from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import requests
from ibm_cloud_sdk_core.api_exception import ApiException

from trustmesh.errors import HistoryError

__all__ = [
    "HistoryConflict", "HistoryError", "HistoryNotFound", "HistoryRejected", "HistoryUnavailable",
    "mapped_errors",
]


class HistoryUnavailable(HistoryError):
    """CouchDB is unreachable, overloaded or refuses our credentials. The outbox retries with backoff."""


class HistoryConflict(HistoryError):
    """A document kept changing under us (409 after every retry). The outbox retries later."""


class HistoryRejected(HistoryError):
    """CouchDB refused the request itself (400-class other than auth/conflict). Not retried: the
    outbox moves the write to its dead-letter table and logs it."""


class HistoryNotFound(HistoryRejected):
    """A database or document does not exist (404). Writers create the databases and retry once."""


@contextmanager
def mapped_errors(action: str) -> Iterator[None]:
    """Turn ibmcloudant / requests errors raised inside into the history error tree."""
    try:
        yield
    except ApiException as exc:
        code = int(exc.code or 0)
        text = f"couchdb: {action}: HTTP {code}: {exc.message}"
        if code == 409:
            raise HistoryConflict(text) from exc
        if code in (0, 401, 403, 408, 429) or code >= 500:
            raise HistoryUnavailable(text) from exc
        if code == 404:
            raise HistoryNotFound(text) from exc
        raise HistoryRejected(text) from exc
    except (requests.RequestException, OSError) as exc:
        raise HistoryUnavailable(f"couchdb: {action}: {type(exc).__name__}: {exc}") from exc
