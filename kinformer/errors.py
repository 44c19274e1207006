"""Every exception kinformer raises, in one hierarchy.

```
KinformerError
├── TransportError               talking to the API server failed (the reflector retries all of these)
│   ├── ConnectionFailedError    refused, reset, DNS, TLS
│   ├── WatchDroppedError        a watch stream ended without the chunked stream's clean end
│   ├── WatchIdleTimeoutError    no byte for longer than the idle timeout: a dead connection
│   ├── DecodeError              a line or body is not the JSON the protocol promises
│   ├── UnexpectedObjectError    a watch event of another kind / apiVersion than the one watched
│   └── ApiError                 an HTTP status; one subclass per code, from `_STATUS_CLASSES`
│       ├── InvalidError (400, 422)   UnauthorizedError (401)   ForbiddenError (403)
│       ├── NotFoundError (404)       ConflictError (409)       ExpiredError (410)
│       ├── TooManyRequestsError (429)
│       └── ServerError (5xx)  └── TooLargeResourceVersionError (504 "Too large resource version")
├── StorageError                 the mirror's database failed
│   ├── StorageUnavailableError  cannot connect, or the connection broke (the mirror's writer retries)
│   └── SchemaVersionError       the database's schema is newer than this kinformer knows how to use
├── LifecycleError               a component used out of order
│   ├── AlreadyStartedError      run()/start twice
│   └── StoppedError             used after it stopped (e.g. add_event_handler after stop)
├── UserCallbackError            a user's transform, key function or handler raised (`__cause__` is theirs)
│   ├── TransformError
│   ├── KeyFuncError             also raised for objects that have no key (not a dict with metadata.name)
│   ├── IndexFuncError
│   └── HandlerError
├── TerminalError                raised by a reconcile: retrying cannot help (not requeued; logged, counted)
├── ReconcileTimeoutError        a reconcile outran its controller's reconcile_timeout (a TimeoutError too)
├── InvalidArgumentError         an argument out of range (a ValueError too)
│   └── QueryError               a Query that cannot run as written: bad path, order field, cursor, source
├── HandlerSignatureError        a handler that cannot take the arguments it will get (a TypeError too)
├── SelectorError                a label/field selector does not parse; the message names the part
├── IndexerConflictError         add_indexers with a name that exists
├── FIFOClosedError              pop on a closed, drained DeltaFIFO
├── CacheSyncTimeoutError        wait_for_cache_sync(raise_on_timeout=True) ran out (a TimeoutError too)
├── SettleTimeoutError           a convergence test's informers/components never went idle (a TimeoutError too)
├── ShutDownError                get() on a shut-down, drained work queue
├── QueueEmptyError              get_nowait() on a work queue with nothing ready
├── MissingExtraError            a feature's optional package is not installed (also an ImportError)
└── LeaderElectionError          leader election on a Lease (leaderelection.py)
    ├── LeaderElectionConfigError   durations or identity invalid (also a ValueError)
    └── LeadershipLostError      the lease was lost while leading; the guarded work was stopped
```

Invariants:
- Each failure a caller may want to handle differently has its own class.
- HTTP failures carry the Kubernetes `Status` fields (`code`, `reason`, `message`) and, where
  the server sent one, `retry_after`. `api_error_from_status` is the one place a status code
  becomes a class: a table by code, with two refinements by body (410-like reasons, and
  "too large resourceVersion" in each of the three formats servers have used).
- No message holds an object body, a header or a token (a Secret's data must never leak).
- Permanent vs retryable follows client-go: the reflector retries everything (with backoff);
  `ApiError.permanent` only says whether a human has to act (401, 403, 404, 400/422) so that
  health reports can say so.
"""

from __future__ import annotations

from typing import Any


class KinformerError(Exception):
    """Base class of every kinformer error."""


# -- transport ---------------------------------------------------------------------------


class TransportError(KinformerError):
    """Talking to the API server failed; the reflector retries these with backoff."""


class ConnectionFailedError(TransportError):
    """The API server could not be reached (refused, reset, DNS, TLS)."""


class WatchDroppedError(TransportError):
    """A watch connection ended without the chunked stream's clean end."""


class WatchIdleTimeoutError(TransportError):
    """No byte arrived on a watch for longer than its idle timeout: a dead connection."""


class DecodeError(TransportError):
    """A watch line or list body is not the JSON the protocol promises.

    The offending bytes are *not* kept: they may hold a Secret's data.
    """


class UnexpectedObjectError(TransportError):
    """A watch event carried an object of another kind or apiVersion than the one watched.

    client-go's reflector checks `expectedType`/`expectedGVK` the same way; the event is
    skipped (it never enters the cache) and the watch goes on.
    """


class ApiError(TransportError):
    """An HTTP error from the API server, with the fields of its `Status` body."""

    permanent = False
    """True when retrying cannot help until a human acts (bad credentials, no such resource)."""

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


class InvalidError(ApiError):
    """422 (or 400): the request or its parameters are invalid."""

    permanent = True


class UnauthorizedError(ApiError):
    """401: the credentials were refused."""

    permanent = True


class ForbiddenError(ApiError):
    """403: the credentials may not do this."""

    permanent = True


class NotFoundError(ApiError):
    """404: no such object or resource (for a LIST: the resource is not served, e.g. a CRD)."""

    permanent = True


class ConflictError(ApiError):
    """409: already exists, or a resourceVersion precondition failed."""


class ExpiredError(ApiError):
    """410: the requested resourceVersion (or continue token) is older than the server keeps."""


class TooManyRequestsError(ApiError):
    """429: back off, for `retry_after` seconds when the server said so."""


class ServerError(ApiError):
    """5xx: retry with backoff."""


class TooLargeResourceVersionError(ServerError):
    """The server has not caught up with the resourceVersion asked for (504, or a 5xx body saying so)."""


_STATUS_CLASSES: dict[int, type[ApiError]] = {
    400: InvalidError,
    401: UnauthorizedError,
    403: ForbiddenError,
    404: NotFoundError,
    409: ConflictError,
    410: ExpiredError,
    422: InvalidError,
    429: TooManyRequestsError,
}

_TOO_LARGE_RV = "Too large resource version"


def is_too_large_resource_version(code: int, status: dict[str, Any]) -> bool:
    """True for an error that says the RV asked for is newer than the server's, in any format.

    Servers have said so three ways (client-go's `isTooLargeResourceVersionError` accepts all):
    a cause with reason `ResourceVersionTooLarge` (1.18.6+, any code); and, on a timeout
    (504 or reason `Timeout`) only, a cause whose *message* is "Too large resource version"
    (1.17.0 to 1.18.5) or that text in the Status message itself (before 1.17).
    """
    details = status.get("details")
    causes = details.get("causes") if isinstance(details, dict) else None
    causes = [c for c in causes if isinstance(c, dict)] if isinstance(causes, list) else []
    if any(c.get("reason") == "ResourceVersionTooLarge" for c in causes):
        return True
    if code != 504 and status.get("reason") != "Timeout":
        return False
    if any(c.get("message") == _TOO_LARGE_RV for c in causes):
        return True
    return _TOO_LARGE_RV in str(status.get("message", ""))


def api_error_from_status(
    code: int, status: dict[str, Any] | None, retry_after: float | None = None
) -> ApiError:
    """Map an HTTP code and its decoded `Status` body (or None) to the right `ApiError`."""
    body = status if isinstance(status, dict) else {}
    reason = str(body.get("reason", "") or "")
    message = str(body.get("message", "") or "")
    cls: type[ApiError]
    if reason in ("Expired", "Gone"):
        cls = ExpiredError
    elif is_too_large_resource_version(code, body):
        cls = TooLargeResourceVersionError
    elif code in _STATUS_CLASSES:
        cls = _STATUS_CLASSES[code]
    elif code >= 500:
        cls = ServerError
    else:
        cls = ApiError
    return cls(code, reason, message, retry_after=retry_after, status=body)


# -- the mirror's database ----------------------------------------------------------------


class StorageError(KinformerError):
    """The mirror's SQL database refused or failed a request; `__cause__` is the driver's error."""


class StorageUnavailableError(StorageError):
    """The database cannot be reached or the connection broke; writes are retried, never dropped."""


class SchemaVersionError(StorageError):
    """The database was migrated by a newer kinformer (its schema version is above ours).

    kinformer never downgrades a schema: run the newer version, or point it at another database.
    """


# -- lifecycle ---------------------------------------------------------------------------


class LifecycleError(KinformerError):
    """A component was used out of order (started twice, used after it stopped)."""


class AlreadyStartedError(LifecycleError):
    """`run()` (or `async with`) on a component that is already running or has run."""


class StoppedError(LifecycleError):
    """The component has stopped; it takes no more work (e.g. `add_event_handler` after stop)."""


# -- user callbacks ----------------------------------------------------------------------


class UserCallbackError(KinformerError):
    """A user's callback raised; `__cause__` is the user's exception.

    kinformer never dies of these: it logs them with context, counts them and goes on.
    """


class TransformError(UserCallbackError):
    """The informer's `transform` raised for an object; that event was skipped."""


class KeyFuncError(UserCallbackError, ValueError):
    """An object has no key: the key function raised, or it is not a dict with `metadata.name`."""


class IndexFuncError(UserCallbackError):
    """An index function raised for an object; it is not indexed under that index."""


class HandlerError(UserCallbackError):
    """An event handler raised."""


# -- controllers ---------------------------------------------------------------------------


class TerminalError(KinformerError):
    """Raised by a reconcile (directly, as a subclass, or with the cause chained) to say that
    retrying cannot help: the request is not requeued; the error is logged and counted in
    `controller_runtime_terminal_reconcile_errors_total` (controller-runtime's
    `reconcile.TerminalError`). The request runs again at the next change of its object.
    """


class ReconcileTimeoutError(KinformerError, TimeoutError):
    """A reconcile ran longer than its controller's `reconcile_timeout` and was cancelled;
    the request is requeued with the rate limiter's backoff, like any other error."""


# -- values and local structures -----------------------------------------------------------


class InvalidArgumentError(KinformerError, ValueError):
    """An argument is out of range or of the wrong shape (e.g. `max_pending=0`)."""


class QueryError(InvalidArgumentError):
    """A `Query` that cannot run as written: a path that does not parse, an order field that
    is not single-valued, a cursor that is not one of ours (or belongs to another ordering),
    a source that is not a cache. The message names the offending part; a web layer answers
    it with 400. (A bad selector inside a query raises `SelectorError` instead.)"""


class HandlerSignatureError(KinformerError, TypeError):
    """An event handler does not accept the arguments it will be called with."""


class SelectorError(KinformerError, ValueError):
    """A label or field selector does not parse; the message names the offending part."""


class IndexerConflictError(KinformerError, ValueError):
    """`add_indexers` was given an index name that already exists."""


class FIFOClosedError(KinformerError):
    """`pop` on a closed DeltaFIFO whose queued items have all drained."""


class CacheSyncTimeoutError(KinformerError, TimeoutError):
    """Caches did not sync in time; the message names each resource and its last error."""


class SettleTimeoutError(KinformerError, TimeoutError):
    """A convergence test's system did not settle in time (`kinformer.testing.ConvergenceMachine`).

    The message names each informer or component that is not idle and what it is doing
    (reflector state, resourceVersion reached vs wanted, queued deltas, handler backlog,
    last list/watch error): a handler that never returns or a watch that never catches up.
    """


class ShutDownError(KinformerError):
    """`get()` on a work queue that is shut down and has nothing left to hand out."""


# -- installation --------------------------------------------------------------------------


class MissingExtraError(KinformerError, ImportError):
    """A feature needs a package that only one of kinformer's extras installs.

    The message says what to run: `pip install 'kinformer[<extra>]'`. Also an `ImportError`,
    which is what the missing import raised (it is the `__cause__`).
    """

    def __init__(self, feature: str, package: str, extra: str) -> None:
        super().__init__(f"{feature} needs {package}, which is not installed; it comes with "
                         f"kinformer's '{extra}' extra: pip install 'kinformer[{extra}]'", name=package)
        self.feature, self.package, self.extra = feature, package, extra
class QueueEmptyError(KinformerError):
    """`get_nowait()` on a work queue that is running but has nothing ready to hand out."""


# -- leader election -----------------------------------------------------------------------


class LeaderElectionError(KinformerError):
    """Base class of leader election errors."""


class LeaderElectionConfigError(LeaderElectionError, ValueError):
    """The elector's settings break client-go's rules (lease_duration > renew_deadline >
    1.2 * retry_period, all > 0) or name no identity, lease or namespace."""


class LeadershipLostError(LeaderElectionError):
    """Leadership was lost while leading: no renewal succeeded within renew_deadline, or
    another holder took the lease. The guarded work has been cancelled and has finished."""
