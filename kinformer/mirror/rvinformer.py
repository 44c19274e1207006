"""`ResourceVersionInformer`: an informer that remembers only key → resourceVersion.

Clusterpedia's ResourceVersionInformer, on kinformer's `Reflector` (paged or streaming lists,
bookmarks, 410 → relist, backoff — all unchanged): its store is not a DeltaFIFO plus a cache
of whole objects but one dict, key → RV (an `int` when the RV parses, as etcd's do, else the
string), so memory per object is the key, the RV and a dict slot, not the object. Objects
pass through to the handler and are not kept.

What the handler is told (`RVEventHandler`; each call is awaited before the next change is
looked at, so a slow handler slows the watch: that is the mirror's back-pressure):

    change                          known RV          call                      map
    list item / ADDED / MODIFIED    none              on_add(obj, initial)      key → rv
                                    older than rv     on_update(old_rv, obj)    key → rv
                                    same, or newer    nothing (unchanged / stale replay)
    DELETED event                   none              nothing (already gone)
                                    newer than rv     nothing (a stale replay)
                                    otherwise         on_delete(key, obj)       key removed
    end of a list                   key not listed    on_delete(key, None)      key removed

"Older"/"newer" compare ints numerically; when either RV is not an int, only equality is
known and a different RV counts as newer. `initial` is true during the informer's first
list. A list therefore writes nothing for an unchanged object (Clusterpedia's rule), and a
key missing from a relist is a delete (the tombstone carries no object: none is kept).

Seeding and resuming (`known=`, `resume_resource_version=`): a restarted process passes the
key → RV map read back from its database and the collection RV stored with it. The first
list then reports only what changed while it was down, deletes included, and rewrites no
unchanged row; with `resume_resource_version` the reflector starts by *watching* from that
RV (`Reflector(initial_resource_version=)`), so a short outage costs no list at all, and a
410 (history gone) falls back to one consistent relist.

A handler that raises is counted (`stats.handler_errors`) and logged with the key; the
change is still recorded in the map (the handler's own retry policy, not a relist, is what
recovers it). `has_synced()` is the reflector's: its first list (or resumed watch) was handed
to the handler in full.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from kinformer._logging import get_logger
from kinformer.clock import REAL_CLOCK, Clock
from kinformer.fifo import DELETED, DeltaType
from kinformer.informer import InformerHealth
from kinformer.listwatch import ListWatch
from kinformer.reflector import Reflector, ReflectorConfig, WatchErrorHandler

RV = int | str


def parse_rv(rv: Any) -> RV:
    """An RV as an int when it parses, else the string itself ("" when absent)."""
    text = rv if isinstance(rv, str) else ("" if rv is None else str(rv))
    return int(text) if text.isascii() and text.isdigit() else text


def is_newer(rv: RV, than: RV) -> bool:
    """`rv` is a later state than `than` (ints by value; otherwise any different RV)."""
    if type(rv) is int and type(than) is int:
        return rv > than
    return rv != than


def _key(meta: Mapping[str, Any]) -> str:
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


class RVEventHandler(Protocol):
    """What a `ResourceVersionInformer` tells (see the module docstring's table)."""

    async def on_add(self, obj: dict[str, Any], is_in_initial_list: bool) -> None: ...

    async def on_update(self, old_rv: RV, obj: dict[str, Any]) -> None: ...

    async def on_delete(self, key: str, obj: dict[str, Any] | None) -> None: ...


@dataclass
class RVInformerStats:
    added: int = 0
    updated: int = 0
    deleted: int = 0
    unchanged: int = 0
    """List items and watch events whose RV was already known (nothing was written)."""
    stale: int = 0
    """Watch events older than the known state (a replay after resuming), and deletes of
    unknown keys."""
    handler_errors: int = 0


class ResourceVersionInformer:
    """See the module docstring. `await informer.run()` until cancelled."""

    def __init__(
        self,
        list_watch: ListWatch,
        handler: RVEventHandler,
        *,
        known: Mapping[str, RV] | None = None,
        resume_resource_version: str = "",
        config: ReflectorConfig | None = None,
        clock: Clock = REAL_CLOCK,
        watch_error_handler: WatchErrorHandler | None = None,
    ) -> None:
        self.list_watch = list_watch
        self.handler = handler
        self._known: dict[str, RV] = dict(known) if known else {}
        self._listed_once = False
        self.stats = RVInformerStats()
        self._running = False
        self.reflector = Reflector(list_watch, _RVStore(self), config=config, clock=clock,
                                   watch_error_handler=watch_error_handler,
                                   initial_resource_version=resume_resource_version)
        self.log = get_logger("kinformer.mirror.rvinformer", resource=str(list_watch.resource),
                              namespace=list_watch.namespace or "")

    # -- reading the map ------------------------------------------------------------------

    def __len__(self) -> int:
        return len(self._known)

    def __contains__(self, key: object) -> bool:
        return key in self._known

    def resource_version(self, key: str) -> RV | None:
        return self._known.get(key)

    def keys(self) -> Iterator[str]:
        return iter(list(self._known))

    def snapshot(self) -> dict[str, RV]:
        return dict(self._known)

    @property
    def last_sync_resource_version(self) -> str:
        """The newest collection RV whose changes have all been handed to the handler."""
        return self.reflector.last_sync_resource_version

    # -- running --------------------------------------------------------------------------

    def has_synced(self) -> bool:
        return self.reflector.has_synced()

    async def wait_for_sync(self) -> None:
        await self.reflector.wait_for_sync()

    async def run(self) -> None:
        self._running = True
        try:
            await self.reflector.run()
        finally:
            self._running = False

    def health(self) -> InformerHealth:
        h = self.reflector.health()
        return InformerHealth(self.has_synced(), self._running, type(h.state).__name__, h.last_error,
                              h.failing_since, h.consecutive_failures, h.last_progress)

    # -- the store's work (called by _RVStore) -------------------------------------------

    async def _upsert(self, obj: dict[str, Any], initial: bool) -> str:
        """Record and report one object's state; its key."""
        meta = obj["metadata"]
        key = _key(meta)
        rv = parse_rv(meta.get("resourceVersion"))
        known = self._known
        old = known.get(key)
        if old is None:
            known[key] = rv
            self.stats.added += 1
            await self._call(key, self.handler.on_add, obj, initial)
        elif is_newer(rv, old):
            known[key] = rv
            self.stats.updated += 1
            await self._call(key, self.handler.on_update, old, obj)
        elif rv == old:
            self.stats.unchanged += 1
        else:
            self.stats.stale += 1
        return key

    async def _deleted(self, key: str, obj: dict[str, Any] | None) -> None:
        known = self._known
        old = known.get(key)
        if old is None:
            self.stats.stale += 1
            return
        if obj is not None:
            rv = parse_rv(obj["metadata"].get("resourceVersion"))
            if type(rv) is int and type(old) is int and rv < old:
                self.stats.stale += 1
                return
        del known[key]
        self.stats.deleted += 1
        await self._call(key, self.handler.on_delete, key, obj)

    async def _call(self, key: str, method: Any, *args: Any) -> None:
        try:
            await method(*args)
        except Exception:
            self.stats.handler_errors += 1
            self.log.exception("mirror handler raised; going on", key=key)


class _RVStore:
    """The reflector's store for a `ResourceVersionInformer` (`ReflectorStore`)."""

    def __init__(self, informer: ResourceVersionInformer) -> None:
        self._informer = informer

    def start_replace(self, *, skip_unchanged: bool = True) -> _RVListSession:
        # Unchanged objects are always skipped: there is no object to re-deliver.
        return _RVListSession(self._informer)

    async def apply(self, changes: Iterable[tuple[DeltaType, Any]]) -> None:
        informer = self._informer
        for kind, obj in changes:
            if kind is DELETED:
                await informer._deleted(_key(obj["metadata"]), obj)
            else:
                await informer._upsert(obj, False)

    async def resync(self) -> None:
        """Nothing to resync: no objects are kept."""


class _RVListSession:
    """One list: items are compared as they arrive; keys not listed are deleted at `finish`.

    Holds the set of listed keys (references to the key strings the map already holds, for
    known objects) until `finish`; an aborted list computes no deletions.
    """

    def __init__(self, informer: ResourceVersionInformer) -> None:
        self._informer = informer
        self._initial = not informer._listed_once
        self._listed: set[str] = set()

    async def add_page(self, objs: Iterable[Any]) -> None:
        informer, listed, initial = self._informer, self._listed, self._initial
        for obj in objs:
            listed.add(await informer._upsert(obj, initial))

    async def finish(self) -> None:
        informer, listed = self._informer, self._listed
        gone = [key for key in informer._known if key not in listed]
        self._listed = set()
        for key in gone:
            await informer._deleted(key, None)
        informer._listed_once = True
