"""`DeltaFIFO`: the queue between the reflector (producer) and the informer loop (consumer).

Each key maps to the list of `Delta`s that happened to it since it was last popped; keys
pop in the order they were first queued. What each operation emits (client-go semantics,
with `EmitDeltaTypeReplaced`):

- `add` / `update(obj)`: append `ADDED` / `UPDATED`.
- `apply(changes)`: the three above for a batch, under one lock acquisition.
- `delete(obj)`: append `DELETED`, unless the key is neither queued nor in `known_objects`
  (then it is dropped: a relist already reported it). Two trailing `DELETED`s collapse into
  one, keeping the one that is not a `DeletedFinalStateUnknown` (the older if both are real).
- `replace(objs, rv)`: `REPLACED` for every listed object; then, for every key queued or
  known but not listed, `DELETED(DeletedFinalStateUnknown(key, last_known_obj))`.
- `start_replace()` does the same page by page (a streamed relist: it never holds a second
  copy of the cache): `add_page` queues `REPLACED` for each listed object — skipping one whose resourceVersion
  equals the newest state already queued or known, so a relist of an unchanged cache holds
  no second copy — and `finish` computes the deletions after the last page. An aborted
  session (list failed midway) queued only real states at least as new as the cache; its
  deletions are never computed.
- `resync()`: `SYNC` with the known object for every known key with nothing queued.
- `transform` runs on every object entering the queue except tombstones and `SYNC` (which
  re-emits an already transformed object); DELETED objects from a watch are transformed
  too, so handlers always see transformed objects.
- A `transform` or key function that raises skips that one object's delta and nothing else:
  the error goes to `error_handler` (a `TransformError` / `KeyFuncError` whose `__cause__`
  is the user's exception; default: logged) and `callback_errors` counts it. The consumer
  keeps its previous state of that key; during a replace the key still counts as listed
  (it exists), so it gets no tombstone. The object comes back with its next change or the
  next relist (client-go instead fails the whole list, which relists forever).

`consume_inline(process)` makes `apply` (the watch path) and each page of a replace session
(the list path) hand what they queued straight to a synchronous consumer, exactly as
`pop_many` would, without a task switch.

`has_synced()` is true once the first replace has finished and every key it queued has been
popped, or once any add/update/delete came first. `pop(process)` runs `process(deltas,
is_in_initial_list)` (sync or async) under the queue lock, so the consumer's store and the
queue change together: a replace cannot compute deletions between a pop and its store
update. `close()` lets queued items drain; then `pop` raises `FIFOClosedError`.

The lock and wake-up are an `asyncio.Lock` plus an `asyncio.Event` ("not empty or closed")
rather than an `asyncio.Condition`: the same pattern, but `close()` can wake waiters from
synchronous code, which `Condition.notify` (lock required) forbids.
"""

from __future__ import annotations

import asyncio
import builtins
import inspect
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable
from enum import StrEnum
from typing import Any, NamedTuple, Protocol

from kinformer._logging import get_logger
from kinformer.errors import FIFOClosedError, KeyFuncError, TransformError, UserCallbackError
from kinformer.objects import DeletedFinalStateUnknown, KeyFunc, meta_namespace_key


class DeltaType(StrEnum):
    ADDED = "Added"
    UPDATED = "Updated"
    DELETED = "Deleted"
    REPLACED = "Replaced"
    SYNC = "Sync"


ADDED, UPDATED, DELETED, REPLACED, SYNC = (
    DeltaType.ADDED, DeltaType.UPDATED, DeltaType.DELETED, DeltaType.REPLACED, DeltaType.SYNC,
)


class Delta(NamedTuple):
    """One change: its type and the object's state after it (before it, for a deletion)."""

    type: DeltaType
    object: Any


class Deltas(list[Delta]):
    """The deltas of one key, oldest first; `key` saves consumers recomputing it.

    Built with list's own (C) constructor and the key set after, so queueing a new key
    costs no Python-level `__init__` call.
    """

    __slots__ = ("key",)
    key: str


class KnownObjects(Protocol):
    """What the consumer already holds (an `Indexer`).

    If it also has `has_key(key) -> bool` and `resource_version_of(key) -> str | None` (as
    `Indexer` does), the FIFO uses them for its existence and unchanged-resourceVersion
    checks, so a store that keeps objects encoded (the compact store) never decodes one
    for them.
    """

    def list_keys(self) -> list[str]: ...

    def get_by_key(self, key: str) -> Any | None: ...



Transform = Callable[[Any], Any]
ProcessFunc = Callable[[Deltas, bool], Awaitable[None] | None]
ProcessManyFunc = Callable[[list[Deltas], int], None]
_new_delta = tuple.__new__  # builds a Delta without NamedTuple's Python-level __new__


def _rv(obj: Any) -> str:
    try:
        return str(obj["metadata"]["resourceVersion"] or "")
    except (KeyError, TypeError):
        return ""


class DeltaFIFO:
    """See the module docstring for exactly what each operation emits."""

    def __init__(
        self,
        key_func: KeyFunc = meta_namespace_key,
        known_objects: KnownObjects | None = None,
        transform: Transform | None = None,
        *,
        error_handler: Callable[[UserCallbackError], None] | None = None,
    ) -> None:
        self._key_func = key_func
        self.error_handler = error_handler
        self.callback_errors = 0
        self._known = known_objects
        self._known_has: Callable[[str], bool] | None = getattr(known_objects, "has_key", None)
        self._known_rv: Callable[[str], str | None] | None = getattr(known_objects, "resource_version_of", None)
        self._transform = transform
        self._items: OrderedDict[str, Deltas] = OrderedDict()  # key order = pop order
        self._lock = asyncio.Lock()
        self._not_empty = asyncio.Event()
        self._populated = False
        self._initial_population_count = 0
        self._counting_initial = False
        self._closed = False
        self._synced = asyncio.Event()
        self._inline: ProcessManyFunc | None = None
        self._inline_max = 256

    def key_of(self, obj: Any) -> str:
        if isinstance(obj, DeletedFinalStateUnknown):
            return obj.key
        return self._key_func(obj)

    # -- producer side --------------------------------------------------------------------

    def _queue(self, kind: DeltaType, obj: Any, key: str) -> None:
        """Append a delta; the caller holds the lock."""
        if (
            self._transform is not None
            and kind is not SYNC
            and not isinstance(obj, DeletedFinalStateUnknown)
        ):
            try:
                obj = self._transform(obj)
            except Exception as exc:
                self._callback_failed(TransformError(f"transform raised for {key} ({kind}): "
                                                     f"{type(exc).__name__}: {exc}"), exc)
                return
        deltas = self._items.get(key)
        if deltas is None:
            deltas = self._items[key] = Deltas((Delta(kind, obj),))
            deltas.key = key
            if self._counting_initial:
                self._initial_population_count += 1
            self._not_empty.set()
        elif kind is DELETED and deltas[-1].type is DELETED:
            if isinstance(deltas[-1].object, DeletedFinalStateUnknown):
                deltas[-1] = Delta(kind, obj)
        else:
            deltas.append(Delta(kind, obj))

    def _callback_failed(self, error: UserCallbackError, cause: BaseException) -> None:
        error.__cause__ = cause
        self.callback_errors += 1
        if self.error_handler is not None:
            self.error_handler(error)
        else:
            get_logger("kinformer.fifo").warning(str(error))

    def _safe_key(self, obj: Any) -> str | None:
        try:
            return self.key_of(obj)
        except Exception as exc:
            self._callback_failed(KeyFuncError(f"key function raised: {type(exc).__name__}: {exc}"), exc)
            return None

    def _event_locked(self, kind: DeltaType, obj: Any) -> None:
        key = self._safe_key(obj)
        if key is None:
            return
        if kind is DELETED and key not in self._items and not self._known_key(key):
            return
        self._queue(kind, obj, key)

    def _known_key(self, key: str) -> bool:
        if self._known_has is not None:
            return self._known_has(key)
        return self._known is not None and self._known.get_by_key(key) is not None

    async def add(self, obj: Any) -> None:
        async with self._lock:
            self._populated = True
            self._event_locked(ADDED, obj)
            self._check_synced()

    async def update(self, obj: Any) -> None:
        async with self._lock:
            self._populated = True
            self._event_locked(UPDATED, obj)
            self._check_synced()

    async def delete(self, obj: Any) -> None:
        async with self._lock:
            self._populated = True
            self._event_locked(DELETED, obj)
            self._check_synced()

    async def apply(self, changes: Iterable[tuple[DeltaType, Any]]) -> None:
        """`add`/`update`/`delete` of a batch (a watch burst) under one lock acquisition.

        The watch path: with the default key function and no transform, an ADDED/UPDATED
        change of a well-formed object is queued inline (the same steps as `_event_locked`
        and `_queue`, without their calls); every other change takes the general path.
        With `consume_inline`, everything queued is then processed before returning.
        """
        async with self._lock:
            self._populated = True
            if self._key_func is not meta_namespace_key or self._transform is not None:
                for kind, obj in changes:
                    self._event_locked(kind, obj)
                self._after_apply_locked()
                return
            items = self._items
            get = items.get
            counting = self._counting_initial
            new_key = False
            for kind, obj in changes:
                if kind is not DELETED:
                    try:
                        meta = obj["metadata"]
                        name = meta["name"]
                        ns = meta.get("namespace")
                    except (KeyError, TypeError, AttributeError):
                        self._event_locked(kind, obj)  # reports the key function's error
                        continue
                    key = f"{ns}/{name}" if ns else str(name)
                    deltas = get(key)
                    if deltas is None:
                        deltas = items[key] = Deltas((_new_delta(Delta, (kind, obj)),))
                        deltas.key = key
                        if counting:
                            self._initial_population_count += 1
                        new_key = True
                    else:
                        deltas.append(_new_delta(Delta, (kind, obj)))
                else:
                    self._event_locked(kind, obj)
            if new_key and self._inline is None:
                self._not_empty.set()
            self._after_apply_locked()

    def _after_apply_locked(self) -> None:
        self._drain_inline_locked()
        self._check_synced()

    def _drain_inline_locked(self) -> None:
        inline = self._inline
        if inline is not None:
            while self._items:
                self._pop_many_locked(inline, self._inline_max)

    async def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        """Atomically replace: REPLACED for every object, tombstones for the rest."""
        async with self._lock:
            session = ReplaceSession(self, skip_unchanged=False)
            session._add_locked(objs)
            session._finish_locked()

    def start_replace(self, *, skip_unchanged: bool = True) -> ReplaceSession:
        """Begin a streamed replace; see `ReplaceSession`."""
        return ReplaceSession(self, skip_unchanged=skip_unchanged)

    async def resync(self) -> None:
        if self._known is None:
            return
        async with self._lock:
            for key in self._known.list_keys():
                if key in self._items:
                    continue
                obj = self._known.get_by_key(key)
                if obj is not None:
                    self._queue(SYNC, obj, key)

    def close(self) -> None:
        """Stop accepting waits: queued items still pop, then `pop` raises FIFOClosedError."""
        self._closed = True
        self._not_empty.set()

    # -- consumer side --------------------------------------------------------------------

    async def _wait_not_empty_locked(self) -> None:
        while not self._items:
            if self._closed:
                raise FIFOClosedError("DeltaFIFO is closed")
            self._not_empty.clear()
            self._lock.release()
            try:
                await self._not_empty.wait()
            finally:
                await self._lock.acquire()

    def _pop_locked(self) -> tuple[Deltas, bool]:
        _, deltas = self._items.popitem(last=False)
        is_initial = not (self._populated and self._initial_population_count == 0)
        if self._initial_population_count > 0:
            self._initial_population_count -= 1
        return deltas, is_initial

    async def pop(self, process: ProcessFunc | None = None) -> Deltas:
        """Wait for an item, pop it, run `process` on it under the lock, return its deltas."""
        async with self._lock:
            await self._wait_not_empty_locked()
            deltas, is_initial = self._pop_locked()
            if process is not None:
                result = process(deltas, is_initial)
                if result is not None and inspect.isawaitable(result):
                    await result
            self._check_synced()
            return deltas

    async def pop_batch(self, process: ProcessFunc | None = None, max_items: int = 256) -> list[Deltas]:
        """Like `pop`, but pops up to `max_items` keys in one wake-up (in queue order)."""
        async with self._lock:
            await self._wait_not_empty_locked()
            popped: list[Deltas] = []
            items = self._items
            while items and len(popped) < max_items:
                deltas, is_initial = self._pop_locked()
                popped.append(deltas)
                if process is not None:
                    result = process(deltas, is_initial)
                    if result is not None and inspect.isawaitable(result):
                        await result
            self._check_synced()
            return popped

    async def pop_many(self, process: ProcessManyFunc, max_items: int = 256) -> int:
        """Pop up to `max_items` keys (in queue order) and run `process(popped, initial)` once.

        The consumer's fast path: one call per wake-up instead of one per key. `initial` is
        how many of the popped keys belong to the initial list: always a prefix of `popped`,
        since `is_in_initial_list` holds exactly for the pops made while the initial
        population is not yet drained. `process` is synchronous and runs under the lock, as
        `pop`'s does. Returns the number of keys popped.
        """
        async with self._lock:
            await self._wait_not_empty_locked()
            n = self._pop_many_locked(process, max_items)
            self._check_synced()
            return n

    def _pop_many_locked(self, process: ProcessManyFunc, max_items: int) -> int:
        items = self._items
        popitem = items.popitem
        n = min(len(items), max_items)
        popped = [popitem(last=False)[1] for _ in range(n)]
        initial = min(self._initial_population_count, n) if self._populated else n
        if self._initial_population_count > 0:
            self._initial_population_count -= min(self._initial_population_count, n)
        process(popped, initial)
        return n

    def consume_inline(self, process: ProcessManyFunc | None, max_items: int = 256) -> None:
        """Make `apply` and each replace-session page (and its `finish`) hand everything
        queued straight to `process`, as `pop_many` would (same order, same `initial`
        prefix, under the same lock), in the producer's task.

        For a consumer whose processing is synchronous and never waits (the informer while
        no listener blocks): a watch burst is then processed without a task switch, the
        objects it replaces are freed before the next burst is decoded (which keeps
        CPython's collector from running), and a list never piles up in the queue as
        decoded objects. `None` turns it off; the consumer's own `pop` loop still gets
        everything else (resyncs, `add`/`update`/`delete`, an atomic `replace`).
        """
        self._inline = process
        self._inline_max = max_items

    # -- readers --------------------------------------------------------------------------

    def has_synced(self) -> bool:
        return self._synced.is_set() or self._check_synced()

    def _check_synced(self) -> bool:
        """Signal `wait_synced` the moment the initial population has been processed.

        Checked after a pop's `process` returned (so the consumer's store holds the last
        initial item) and after a finished replace that queued nothing.
        """
        if self._populated and self._initial_population_count == 0:
            self._synced.set()
            return True
        return False

    async def wait_synced(self) -> None:
        await self._synced.wait()

    def list(self) -> list[Any]:
        """The newest object of every queued key."""
        return [deltas[-1].object for deltas in self._items.values()]

    def list_keys(self) -> builtins.list[str]:
        return list(self._items)

    def get_by_key(self, key: str) -> builtins.list[Delta] | None:
        deltas = self._items.get(key)
        return list(deltas) if deltas is not None else None

    def is_closed(self) -> bool:
        return self._closed

    def len(self) -> int:
        return len(self._items)

    def __len__(self) -> int:
        return len(self._items)


class ReplaceSession:
    """One streamed replace: `await add_page(objs)` per list page, then `await finish()`.

    Invariant: `_listed` holds every key seen in this session (keys only, never objects),
    so `finish` can emit tombstones for keys queued or known but not listed. If the first
    replace is streamed, every key it newly queues counts towards the initial population,
    so `has_synced` waits for all of them even though pops interleave with pages.
    """

    def __init__(self, fifo: DeltaFIFO, *, skip_unchanged: bool) -> None:
        self._fifo = fifo
        self._skip_unchanged = skip_unchanged
        self._listed: set[str] = set()
        self._initial = not fifo._populated
        self._done = False

    def _unchanged(self, key: str, obj: Any) -> bool:
        rv = _rv(obj)
        if not rv:
            return False
        fifo = self._fifo
        deltas = fifo._items.get(key)
        if deltas is not None:
            newest = deltas[-1]
            if newest.type is DELETED:
                return False
            current = newest.object
        elif fifo._known_rv is not None:
            return fifo._known_rv(key) == rv
        elif fifo._known is not None:
            current = fifo._known.get_by_key(key)
            if current is None:
                return False
        else:
            return False
        return _rv(current) == rv

    def _add_locked(self, objs: Iterable[Any]) -> None:
        fifo = self._fifo
        fifo._counting_initial = self._initial
        try:
            for obj in objs:
                key = fifo._safe_key(obj)
                if key is None:
                    continue
                self._listed.add(key)
                if self._skip_unchanged and self._unchanged(key, obj):
                    continue
                fifo._queue(REPLACED, obj, key)
        finally:
            fifo._counting_initial = False

    def _finish_locked(self) -> None:
        fifo = self._fifo
        listed = self._listed
        fifo._counting_initial = self._initial
        try:
            for key in [k for k in fifo._items if k not in listed]:
                newest = fifo._items[key][-1].object
                if isinstance(newest, DeletedFinalStateUnknown):
                    newest = newest.obj
                fifo._queue(DELETED, DeletedFinalStateUnknown(key, newest), key)
            if fifo._known is not None:
                for key in fifo._known.list_keys():
                    if key in listed or key in fifo._items:
                        continue
                    fifo._queue(DELETED, DeletedFinalStateUnknown(key, fifo._known.get_by_key(key)), key)
        finally:
            fifo._counting_initial = False
        fifo._populated = True
        self._done = True
        self._listed = set()
        fifo._check_synced()

    async def add_page(self, objs: Iterable[Any]) -> None:
        if self._done:
            raise RuntimeError("replace session already finished")
        async with self._fifo._lock:
            self._add_locked(objs)
            # With `consume_inline`, the page is processed now: a large list never waits in
            # the queue as decoded objects (what the compact store is for), and the consumer
            # sees exactly what its own pops would have given it.
            self._fifo._drain_inline_locked()

    async def finish(self) -> None:
        if self._done:
            raise RuntimeError("replace session already finished")
        async with self._fifo._lock:
            self._finish_locked()
            self._fifo._drain_inline_locked()
            self._fifo._check_synced()
