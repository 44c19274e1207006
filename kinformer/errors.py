"""Every exception kinformer raises, in one place.

Invariants:
- Each failure a caller may want to handle differently has its own class.
- HTTP failures are `ApiError`s carrying the Kubernetes `Status` fields
  (`code`, `reason`, `message`) and, where the server sent one, `retry_after`.
- `api_error_from_status` is the one place a status code / reason becomes a class.
"""

from __future__ import annotations

from typing import Any


class KinformerError(Exception):
    """Base class of every kinformer error."""


class KeyFuncError(KinformerError, ValueError):
    """An object has no key: it is not a dict with `metadata.name`."""


class SelectorError(KinformerError, ValueError):
    """A label or field selector does not parse; the message names the offending part."""


class IndexerConflictError(KinformerError, ValueError):
    """`add_indexers` was given an index name that already exists."""


class FIFOClosedError(KinformerError):
    """`pop` on a closed DeltaFIFO whose queued items have all drained."""


class DecodeError(KinformerError):
    """A watch line or list body is not the JSON the protocol promises.

    The offending bytes are *not* kept: they may hold a Secret's data.
    """


class ApiError(KinformerError):
    """An HTTP error from the API server, with the fields of its `Status` body."""

    def __init__(
        self,
        code: int,
        reason: str = "",
        message: str = "",
        *,
        retry_after: float | None = None,
        status: dict[str, Any] | None = None,
    ) -> None:
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.status: dict[str, Any] = status if status is not None else {}
        super().__init__(f"{code} {reason}: {message}" if reason else f"{code}: {message}")


class ExpiredError(ApiError):
    """410: the requested resourceVersion (or continue token) is older than the server keeps."""


class TooLargeResourceVersionError(ApiError):
    """504 with cause ResourceVersionTooLarge: the server has not caught up with the RV asked."""


class TooManyRequestsError(ApiError):
    """429: back off, for `retry_after` seconds when the server said so."""


class UnauthorizedError(ApiError):
    """401: the credentials were refused."""


class ForbiddenError(ApiError):
    """403: the credentials may not do this."""


class NotFoundError(ApiError):
    """404: no such object or resource."""


class ConflictError(ApiError):
    """409: already exists, or a resourceVersion precondition failed."""


class InvalidError(ApiError):
    """422 (or 400): the request or its parameters are invalid."""


class ServerError(ApiError):
    """5xx other than too-large-RV: retry with backoff."""


class WatchIdleTimeoutError(KinformerError):
    """No byte arrived on a watch for longer than its idle timeout: a dead connection."""


def _is_too_large_rv(status: dict[str, Any]) -> bool:
    details = status.get("details") or {}
    for cause in details.get("causes") or ():
        if cause.get("reason") == "ResourceVersionTooLarge":
            return True
    return "Too large resource version" in str(status.get("message", ""))


def api_error_from_status(
    code: int, status: dict[str, Any] | None, retry_after: float | None = None
) -> ApiError:
    """Map an HTTP code and its decoded `Status` body (or None) to the right `ApiError`."""
    body = status if isinstance(status, dict) else {}
    reason = str(body.get("reason", "") or "")
    message = str(body.get("message", "") or "")
    kwargs: dict[str, Any] = {"retry_after": retry_after, "status": body}
    cls: type[ApiError]
    if code == 410 or reason in ("Expired", "Gone"):
        cls = ExpiredError
    elif code == 504 and _is_too_large_rv(body):
        cls = TooLargeResourceVersionError
    elif code == 429:
        cls = TooManyRequestsError
    elif code == 401:
        cls = UnauthorizedError
    elif code == 403:
        cls = ForbiddenError
    elif code == 404:
        cls = NotFoundError
    elif code == 409:
        cls = ConflictError
    elif code in (400, 422):
        cls = InvalidError
    elif code >= 500:
        cls = ServerError
    else:
        cls = ApiError
    return cls(code, reason, message, **kwargs)


class ConnectionFailedError(KinformerError):
    """The API server could not be reached (refused, reset, DNS, TLS)."""


class WatchDroppedError(KinformerError):
    """A watch connection ended without the chunked stream's clean end."""
