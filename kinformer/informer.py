"""`SharedIndexInformer`: one reflector, one DeltaFIFO, one indexed cache, many handlers.

The loop pops batches from the DeltaFIFO and, for each delta, updates the indexer and
notifies every listener (client-go's `processDeltas` / `HandleDeltas`):
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

`async with informer:` runs it in a task group and stops every task on exit;
`await informer.run()` runs it until cancelled.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import anyio
import structlog

from kinformer.clock import REAL_CLOCK, Clock
from kinformer.errors import KinformerError
from kinformer.fifo import DELETED, DeltaFIFO, Deltas, Transform
from kinformer.listwatch import ListWatch
from kinformer.processor import (
    ADD,
    DELETE,
    MINIMUM_RESYNC_PERIOD,
    UPDATE,
    Listener,
    ListenerStats,
    Notification,
    Overflow,
    Processor,
    ResourceEventHandler,
    determine_resync_period,
)
from kinformer.reflector import Reflector, ReflectorConfig, ReflectorStats
from kinformer.store import NAMESPACE_INDEX, Indexer, IndexFunc, namespace_index_func


def _rv(obj: Any) -> Any:
    try:
        return obj["metadata"]["resourceVersion"]
    except (KeyError, TypeError):
        return None


@dataclass(frozen=True, slots=True)
class Event:
    """What `informer.events()` yields: `type` is ADDED, MODIFIED or DELETED."""

    type: str
    object: Any
    old: Any = None
    is_in_initial_list: bool = False


_EVENT_TYPE = {ADD: "ADDED", UPDATE: "MODIFIED", DELETE: "DELETED"}


class EventHandlerRegistration:
    """Returned by `add_event_handler`: sync state, stats, and `remove()`."""

    def __init__(self, informer: SharedIndexInformer, listener: Listener) -> None:
        self._informer = informer
        self.listener = listener

    def has_synced(self) -> bool:
        return self.listener.has_synced()

    async def wait_synced(self) -> None:
        await self.listener.wait_synced()

    def stats(self) -> ListenerStats:
        return self.listener.stats()

    def remove(self) -> None:
        """Stop delivery now; pending notifications are dropped."""
        self._informer._remove_listener(self.listener)


class EventStream:
    """`informer.events()`: notifications as an async iterator, through a bounded listener.

    Use `async with informer.events() as events: async for ev in events: ...`, or iterate
    directly and call `close()` (or `break` and let `aclose` run) when done.
    """

    def __init__(self, informer: SharedIndexInformer, listener: Listener) -> None:
        self._registration = EventHandlerRegistration(informer, listener)
        self._queue = listener.queue

    def __aiter__(self) -> EventStream:
        return self

    async def __anext__(self) -> Event:
        if self._registration.listener.removed:
            raise StopAsyncIteration
        n = await self._queue.get()
        if n.initial:
            self._queue.initial_pending -= 1
        return Event(_EVENT_TYPE[n.kind], n.new, n.old, n.initial)

    def close(self) -> None:
        self._registration.remove()

    async def aclose(self) -> None:
        self.close()

    async def __aenter__(self) -> EventStream:
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


class SharedIndexInformer:
    def __init__(
        self,
        list_watch: ListWatch,
        resync_period: float = 0.0,
        indexers: Mapping[str, IndexFunc] | None = None,
        transform: Transform | None = None,
        *,
        reflector_config: ReflectorConfig | None = None,
        clock: Clock = REAL_CLOCK,
        batch_size: int = 256,
    ) -> None:
        self.list_watch = list_watch
        self.indexer = Indexer(indexers={NAMESPACE_INDEX: namespace_index_func, **(indexers or {})})
        self._fifo = DeltaFIFO(known_objects=self.indexer, transform=transform)
        self._processor = Processor(clock)
        self._clock = clock
        self._reflector_config = reflector_config
        self.default_resync_period = resync_period
        self.resync_check_period = resync_period
        self.batch_size = batch_size
        self.reflector: Reflector | None = None
        self._tg: anyio.abc.TaskGroup | None = None
        self._outer: anyio.abc.TaskGroup | None = None
        self._started = False
        self._stopped = False
        self._synced = anyio.Event()
        self._blocking = False
        self.deltas_processed = 0
        self.log = structlog.get_logger("kinformer.informer").bind(
            resource=str(list_watch.resource), namespace=list_watch.namespace or "")

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
    def started(self) -> bool:
        return self._started

    def stats(self) -> InformerStats:
        return InformerStats(len(self.indexer), len(self._fifo), self.deltas_processed,
                             self.reflector.stats if self.reflector else None,
                             {x.name: x.stats() for x in self._processor.listeners if x.handler is not None})

    def add_indexers(self, indexers: Mapping[str, IndexFunc]) -> None:
        self.indexer.add_indexers(indexers)

    # -- handlers -------------------------------------------------------------------------

    def add_event_handler(
        self,
        on_add: Callable[..., Any] | Any | None = None,
        on_update: Callable[..., Any] | None = None,
        on_delete: Callable[..., Any] | None = None,
        *,
        resync_period: float | None = None,
        max_pending: int = 1024,
        overflow: Overflow = "coalesce",
        name: str = "",
    ) -> EventHandlerRegistration:
        """Register callbacks (plain or async), or one object with on_add/on_update/on_delete."""
        if on_add is not None and not callable(on_add) and on_update is None and on_delete is None:
            handler = ResourceEventHandler.from_object(on_add)
        else:
            handler = ResourceEventHandler(on_add, on_update, on_delete)
        listener = self._new_listener(handler, resync_period, max_pending, overflow, name)
        self._register(listener)
        return EventHandlerRegistration(self, listener)

    def events(self, *, max_pending: int = 1024, overflow: Overflow = "coalesce") -> EventStream:
        """Notifications as an async iterator (ADDED/MODIFIED/DELETED `Event`s)."""
        listener = self._new_listener(None, 0.0, max_pending, overflow, "events")
        self._register(listener)
        return EventStream(self, listener)

    def _new_listener(self, handler: ResourceEventHandler | None, resync_period: float | None, max_pending: int,
                      overflow: Overflow, name: str) -> Listener:
        if self._stopped:
            raise KinformerError("informer has stopped; handlers cannot be added")
        period = self.default_resync_period if resync_period is None else resync_period
        if period > 0:
            if period < MINIMUM_RESYNC_PERIOD:
                self.log.warning("resync period too small; raised to the minimum", requested=period,
                                 minimum=MINIMUM_RESYNC_PERIOD)
                period = MINIMUM_RESYNC_PERIOD
            if period < self.resync_check_period or self.resync_check_period == 0:
                if self._started:
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
                            resource=str(self.list_watch.resource))
        if overflow == "block":
            self._blocking = True
        return listener

    def _register(self, listener: Listener) -> None:
        if self._started:
            # Replay the cache and join the listener set in one synchronous step (module doc).
            put = listener.queue.put_nowait
            for key, obj in self.indexer.items():
                put(Notification(ADD, obj, None, True, key), force=True)
        self._processor.add(listener)
        if self._tg is not None and listener.handler is not None:
            self._tg.start_soon(listener.run)
        listener.has_synced()

    def _remove_listener(self, listener: Listener) -> None:
        self._processor.remove(listener)
        listener.stop()

    # -- running --------------------------------------------------------------------------

    async def run(self) -> None:
        """List, watch and dispatch until cancelled."""
        if self._started:
            raise KinformerError("informer already started")
        self._started = True
        self.reflector = Reflector(self.list_watch, self._fifo, self.resync_check_period,
                                   should_resync=self._processor.should_resync, config=self._reflector_config,
                                   clock=self._clock)
        try:
            async with anyio.create_task_group() as tg:
                self._tg = tg
                for listener in self._processor.listeners:
                    if listener.handler is not None:
                        tg.start_soon(listener.run)
                tg.start_soon(self.reflector.run)
                tg.start_soon(self._announce_sync)
                await self._loop()
        finally:
            self._tg = None
            self._stopped = True
            self._fifo.close()
            for listener in self._processor.listeners:
                listener.stop()

    async def __aenter__(self) -> SharedIndexInformer:
        self._outer = anyio.create_task_group()
        await self._outer.__aenter__()
        self._outer.start_soon(self.run)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        assert self._outer is not None
        self._outer.cancel_scope.cancel()
        return await self._outer.__aexit__(*exc)

    async def _loop(self) -> None:
        fifo = self._fifo
        process = self._process
        batch = self.batch_size
        while True:
            await fifo.pop_batch(process, batch)

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
        """Update the cache for one delta and queue its notification (hot path)."""
        self.deltas_processed += 1
        processor = self._processor
        listeners = processor.listeners  # chosen in the same step as the cache write
        if kind is DELETED:
            self.indexer.delete_key(key)
            n = Notification(DELETE, obj, None, False, key)
        else:
            old = self.indexer.upsert(key, obj)
            if old is None:
                n = Notification(ADD, obj, None, is_initial, key)
            else:
                n = Notification(UPDATE, obj, old, False, key)
                if _rv(old) == _rv(obj):
                    syncing = processor.syncing
                    listeners = tuple(x for x in listeners if x in syncing) if syncing else ()
        blocked: list[Listener] | None = None
        for listener in listeners:
            if not listener.queue.put_nowait(n):
                if blocked is None:
                    blocked = []
                blocked.append(listener)
        return (n, blocked) if blocked else None
