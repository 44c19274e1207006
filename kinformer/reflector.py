"""`Reflector`: keeps a store (a DeltaFIFO) in step with the server by list, then watch.

The reflector is an explicit state machine, written the way kube-rs's `watcher` is. Each
state carries what its next request needs; `transition(state, outcome, ...)` is the one
function that decides what comes next, and `Reflector.run` only performs states:

    Listing(rv, match)   a paged LIST. rv "0" (any cached state) before the first sync;
                         the last synced RV with match NotOlderThan on a later relist;
                         "" (a consistent read) after a 410 or a "too large RV" error.
    StreamingList(rv)    a WATCH with sendInitialEvents (opt-in, `streaming_list`); its
                         ADDED events are the list, the bookmark annotated
                         `k8s.io/initial-events-end` ends it and the stream goes on as a watch.
    Watching(rv)         a WATCH from rv with bookmarks and a random timeoutSeconds.
    BackingOff(then, retry_after)  wait the backoff step (or Retry-After, if longer), then `then`.
    Stopped              cancelled.

The transitions (`transition`, tested as a table in tests/test_reflector_states.py):

    state          outcome                                   next
    Listing        Synced(rv)                                Watching(rv)
    Listing        410 / too large RV                        Listing("")   (BackingOff first if rv was "")
    Listing        any other failure                         BackingOff(same Listing)
    StreamingList  Synced(rv)                                Watching(rv), on the same connection
    StreamingList  410 / too large RV                        Listing("")   (paged fallback, this round)
    StreamingList  any other failure, or end before the end bookmark   the relist Listing (paged fallback)
    Watching       clean end after progress / idle timeout   Watching(last RV)
    Watching       clean end without progress                BackingOff(Watching(last RV))
    Watching       drop or malformed line                    Watching(last RV), after BackingOff if no progress
    Watching       429, connection refused                   BackingOff(Watching(last RV))
    Watching       410 (HTTP or ERROR event)                 relist at ""  (Listing / StreamingList)
    Watching       too large RV                              BackingOff(relist at "")
    Watching       anything else (500, 401, 403, a resync error, ...)   BackingOff(relist at last RV)
    BackingOff     the wait is over                          `then`

"Progress" is an event received (bookmarks count, as in client-go), or a watch that lasted
`short_watch` (1 s). "The relist" is Listing("0") before the first sync, else
Listing(last RV, NotOlderThan), or the StreamingList equivalent when streaming lists are on.
Every list after a 410 / too-large error uses RV "" until one succeeds; the round after that
goes back to the last synced RV.

What each request sends (client-go's reflector): LIST pages of `page_size` (500) at one
resourceVersion, applied page by page through `DeltaFIFO.start_replace()` so a relist never
holds a second copy of the cache; tombstones for keys not listed are computed after the last
page. WATCH with `allowWatchBookmarks=true`, `timeoutSeconds` random in [300, 600), and a
client-side idle timeout (timeoutSeconds + 30 s) that catches dead connections. Events go to
the store in batches (one per network read); the RV moves only after the events before it
were queued; BOOKMARK only moves the RV. Backoff: 0.8 s doubling to 30 s, jitter 1.0, reset
after 2 min (backoff.py).

Resuming (`initial_resource_version=rv`, not in client-go): a store that already holds the
collection's state at `rv` (e.g. read back from a database) starts in Watching(rv) instead of
Listing, so a short outage costs no list at all. The reflector counts as synced once that
watch is open (the store's state is the one at `rv`); a 410 on it relists at "" like any
watch 410, and the list's tombstones then remove what was deleted meanwhile.

Deliberate differences from client-go, each because the RV is still good: a malformed line
(counted in `stats.decode_errors`) or a short empty watch re-watches from the last good RV
instead of relisting. A watch 410 relists with a consistent read (client-go first tries the
last RV with NotOlderThan); a 410 on the consistent list itself backs off before retrying.

Never fatal: every failure — including 410s and a store's resync error, which ends the round
as in client-go — is counted in `stats.errors`, recorded in `health()` and passed to
`watch_error_handler` (default: one log line at a level that fits). A watch event of another
kind or apiVersion than the one watched (client-go's expectedType/expectedGVK check) is
skipped, counted in `stats.unexpected_objects`, reported the same way, and the watch goes on.
Cancellation stops it at once and closes the open HTTP response.
"""

from __future__ import annotations

import gc
import random
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.lowlevel

from kinformer import _gc
from kinformer._logging import get_logger
from kinformer.backoff import Backoff
from kinformer.clock import REAL_CLOCK, Clock
from kinformer.errors import (
    ApiError,
    ConnectionFailedError,
    DecodeError,
    ExpiredError,
    TooLargeResourceVersionError,
    TooManyRequestsError,
    UnexpectedObjectError,
    WatchDroppedError,
    WatchIdleTimeoutError,
    api_error_from_status,
)
from kinformer.fifo import ADDED, DELETED, UPDATED, DeltaType
from kinformer.listwatch import ListWatch

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
NOT_OLDER_THAN = "NotOlderThan"
_DELTA_OF = {"ADDED": ADDED, "MODIFIED": UPDATED, "DELETED": DELETED}


class ListSession(Protocol):
    """One list being applied page by page (`DeltaFIFO`'s `ReplaceSession` is one)."""

    async def add_page(self, objs: Iterable[Any]) -> None: ...

    async def finish(self) -> None: ...


class ReflectorStore(Protocol):
    """What the reflector writes to (a `DeltaFIFO`, or the mirror's resourceVersion map)."""

    def start_replace(self, *, skip_unchanged: bool = True) -> ListSession: ...

    async def apply(self, changes: Iterable[tuple[DeltaType, Any]]) -> None: ...

    async def resync(self) -> None: ...


YIELD_EVERY_EVENTS = 256
"""A watch yields to the event loop at least once per this many events, so the handlers'
listeners (default `max_pending` 1024) drain while a fast server keeps the socket full."""


def _nothing() -> None:
    pass


# -- states -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Listing:
    resource_version: str
    match: str | None = None


@dataclass(frozen=True, slots=True)
class StreamingList:
    resource_version: str


@dataclass(frozen=True, slots=True)
class Watching:
    resource_version: str


@dataclass(frozen=True, slots=True)
class BackingOff:
    then: Listing | StreamingList | Watching
    retry_after: float | None = None


@dataclass(frozen=True, slots=True)
class Stopped:
    pass


ActiveState = Listing | StreamingList | Watching
ReflectorState = ActiveState | BackingOff | Stopped


# -- outcomes of performing a state ------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Synced:
    """A list (paged, or a streaming list's initial events) was applied at `resource_version`."""

    resource_version: str


@dataclass(frozen=True, slots=True)
class Ended:
    """A watch ended cleanly (the server's timeout, or a close at a chunk boundary)."""

    progressed: bool


@dataclass(frozen=True, slots=True)
class Failed:
    error: BaseException
    progressed: bool = False


Outcome = Synced | Ended | Failed


def relist_state(last_rv: str, *, consistent: bool, streaming: bool) -> Listing | StreamingList:
    """Where a relist starts: see the module docstring."""
    if streaming:
        return StreamingList("" if consistent else last_rv)
    if consistent:
        return Listing("")
    if not last_rv:
        return Listing("0")
    return Listing(last_rv, NOT_OLDER_THAN)


def transition(state: ReflectorState, outcome: Outcome, *, last_rv: str, streaming: bool) -> ReflectorState:
    """The next state after `outcome` in `state` (the table in the module docstring).

    `last_rv` is the newest RV the store has (advanced by events and bookmarks while
    watching); `streaming` is whether relists use streaming lists.
    """
    if isinstance(state, BackingOff):
        return state.then
    if isinstance(outcome, Synced):
        return Watching(outcome.resource_version)
    error = outcome.error if isinstance(outcome, Failed) else None
    gone = isinstance(error, (ExpiredError, TooLargeResourceVersionError))
    if isinstance(state, Listing):
        if gone and state.resource_version != "":
            return Listing("")
        return BackingOff(state, _retry_after(error))
    if isinstance(state, StreamingList):
        # Fall back to a paged list for this round; consistent if the RV is known to be gone.
        consistent = gone or (state.resource_version == "" and last_rv != "")
        return relist_state(last_rv, consistent=consistent, streaming=False)
    if isinstance(state, Watching):
        here = Watching(last_rv)
        if isinstance(outcome, Ended):
            return here if outcome.progressed else BackingOff(here)
        assert isinstance(outcome, Failed)
        if isinstance(error, ExpiredError):
            return relist_state(last_rv, consistent=True, streaming=streaming)
        if isinstance(error, TooLargeResourceVersionError):
            return BackingOff(relist_state(last_rv, consistent=True, streaming=streaming))
        if isinstance(error, WatchIdleTimeoutError):
            return here
        if isinstance(error, (WatchDroppedError, DecodeError)):
            return here if outcome.progressed else BackingOff(here)
        if isinstance(error, (TooManyRequestsError, ConnectionFailedError)):
            return BackingOff(here, _retry_after(error))
        return BackingOff(relist_state(last_rv, consistent=False, streaming=streaming), _retry_after(error))
    return state  # Stopped


def _retry_after(error: BaseException | None) -> float | None:
    value = getattr(error, "retry_after", None)
    return float(value) if isinstance(value, int | float) else None


# -- configuration, stats, health -------------------------------------------------------


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
    defer_full_gc: bool = True
    """Defer CPython's full collections while a list is applied (kinformer/_gc.py: they
    took two thirds of a 100k-pod initial sync and find nothing in decoded objects). Not
    client-go's: Go has no such collector."""


@dataclass
class ReflectorStats:
    """Counters, readable at any time (`reflector.stats`)."""

    lists: int = 0
    """List requests started (paged or streaming)."""
    list_pages: int = 0
    relists: int = 0
    """Lists that *succeeded* after the first successful one."""
    watches: int = 0
    rewatches: int = 0
    streaming_lists: int = 0
    streaming_fallbacks: int = 0
    expired: int = 0
    events: int = 0
    bookmarks: int = 0
    decode_errors: int = 0
    unexpected_objects: int = 0
    callback_errors: int = 0
    errors: int = 0
    backoffs: int = 0
    resyncs: int = 0


@dataclass(frozen=True, slots=True)
class ReflectorHealth:
    """A snapshot for health checks: is the reflector making progress, and if not, why.

    `last_error` stays set until a list or watch event succeeds again; `failing_since` is
    when the current run of failures began (clock time), `consecutive_failures` its length.
    `permanent` is true when the last error needs a human (401, 403, 404, 400/422): the
    reflector keeps retrying, as client-go does, but a caller can say so.
    """

    state: ReflectorState
    synced: bool
    last_error: BaseException | None
    failing_since: float | None
    consecutive_failures: int
    last_progress: float | None
    """Clock time of the last list, event or bookmark (None before any)."""

    @property
    def permanent(self) -> bool:
        return isinstance(self.last_error, ApiError) and self.last_error.permanent

    @property
    def healthy(self) -> bool:
        return self.last_error is None


WatchErrorHandler = Callable[["Reflector", BaseException], None]


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
        initial_resource_version: str = "",
    ) -> None:
        """`initial_resource_version`: start by watching from this RV, which the store's
        current state must reflect (see "Resuming" in the module docstring); "" or "0" lists first.
        """
        self.list_watch = list_watch
        self.store = store
        self.resync_period = resync_period
        self.should_resync = should_resync
        self.config = config or ReflectorConfig()
        self.clock = clock
        self._rand = rand
        self.watch_error_handler = watch_error_handler or log_watch_error
        self.backoff = self.config.backoff(clock)
        self.stats = ReflectorStats()
        self.state: ReflectorState
        if initial_resource_version not in ("", "0"):
            self.state = Watching(initial_resource_version)
            self.last_sync_resource_version = initial_resource_version
        else:
            self.state = relist_state("", consistent=False, streaming=self.config.streaming_list)
            self.last_sync_resource_version = ""
        self._expected_kind = list_watch.expected_kind
        self._expected_api_version = list_watch.expected_api_version
        self._session: ListSession | None = None  # open while a streaming list's initial events arrive
        self._end_deferral: Callable[[], None] = _nothing  # ends a streaming list's full-GC deferral
        self._round: anyio.CancelScope | None = None
        self._watch_started = 0.0
        self._events_before = 0
        self._interrupt: BaseException | None = None
        self._synced = anyio.Event()
        self._last_error: BaseException | None = None
        self._failing_since: float | None = None
        self._consecutive_failures = 0
        self._last_progress: float | None = None
        self.log = get_logger("kinformer.reflector", resource=str(list_watch.resource),
                              namespace=list_watch.namespace or "")

    def has_synced(self) -> bool:
        """True once the first list (or streaming list) has been handed to the store."""
        return self._synced.is_set()

    async def wait_for_sync(self) -> None:
        await self._synced.wait()

    def health(self) -> ReflectorHealth:
        return ReflectorHealth(self.state, self.has_synced(), self._last_error, self._failing_since,
                               self._consecutive_failures, self._last_progress)

    @property
    def last_error(self) -> BaseException | None:
        return self._last_error

    # -- the loop -------------------------------------------------------------------------

    async def run(self) -> None:
        """List and watch until cancelled."""
        try:
            async with anyio.create_task_group() as tg:
                if self.resync_period > 0:
                    tg.start_soon(self._resync_loop)
                while True:
                    outcome = await self._perform(self.state)
                    # `self.state`, not the state performed: a streaming list becomes Watching mid-stream.
                    before = self.state
                    self.state = transition(before, outcome, last_rv=self.last_sync_resource_version,
                                            streaming=self.config.streaming_list)
                    self._count(before, self.state)
        finally:
            self.state = Stopped()

    async def _perform(self, state: ReflectorState) -> Outcome:
        if isinstance(state, BackingOff):
            await self._backoff(state)
            return Ended(progressed=False)
        outcome: Outcome | None = None
        with anyio.CancelScope() as scope:
            self._round = scope
            try:
                if isinstance(state, Listing):
                    outcome = await self._list(state)
                else:
                    assert not isinstance(state, Stopped)
                    outcome = await self._watch(state)
            except Exception as exc:
                self.report(exc)
                outcome = Failed(exc, progressed=not isinstance(state, Listing) and self._watch_progressed())
            finally:
                self._round = None
                self._session = None
        if self._interrupt is not None:  # a resync error ends the round, whatever it was doing
            error, self._interrupt = self._interrupt, None
            return Failed(error)
        assert outcome is not None
        return outcome

    def _count(self, state: ReflectorState, after: ReflectorState) -> None:
        stats = self.stats
        if isinstance(state, StreamingList) and isinstance(after, Listing):
            stats.streaming_fallbacks += 1
            self.log.info("streaming list failed; falling back to a paged list")
        then = after.then if isinstance(after, BackingOff) else after
        if isinstance(state, Watching) and isinstance(then, Watching):
            stats.rewatches += 1

    async def _backoff(self, state: BackingOff) -> None:
        """Wait the next backoff step, or the error's Retry-After if that is longer."""
        delay = self.backoff.next()
        if state.retry_after is not None and state.retry_after > delay:
            delay = state.retry_after
        self.stats.backoffs += 1
        await self.clock.sleep(delay)

    def report(self, exc: BaseException) -> None:
        """Count a failure, record it for `health()`, and pass it to `watch_error_handler`.

        Also the entry point for the store's user-callback errors (transform, key function),
        which do not end the round.
        """
        stats = self.stats
        stats.errors += 1
        if isinstance(exc, ExpiredError):
            stats.expired += 1
        elif isinstance(exc, DecodeError):
            stats.decode_errors += 1
        if self._last_error is None:
            self._failing_since = self.clock.now()
        self._last_error = exc
        self._consecutive_failures += 1
        try:
            self.watch_error_handler(self, exc)
        except Exception:
            self.log.exception("watch_error_handler raised")

    def _progress(self) -> None:
        self._last_progress = self.clock.now()
        if self._last_error is not None:
            self._last_error = None
            self._failing_since = None
            self._consecutive_failures = 0

    def _interrupt_round(self, error: BaseException) -> None:
        if self._round is not None:
            self._interrupt = error
            self._round.cancel()

    # -- LIST -----------------------------------------------------------------------------

    async def _list(self, state: Listing) -> Outcome:
        self.stats.lists += 1
        end_deferral = _gc.defer_full_collections() if self.config.defer_full_gc else _nothing
        try:
            session = self.store.start_replace()
            list_rv = ""
            async for page in self.list_watch.list_pages(state.resource_version, resource_version_match=state.match,
                                                         limit=self.config.page_size):
                self.stats.list_pages += 1
                list_rv = page.resource_version
                await session.add_page(page.items)
            await session.finish()
        finally:
            end_deferral()
        self._set_synced(list_rv)
        return Synced(list_rv)

    def _set_synced(self, rv: str) -> None:
        if self._synced.is_set():
            self.stats.relists += 1
        self.last_sync_resource_version = rv
        self._progress()
        self._synced.set()

    # -- WATCH ----------------------------------------------------------------------------

    def _watch_timeout(self) -> int:
        low = self.config.min_watch_timeout
        return int(low * (1.0 + self._rand()))

    async def _watch(self, state: Watching | StreamingList) -> Outcome:
        """One watch connection, start to end."""
        timeout = self._watch_timeout()
        idle = self.config.idle_timeout
        if idle is None:
            idle = timeout + self.config.idle_timeout_margin
        initial = isinstance(state, StreamingList)
        self._end_deferral = _nothing
        if initial:
            self.stats.streaming_lists += 1
            self.stats.lists += 1
            self._session = self.store.start_replace()
            if self.config.defer_full_gc:
                self._end_deferral = _gc.defer_full_collections()
        try:
            return await self._watch_stream(state, timeout, idle, initial)
        finally:
            self._end_deferral()

    async def _watch_stream(self, state: Watching | StreamingList, timeout: int, idle: float,
                            initial: bool) -> Outcome:
        self._watch_started = self.clock.now()
        self._events_before = self.stats.events + self.stats.bookmarks
        young_budget = gc.get_threshold()[0] // 2 or 1 << 62
        async with self.list_watch.watch(state.resource_version, timeout, send_initial_events=initial,
                                         idle_timeout=idle) as stream:
            self.stats.watches += 1
            if not initial and not self._synced.is_set():
                # Only a resumed reflector watches before its first list: its store is synced.
                self._progress()
                self._synced.set()
            since_yield = 0
            async for batch in stream:
                await self._apply(batch)
                since_yield += len(batch)
                if since_yield >= YIELD_EVERY_EVENTS or gc.get_count()[0] >= young_budget:
                    # Let the consumers of this batch run and free what it replaced before the
                    # next one is decoded: reading from a full buffer never waits, and the
                    # objects in flight would set off the cyclic GC (see WatchStream). The
                    # young-generation count alone is not enough: a collection during the
                    # batch resets it, and the handlers would starve behind a fast server.
                    since_yield = 0
                    stream.prefetch()
                    await anyio.lowlevel.checkpoint()
        if self._session is not None:
            raise WatchDroppedError("streaming list ended before the initial-events-end bookmark")
        if initial:
            self.state = Watching(self.last_sync_resource_version)
        return Ended(self._watch_progressed())

    def _watch_progressed(self) -> bool:
        # client-go counts every event, bookmarks included, before calling a watch "very short".
        return (self.stats.events + self.stats.bookmarks > self._events_before
                or self.clock.now() - self._watch_started >= self.config.short_watch)

    async def _apply(self, batch: list[Any]) -> None:
        """Queue one batch of watch events; an ERROR event is raised as its ApiError."""
        session = self._session
        changes: list[tuple[DeltaType, Any]] = []
        rv = ""
        stats = self.stats
        want_kind, want_api_version = self._expected_kind, self._expected_api_version
        for event in batch:
            kind = event.type
            delta = _DELTA_OF.get(kind)
            if delta is not None:
                obj = event.object
                if obj.get("apiVersion") != want_api_version or (want_kind and obj.get("kind") != want_kind):
                    self._unexpected(obj)
                    continue
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
                    await session.finish()
                    self._end_deferral()
                    self._set_synced(bookmark_rv)
                    self._session = session = None
                    self.state = Watching(bookmark_rv)
                    continue
                if bookmark_rv:
                    rv = bookmark_rv
            else:  # ERROR
                await self._queue(changes, session, rv)
                status = event.object
                if status.get("kind") != "Status":  # say nothing it holds: it may be anything
                    status = {"message": "watch ERROR event whose object is not a Status"}
                code = status.get("code")
                raise api_error_from_status(code if isinstance(code, int) and code >= 400 else 500, status)
        await self._queue(changes, session, rv)

    def _unexpected(self, obj: Any) -> None:
        self.stats.unexpected_objects += 1
        self.report(UnexpectedObjectError(
            f"watch of {self.list_watch.resource} sent a {obj.get('kind')!r} of apiVersion "
            f"{obj.get('apiVersion')!r} (expected {self._expected_kind!r} of {self._expected_api_version!r}); "
            "skipped"))

    async def _queue(self, changes: list[tuple[DeltaType, Any]], session: ListSession | None, rv: str) -> None:
        if changes:
            if session is not None:
                await session.add_page(obj for _, obj in changes)
            else:
                await self.store.apply(changes)
            self.stats.events += len(changes)
        if rv and session is None:
            self.last_sync_resource_version = rv
            self._progress()

    # -- resync ---------------------------------------------------------------------------

    async def _resync_loop(self) -> None:
        """Resync while watching; a store error ends the current round (client-go's resyncerrc)."""
        while True:
            await self.clock.sleep(self.resync_period)
            if not isinstance(self.state, Watching):
                continue
            if self.should_resync is None or self.should_resync():
                self.stats.resyncs += 1
                try:
                    await self.store.resync()
                except Exception as exc:
                    self.report(exc)
                    self._interrupt_round(exc)


def log_watch_error(reflector: Reflector, exc: BaseException) -> None:
    """The default `watch_error_handler`: one log line, at a level that fits the error.

    Never logs an object body: error messages name kinds, keys and sizes only.
    """
    log = reflector.log
    rv = reflector.last_sync_resource_version
    if isinstance(exc, ExpiredError):
        log.info("resourceVersion expired (410); relisting", resource_version=rv)
    elif isinstance(exc, WatchDroppedError):
        log.info("watch connection closed by server; resuming", resource_version=rv)
    elif isinstance(exc, WatchIdleTimeoutError):
        log.info("watch silent past its idle timeout; reconnecting", resource_version=rv, error=str(exc))
    elif isinstance(exc, DecodeError):
        log.warning("undecodable watch data; resuming from the last good resourceVersion", error=str(exc),
                    resource_version=rv)
    elif isinstance(exc, ApiError):
        log.warning("list/watch failed; retrying", code=exc.code, reason=exc.reason, error=exc.message,
                    permanent=exc.permanent)
    elif isinstance(exc, UnexpectedObjectError):
        log.warning(str(exc))
    else:
        log.warning("list/watch failed; retrying", error=str(exc), error_type=type(exc).__name__)
