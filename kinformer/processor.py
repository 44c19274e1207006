"""Listeners: one bounded queue and one task per event-handler registration.

No handler can stall another: the informer loop hands each
notification to every listener's queue without waiting, and each listener's task calls
its handler. A queue holds at most `max_pending` notifications; when it is full:

- `overflow="coalesce"` (default): the queue switches to one entry per object key,
  merging what is pending for that key (first pending notification fixes the key's
  place in line):
      add + update      → add(latest)             update + update → update(first old, latest new)
      add + delete      → nothing                 update + delete → delete
      delete + add      → delete, then add (a re-creation: both, in order)
  So the handler always ends up seeing the latest state, never misses the delete of an
  object it was told about, and never gets an update for an object it was not told
  exists; memory is bounded by the number of objects, not of events. The queue goes back
  to plain FIFO once the handler has drained it. Entering and leaving coalescing is
  logged once each (warning / info) with the backlog size.
- `overflow="block"`: the informer loop waits for room. This slows every handler and the
  reflector (backpressure to the API server); use it only where every event must be seen.

A handler that raises is reported (`error_handler`, or one log line with the key and the
raise site — never locals or the object); the event is skipped and the listener keeps
running. Stopping a listener lets a handler call in flight finish (see `Listener`).

Resync bookkeeping (client-go's `processorListener`): a listener with a
resync period is "due" when its next resync time has passed; due listeners also receive
updates whose resourceVersion did not change.
"""

from __future__ import annotations

import asyncio
import inspect
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, Generic, Literal, NamedTuple, Protocol, TypeAlias

import anyio
from typing_extensions import TypeVar

from kinformer._logging import get_logger
from kinformer.clock import REAL_CLOCK, Clock
from kinformer.errors import HandlerError, HandlerSignatureError, InvalidArgumentError
from kinformer.objects import DeletedFinalStateUnknown, KubeObject, ObjT, meta_namespace_key

Overflow = Literal["coalesce", "block"]

ADD, UPDATE, DELETE = "add", "update", "delete"


class Notification(NamedTuple):
    """One call to make: `add(new, initial)`, `update(old, new)` or `delete(new)`.

    Immutable and shared by every listener's queue. A tuple, so the informer can build one
    per event with `tuple.__new__` (no Python-level constructor on the hot path).
    """

    kind: str
    new: Any
    old: Any = None
    initial: bool = False
    key: str = ""


def _key(n: Notification) -> str:
    if n.key:
        return n.key
    obj = n.new
    return obj.key if isinstance(obj, DeletedFinalStateUnknown) else meta_namespace_key(obj)


class SyncTracker:
    """Has this registration handled its initial list? (client-go's `synctrack.SingleFileTracker`.)

    The one place initial adds are counted: `start()` when one is queued, `finish()` when it
    was handled or merged away. Synced = the informer has synced *and* nothing initial is
    pending; `wait()` returns at that moment. Checked when the count drops to zero and when
    the informer announces its own sync (`check()`).
    """

    __slots__ = ("_event", "_upstream", "pending", "synced")

    def __init__(self, upstream_has_synced: Callable[[], bool] = lambda: True) -> None:
        self._upstream = upstream_has_synced
        self._event = asyncio.Event()
        self.pending = 0
        self.synced = False

    def start(self) -> None:
        self.pending += 1

    def finish(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.check()

    def check(self) -> bool:
        if self.synced:
            return True
        if self.pending == 0 and self._upstream():
            self.synced = True
            self._event.set()
            return True
        return False

    has_synced = check

    async def wait(self) -> None:
        if not self.check():
            await self._event.wait()


class PendingQueue:
    """A listener's queue: FIFO while below `max_pending`, per-key merging when full.

    Initial adds (including merged ones) are counted in `tracker`. `close()` ends it: what is
    pending is dropped and `get()` returns None from then on, waking a waiting getter.
    `_fifo` is one deque for the queue's whole life (cleared, never replaced): the listener's
    loop holds it to pop inline while `_merged` is None.
    """

    def __init__(self, max_pending: int, overflow: Overflow, log: Any, tracker: SyncTracker | None = None) -> None:
        if max_pending < 1:
            raise InvalidArgumentError("max_pending must be at least 1")
        if overflow not in ("coalesce", "block"):
            raise InvalidArgumentError(f"unknown overflow policy {overflow!r}")
        self.tracker = tracker if tracker is not None else SyncTracker()
        self.closed = False
        self.max_pending = max_pending
        self.overflow = overflow
        self._fifo: deque[Notification] = deque()
        self._merged: OrderedDict[str, list[Notification]] | None = None
        self._merged_count = 0
        self._waiter: asyncio.Future[None] | None = None  # the consumer waiting in `wait()`
        self._room = asyncio.Event()
        self._room.set()
        self._log = log
        self.peak = 0
        self.coalesced = 0

    def __len__(self) -> int:
        return self._merged_count if self._merged is not None else len(self._fifo)

    @property
    def coalescing(self) -> bool:
        return self._merged is not None

    def full(self) -> bool:
        return self._merged is None and len(self._fifo) >= self.max_pending

    def put_nowait(self, n: Notification, *, force: bool = False) -> bool:
        """Queue `n`; False only for a full "block" queue (then wait with `wait_for_room`).

        `force` queues past `max_pending` without coalescing (the replay of the cache to a
        late registration: one add per object, so still bounded by the number of objects).
        """
        if self.closed:
            return True
        if self._merged is None:
            if force or len(self._fifo) < self.max_pending:
                if n.initial:
                    self.tracker.start()
                self._fifo.append(n)
                self._after_put(len(self._fifo))
                return True
            if self.overflow == "block":
                self._room.clear()
                return False
            self._start_coalescing()
        if n.initial:
            self.tracker.start()
        self._merge(n)
        if not self._merged:  # everything pending cancelled out (add + delete)
            self._stop_coalescing()
            return True
        self._after_put(self._merged_count)
        return True

    def put_many(self, ns: list[Notification], initial: int = 0) -> None:
        """`put_nowait` of each of `ns` in order, `initial` of them initial adds; one step
        when they all fit below `max_pending` (the informer's batch path).

        A "block" queue that is full takes them anyway (`force`): the informer only uses this
        path while no listener blocks, so that happens at most for the one batch in flight
        when a blocking listener registers; backpressure applies from the next batch on.
        """
        if self.closed:
            return
        fifo = self._fifo
        if self._merged is None and len(fifo) + len(ns) <= self.max_pending:
            fifo.extend(ns)
            if initial:
                self.tracker.pending += initial
            size = len(fifo)
            if size > self.peak:  # noqa: PLR1730 - hot path: a compare, not a builtin call
                self.peak = size
            if self._waiter is not None:
                self._wake()
            return
        for n in ns:
            if not self.put_nowait(n):
                self.put_nowait(n, force=True)

    async def wait_for_room(self) -> None:
        while self.full() and not self.closed:
            self._room.clear()
            await self._room.wait()

    def _after_put(self, size: int) -> None:
        if size > self.peak:  # noqa: PLR1730 - hot path: a compare, not a builtin call
            self.peak = size
        if self._waiter is not None:
            self._wake()

    def _wake(self) -> None:
        waiter, self._waiter = self._waiter, None
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self) -> None:
        """Return once something is pending or the queue is closed.

        A bare future rather than an `asyncio.Event`: this is every listener's wake-up, once
        per informer batch, and the future is the cheapest thing asyncio can wait on.
        """
        while not self.closed and not self._fifo and not self._merged:
            waiter = self._waiter
            if waiter is None or waiter.done():
                waiter = self._waiter = asyncio.get_running_loop().create_future()
            await waiter

    def _start_coalescing(self) -> None:
        merged: OrderedDict[str, list[Notification]] = OrderedDict()
        self._merged, self._merged_count = merged, 0
        pending = list(self._fifo)
        self._fifo.clear()
        for n in pending:
            self._merge(n)
        self._log.warning("handler is behind: coalescing pending notifications per object",
                          backlog=len(pending), max_pending=self.max_pending)

    def _drop(self, n: Notification) -> None:
        self.coalesced += 1
        if n.initial:
            self.tracker.finish()

    def _merge(self, n: Notification) -> None:
        merged = self._merged
        assert merged is not None
        key = _key(n)
        entry = merged.get(key)
        if entry is None:
            merged[key] = [n]
            self._merged_count += 1
            return
        last = entry[-1]
        kind = n.kind
        if kind == DELETE:
            if last.kind == ADD:
                self._drop(last)
                self._drop(n)
                entry.pop()
                self._merged_count -= 1
                if not entry:
                    del merged[key]
                return
            if last.kind == DELETE:  # a repeated delete: the first one is what the handler knew
                self._drop(n)
                return
            self._drop(last)  # update + delete → delete
            entry[-1] = n
            return
        if last.kind == DELETE:  # re-creation: keep the delete, then the new object
            if kind == UPDATE:
                n = Notification(ADD, n.new, None, False, key)
            entry.append(n)
            self._merged_count += 1
            return
        # Notifications are shared by every listener's queue: merge into a new one, never in place.
        self._drop(n)
        if last.kind == ADD:  # add + add/update → add(latest), keeping the initial flag
            entry[-1] = Notification(ADD, n.new, None, last.initial, key)
        else:  # update + update (or a stray add) → update(first old, latest new)
            entry[-1] = Notification(UPDATE, n.new, last.old, False, key)

    def get_nowait(self) -> Notification | None:
        if self.closed:
            return None
        merged = self._merged
        if merged is None:
            if not self._fifo:
                return None
            n = self._fifo.popleft()
            self._room.set()
            return n
        if not merged:
            self._stop_coalescing()
            return None
        key, entry = next(iter(merged.items()))
        n = entry.pop(0)
        self._merged_count -= 1
        if not entry:
            del merged[key]
            if not merged:
                self._stop_coalescing()
        return n

    def _stop_coalescing(self) -> None:
        self._merged = None
        self._merged_count = 0
        self._log.info("handler caught up: coalescing stopped", coalesced=self.coalesced)
        self._room.set()

    async def get(self) -> Notification | None:
        """The next notification; None once closed."""
        while not self.closed:
            n = self.get_nowait()
            if n is not None:
                return n
            await self.wait()
        return None

    def close(self) -> None:
        """Drop what is pending and end `get()` (see the class docstring)."""
        self.closed = True
        self._fifo.clear()
        self._merged = None
        self._merged_count = 0
        self._wake()
        self._room.set()


OnAdd: TypeAlias = Callable[[ObjT, bool], object] | Callable[[ObjT], object]
"""`on_add(obj, is_in_initial_list)` or `on_add(obj)`; plain or `async def`."""
OnUpdate: TypeAlias = Callable[[ObjT, ObjT], object]
"""`on_update(old, new)`; plain or `async def`."""
OnDelete: TypeAlias = Callable[[ObjT | DeletedFinalStateUnknown], object]
"""`on_delete(obj_or_tombstone)`: a `DeletedFinalStateUnknown` when a relist found the deletion."""


_ObjT_contra = TypeVar("_ObjT_contra", contravariant=True, default=KubeObject)


class HandlerObject(Protocol[_ObjT_contra]):
    """An object with all three callbacks (subclass `EventHandler` to write only some)."""

    def on_add(self, obj: _ObjT_contra, is_in_initial_list: bool, /) -> object: ...

    def on_update(self, old: _ObjT_contra, new: _ObjT_contra, /) -> object: ...

    def on_delete(self, obj: _ObjT_contra | DeletedFinalStateUnknown, /) -> object: ...


class EventHandler(Generic[ObjT]):
    """A base class for handler objects: override the callbacks you need (sync or async).

    client-go's `ResourceEventHandlerFuncs`: the ones you leave alone do nothing.
    """

    def on_add(self, obj: ObjT, is_in_initial_list: bool, /) -> object:
        return None

    def on_update(self, old: ObjT, new: ObjT, /) -> object:
        return None

    def on_delete(self, obj: ObjT | DeletedFinalStateUnknown, /) -> object:
        return None


def _accepts(fn: Callable[..., Any], count: int) -> bool:
    """Whether `fn` can be called with `count` positional arguments (True if it can't be told)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return True
    try:
        signature.bind(*([None] * count))
    except TypeError:
        return False
    return True


class ResourceEventHandler:
    """Adapts callbacks (plain or coroutine functions, or an object with
    `on_add/on_update/on_delete` methods) to one call per notification.

    Signatures are checked here, at registration, so a wrong one fails once with a clear
    `HandlerSignatureError` instead of once per event: `on_add(obj, is_in_initial_list)` or
    `on_add(obj)` (kinformer accepts both; client-go's OnAdd has the flag since 1.27),
    `on_update(old, new)`, `on_delete(obj_or_tombstone)`.
    """

    def __init__(self, on_add: Callable[..., Any] | None = None, on_update: Callable[..., Any] | None = None,
                 on_delete: Callable[..., Any] | None = None) -> None:
        self.on_add, self.on_update, self.on_delete = on_add, on_update, on_delete
        for fn, what in ((on_add, "on_add"), (on_update, "on_update"), (on_delete, "on_delete")):
            if fn is not None and not callable(fn):
                raise HandlerSignatureError(f"{what} must be callable, got {type(fn).__name__}")
        self._add_with_flag = on_add is None or _accepts(on_add, 2)
        if not self._add_with_flag and on_add is not None and not _accepts(on_add, 1):
            raise HandlerSignatureError(f"{_name(on_add)} cannot be on_add: it must accept (obj, is_in_initial_list) "
                                        "or (obj)")
        if on_update is not None and not _accepts(on_update, 2):
            raise HandlerSignatureError(f"{_name(on_update)} cannot be on_update: it must accept (old, new)")
        if on_delete is not None and not _accepts(on_delete, 1):
            raise HandlerSignatureError(f"{_name(on_delete)} cannot be on_delete: it must accept (obj_or_tombstone)")

    @classmethod
    def from_object(cls, handler: Any) -> ResourceEventHandler:
        return cls(getattr(handler, "on_add", None), getattr(handler, "on_update", None),
                   getattr(handler, "on_delete", None))

    def call(self, n: Notification) -> Awaitable[Any] | None:
        kind = n.kind
        if kind == ADD:
            fn = self.on_add
            if fn is None:
                return None
            result = fn(n.new, n.initial) if self._add_with_flag else fn(n.new)
        elif kind == UPDATE:
            fn = self.on_update
            result = fn(n.old, n.new) if fn is not None else None
        else:
            fn = self.on_delete
            result = fn(n.new) if fn is not None else None
        return result if result is not None and inspect.isawaitable(result) else None

    def describe(self) -> str:
        for fn in (self.on_add, self.on_update, self.on_delete):
            if fn is not None:
                return _name(fn)
        return "handler"


def _name(fn: Any) -> str:
    return str(getattr(fn, "__qualname__", None) or repr(fn))


@dataclass
class ListenerStats:
    delivered: int = 0
    errors: int = 0
    coalesced: int = 0
    backlog: int = 0
    peak_backlog: int = 0
    coalescing: bool = False


class Listener:
    """One registration: its queue, its task, its resync schedule, its sync state.

    Stopping (`stop()`) never interrupts a handler call in flight: the call finishes, and
    nothing is delivered after it (client-go's RemoveEventHandler). Only `stop(grace=...)`,
    used at informer shutdown, bounds that wait: a call still running after `grace` seconds
    is cancelled. The listener's loop is shielded from outside cancellation for exactly this
    reason; `stop` is what ends it.
    """

    def __init__(
        self,
        handler: ResourceEventHandler | None,
        *,
        max_pending: int = 1024,
        overflow: Overflow = "coalesce",
        requested_resync: float = 0.0,
        resync_period: float = 0.0,
        clock: Clock = REAL_CLOCK,
        name: str = "",
        upstream_synced: Callable[[], bool] = lambda: True,
        resource: str = "",
        error_handler: Callable[[HandlerError], None] | None = None,
    ) -> None:
        self.handler = handler
        self.name = name or (handler.describe() if handler is not None else "events")
        self.log = get_logger("kinformer.processor", handler=self.name, resource=resource)
        self.tracker = SyncTracker(upstream_synced)
        self.queue = PendingQueue(max_pending, overflow, self.log, self.tracker)
        self.requested_resync = requested_resync
        self.resync_period = resync_period
        self.clock = clock
        self.next_resync = clock.now() + resync_period
        self.error_handler = error_handler
        self._scope: anyio.CancelScope | None = None
        self._batch: list[Notification] = []  # what the loop took from the queue and is delivering
        self._in_call = False
        self.done = anyio.Event()
        """Set when the loop has ended (or at `stop()` for a listener that never ran)."""
        self.removed = False
        self.delivered = 0
        self.errors = 0

    # -- resync ---------------------------------------------------------------------------

    def should_resync(self, now: float) -> bool:
        return self.resync_period > 0 and now >= self.next_resync

    def determine_next_resync(self, now: float) -> None:
        self.next_resync = now + self.resync_period

    # -- sync state -----------------------------------------------------------------------

    def has_synced(self) -> bool:
        """True once the informer has synced and this handler has handled its initial adds."""
        return self.tracker.check()

    async def wait_synced(self) -> None:
        await self.tracker.wait()

    def idle(self) -> bool:
        """Nothing queued and no handler call running (an `events()` stream: nothing queued)."""
        return not self._in_call and len(self.queue) == 0

    def handled(self, n: Notification) -> None:
        """A consumer (the loop, or an `EventStream`) is done with `n`."""
        self.delivered += 1
        if n.initial:
            self.tracker.finish()

    # -- delivery -------------------------------------------------------------------------

    def stats(self) -> ListenerStats:
        q = self.queue
        return ListenerStats(self.delivered, self.errors, q.coalesced, len(q), q.peak, q.coalescing)

    def stop(self, grace: float | None = None) -> None:
        """Deliver nothing more; let a call in flight finish (within `grace` seconds, if given)."""
        self.removed = True
        self.queue.close()
        self._batch.clear()  # nothing more from the batch being delivered
        scope = self._scope
        if scope is None:
            if self.handler is None or not self._in_call:
                self.done.set()
            return
        if not self._in_call:
            scope.cancel()
        elif grace is not None:
            scope.deadline = min(scope.deadline, anyio.current_time() + grace)

    async def run(self) -> None:
        """Call the handler for each notification until stopped.

        The hot path of every handler, so the loop does per notification only what it must.
        It takes everything pending from the plain FIFO at once (`_fifo` is never non-empty
        while coalescing) and calls the callbacks directly (what `ResourceEventHandler.call`
        does). Taking the batch is invisible to everyone else: nothing else runs until the
        loop awaits, and before it awaits (an async handler's result) it puts the rest of
        the batch back at the front of the queue. `stop()` empties the batch, which ends its
        `for` loop, so nothing is delivered after it. `delivered` is kept in a local and
        written back before every await and at the end; `_in_call` is set only while
        awaiting a handler's result.
        """
        handler = self.handler
        assert handler is not None
        delivered = self.delivered
        try:
            with anyio.CancelScope(shield=True) as scope:
                self._scope = scope
                if self.removed:
                    return
                queue = self.queue
                fifo = queue._fifo
                room = queue._room if queue.overflow == "block" else None
                tracker = self.tracker
                finish = tracker.finish
                on_add, on_update, on_delete = handler.on_add, handler.on_update, handler.on_delete
                add_with_flag = handler._add_with_flag
                isawaitable = inspect.isawaitable
                while True:
                    if fifo:
                        batch = self._batch = list(fifo)
                        fifo.clear()
                        if room is not None:
                            room.set()
                    else:
                        got = queue.get_nowait()
                        if got is None:
                            if queue.closed:
                                return
                            if not tracker.synced:
                                self.has_synced()
                            self.delivered = delivered
                            await queue.wait()
                            continue
                        batch = self._batch = [got]
                    first = delivered
                    for n in batch:  # stop() empties `batch`, which ends this loop at once
                        kind, new, old, initial, _ = n
                        try:
                            if kind == UPDATE:
                                result = on_update(old, new) if on_update is not None else None
                            elif kind == ADD:
                                if on_add is None:
                                    result = None
                                elif add_with_flag:
                                    result = on_add(new, initial)
                                else:
                                    result = on_add(new)
                            else:
                                result = on_delete(new) if on_delete is not None else None
                            if result is not None and isawaitable(result):
                                # Others run while we wait: the rest of the batch goes back to
                                # the front of the queue first, where stop() and coalescing see it.
                                fifo.extendleft(reversed(batch[delivered - first + 1:]))
                                batch.clear()
                                self.delivered = delivered
                                self._in_call = True
                                try:
                                    await result
                                finally:
                                    self._in_call = False
                        except Exception as exc:
                            self._failed(n, exc)
                        finally:
                            delivered += 1
                            if initial:
                                finish()
                    batch.clear()  # drop the references now, not at the next wake-up
        finally:
            self.delivered = delivered
            self._scope = None
            self.done.set()

    def _failed(self, n: Notification, exc: Exception) -> None:
        self.errors += 1
        key = _key(n)
        error = HandlerError(f"event handler {self.name} raised on {n.kind} of {key}: {type(exc).__name__}: {exc}")
        error.__cause__ = exc
        if self.error_handler is not None:
            try:
                self.error_handler(error)
                return
            except Exception:
                self.log.exception("handler error_handler raised")
        # One line, with the traceback's location but no locals and no object body.
        self.log.error("event handler failed; skipping the event", notification=n.kind, key=key,
                       error=f"{type(exc).__name__}: {exc}", where=_where(exc))


def _where(exc: BaseException) -> str:
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    if tb is None:
        return ""
    return f"{tb.tb_frame.f_code.co_filename}:{tb.tb_lineno}"


class Processor:
    """The informer's set of listeners, the resync schedule, and fan-out of notifications."""

    def __init__(self, clock: Clock = REAL_CLOCK) -> None:
        self.clock = clock
        self.listeners: tuple[Listener, ...] = ()
        self.syncing: frozenset[Listener] = frozenset()

    def add(self, listener: Listener, replay: Iterable[tuple[str, Any]] = ()) -> None:
        """Join `listener`, first queueing `replay` (the cache, as initial adds) to it alone.

        Both happen in one synchronous step, so the listener sees each object either in the
        replay or as a later notification, never both and never neither.
        """
        put = listener.queue.put_nowait
        for key, obj in replay:
            put(Notification(ADD, obj, None, True, key), force=True)
        self.listeners = (*self.listeners, listener)

    def remove(self, listener: Listener) -> None:
        self.listeners = tuple(x for x in self.listeners if x is not listener)
        self.syncing = self.syncing - {listener}

    def distribute(self, n: Notification, sync_only: bool = False) -> list[Listener] | None:
        """Queue `n` to every listener (only those due for resync when `sync_only`).

        Returns the listeners whose full "block" queue refused it (None if all took it).
        """
        listeners = self.listeners
        if sync_only:
            syncing = self.syncing
            if not syncing:
                return None
            listeners = tuple(x for x in listeners if x in syncing)
        blocked: list[Listener] | None = None
        for listener in listeners:
            if not listener.queue.put_nowait(n):
                if blocked is None:
                    blocked = []
                blocked.append(listener)
        return blocked

    def distribute_many(self, ns: list[Notification], initial: int = 0) -> None:
        """Queue every one of `ns` to every listener (`initial` of them are initial adds).

        The informer's batch path, for notifications to everyone (not `sync_only`) while no
        listener blocks: one `put_many` per listener per batch instead of one call per
        listener per event.
        """
        for listener in self.listeners:
            listener.queue.put_many(ns, initial)

    def should_resync(self) -> bool:
        """Called by the reflector's resync timer: pick the listeners now due."""
        now = self.clock.now()
        due = [x for x in self.listeners if x.should_resync(now)]
        for listener in due:
            listener.determine_next_resync(now)
        self.syncing = frozenset(due)
        return bool(due)

    def resync_check_period_changed(self, check: float) -> None:
        for listener in self.listeners:
            listener.resync_period = determine_resync_period(listener.requested_resync, check)


MINIMUM_RESYNC_PERIOD = 1.0


def determine_resync_period(desired: float, check: float) -> float:
    """client-go's `determineResyncPeriod`: 0 stays 0; no resync if the informer checks
    never; never more often than the informer checks."""
    if desired == 0 or check == 0:
        return 0.0
    return max(desired, check)
