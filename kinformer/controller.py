"""`Controller`: informer events → requests → a work queue → workers running `reconcile`.

The reconcile loop of controller-runtime (`pkg/internal/controller`) for asyncio. This
docstring is the contract.

Requests. A `Request(namespace, name)` (frozen, hashable; namespace "" for cluster-scoped
objects) is the work-queue item; `reconcile(request)` is a coroutine function that reads
the caches and makes the world match. It receives the key, never the object, so it also
runs for an object that is gone (that is how it cleans up).

Sources (each registers one handler on its informer when `run()` starts, removed when it ends):
- `.watches(informer)`: every add/update/delete → the object's own request (a tombstone's key).
- `.watches(informer, map=fn)`: `fn(obj) -> Iterable[Request]`; an update maps old and new
  (controller-runtime's `EnqueueRequestsFromMapFunc`); a delete maps the last known object,
  for a tombstone its `obj` (nothing if that is None).
- `.owns(informer, kind=..., api_version=...)`: the owner named by each object's *controller*
  ownerReference of that kind and API group (controller-runtime's `Owns`, i.e.
  `EnqueueRequestForOwner(OnlyControllerOwner())`; `only_controller=False` maps every
  matching reference, as kube-rs's `trigger_owners` does). The owner's namespace is the
  object's own (owners are in the dependent's namespace or cluster-scoped), "" when the owner
  kind is cluster-scoped. Updates map old and new; deletes and tombstones as for `map`.
- `.watches_all(informer, requests_fn)`: any event → every request `requests_fn()` returns
  ("reconcile every X when Y changes", kube-rs's `reconcile_all_on`). Events before the
  workers start are collapsed into one call when they start (the caches are complete then).

Outcomes (controller-runtime's `reconcileHandler`; the outcome is a value, as kube-rs's
`Action`, and a Result together with an error is impossible by construction):
- returns `None` or `Result()` → `forget` (the backoff resets); result `success`.
- returns `Result(requeue_after=s)` → `forget`, then `add_after(request, s)`; `requeue_after`.
  `s = 0` requeues now (controller-runtime cannot express it: there 0 means "not set").
- returns `Result(requeue=True)` → `add_rate_limited`; `requeue`.
- raises → `add_rate_limited`; logged with its traceback; `error`. A `ReconcileTimeoutError`
  (the reconcile outran `reconcile_timeout` and was cancelled) is such an error.
- raises `TerminalError` (or an exception group holding one, like Go's `errors.Is`) → not
  requeued, logged, counted in the terminal series too; *and forgotten* (a deliberate
  difference: controller-runtime keeps the failure count, so the next transient failure
  of that key, after a fix, starts from a long delay, and the limiter's memory of keys that
  failed terminally grows forever).
- returns anything else → treated as raising `TypeError` (requeued with backoff).
Attempt numbers are `num_requeues(request) + 1`: 1 for a first try, n after n-1 failures.

Serialisation. The same request is never reconciled by two workers at once, and a request
added while its reconcile runs is reconciled once more after it (the work queue's
dirty/processing rule; kube-rs: "a due item whose equal is running waits for it"). A
`requeue_after` does not delay an earlier change: an event in between runs the request at
once, and the delayed add still fires later (client-go's delaying queue; the earlier time
wins for a request scheduled twice).

Start. `run()` registers the handlers, then waits until every registration has synced (the
informer listed *and* this handler has seen every initial object), bounded by
`cache_sync_timeout` on the controller's clock (default 120 s, controller-runtime's); on
timeout it raises `CacheSyncTimeoutError` naming each source and its informer's last error.
Only then do the `workers` (default 1) start. The controller does not run informers: run
them (an `InformerFactory`) around it; an informer nobody runs makes `run()` time out.

Priority (controller-runtime ≥ 0.23's priority queue, `priority_queue=True` by default):
adds from the initial list and from resyncs (an update whose resourceVersion did not change)
are *low priority*: they wait in a low lane in front of the work queue, and a worker takes
one only when nothing normal is ready, so a fresh change is not stuck behind a 100k-object
initial sync. A normal add of a request in the low lane moves it to the queue. While a
worker is idle a low-priority add goes straight to it. The work queue's contract is untouched:
the lane is a FIFO set in front of it, and a request enters the queue by `add` only (so
serialisation and metrics are the queue's); a request handed to a worker leaves the lane too,
so a low-priority add never causes a second reconcile of what one reconcile covers.
Differences from controller-runtime's queue: two levels, not integer priorities, and
`workqueue_depth` counts only the queue, not the lane.

Shutdown (cancel the task running `run()`; losing leadership is the same): no request is
taken from then on, the low lane and the queue are dropped, and reconciles in flight run
on, shielded, for up to `shutdown_grace` seconds (default 30, controller-runtime's
graceful-shutdown timeout), then they are cancelled. `run()` returns (re-raising the
cancellation) only once every worker task has ended and the handlers are removed; a
cancelled reconcile is logged, not counted, not requeued. A reconcile that swallows
cancellation keeps `run()` waiting: that is the user's bug, and it is not hidden.
`shutdown_on_signal()` turns SIGTERM/SIGINT into that cancellation for the block it
guards; a second signal ends the grace at once.

`run()` may be called again after it ended (a new queue, new registrations, the caches
replayed as initial adds), so a leader-election loop can run it each time it leads.

Leader election. `run(leader_election=elector)` campaigns (`elector.leading()`), then runs
while leading; losing the lease is a cancellation like any other, and `run()` then raises
`LeadershipLostError` once everything has stopped. Several controllers share one elector by
running inside the caller's `async with elector.leading():` with `leader_election=elector`
each (an elector already campaigning or leading is not entered again). Either way the grace
period is cut to `elector.safe_time_left()` minus `LEADER_SAFETY_MARGIN` (1 s), so reconciles
in flight are cancelled before another replica can possibly lead: a lease lost to the renew
deadline leaves about lease_duration - renew_deadline - retry_period (3 s with 15/10/2), one
seen held by another leaves nothing. Informers are not gated: a standby replica keeps its
caches warm (the caller runs them), and its controller reconciles everything once it leads.

Logging. Every log line inside `reconcile` carries `controller`, `key` and `attempt`: they
are bound with `structlog.contextvars` around the call, so they reach any structlog logger
whose processors include `merge_contextvars` (structlog's default configuration does), in
the worker task and in tasks it starts. kinformer's own lines about a reconcile pass the same
fields explicitly (its loggers do not merge an application's context variables). Nothing is
logged per successful reconcile.

Metrics: controller-runtime's `controller_runtime_*` series (see `kinformer.metrics`) and the
work queue's `workqueue_*` series, whose `name` and `controller` labels are the controller's
name. `controller_runtime_reconcile_panics_total` has no Python counterpart and is not exported.

Deliberate differences from controller-runtime beyond those above: at shutdown a reconcile in
flight is not cancelled at once (Go cancels its context; here it finishes within the grace,
then is cancelled), and the queue is not drained (as with controller-runtime's default
priority queue); `reconcile_timeout` cancels the coroutine instead of handing it a deadline
it may ignore. From kube-rs: `reconcile` gets the key, not the object (kube-rs skips objects
gone from its store and leaves cleanup to finalizers), and the error policy is fixed
(backoff, or `TerminalError`) rather than a function.
"""

from __future__ import annotations

import asyncio
import contextvars
import enum
import inspect
import signal as signal_module
from collections import Counter, OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from contextlib import AbstractContextManager, asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.lowlevel
import structlog

from kinformer._logging import get_logger
from kinformer.clock import REAL_CLOCK, Clock, RealClock
from kinformer.errors import (
    AlreadyStartedError,
    CacheSyncTimeoutError,
    InvalidArgumentError,
    QueueEmptyError,
    ReconcileTimeoutError,
    ShutDownError,
    TerminalError,
)
from kinformer.informer import EventHandlerRegistration, SharedIndexInformer
from kinformer.leaderelection import ElectionState, LeaderElector
from kinformer.metrics import ControllerMetrics, MetricsProvider, controller_metrics
from kinformer.objects import DeletedFinalStateUnknown, split_key
from kinformer.ratelimit import RateLimiter, default_controller_rate_limiter
from kinformer.resources import BUILTIN_RESOURCES
from kinformer.workqueue import RateLimitingQueue


@dataclass(frozen=True, slots=True)
class Request:
    """What to reconcile: a namespace ("" when cluster-scoped) and a name. The queue item."""

    namespace: str
    name: str

    @classmethod
    def from_object(cls, obj: Any) -> Request:
        meta = obj["metadata"]
        return cls(meta.get("namespace") or "", meta["name"])

    @classmethod
    def from_key(cls, key: str) -> Request:
        """From a `namespace/name` (or `name`) cache key."""
        namespace, name = split_key(key)
        return cls(namespace, name)

    @property
    def key(self) -> str:
        """The cache key: `namespace/name`, or `name` when cluster-scoped."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def __str__(self) -> str:
        return self.key


@dataclass(frozen=True, slots=True)
class Result:
    """What a reconcile asks for next (module docstring, "Outcomes"); `None` is `Result()`."""

    requeue_after: float | None = None
    """Reconcile again after this many seconds (forgetting the backoff first)."""
    requeue: bool = False
    """Reconcile again after the rate limiter's delay, without counting an error."""

    def __post_init__(self) -> None:
        if self.requeue_after is not None and self.requeue_after < 0:
            raise InvalidArgumentError(f"requeue_after must be >= 0, not {self.requeue_after}")
        if self.requeue and self.requeue_after is not None:
            raise InvalidArgumentError("Result takes requeue_after or requeue, not both")


LEADER_SAFETY_MARGIN = 1.0
"""Seconds kept between the end of a leader-elected controller's shutdown and the earliest
moment another replica could lead (a write already sent needs time to land)."""

Reconcile = Callable[[Request], Awaitable[Result | None]]
MapFunc = Callable[[Any], Iterable[Request]]


class ControllerState(enum.Enum):
    IDLE = "idle"
    """Not running: never started, or `run()` has returned."""
    CANDIDATE = "candidate"
    """`run(leader_election=...)` is waiting to lead; no handlers registered yet."""
    SYNCING = "syncing"
    """Handlers registered; waiting for the caches to sync."""
    RUNNING = "running"
    """Workers are reconciling."""
    STOPPING = "stopping"
    """Cancelled: no new requests; reconciles in flight are finishing."""


@dataclass
class ControllerStats:
    """Counters since construction (`controller.stats()`); `results` by outcome label."""

    results: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    terminal_errors: int = 0
    timeouts: int = 0
    active: int = 0
    queued: int = 0
    """Requests ready in the work queue (not those processing or waiting for a delay)."""
    low_priority_queued: int = 0


def _rv(obj: Any) -> Any:
    try:
        return obj["metadata"]["resourceVersion"]
    except (KeyError, TypeError):
        return None


def _is_terminal(exc: BaseException) -> bool:
    if isinstance(exc, TerminalError):
        return True
    if isinstance(exc, BaseExceptionGroup):
        return any(_is_terminal(e) for e in exc.exceptions)
    return False


def _api_group(api_version: str) -> str:
    return api_version.rpartition("/")[0]


def owner_requests(obj: Any, kind: str, group: str, *, namespaced: bool = True,
                   only_controller: bool = True) -> list[Request]:
    """The requests of `obj`'s owners of `kind` in API `group` (module docstring, `owns`)."""
    try:
        meta = obj["metadata"]
    except (KeyError, TypeError):
        return []
    refs = meta.get("ownerReferences")
    if not refs:
        return []
    namespace = (meta.get("namespace") or "") if namespaced else ""
    out: list[Request] = []
    for ref in refs:
        if only_controller and not ref.get("controller"):
            continue
        if ref.get("kind") == kind and _api_group(ref.get("apiVersion", "")) == group and ref.get("name"):
            out.append(Request(namespace, ref["name"]))
    return out


class _Source:
    """One watched informer and how its events become requests."""

    def __init__(self, informer: SharedIndexInformer[Any], what: str, *, map: MapFunc | None = None,
                 requests_fn: Callable[[], Iterable[Request]] | None = None) -> None:
        self.informer = informer
        self.what = what
        self.map = map
        self.requests_fn = requests_fn

    def describe(self) -> str:
        return f"{self.what} {self.informer.list_watch.resource}"

    def register(self, controller: Controller, index: int) -> EventHandlerRegistration:
        add = controller._add
        name = f"controller {controller.name}: {self.describe()}"
        if self.requests_fn is not None:
            trigger = controller._trigger_all

            def all_on_add(obj: Any, initial: bool) -> None:
                trigger(index, initial)

            def all_on_update(old: Any, new: Any) -> None:
                trigger(index, _rv(old) == _rv(new))

            def all_on_delete(obj: Any) -> None:
                trigger(index, False)

            return self.informer.add_event_handler(all_on_add, all_on_update, all_on_delete, name=name)
        fn = self.map
        if fn is None:
            from_object = Request.from_object

            def on_add(obj: Any, initial: bool) -> None:
                add(from_object(obj), initial)

            def on_update(old: Any, new: Any) -> None:
                add(from_object(new), _rv(old) == _rv(new))

            def on_delete(obj: Any) -> None:
                add(Request.from_key(obj.key) if isinstance(obj, DeletedFinalStateUnknown) else from_object(obj),
                    False)

            return self.informer.add_event_handler(on_add, on_update, on_delete, name=name)
        mapped = fn

        def map_on_add(obj: Any, initial: bool) -> None:
            for request in mapped(obj):
                add(request, initial)

        def map_on_update(old: Any, new: Any) -> None:
            low = _rv(old) == _rv(new)
            for request in dict.fromkeys([*mapped(old), *mapped(new)]):
                add(request, low)

        def map_on_delete(obj: Any) -> None:
            if isinstance(obj, DeletedFinalStateUnknown):
                obj = obj.obj
                if obj is None:
                    return
            for request in mapped(obj):
                add(request, False)

        return self.informer.add_event_handler(map_on_add, map_on_update, map_on_delete, name=name)


class _Watchdog:
    """Cancels `target` after `seconds` on `clock`, unless stopped first (reconcile_timeout
    on a clock that is not the event loop's)."""

    __slots__ = ("_clock", "_scope", "_seconds", "_stopped", "_target", "fired")

    def __init__(self, clock: Clock, seconds: float, target: anyio.CancelScope) -> None:
        self._clock, self._seconds, self._target = clock, seconds, target
        self._scope: anyio.CancelScope | None = None
        self._stopped = False
        self.fired = False

    async def run(self) -> None:
        if self._stopped:
            return
        with anyio.CancelScope() as self._scope:
            await self._clock.sleep(self._seconds)
            self.fired = True
            self._target.cancel()

    def stop(self) -> None:
        self._stopped = True
        if self._scope is not None:
            self._scope.cancel()


class Controller:
    """Reconciles requests from watched informers (see the module docstring).

    `Controller(name, reconcile, workers=..., ...)`, then `.watches(...)` / `.owns(...)` /
    `.watches_all(...)` (each returns the controller), then `await controller.run()` until
    cancelled.
    """

    def __init__(
        self,
        name: str,
        reconcile: Reconcile,
        *,
        workers: int = 1,
        rate_limiter: RateLimiter[Request] | None = None,
        cache_sync_timeout: float = 120.0,
        shutdown_grace: float = 30.0,
        reconcile_timeout: float | None = None,
        priority_queue: bool = True,
        clock: Clock = REAL_CLOCK,
        metrics_provider: MetricsProvider | None = None,
    ) -> None:
        if not name:
            raise InvalidArgumentError("a controller needs a name (its metrics label and logger context)")
        if workers < 1:
            raise InvalidArgumentError(f"workers must be at least 1, not {workers}")
        if cache_sync_timeout <= 0:
            raise InvalidArgumentError(f"cache_sync_timeout must be > 0, not {cache_sync_timeout}")
        if shutdown_grace < 0:
            raise InvalidArgumentError(f"shutdown_grace must be >= 0, not {shutdown_grace}")
        if reconcile_timeout is not None and reconcile_timeout <= 0:
            raise InvalidArgumentError(f"reconcile_timeout must be > 0, not {reconcile_timeout}")
        self.name = name
        self.reconcile = reconcile
        self.workers = workers
        self.rate_limiter = rate_limiter
        """The limiter of every run's queue; None: a fresh `default_controller_rate_limiter` per run."""
        self.cache_sync_timeout = cache_sync_timeout
        self.shutdown_grace = shutdown_grace
        self.reconcile_timeout = reconcile_timeout
        self.priority_queue = priority_queue
        self._clock = clock
        self._metrics_provider = metrics_provider
        self._metrics: ControllerMetrics | None = controller_metrics(metrics_provider, name)
        if self._metrics is not None:
            self._metrics.max_concurrent_reconciles.set(workers)
        self.log = get_logger("kinformer.controller", controller=name)
        self._sources: list[_Source] = []
        self._primary: _Source | None = None
        self._state = ControllerState.IDLE
        self._queue: RateLimitingQueue[Request] | None = None
        self._low: OrderedDict[Request, None] = OrderedDict()
        self._all_pending: dict[int, bool] = {}
        self._inflight: set[anyio.CancelScope] = set()
        self._drained = anyio.Event()
        self._stopping = False
        self._idle = 0
        self._tg: anyio.abc.TaskGroup | None = None
        self._elector: LeaderElector | None = None
        self._results: Counter[str] = Counter()
        self._errors = self._terminal_errors = self._timeouts = self._active = 0

    # -- sources -----------------------------------------------------------------------------

    def watches(self, informer: SharedIndexInformer[Any], map: MapFunc | None = None) -> Controller:
        """Reconcile each object's own request (or what `map(obj)` returns) on its events."""
        source = _Source(informer, "watches" if map is None else "watches (mapped)", map=map)
        if map is None and self._primary is None:
            self._primary = source
        return self._add_source(source)

    def owns(self, informer: SharedIndexInformer[Any], *, kind: str | None = None, api_version: str | None = None,
             namespaced: bool | None = None, only_controller: bool = True) -> Controller:
        """Reconcile the owner named by each object's controller ownerReference.

        The owner kind defaults to that of the first informer given to `.watches()` without a
        map (the primary); its API group comes from `api_version` ("apps/v1" → "apps"), else from
        the primary (same kind) or the built-in resources. `namespaced` (is the owner kind
        namespaced?) is found the same way, default True. Raises `InvalidArgumentError` when
        the kind or group cannot be determined.
        """
        primary = self._primary.informer.list_watch.resource if self._primary is not None else None
        if kind is None:
            if primary is None or not primary.kind:
                raise InvalidArgumentError("owns() needs kind= when no primary informer is watched yet")
            kind = primary.kind
        builtin = next((r for r in BUILTIN_RESOURCES if r.kind == kind), None)
        known = primary if primary is not None and primary.kind == kind else builtin
        if api_version is not None:
            group = _api_group(api_version)
        elif known is not None:
            group = known.group
        else:
            raise InvalidArgumentError(f"owns(kind={kind!r}) needs api_version= (not a built-in kind)")
        if namespaced is None:
            namespaced = known.namespaced if known is not None and known.group == group else True
        owner_kind, owner_group, owner_namespaced = kind, group, namespaced

        def owners(obj: Any) -> list[Request]:
            return owner_requests(obj, owner_kind, owner_group, namespaced=owner_namespaced,
                                  only_controller=only_controller)

        return self._add_source(_Source(informer, f"owns ({kind})", map=owners))

    def watches_all(self, informer: SharedIndexInformer[Any],
                    requests_fn: Callable[[], Iterable[Request]]) -> Controller:
        """On any event of `informer`, reconcile every request `requests_fn()` returns."""
        return self._add_source(_Source(informer, "watches all", requests_fn=requests_fn))

    def _add_source(self, source: _Source) -> Controller:
        if self._state is not ControllerState.IDLE:
            raise AlreadyStartedError(f"controller {self.name!r} is running; add sources before run()")
        self._sources.append(source)
        return self

    # -- state ------------------------------------------------------------------------------

    @property
    def state(self) -> ControllerState:
        return self._state

    @property
    def queue(self) -> RateLimitingQueue[Request] | None:
        """The current run's work queue (None when not running)."""
        return self._queue

    def idle(self, *, delayed: bool = False) -> bool:
        """Running, with nothing to do now: no request ready or in the low-priority lane, none
        handed to a worker or being reconciled, no `watches_all` trigger pending. With
        `delayed=True`, also none waiting out a `requeue_after` or a retry's backoff (those
        come back only when the controller's clock gets there). False unless RUNNING.

        For tests that settle on the controller's own state instead of sleeping, after the
        informers': `await informer.wait_idle(resource_version=...)`, then `await
        controller.wait_idle()`.
        """
        queue = self._queue
        if self._state is not ControllerState.RUNNING or queue is None:
            return False
        if len(queue) or queue.processing_count or self._low or self._inflight or self._all_pending:
            return False
        return not (delayed and queue.delayed_count)

    async def wait_idle(self, timeout: float = 10.0, *, delayed: bool = False) -> None:
        """Wait until `idle(delayed=delayed)`; `TimeoutError` after `timeout` (real) seconds.

        Checks every 2 ms, as `SharedIndexInformer.wait_idle` does (idleness spans the queue,
        the lane and the workers: no single event to wait on).
        """
        with anyio.fail_after(timeout):
            while not self.idle(delayed=delayed):  # noqa: ASYNC110 - polled, see the docstring
                await anyio.sleep(0.002)

    def stats(self) -> ControllerStats:
        queue = self._queue
        return ControllerStats(dict(self._results), self._errors, self._terminal_errors, self._timeouts,
                               self._active, len(queue) if queue is not None else 0, len(self._low))

    # -- enqueueing (called by the handlers; synchronous, O(1)) ------------------------------

    def _add(self, request: Request, low: bool) -> None:
        queue = self._queue
        if queue is None or self._stopping:
            return
        if low and self.priority_queue:
            if self._idle:
                queue.add(request)
            elif request not in self._low:
                self._low[request] = None
            return
        queue.add(request)
        if self._low:
            self._low.pop(request, None)

    def _trigger_all(self, index: int, low: bool) -> None:
        if self._stopping:
            return
        if self._state is ControllerState.SYNCING:
            self._all_pending[index] = self._all_pending.get(index, True) and low
            return
        requests_fn = self._sources[index].requests_fn
        assert requests_fn is not None
        for request in requests_fn():
            self._add(request, low)

    # -- running ----------------------------------------------------------------------------

    async def run(self, *, leader_election: LeaderElector | None = None) -> None:
        """Register, wait for the caches, reconcile until cancelled, then stop gracefully.

        With `leader_election`, only while that elector leads (module docstring, "Leader
        election"): it campaigns first unless the caller already runs it (`elector.leading()`).
        Raises `AlreadyStartedError` if it is running, `CacheSyncTimeoutError` if the caches
        did not sync within `cache_sync_timeout`, `LeadershipLostError` once stopped after the
        lease was lost. Cancellation propagates once everything ended.
        """
        if self._state is not ControllerState.IDLE:
            raise AlreadyStartedError(f"controller {self.name!r} is already running")
        if not self._sources:
            raise InvalidArgumentError(f"controller {self.name!r} watches nothing")
        if leader_election is None or leader_election.state is not ElectionState.STOPPED:
            await self._run(leader_election)
            return
        self._state = ControllerState.CANDIDATE
        try:
            async with leader_election.leading():
                await self._run(leader_election)
        finally:
            self._state = ControllerState.IDLE

    async def _run(self, elector: LeaderElector | None) -> None:
        self._elector = elector
        self._state = ControllerState.SYNCING
        queue: RateLimitingQueue[Request] = RateLimitingQueue(
            self.rate_limiter if self.rate_limiter is not None else default_controller_rate_limiter(self._clock),
            name=self.name, clock=self._clock, metrics_provider=self._metrics_provider)
        self._queue = queue
        self._stopping = False
        self._drained = anyio.Event()
        registrations: list[EventHandlerRegistration] = []
        try:
            for index, source in enumerate(self._sources):
                registrations.append(source.register(self, index))
            self.log.info("starting event sources; waiting for caches to sync", workers=self.workers,
                          sources=len(self._sources))
            await self._wait_for_sync(registrations)
            await self._serve(queue, _shutdown_var.get())
        finally:
            self._stopping = True
            queue.shut_down()
            for registration in registrations:
                registration.remove()
            self._low.clear()
            self._all_pending.clear()
            self._queue = None
            self._elector = None
            self._state = ControllerState.IDLE
            self.log.info("controller stopped")

    async def _wait_for_sync(self, registrations: list[EventHandlerRegistration]) -> None:
        if all(r.has_synced() for r in registrations):
            return
        timed_out = False
        async with anyio.create_task_group() as tg:
            async def deadline() -> None:
                nonlocal timed_out
                await self._clock.sleep(self.cache_sync_timeout)
                timed_out = True
                tg.cancel_scope.cancel()

            tg.start_soon(deadline)
            for registration in registrations:
                await registration.wait_synced()
            tg.cancel_scope.cancel()
        if timed_out and not all(r.has_synced() for r in registrations):
            pending = []
            for source, registration in zip(self._sources, registrations, strict=True):
                if not registration.has_synced():
                    error = source.informer.last_error
                    why = f"{type(error).__name__}: {error}" if error is not None else (
                        "its informer is not running" if not source.informer.health().running else "no error yet")
                    pending.append(f"{source.describe()}: {why}")
            message = (f"controller {self.name!r}: caches not synced after {self.cache_sync_timeout} s: "
                       + "; ".join(pending))
            self.log.error("could not wait for caches to sync", timeout=self.cache_sync_timeout,
                           pending=len(pending))
            raise CacheSyncTimeoutError(message)

    async def _serve(self, queue: RateLimitingQueue[Request], shutdown: Shutdown | None) -> None:
        self._state = ControllerState.RUNNING
        pending, self._all_pending = self._all_pending, {}
        for index, low in pending.items():
            requests_fn = self._sources[index].requests_fn
            assert requests_fn is not None
            try:
                requests = list(requests_fn())
            except Exception as exc:
                self.log.error("watches_all requests function failed", source=self._sources[index].describe(),
                               error=f"{type(exc).__name__}: {exc}", exc_info=exc)
                continue
            for request in requests:
                self._add(request, low)
        self.log.info("starting workers", workers=self.workers)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for _ in range(self.workers):
                    tg.start_soon(self._worker, queue)
                try:
                    await anyio.sleep_forever()
                finally:
                    with anyio.CancelScope(shield=True):
                        await self._stop_workers(queue, shutdown)
        except BaseExceptionGroup as group:
            real = [e for e in _leaves(group) if not isinstance(e, anyio.get_cancelled_exc_class())]
            if len(real) == 1:
                raise real[0] from None
            raise
        finally:
            self._tg = None

    async def _stop_workers(self, queue: RateLimitingQueue[Request], shutdown: Shutdown | None) -> None:
        """Shielded: take nothing new; give reconciles in flight `shutdown_grace`; cancel the rest."""
        self._stopping = True
        self._state = ControllerState.STOPPING
        queue.shut_down()
        self._low.clear()
        if not self._inflight:
            return
        grace = self.shutdown_grace
        if self._elector is not None:
            # Stop before another replica could lead (module docstring, "Leader election").
            grace = min(grace, max(0.0, self._elector.safe_time_left() - LEADER_SAFETY_MARGIN))
        self.log.info("shutdown: waiting for reconciles in flight", in_flight=len(self._inflight), grace=grace)
        if grace > 0 and not (shutdown is not None and shutdown.forced.is_set()):
            async with anyio.create_task_group() as tg:
                async def grace_period() -> None:
                    await self._clock.sleep(grace)
                    tg.cancel_scope.cancel()

                async def forced(event: anyio.Event) -> None:
                    await event.wait()
                    tg.cancel_scope.cancel()

                tg.start_soon(grace_period)
                if shutdown is not None:
                    tg.start_soon(forced, shutdown.forced)
                await self._drained.wait()
                tg.cancel_scope.cancel()
        if self._inflight:
            self.log.warning("shutdown: cancelling reconciles still in flight", in_flight=len(self._inflight))
            for scope in list(self._inflight):
                scope.cancel()

    async def _next(self, queue: RateLimitingQueue[Request]) -> Request:
        """The next request: a ready one from the queue, else the oldest low-priority one.

        A request taken from the queue also leaves the lane: the reconcile about to start
        sees everything a low-priority add before it asked for.
        """
        low = self._low
        while low:
            try:
                request = queue.get_nowait()
            except QueueEmptyError:
                request, _ = low.popitem(last=False)
                queue.add(request)  # queued after done() if it is being processed
                continue
            low.pop(request, None)
            return request
        self._idle += 1
        try:
            request = await queue.get()
        finally:
            self._idle -= 1
        if low:
            low.pop(request, None)
        return request

    async def _worker(self, queue: RateLimitingQueue[Request]) -> None:
        inflight = self._inflight
        while not self._stopping:
            try:
                request = await self._next(queue)
            except ShutDownError:
                return
            if self._stopping:
                queue.done(request)
                return
            try:
                # `get` hands out a ready item without a checkpoint: look for a cancellation
                # delivered meanwhile before shielding the reconcile from it.
                await anyio.lowlevel.checkpoint_if_cancelled()
            except BaseException:
                queue.done(request)
                raise
            with anyio.CancelScope(shield=True) as scope:
                inflight.add(scope)
                try:
                    await self._process(queue, request)
                finally:
                    inflight.discard(scope)
                    queue.done(request)
                    if self._stopping and not inflight:
                        self._drained.set()
            if scope.cancelled_caught:
                self.log.warning("reconcile cancelled at shutdown (grace period over)", key=str(request))

    async def _process(self, queue: RateLimitingQueue[Request], request: Request) -> None:
        """One reconcile and its outcome (module docstring, "Outcomes")."""
        metrics = self._metrics
        clock = self._clock
        attempt = queue.num_requeues(request) + 1
        started = clock.now()
        self._active += 1
        if metrics is not None:
            metrics.active_workers.inc()
        try:
            with structlog.contextvars.bound_contextvars(controller=self.name, key=str(request), attempt=attempt):
                try:
                    result = await self._call(request)
                except Exception as exc:
                    self._failed(queue, request, exc, attempt)
                    return
                if result is None:
                    queue.forget(request)
                    self._count("success")
                elif not isinstance(result, Result):
                    self._failed(queue, request, TypeError(
                        f"reconcile returned {type(result).__name__}; expected a Result or None"), attempt)
                elif result.requeue_after is not None:
                    queue.forget(request)
                    queue.add_after(request, result.requeue_after)
                    self._count("requeue_after")
                elif result.requeue:
                    queue.add_rate_limited(request)
                    self._count("requeue")
                else:
                    queue.forget(request)
                    self._count("success")
        finally:
            self._active -= 1
            if metrics is not None:
                metrics.active_workers.dec()
                metrics.reconcile_time.observe(clock.now() - started)

    async def _call(self, request: Request) -> Any:
        awaitable = self.reconcile(request)
        if not inspect.isawaitable(awaitable):
            raise TypeError(f"reconcile must be a coroutine function; it returned {type(awaitable).__name__}")
        timeout = self.reconcile_timeout
        if timeout is None:
            return await awaitable
        watchdog: _Watchdog | None = None
        with anyio.CancelScope() as scope:
            if isinstance(self._clock, RealClock):
                # The event loop's clock is the real clock: a deadline needs no task.
                scope.deadline = anyio.current_time() + timeout
            else:
                assert self._tg is not None
                watchdog = _Watchdog(self._clock, timeout, scope)
                self._tg.start_soon(watchdog.run)
            try:
                return await awaitable
            finally:
                if watchdog is not None:
                    watchdog.stop()
        # Only this scope's own deadline (or watchdog) ends the block without returning.
        raise ReconcileTimeoutError(f"reconcile of {request} did not finish within {timeout} s")

    def _count(self, result: str) -> None:
        self._results[result] += 1
        if self._metrics is not None:
            self._metrics.total[result].inc()

    def _failed(self, queue: RateLimitingQueue[Request], request: Request, exc: Exception, attempt: int) -> None:
        terminal = _is_terminal(exc)
        self._errors += 1
        self._count("error")
        metrics = self._metrics
        if metrics is not None:
            metrics.errors.inc()
        if isinstance(exc, ReconcileTimeoutError):
            self._timeouts += 1
            if metrics is not None:
                metrics.timeouts.inc()
        error = f"{type(exc).__name__}: {exc}"
        if terminal:
            self._terminal_errors += 1
            if metrics is not None:
                metrics.terminal_errors.inc()
            queue.forget(request)
            self.log.error("reconcile failed with a terminal error; not requeued", key=str(request),
                           attempt=attempt, error=error, exc_info=exc)
        else:
            queue.add_rate_limited(request)
            self.log.error("reconcile failed; requeued with backoff", key=str(request), attempt=attempt,
                           error=error, exc_info=exc)


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            out.extend(_leaves(e))
        else:
            out.append(e)
    return out


# -- signals -------------------------------------------------------------------------------


@dataclass
class Shutdown:
    """The state of a `shutdown_on_signal` block."""

    requested: anyio.Event = field(default_factory=anyio.Event)
    """Set at the first signal (the block is being cancelled)."""
    forced: anyio.Event = field(default_factory=anyio.Event)
    """Set at the second signal: controllers in the block cancel reconciles in flight now."""
    signal: int | None = None
    """The first signal received."""


_shutdown_var: contextvars.ContextVar[Shutdown | None] = contextvars.ContextVar("kinformer_shutdown", default=None)

SignalSource = Callable[[], AbstractContextManager[AsyncIterator[int]]]


@asynccontextmanager
async def shutdown_on_signal(*signals: int, signal_source: SignalSource | None = None) -> AsyncIterator[Shutdown]:
    """Cancel the guarded block at the first SIGTERM or SIGINT (or `signals`); a second one forces.

        async with shutdown_on_signal():
            await controller.run()      # the first signal starts its graceful shutdown

    The handlers are installed before the block starts and removed when it ends. The first
    signal sets `requested` and cancels the block: controllers running in it stop taking
    requests and give reconciles in flight their `shutdown_grace`. The second sets `forced`:
    those controllers cancel what is still in flight at once, and the operating system's
    handlers are given back, so a third signal has its default effect (SIGINT raises
    KeyboardInterrupt, SIGTERM terminates) should something ignore cancellation. The block
    ends normally after a signal (the cancellation is caught at its edge); an exception raised
    in it comes out as itself. `signal_source` replaces the operating system for tests: a
    callable returning a context manager over an async iterator of signal numbers
    (`anyio.open_signal_receiver` by default).
    """
    wanted = signals or (signal_module.SIGTERM, signal_module.SIGINT)
    os_signals = signal_source is None
    source: SignalSource = signal_source if signal_source is not None else (
        lambda: anyio.open_signal_receiver(*(signal_module.Signals(s) for s in wanted)))
    shutdown = Shutdown()
    log = get_logger("kinformer.controller")
    body = anyio.CancelScope()

    async def listen(received: AsyncIterator[int]) -> None:
        async for signum in received:
            if not shutdown.requested.is_set():
                shutdown.signal = signum
                shutdown.requested.set()
                log.info("shutdown signal received; stopping gracefully (again to force)", signal=signum)
                body.cancel()
                continue
            shutdown.forced.set()
            log.warning("second shutdown signal: cancelling work in flight", signal=signum)
            if os_signals:
                loop = asyncio.get_running_loop()
                for signum_ in wanted:
                    loop.remove_signal_handler(signum_)
            return

    token = _shutdown_var.set(shutdown)
    try:
        with source() as received:
            async with anyio.create_task_group() as tg:
                tg.start_soon(listen, received)
                try:
                    with body:
                        yield shutdown
                finally:
                    tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:
        real = [e for e in _leaves(group) if not isinstance(e, anyio.get_cancelled_exc_class())]
        if len(real) == 1:
            raise real[0] from None
        raise
    finally:
        _shutdown_var.reset(token)
