"""`Reflector`: keeps a store (a DeltaFIFO) in step with the server by list, then watch.

The reflector is an explicit state machine (`ReflectorState`):

    LISTING ──ok──▶ WATCHING ──clean close / drop after progress / idle timeout──▶ WATCHING
       ▲                │
       │                ├─ 410 (HTTP or ERROR event) ─────────────────────────▶ LISTING (at once, RV "")
       │                ├─ 429, connection refused, short or empty watch,
       │                │  malformed line without progress ─▶ BACKOFF ─▶ WATCHING (same RV)
       └── BACKOFF ◀────┴─ any other error (500, 403, …) ─────────────────────▶ BACKOFF ─▶ LISTING

What each step sends (client-go's reflector, DESIGN §4):
- LIST: pages of `page_size` (500). The first list uses RV "0" (any cached state); after a
  410 or "too large RV", RV "" (a consistent read); otherwise the last synced RV with
  `resourceVersionMatch=NotOlderThan`. A 410 on a continue token → one immediate full
  relist with RV "". Pages are applied as they arrive through `DeltaFIFO.start_replace()`,
  so a relist never holds a second copy of the cache; deletions (tombstones for keys not
  listed) are computed after the last page, which keeps `replace` semantics exact.
- WATCH: from the last synced RV with `allowWatchBookmarks=true` and `timeoutSeconds`
  random in [300, 600); a client-side idle timeout (server timeout + 30 s) catches dead
  connections. ADDED/MODIFIED/DELETED go to the store in batches (one per network read);
  BOOKMARK only moves the RV. The RV moves only after the events before it were queued.
- Streaming list (opt-in, `ReflectorConfig.streaming_list`): the watch is opened with
  `sendInitialEvents=true`; its ADDED events feed a streamed replace that finishes at the
  BOOKMARK annotated `k8s.io/initial-events-end`, then the same stream goes on as the
  watch. Any failure before that bookmark falls back to a paged LIST for that round.
- Backoff: 0.8 s doubling to 30 s, jitter 1.0, reset after 2 min (backoff.py); a
  `Retry-After` longer than the backoff is honoured.

Deliberate differences from client-go, each because the RV is still good: a malformed
line, an unknown event type or an object without metadata (logged without the body,
counted in `stats.decode_errors`) restart the watch from the last good RV instead of
relisting; a watch that ends within 1 s with no events is retried after backoff from the
same RV instead of relisting. If the RV is not good, the server says 410 and we relist.

The reflector never dies of an error: every failure is counted, passed to
`watch_error_handler`, logged with its context, and retried. Cancellation stops it at
once and closes the open HTTP response.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import aiohttp
import anyio
import structlog

from kinformer.backoff import Backoff
from kinformer.clock import REAL_CLOCK, Clock
from kinformer.errors import (
    ApiError,
    ConnectionFailedError,
    DecodeError,
    ExpiredError,
    KinformerError,
    TooLargeResourceVersionError,
    TooManyRequestsError,
    WatchDroppedError,
    WatchIdleTimeoutError,
    api_error_from_status,
)
from kinformer.fifo import ADDED, DELETED, UPDATED, DeltaType, ReplaceSession
from kinformer.listwatch import ListWatch

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
_DELTA_OF = {"ADDED": ADDED, "MODIFIED": UPDATED, "DELETED": DELETED}


class ReflectorStore(Protocol):
    """What the reflector writes to (a `DeltaFIFO`)."""

    def start_replace(self, *, skip_unchanged: bool = True) -> ReplaceSession: ...

    async def apply(self, changes: Iterable[tuple[DeltaType, Any]]) -> None: ...

    async def resync(self) -> None: ...


class ReflectorState(enum.Enum):
    INITIAL = "initial"
    LISTING = "listing"
    WATCHING = "watching"
    BACKOFF = "backoff"
    STOPPED = "stopped"


class _Next(enum.Enum):
    REWATCH = "rewatch"
    REWATCH_AFTER_BACKOFF = "rewatch-after-backoff"
    RELIST = "relist"
    RELIST_AFTER_BACKOFF = "relist-after-backoff"
    LIST_INSTEAD = "list-instead"  # streaming list failed before its end: paged list now


@dataclass
class ReflectorConfig:
    """Reflector settings; each default is client-go's unless said otherwise."""

    page_size: int = 500
    """LIST page size (client-go's pager default)."""
    min_watch_timeout: float = 300.0
    """`timeoutSeconds` is random in [min, 2*min): spreads re-watches over time (client-go)."""
    idle_timeout_margin: float = 30.0
    """A watch silent for timeoutSeconds + this is dead (no byte, not even a bookmark)."""
    idle_timeout: float | None = None
    """Override the idle timeout outright (tests)."""
    streaming_list: bool = False
    """Use `sendInitialEvents` streaming lists (opt-in; needs Kubernetes 1.27+ WatchList)."""
    short_watch: float = 1.0
    """A watch that ends this soon with no events is retried after backoff (client-go's 1 s)."""
    backoff: Callable[[Clock], Backoff] = field(default=lambda clock: Backoff(clock=clock))
    """Factory of the per-reflector backoff."""


@dataclass
class ReflectorStats:
    """Counters, readable at any time (`reflector.stats`)."""

    lists: int = 0
    list_pages: int = 0
    relists: int = 0
    watches: int = 0
    rewatches: int = 0
    streaming_lists: int = 0
    streaming_fallbacks: int = 0
    expired: int = 0
    events: int = 0
    bookmarks: int = 0
    decode_errors: int = 0
    errors: int = 0
    backoffs: int = 0
    resyncs: int = 0


WatchErrorHandler = Callable[["Reflector", BaseException], None]

_RECOVERABLE = (KinformerError, aiohttp.ClientError, OSError)


class Reflector:
    def __init__(
        self,
        list_watch: ListWatch,
        store: ReflectorStore,
        resync_period: float = 0.0,
        *,
        should_resync: Callable[[], bool] | None = None,
        config: ReflectorConfig | None = None,
        clock: Clock = REAL_CLOCK,
        rand: Callable[[], float] = random.random,
        watch_error_handler: WatchErrorHandler | None = None,
    ) -> None:
        self.list_watch = list_watch
        self.store = store
        self.resync_period = resync_period
        self.should_resync = should_resync
        self.config = config or ReflectorConfig()
        self.clock = clock
        self._rand = rand
        self.watch_error_handler = watch_error_handler or _log_watch_error
        self.backoff = self.config.backoff(clock)
        self.stats = ReflectorStats()
        self.state = ReflectorState.INITIAL
        self.last_sync_resource_version = ""
        self._rv_unavailable = False
        self._last_error: BaseException | None = None
        self._session: ReplaceSession | None = None  # open while a streaming list's initial events arrive
        self._synced = anyio.Event()
        self.log = structlog.get_logger("kinformer.reflector").bind(
            resource=str(list_watch.resource), namespace=list_watch.namespace or "")

    def has_synced(self) -> bool:
        """True once the first list (or streaming list) has been handed to the store."""
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """List and watch until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                if self.resync_period > 0:
                    tg.start_soon(self._resync_loop)
                await self._loop()
        finally:
            self.state = ReflectorState.STOPPED

    async def _loop(self) -> None:
        need_list = True
        use_stream = self.config.streaming_list
        while True:
            if need_list and not use_stream:
                self.state = ReflectorState.LISTING
                try:
                    await self._list()
                except _RECOVERABLE as exc:
                    self._failed(exc)
                    await self._backoff()
                    continue
                need_list = False
            self.state = ReflectorState.WATCHING
            step = await self._watch(initial=need_list and use_stream)
            if step is _Next.LIST_INSTEAD:
                self.stats.streaming_fallbacks += 1
                use_stream = False
                continue
            if need_list:  # a streaming list completed (or the watch is past it)
                need_list = False
            use_stream = self.config.streaming_list
            if step is _Next.REWATCH:
                self.stats.rewatches += 1
            elif step is _Next.REWATCH_AFTER_BACKOFF:
                self.stats.rewatches += 1
                await self._backoff()
            elif step is _Next.RELIST:
                need_list = True
            elif step is _Next.RELIST_AFTER_BACKOFF:
                need_list = True
                await self._backoff()

    async def _backoff(self) -> None:
        """Wait the next backoff step, or the last error's Retry-After if that is longer."""
        self.state = ReflectorState.BACKOFF
        delay = self.backoff.next()
        retry_after = getattr(self._last_error, "retry_after", None)
        if retry_after is not None and retry_after > delay:
            delay = retry_after
        self._last_error = None
        self.stats.backoffs += 1
        await self.clock.sleep(delay)

    def _failed(self, exc: BaseException) -> None:
        self.stats.errors += 1
        self._last_error = exc
        self.watch_error_handler(self, exc)

    # -- LIST -----------------------------------------------------------------------------

    def _relist_resource_version(self) -> tuple[str, str | None]:
        if self._rv_unavailable:
            return "", None
        if not self.last_sync_resource_version:
            return "0", None
        return self.last_sync_resource_version, "NotOlderThan"

    async def _list(self) -> None:
        rv, match = self._relist_resource_version()
        try:
            await self._list_at(rv, match)
        except (ExpiredError, TooLargeResourceVersionError) as exc:
            # The RV (or the continue token's snapshot) is gone: one consistent full relist.
            self.stats.expired += isinstance(exc, ExpiredError)
            self._rv_unavailable = True
            self.log.info("relisting with a consistent read", reason=type(exc).__name__)
            await self._list_at("", None)

    async def _list_at(self, rv: str, match: str | None) -> None:
        if self.stats.lists:
            self.stats.relists += 1
        self.stats.lists += 1
        session = self.store.start_replace()
        list_rv = ""
        async for page in self.list_watch.list_pages(rv, resource_version_match=match, limit=self.config.page_size):
            self.stats.list_pages += 1
            list_rv = page.resource_version
            await session.add_page(page.items)
        await session.finish(list_rv)
        self._set_synced(list_rv)

    def _set_synced(self, rv: str) -> None:
        self.last_sync_resource_version = rv
        self._rv_unavailable = False
        self._synced.set()

    # -- WATCH ----------------------------------------------------------------------------

    def _watch_timeout(self) -> int:
        low = self.config.min_watch_timeout
        return int(low * (1.0 + self._rand()))

    async def _watch(self, *, initial: bool) -> _Next:
        """One watch connection, start to end; returns what to do next."""
        timeout = self._watch_timeout()
        idle = self.config.idle_timeout
        if idle is None:
            idle = timeout + self.config.idle_timeout_margin
        started = self.clock.now()
        events_before = self.stats.events
        rv = self.last_sync_resource_version
        if initial:
            self.stats.streaming_lists += 1
            if self.stats.lists:
                self.stats.relists += 1
            self.stats.lists += 1
            self._session = self.store.start_replace()
            if self._rv_unavailable:
                rv = ""
        try:
            async with self.list_watch.watch(rv, timeout, send_initial_events=initial, idle_timeout=idle) as stream:
                self.stats.watches += 1
                async for batch in stream:
                    await self._apply(batch)
            if self._session is not None:
                raise WatchDroppedError("streaming list ended before the initial-events-end bookmark")
            progressed = self.stats.events > events_before or self.clock.now() - started >= self.config.short_watch
            return _Next.REWATCH if progressed else _Next.REWATCH_AFTER_BACKOFF
        except _RECOVERABLE as exc:
            return self._after_watch_error(exc, self._session is not None, self.stats.events > events_before)
        finally:
            self._session = None

    def _after_watch_error(self, exc: BaseException, in_initial: bool, progressed: bool) -> _Next:
        if isinstance(exc, DecodeError):
            self.stats.decode_errors += 1
        if in_initial:
            self._failed(exc)
            self.log.warning("streaming list failed; falling back to a paged list", error=str(exc))
            return _Next.LIST_INSTEAD
        if isinstance(exc, ExpiredError):
            self.stats.expired += 1
            self._rv_unavailable = True
            self.watch_error_handler(self, exc)
            return _Next.RELIST
        if isinstance(exc, WatchIdleTimeoutError):
            self._failed(exc)
            return _Next.REWATCH
        self._failed(exc)
        if isinstance(exc, (WatchDroppedError, DecodeError)):
            return _Next.REWATCH if progressed else _Next.REWATCH_AFTER_BACKOFF
        if isinstance(exc, (TooManyRequestsError, ConnectionFailedError)):
            return _Next.REWATCH_AFTER_BACKOFF
        return _Next.RELIST_AFTER_BACKOFF

    async def _apply(self, batch: list[Any]) -> None:
        """Queue one batch of watch events; an ERROR event is raised as its ApiError."""
        session = self._session
        changes: list[tuple[DeltaType, Any]] = []
        rv = ""
        stats = self.stats
        for event in batch:
            kind = event.type
            delta = _DELTA_OF.get(kind)
            if delta is not None:
                obj = event.object
                if session is not None:
                    if delta is not ADDED:
                        raise DecodeError(f"{kind} event before the end of a streaming list's initial events")
                    changes.append((delta, obj))
                    continue
                changes.append((delta, obj))
                rv = obj["metadata"]["resourceVersion"]
            elif kind == "BOOKMARK":
                stats.bookmarks += 1
                meta = event.object.get("metadata") or {}
                bookmark_rv = meta.get("resourceVersion") or ""
                if session is not None and (meta.get("annotations") or {}).get(INITIAL_EVENTS_END) == "true":
                    await session.add_page(obj for _, obj in changes)
                    stats.events += len(changes)
                    changes = []
                    await session.finish(bookmark_rv)
                    self._set_synced(bookmark_rv)
                    self._session = session = None
                    continue
                if bookmark_rv:
                    rv = bookmark_rv
            else:  # ERROR
                await self._queue(changes, session, rv)
                status = event.object
                code = int(status.get("code") or 500)
                raise api_error_from_status(code, status)
        await self._queue(changes, session, rv)

    async def _queue(self, changes: list[tuple[DeltaType, Any]], session: ReplaceSession | None, rv: str) -> None:
        if changes:
            if session is not None:
                await session.add_page(obj for _, obj in changes)
            else:
                await self.store.apply(changes)
            self.stats.events += len(changes)
        if rv and session is None:
            self.last_sync_resource_version = rv

    # -- resync ---------------------------------------------------------------------------

    async def _resync_loop(self) -> None:
        while True:
            await self.clock.sleep(self.resync_period)
            if self.should_resync is None or self.should_resync():
                self.stats.resyncs += 1
                await self.store.resync()


def _log_watch_error(reflector: Reflector, exc: BaseException) -> None:
    """The default `watch_error_handler`: one log line, at a level that fits the error."""
    log = reflector.log
    if isinstance(exc, ExpiredError):
        log.info("watch expired (410); relisting", error=str(exc))
    elif isinstance(exc, (WatchDroppedError, WatchIdleTimeoutError)):
        log.info("watch connection lost; resuming", error=str(exc),
                 resource_version=reflector.last_sync_resource_version)
    elif isinstance(exc, DecodeError):
        log.warning("undecodable watch event; resuming from the last good resourceVersion", error=str(exc),
                    resource_version=reflector.last_sync_resource_version)
    elif isinstance(exc, ApiError):
        log.warning("list/watch failed", code=exc.code, reason=exc.reason, error=exc.message)
    else:
        log.warning("list/watch failed", error=str(exc), error_type=type(exc).__name__)
