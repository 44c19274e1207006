"""`SharedIndexInformer`: one reflector, one DeltaFIFO, one indexed cache, many handlers.

The loop pops batches from the DeltaFIFO and, for each delta, updates the indexer and
notifies every listener (client-go's `processDeltas` / `HandleDeltas`). While no listener
blocks, a watch burst is processed in the reflector's task as soon as it is queued
(`DeltaFIFO.consume_inline`): the same steps in the same order, one task switch fewer, and
the replaced objects are freed before the next burst is decoded.
- ADDED/UPDATED/REPLACED/SYNC → `on_update(old, new)` if the key was cached, else
  `on_add(new, is_in_initial_list)`; an update whose resourceVersion did not change (a
  resync, or a relist of an unchanged object) goes only to listeners due for resync.
- DELETED → `on_delete(obj_or_tombstone)`.

Each delta's indexer write and its choice of listeners happen in one synchronous step, so
a handler registered while events flow is either in that step's listener set (and sees the
event) or registered after it (and its replay of the cache already shows the new state):
never both, never neither. A handler added after start first gets the cache replayed as
adds with `is_in_initial_list=True`; its registration `has_synced()` once the informer has
synced and that handler has handled those adds.

Resync periods (client-go `AddEventHandlerWithResyncPeriod`): a handler's period defaults
to the informer's; below 1 s it is raised to 1 s; the informer checks every "check
period", the smallest period asked before start; a period asked after start that is below
the check period is raised to it; with a check period of 0 nobody resyncs. One deliberate
difference: client-go ignores a handler's period when the informer's own is 0; kinformer
lets a handler registered before start set the check period (asked for means wanted).

The cache (`store=`): "default" keeps the decoded dicts themselves (reads return them,
no copy); "compact" keeps each object as its JSON bytes plus its resourceVersion, labels
and index values (`CompactIndexer`, store.py): about a third of the memory, no cyclic-GC
load from the cache, but every read decodes, and so does the `old` object of each update
handed to handlers, unless `decoded_cache` (an LRU of that many decoded objects) holds it.
Handlers receive dicts in both.

`async with informer:` runs it in a task group and stops every task on exit;
`await informer.run()` runs it until cancelled.

Metrics (`metrics.InformerMetrics`) are read when scraped (queue length, cache size, RV);
the one recorded on the event path, processing latency, is looked up once per popped
batch, so an informer without metrics runs no metrics code per event.
"""

from __future__ import annotations

import enum
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, cast, overload

import anyio

from kinformer._logging import get_logger
from kinformer.clock import REAL_CLOCK, Clock, RealClock
from kinformer.errors import (
    AlreadyStartedError,
    ApiError,
    HandlerError,
    InvalidArgumentError,
    StoppedError,
    UserCallbackError,
)
from kinformer.fifo import DELETED, DeltaFIFO, Deltas
from kinformer.listwatch import ListWatch
from kinformer.objects import DeletedFinalStateUnknown, KubeObject, ObjT
from kinformer.processor import (
    ADD,
    DELETE,
    MINIMUM_RESYNC_PERIOD,
    UPDATE,
    HandlerObject,
    Listener,
    ListenerStats,
    Notification,
    OnAdd,
    OnDelete,
    OnUpdate,
    Overflow,
    Processor,
    ResourceEventHandler,
    determine_resync_period,
)
from kinformer.reflector import Reflector, ReflectorConfig, ReflectorStats, WatchErrorHandler, Watching
from kinformer.store import NAMESPACE_INDEX, CompactIndexer, Indexer, IndexFunc, namespace_index_func

_new_notification = tuple.__new__  # builds a Notification without NamedTuple's Python-level __new__

if TYPE_CHECKING:
    from kinformer.metrics import HistogramMetric


def _rv(obj: Any) -> Any:
    try:
        return obj["metadata"]["resourceVersion"]
    except (KeyError, TypeError):
        return None


EventType = Literal["ADDED", "MODIFIED", "DELETED"]


@dataclass(frozen=True, slots=True)
class Event(Generic[ObjT]):
    """What `informer.events()` yields. For DELETED, `object` may be a `DeletedFinalStateUnknown`."""

    type: EventType
    object: ObjT | DeletedFinalStateUnknown
    old: ObjT | None = None
    is_in_initial_list: bool = False


_EVENT_TYPE: dict[str, EventType] = {ADD: "ADDED", UPDATE: "MODIFIED", DELETE: "DELETED"}


class EventHandlerRegistration:
    """Returned by `add_event_handler`: sync state, stats, and `remove()`."""

    def __init__(self, informer: SharedIndexInformer[Any], listener: Listener) -> None:
        self._informer = informer
        self.listener = listener

    def has_synced(self) -> bool:
        return self.listener.has_synced()

    async def wait_synced(self) -> None:
        await self.listener.wait_synced()

    def stats(self) -> ListenerStats:
        return self.listener.stats()

    def remove(self) -> None:
        """Stop delivery now: pending notifications are dropped, nothing is delivered after
        this returns except the end of a handler call already running, which is not cancelled
        (client-go's RemoveEventHandler). Idempotent."""
        self._informer._remove_listener(self.listener)


class EventStream(Generic[ObjT]):
    """`informer.events()`: notifications as an async iterator, through a bounded listener.

    Use `async with informer.events() as events: async for ev in events: ...`, or iterate
    directly and call `close()` (or `break` and let `aclose` run) when done. Iteration ends
    (a waiting `__anext__` is woken with `StopAsyncIteration`) when the stream is closed, its
    registration removed, or the informer stops.
    """

    def __init__(self, informer: SharedIndexInformer[ObjT], listener: Listener) -> None:
        self._registration = EventHandlerRegistration(informer, listener)
        self._listener = listener

    def __aiter__(self) -> EventStream[ObjT]:
        return self

    async def __anext__(self) -> Event[ObjT]:
        listener = self._listener
        n = listener.queue.get_nowait()
        if n is None:
            n = await listener.queue.get()
            if n is None:
                raise StopAsyncIteration
        listener.handled(n)
        return Event(_EVENT_TYPE[n.kind], n.new, n.old, n.initial)

    def get_nowait(self) -> Event[ObjT] | None:
        """The next event if one is pending, else None (never waits).

        Draining with `get_nowait` and then reading `informer.indexer` in the same
        synchronous step sees the cache exactly as the events so far left it: the informer
        writes the cache and queues the event in one step (module docstring).
        """
        listener = self._listener
        n = listener.queue.get_nowait()
        if n is None:
            return None
        listener.handled(n)
        return Event(_EVENT_TYPE[n.kind], n.new, n.old, n.initial)

    def has_synced(self) -> bool:
        """True once the informer has synced and every initial event has been yielded."""
        return self._listener.has_synced()

    def close(self) -> None:
        self._registration.remove()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> EventStream[ObjT]:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()


@dataclass
class InformerStats:
    cached: int
    queued: int
    deltas: int
    reflector: ReflectorStats | None
    handlers: dict[str, ListenerStats]
    callback_errors: int = 0
    """Transform, key-function and index-function errors (each skipped one object's change)."""


@dataclass(frozen=True, slots=True)
class InformerHealth:
    """Is this informer serving a correct, live cache? (`informer.health()`; never blocks.)

    `synced` is the cache sync; the rest is the reflector's view (`ReflectorHealth`):
    `last_error` is None while list/watch succeed, else the error of the current run of
    failures, which began at `failing_since` (clock time). `permanent` means a human must act
    (401, 403, 404, 400/422); the informer keeps retrying, as client-go does.
    """

    synced: bool
    running: bool
    state: str
    last_error: BaseException | None
    failing_since: float | None
    consecutive_failures: int
    last_progress: float | None

    @property
    def permanent(self) -> bool:
        return isinstance(self.last_error, ApiError) and self.last_error.permanent

    @property
    def healthy(self) -> bool:
        return self.running and self.last_error is None

    def __bool__(self) -> bool:
        return self.healthy


class _Lifecycle(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"
    STOPPED = "stopped"


class SharedIndexInformer(Generic[ObjT]):
    """One list/watch, one cache, many handlers (see the module docstring).

    Generic in what it caches: `SharedIndexInformer[KubeObject]` (plain dicts, the default),
    or whatever `transform` returns.
    """

    def __init__(
        self,
        list_watch: ListWatch,
        resync_period: float = 0.0,
        indexers: Mapping[str, IndexFunc] | None = None,
        transform: Callable[[KubeObject], ObjT] | None = None,
        *,
        reflector_config: ReflectorConfig | None = None,
        clock: Clock = REAL_CLOCK,
        batch_size: int = 256,
        watch_error_handler: WatchErrorHandler | None = None,
        shutdown_grace: float = 5.0,
        store: Literal["default", "compact"] = "default",
        decoded_cache: int = 0,
    ) -> None:
        self.list_watch = list_watch
        all_indexers = {NAMESPACE_INDEX: namespace_index_func, **(indexers or {})}
        if store == "compact":
            self.indexer: Indexer = CompactIndexer(indexers=all_indexers, error_handler=self._callback_failed,
                                                   decoded_cache=decoded_cache)
        elif store == "default":
            self.indexer = Indexer(indexers=all_indexers, error_handler=self._callback_failed)
        else:
            raise InvalidArgumentError(f"unknown store {store!r} (expected 'default' or 'compact')")
        self._fifo = DeltaFIFO(known_objects=self.indexer, transform=transform, error_handler=self._callback_failed)
        self._processor = Processor(clock)
        self._clock = clock
        self._reflector_config = reflector_config
        self.watch_error_handler = watch_error_handler
        """Called with (reflector, error) for every list/watch failure and callback error;
        default: one log line (`kinformer.reflector.log_watch_error`)."""
        self.shutdown_grace = shutdown_grace
        """Seconds a handler call in flight at shutdown may take before it is cancelled."""
        self.default_resync_period = resync_period
        self.resync_check_period = resync_period
        self.batch_size = batch_size
        self.reflector: Reflector | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._outer: anyio.abc.TaskGroup | None = None
        self._lifecycle = _Lifecycle.NEW
        self._synced = anyio.Event()
        self._blocking = False
        self.callback_errors = 0
        self.deltas_processed = 0
        self.processing_latency: HistogramMetric | None = None
        """Observes the seconds each popped key's deltas take to process (client-go's
        `informer_processing_latency_seconds`); set by `metrics.InformerMetrics.register`.
        Read once per popped batch, so with None the event path has no metrics code in it."""
        self.log = get_logger("kinformer.informer", resource=str(list_watch.resource),
                              namespace=list_watch.namespace or "")

    # -- state ----------------------------------------------------------------------------

    def has_synced(self) -> bool:
        """True once the initial list has been popped into the cache."""
        return self._synced.is_set()

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        with anyio.move_on_after(timeout):
            await self._synced.wait()
        return self.has_synced()

    @property
    def last_sync_resource_version(self) -> str:
        return self.reflector.last_sync_resource_version if self.reflector is not None else ""

    @property
    def queued(self) -> int:
        """Keys waiting in the DeltaFIFO: 0 means the cache holds everything up to
        `last_sync_resource_version`."""
        return len(self._fifo)

    @property
    def started(self) -> bool:
        return self._lifecycle is not _Lifecycle.NEW

    @property
    def last_error(self) -> BaseException | None:
        """The error of the current run of list/watch failures (None while healthy)."""
        return self.reflector.last_error if self.reflector is not None else None

    def health(self) -> InformerHealth:
        running = self._lifecycle is _Lifecycle.RUNNING
        if self.reflector is None:
            return InformerHealth(self.has_synced(), running, self._lifecycle.value, None, None, 0, None)
        h = self.reflector.health()
        return InformerHealth(self.has_synced(), running, type(h.state).__name__, h.last_error, h.failing_since,
                              h.consecutive_failures, h.last_progress)

    def idle(self, resource_version: str | None = None) -> bool:
        """Nothing in flight: synced and watching, the FIFO empty, every handler drained and
        not in a call — and, if `resource_version` is given, the cache at least that fresh
        (equal RV; RVs are opaque, so "at least" means "this one was reached")."""
        reflector = self.reflector
        if reflector is None or not self.has_synced() or len(self._fifo) or not isinstance(reflector.state, Watching):
            return False
        if resource_version is not None and reflector.last_sync_resource_version != resource_version:
            return False
        return all(x.idle() for x in self._processor.listeners)

    async def wait_idle(self, timeout: float = 10.0, *, resource_version: str | None = None) -> None:
        """Wait until `idle(resource_version)`; `TimeoutError` after `timeout` seconds.

        For tests that settle without sleeps: with FakeApiServer, `await informer.wait_idle(
        resource_version=server.resource_version)` returns once every write so far has been
        handled by every handler. It checks every 2 ms (idleness has no single event to wait on).
        """
        with anyio.fail_after(timeout):
            while not self.idle(resource_version):  # noqa: ASYNC110 - idleness spans many components: polled
                await anyio.sleep(0.002)

    def stats(self) -> InformerStats:
        return InformerStats(len(self.indexer), len(self._fifo), self.deltas_processed,
                             self.reflector.stats if self.reflector else None,
                             {x.name: x.stats() for x in self._processor.listeners if x.handler is not None},
                             self.callback_errors)

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        self.indexer.add_indexers(indexers)

    def _callback_failed(self, error: UserCallbackError) -> None:
        """A transform, key or index function raised: count, report, go on (fifo.py, store.py)."""
        self.callback_errors += 1
        if self.reflector is not None:
            self.reflector.stats.callback_errors += 1
            self.reflector.report(error)
        else:
            self.log.warning(str(error))

    # -- handlers -------------------------------------------------------------------------

    @overload
    def add_event_handler(
        self,
        on_add: OnAdd[ObjT] | None = None,
        on_update: OnUpdate[ObjT] | None = None,
        on_delete: OnDelete[ObjT] | None = None,
        *,
        resync_period: float | None = None,
        max_pending: int = 1024,
        overflow: Overflow = "coalesce",
        name: str = "",
        error_handler: Callable[[HandlerError], None] | None = None,
    ) -> EventHandlerRegistration: ...

    @overload
    def add_event_handler(
        self,
        on_add: HandlerObject[ObjT],
        *,
        resync_period: float | None = None,
        max_pending: int = 1024,
        overflow: Overflow = "coalesce",
        name: str = "",
        error_handler: Callable[[HandlerError], None] | None = None,
    ) -> EventHandlerRegistration: ...

    def add_event_handler(
        self,
        on_add: OnAdd[ObjT] | HandlerObject[ObjT] | None = None,
        on_update: OnUpdate[ObjT] | None = None,
        on_delete: OnDelete[ObjT] | None = None,
        *,
        resync_period: float | None = None,
        max_pending: int = 1024,
        overflow: Overflow = "coalesce",
        name: str = "",
        error_handler: Callable[[HandlerError], None] | None = None,
    ) -> EventHandlerRegistration:
        """Register callbacks (plain or async), or one object with on_add/on_update/on_delete.

        Raises `HandlerSignatureError` for a callback that cannot take its arguments and
        `StoppedError` once the informer is stopping or stopped. `error_handler` receives a
        `HandlerError` (its `__cause__` the handler's exception) each time the handler raises;
        by default that is logged, without the object.
        """
        if on_add is not None and not callable(on_add) and on_update is None and on_delete is None:
            handler = ResourceEventHandler.from_object(on_add)
        else:
            handler = ResourceEventHandler(cast("Callable[..., object] | None", on_add), on_update, on_delete)
        listener = self._new_listener(handler, resync_period, max_pending, overflow, name, error_handler)
        self._register(listener)
        return EventHandlerRegistration(self, listener)

    def events(self, *, max_pending: int = 1024, overflow: Overflow = "coalesce") -> EventStream[ObjT]:
        """Notifications as an async iterator (ADDED/MODIFIED/DELETED `Event`s)."""
        listener = self._new_listener(None, 0.0, max_pending, overflow, "events", None)
        self._register(listener)
        return EventStream(self, listener)

    def _new_listener(self, handler: ResourceEventHandler | None, resync_period: float | None, max_pending: int,
                      overflow: Overflow, name: str, error_handler: Callable[[HandlerError], None] | None) -> Listener:
        if self._lifecycle in (_Lifecycle.STOPPING, _Lifecycle.STOPPED):
            raise StoppedError(f"the informer for {self.list_watch.resource} has stopped; handlers cannot be added")
        period = self.default_resync_period if resync_period is None else resync_period
        if period > 0:
            if period < MINIMUM_RESYNC_PERIOD:
                self.log.warning("resync period too small; raised to the minimum", requested=period,
                                 minimum=MINIMUM_RESYNC_PERIOD)
                period = MINIMUM_RESYNC_PERIOD
            if period < self.resync_check_period or self.resync_check_period == 0:
                if self.started:
                    if self.resync_check_period > 0:
                        self.log.warning("resync period smaller than the informer's check period; raised",
                                         requested=period, check_period=self.resync_check_period)
                        period = self.resync_check_period
                else:
                    self.resync_check_period = period
                    self._processor.resync_check_period_changed(period)
        listener = Listener(handler, max_pending=max_pending, overflow=overflow, requested_resync=period,
                            resync_period=determine_resync_period(period, self.resync_check_period),
                            clock=self._clock, name=name, upstream_synced=self.has_synced,
                            resource=str(self.list_watch.resource), error_handler=error_handler)
        if overflow == "block":
            self._blocking = True
            self._fifo.consume_inline(None)  # the loop must be able to wait for room
        return listener

    def _register(self, listener: Listener) -> None:
        # A late registration gets the cache replayed in the same step it joins (module doc).
        self._processor.add(listener, self.indexer.items() if self.started else ())
        if self._tg is not None and listener.handler is not None:
            self._tg.start_soon(listener.run)
        listener.has_synced()

    def _remove_listener(self, listener: Listener) -> None:
        self._processor.remove(listener)
        listener.stop()

    # -- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """List, watch and dispatch until cancelled.

        On the way out (cancellation or an error), listeners take nothing new, a handler call
        in flight gets `shutdown_grace` seconds to finish, and then every task has ended.
        """
        if self._lifecycle is not _Lifecycle.NEW:
            raise AlreadyStartedError(f"the informer for {self.list_watch.resource} was already started")
        self._lifecycle = _Lifecycle.RUNNING
        self.reflector = Reflector(self.list_watch, self._fifo, self.resync_check_period,
                                   should_resync=self._processor.should_resync, config=self._reflector_config,
                                   clock=self._clock, watch_error_handler=self.watch_error_handler)
        if not self._blocking:
            # Watch bursts are dispatched in the reflector's task, as they arrive (fifo.py).
            self._fifo.consume_inline(self._process_many, self.batch_size)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for listener in self._processor.listeners:
                    if listener.handler is not None:
                        tg.start_soon(listener.run)
                tg.start_soon(self.reflector.run)
                tg.start_soon(self._announce_sync)
                try:
                    await self._loop()
                finally:
                    # Before the task group waits for its tasks: listeners are shielded (processor.py).
                    self._begin_shutdown()
        finally:
            self._tg = None
            self._lifecycle = _Lifecycle.STOPPED

    def _begin_shutdown(self) -> None:
        self._lifecycle = _Lifecycle.STOPPING
        self._fifo.close()
        for listener in self._processor.listeners:
            listener.stop(grace=self.shutdown_grace)

    async def __aenter__(self) -> SharedIndexInformer[ObjT]:
        self._outer = anyio.create_task_group()
        await self._outer.__aenter__()
        self._outer.start_soon(self.run)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._outer is not None
        self._outer.cancel_scope.cancel()
        return await exit_unwrapped(self._outer, exc)

    async def _loop(self) -> None:
        fifo = self._fifo
        process, process_many = self._process, self._process_many
        batch = self.batch_size
        while True:
            if not self._blocking:
                await fifo.pop_many(process_many, batch)
            elif self.processing_latency is None:
                await fifo.pop_batch(process, batch)
            else:
                await fifo.pop_batch(self._process_timed, batch)

    def _process_timed(self, deltas: Deltas, is_initial: bool) -> Any:
        now = time.monotonic if type(self._clock) is RealClock else self._clock.now
        start = now()
        result = self._process(deltas, is_initial)
        if result is not None:
            return self._finish_timed(result, start, now)
        latency = self.processing_latency
        if latency is not None:
            latency.observe(now() - start)
        return None

    async def _finish_timed(self, pending: Any, start: float, now: Callable[[], float]) -> None:
        await pending
        latency = self.processing_latency
        if latency is not None:
            latency.observe(now() - start)

    async def _announce_sync(self) -> None:
        await self._fifo.wait_synced()
        self._synced.set()
        for listener in self._processor.listeners:
            listener.has_synced()

    def _process(self, deltas: Deltas, is_initial: bool) -> Any:
        if self._blocking:
            return self._process_blocking(deltas, is_initial)
        key = deltas.key
        for delta in deltas:
            self._dispatch(delta.type, delta.object, is_initial, key)
        return None

    def _process_many(self, popped: list[Deltas], initial: int) -> None:
        latency = self.processing_latency
        if latency is None:
            self._dispatch_many(popped, initial)
            return
        now = time.monotonic if type(self._clock) is RealClock else self._clock.now
        start = now()
        self._dispatch_many(popped, initial)
        if popped:
            # The batch is one synchronous step: each key is observed with its share of it
            # (the histogram's count and sum are exact; the spread within a batch is not).
            share = (now() - start) / len(popped)
            for _ in popped:
                latency.observe(share)

    def _dispatch_many(self, popped: list[Deltas], initial: int) -> None:
        """The batch path (no listener blocks): what `_dispatch` does for each delta of
        `popped` (the first `initial` keys are in the initial list), with one indexer write
        for the batch and one `put_many` per listener.

        Still one synchronous step for the whole batch (module docstring): nothing can
        register or read the listener set between a write and its notification. A
        notification that only listeners due for resync get is handed out on its own, after
        those queued before it, so every listener still sees the batch in order.
        """
        ops: list[tuple[str, Any]] = []
        add_op = ops.append
        for deltas in popped:
            key = deltas.key
            for kind, obj in deltas:
                add_op((key, None if kind is DELETED else obj))
        olds = self.indexer.write_batch(ops)
        self.deltas_processed += len(ops)
        processor = self._processor
        notes: list[Notification] = []
        note = notes.append
        initial_adds = 0
        new = _new_notification
        i = 0
        for index, deltas in enumerate(popped):
            key = deltas.key
            for kind, obj in deltas:
                old = olds[i]
                i += 1
                if kind is DELETED:
                    note(new(Notification, (DELETE, obj, None, False, key)))
                elif old is None:
                    is_initial = index < initial
                    if is_initial:
                        initial_adds += 1
                    note(new(Notification, (ADD, obj, None, is_initial, key)))
                else:
                    n = new(Notification, (UPDATE, obj, old, False, key))
                    try:
                        unchanged = old["metadata"]["resourceVersion"] == obj["metadata"]["resourceVersion"]
                    except (KeyError, TypeError):
                        unchanged = _rv(old) == _rv(obj)
                    if unchanged:
                        if notes:
                            processor.distribute_many(notes, initial_adds)
                            notes, initial_adds = [], 0
                            note = notes.append
                        processor.distribute(n, True)
                    else:
                        note(n)
        if notes:
            processor.distribute_many(notes, initial_adds)

    async def _process_blocking(self, deltas: Deltas, is_initial: bool) -> None:
        key = deltas.key
        for delta in deltas:
            blocked = self._dispatch(delta.type, delta.object, is_initial, key)
            if blocked:
                notification, waiting = blocked
                for listener in waiting:
                    while not listener.removed and not listener.queue.put_nowait(notification):
                        await listener.queue.wait_for_room()

    def _dispatch(self, kind: Any, obj: Any, is_initial: bool,
                  key: str) -> tuple[Notification, list[Listener]] | None:
        """Update the cache for one delta and hand its notification out (hot path).

        The cache write and `distribute` (which reads the listener set) are one synchronous
        step: see the module docstring.
        """
        self.deltas_processed += 1
        sync_only = False
        if kind is DELETED:
            self.indexer.delete_key(key)
            n = Notification(DELETE, obj, None, False, key)
        else:
            old = self.indexer.upsert(key, obj)
            if old is None:
                n = Notification(ADD, obj, None, is_initial, key)
            else:
                n = Notification(UPDATE, obj, old, False, key)
                sync_only = _rv(old) == _rv(obj)
        blocked = self._processor.distribute(n, sync_only)
        return (n, blocked) if blocked else None


async def exit_unwrapped(tg: anyio.abc.TaskGroup, exc: tuple[Any, ...]) -> bool | None:
    """Leave `tg` for an `__aexit__`, raising a lone exception as itself, not in an ExceptionGroup.

    A user's `pytest.raises(ValueError)` or `except ApiException` around
    `async with informer:` must work. Cancellations in the group are ignored when choosing.
    """
    try:
        return await tg.__aexit__(*exc)
    except BaseExceptionGroup as group:
        real = _leaves(group)
        if len(real) == 1:
            raise real[0] from None
        raise


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    out: list[BaseException] = []
    for e in group.exceptions:
        if isinstance(e, BaseExceptionGroup):
            out.extend(_leaves(e))
        elif not isinstance(e, anyio.get_cancelled_exc_class()):
            out.append(e)
    return out
