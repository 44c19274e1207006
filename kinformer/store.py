"""`Indexer`: the informer's cache — objects by key, plus named secondary indices.

Invariants (as client-go's `threadSafeMap` / `storeIndex`):
- `_items[key]` is the latest object for `key`; `_indices[name][value]` is exactly the set
  of keys whose object's index function returned `value`. A value whose key set becomes
  empty is removed, so `list_index_func_values` never reports a value with no objects.
- An update re-indexes only when an index function's values changed.
- Writes come from the event loop; reads may come from any thread (a sync endpoint in a
  thread pool). One `threading.Lock` guards every map; it is never held across an await.
- `intersect_indices` answers several index lookups and fetches the objects they select in
  one lock acquisition, so a query planner sees one state of the cache, never a mix.
- Objects are stored as given (no copy): callers must not mutate what they put or get.
- An index function that raises does not break the store: the object is stored and simply
  not found under that index (its values count as none); the error goes to `error_handler`
  as an `IndexFuncError` (default: logged). The informer routes it to its error reporting.
- An unknown index name raises `KeyError`; `add_indexers` with an existing name raises
  `IndexerConflictError` and changes nothing.
"""

from __future__ import annotations

import builtins
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping, Sequence, Set
from typing import Any, NamedTuple, cast

import orjson

from kinformer._logging import get_logger
from kinformer.errors import IndexerConflictError, IndexFuncError, InvalidArgumentError, UserCallbackError
from kinformer.objects import KeyFunc, meta_namespace_key, namespace, resource_version

IndexFunc = Callable[[Any], list[str]]
"""Maps an object to the index values it should be found under."""

Indexers = Mapping[str, IndexFunc]

NAMESPACE_INDEX = "namespace"

_NO_KEYS: frozenset[str] = frozenset()


def namespace_index_func(obj: Any) -> list[str]:
    """Index objects by `metadata.namespace` (cluster-scoped objects under "")."""
    try:
        return [obj["metadata"].get("namespace") or ""]
    except (KeyError, TypeError, AttributeError):  # a tombstone or an odd object: the general path
        return [namespace(obj)]


def _reindex(index: dict[str, set[str]], old_values: Iterable[str], new_values: Iterable[str], key: str) -> None:
    """Move `key` from the key sets of `old_values` to those of `new_values` in one index."""
    for value in old_values:
        keys = index.get(value)
        if keys is not None:
            keys.discard(key)
            if not keys:
                del index[value]
    for value in new_values:
        keys = index.get(value)
        if keys is None:
            index[value] = {key}
        else:
            keys.add(key)


class Indexer:
    """A thread-safe keyed store with secondary indices. See the module docstring."""

    def __init__(
        self, key_func: KeyFunc = meta_namespace_key, indexers: Indexers | None = None,
        *, error_handler: Callable[[UserCallbackError], None] | None = None,
    ) -> None:
        self._key_func = key_func
        self.error_handler = error_handler
        self._lock = threading.Lock()
        self._items: dict[str, Any] = {}
        self._indexers: dict[str, IndexFunc] = dict(indexers or {})
        self._indices: dict[str, dict[str, set[str]]] = {name: {} for name in self._indexers}
        self._namespace_only = self._indexers == {NAMESPACE_INDEX: namespace_index_func}
        self._resource_version = ""
        self._errors: list[IndexFuncError] = []

    # -- writes ---------------------------------------------------------------------------

    def add(self, obj: Any) -> None:
        self.update(obj)

    def update(self, obj: Any) -> None:
        key = self._key_func(obj)
        with self._lock:
            old = self._items.get(key)
            self._items[key] = obj
            if self._indexers:
                self._update_indices(old, obj, key)
        if self._errors:
            self._report_errors()

    def upsert(self, key: str, obj: Any) -> Any | None:
        """Store `obj` under a key the caller already computed; return the previous object.

        The informer's hot path: one lock, one lookup, no second key computation.
        """
        with self._lock:
            old = self._items.get(key)
            self._items[key] = obj
            if self._indexers:
                self._update_indices(old, obj, key)
        if self._errors:
            self._report_errors()
        return old

    def write_batch(self, ops: builtins.list[tuple[str, Any]]) -> builtins.list[Any]:
        """Apply `(key, obj)` writes in order under one lock acquisition (obj None deletes
        the key); return, for each, the object the key held before it (None if none).

        The informer's batch path: the same as `upsert` / `delete_key` one by one. An update
        that keeps the namespace skips re-indexing when the namespace index is the only one.
        """
        items = self._items
        olds: builtins.list[Any] = []
        append = olds.append
        with self._lock:
            if not self._indexers:
                for key, obj in ops:
                    if obj is None:
                        append(items.pop(key, None))
                    else:
                        append(items.get(key))
                        items[key] = obj
            else:
                update = self._update_indices
                namespace_only = self._namespace_only
                for key, obj in ops:
                    if obj is None:
                        old = items.pop(key, None)
                        if old is not None:
                            update(old, None, key)
                    else:
                        old = items.get(key)
                        items[key] = obj
                        if old is None or not namespace_only:
                            update(old, obj, key)
                        else:
                            try:
                                same = old["metadata"].get("namespace") == obj["metadata"].get("namespace")
                            except (KeyError, TypeError, AttributeError):
                                same = False
                            if not same:
                                update(old, obj, key)
                    append(old)
        if self._errors:
            self._report_errors()
        return olds

    def delete(self, obj: Any) -> None:
        self.delete_key(self._key_func(obj))

    def delete_key(self, key: str) -> Any | None:
        """Remove `key`; return the object it held, if any."""
        with self._lock:
            old = self._items.pop(key, None)
            if old is not None and self._indexers:
                self._update_indices(old, None, key)
        if self._errors:
            self._report_errors()
        return old

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        """Make the store hold exactly `objs`, rebuilding every index."""
        items = {self._key_func(obj): obj for obj in objs}
        with self._lock:
            self._items = items
            self._indices = {name: {} for name in self._indexers}
            for key, obj in items.items():
                self._update_indices(None, obj, key)
            self._resource_version = resource_version
        if self._errors:
            self._report_errors()

    def resync(self) -> None:
        """Nothing to do: the store has no upstream. Present for the Store protocol."""

    def add_indexers(self, indexers: Indexers) -> None:
        """Add indices; existing items are indexed at once."""
        with self._lock:
            clash = sorted(set(indexers) & set(self._indexers))
            if clash:
                raise IndexerConflictError(f"indexer conflict: {', '.join(clash)}")
            for name, func in indexers.items():
                self._indexers[name] = func
                self._namespace_only = False
                index: dict[str, set[str]] = {}
                self._indices[name] = index
                for key, obj in self._items.items():
                    for value in self._safe_values(name, func, obj, key):
                        index.setdefault(value, set()).add(key)
        if self._errors:
            self._report_errors()

    def _safe_values(self, name: str, func: IndexFunc, obj: Any, key: str) -> list[str]:
        """An index function's values, or none if it raises (see the module docstring)."""
        if obj is None:
            return []
        try:
            return func(obj)
        except Exception as exc:
            error = IndexFuncError(f"index function {name!r} raised for {key}: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._errors.append(error)  # reported once the lock is released
            return []

    def _report_errors(self) -> None:
        errors, self._errors = self._errors, []
        for error in errors:
            if self.error_handler is not None:
                self.error_handler(error)
            else:
                get_logger("kinformer.store").warning(str(error))

    def _update_indices(self, old: Any, new: Any, key: str) -> None:
        for name, func in self._indexers.items():
            try:
                old_values = func(old) if old is not None else []
                new_values = func(new) if new is not None else []
            except Exception:
                old_values = self._safe_values(name, func, old, key)
                new_values = self._safe_values(name, func, new, key)
            if old_values != new_values:
                _reindex(self._indices[name], old_values, new_values, key)

    # -- reads ----------------------------------------------------------------------------

    def get(self, obj: Any) -> Any | None:
        return self.get_by_key(self._key_func(obj))

    def get_by_key(self, key: str) -> Any | None:
        # A single dict lookup is atomic under the GIL; no lock needed.
        return self._items.get(key)

    def has_key(self, key: str) -> bool:
        """Whether `key` is cached (without reading the object: cheap in every store)."""
        return key in self._items

    def resource_version_of(self, key: str) -> str | None:
        """The cached object's resourceVersion ("" if it has none), None if `key` is not cached."""
        obj = self._items.get(key)
        return None if obj is None else resource_version(obj)

    def list(self) -> list[Any]:
        with self._lock:
            return list(self._items.values())

    def list_keys(self) -> builtins.list[str]:
        with self._lock:
            return list(self._items)

    def items(self) -> builtins.list[tuple[str, Any]]:
        with self._lock:
            return list(self._items.items())

    @property
    def last_resource_version(self) -> str:
        """The resourceVersion given to the last `replace`."""
        return self._resource_version

    def _index(self, name: str) -> tuple[IndexFunc, dict[str, set[str]]]:
        func = self._indexers.get(name)
        if func is None:
            raise KeyError(f"index with name {name!r} does not exist")
        return func, self._indices[name]

    def index(self, name: str, obj: Any) -> builtins.list[Any]:
        """Objects sharing any of `obj`'s values of index `name`."""
        with self._lock:
            func, index = self._index(name)
            values = func(obj)
            keys: set[str] = set()
            for value in values:
                keys |= index.get(value, set())
            return [self._items[k] for k in keys]

    def index_keys(self, name: str, value: str) -> builtins.list[str]:
        with self._lock:
            _, index = self._index(name)
            return list(index.get(value, ()))

    def by_index(self, name: str, value: str) -> builtins.list[Any]:
        with self._lock:
            _, index = self._index(name)
            return [self._items[k] for k in index.get(value, ())]

    def intersect_indices(
        self, lookups: Sequence[tuple[str, Collection[str]]]
    ) -> tuple[builtins.list[int], builtins.list[tuple[str, Any]]]:
        """One consistent read for a query planner, under one lock acquisition.

        For each `(index name, values)` lookup, its key set is the union of the keys indexed
        under any of `values`. Returns the size of each lookup's key set (in `lookups` order)
        and the `(key, object)` pairs of the keys in every set, intersected smallest first,
        in no particular order. With no lookups: every item. Neither the objects nor the
        sizes can reflect a write the other does not. An unknown index raises `KeyError`.
        """
        with self._lock:
            sets: builtins.list[Set[str]] = []
            for name, values in lookups:
                _, index = self._index(name)
                if len(values) == 1:
                    sets.append(index.get(next(iter(values)), _NO_KEYS))
                else:
                    sets.append(set().union(*(index.get(v, _NO_KEYS) for v in values)))
            sizes = [len(keys) for keys in sets]
            items = self._items
            if not sets:
                return sizes, builtins.list(items.items())
            sets.sort(key=len)
            # `&` builds a new set and iterates the smaller operand: no internal set escapes.
            result: Set[str] = sets[0]
            for keys in sets[1:]:
                if not result:
                    break
                result = result & keys
            return sizes, [(k, items[k]) for k in result]

    def list_index_func_values(self, name: str) -> builtins.list[str]:
        with self._lock:
            _, index = self._index(name)
            return list(index)

    def get_indexers(self) -> dict[str, IndexFunc]:
        with self._lock:
            return dict(self._indexers)

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key_or_obj: object) -> bool:
        key = key_or_obj if isinstance(key_or_obj, str) else self._key_func(key_or_obj)
        return key in self._items

    def __iter__(self) -> Iterator[Any]:
        return iter(self.list())


_intern = sys.intern
SHARED_CAPACITY = 100_000
"""How many distinct index-value tuples and label sets a compact store shares at most."""


class CompactObject(NamedTuple):
    """How `CompactIndexer` keeps one object: its JSON and what reads must not decode for."""

    data: bytes
    """orjson.dumps of the object as it was stored."""
    resource_version: str
    labels: Mapping[str, str] | None
    """`metadata.labels` (for label selectors), None when there are none."""
    values: tuple[tuple[str, ...], ...]
    """Each index function's values for the object, in the order of `get_indexers()`."""


class CompactIndexer(Indexer):
    """An `Indexer` that keeps each object as its JSON bytes plus the few decoded fields that
    indices and selectors need, and decodes on read (`SharedIndexInformer(store="compact")`).

    Invariants, beyond the `Indexer`'s (which hold unchanged):
    - `_items[key]` is a `CompactObject`; every read (`get_by_key`, `list`, `items`,
      `by_index`, `index`) returns a freshly decoded dict, equal to what was stored, or the
      one kept in the decoded cache. Stored objects must be JSON-serialisable by orjson.
    - Index values are computed once, from the object being written, and kept in the entry:
      removing or updating an object never decodes the old one. `add_indexers` decodes
      each cached object once.
    - `decoded_cache` > 0 keeps the decoded objects of that many most recently written or
      read keys (an LRU): the informer's `old` of an update and a hot key's reads come from
      it instead of a decode. It holds references to the very dicts handed out; objects are
      never mutated, so they equal the stored bytes.
    - Equal index-value tuples and equal label sets are one shared object (a bounded table,
      `SHARED_CAPACITY`, started over when full), their strings interned: most objects share
      a namespace and a few label sets, and each copy would otherwise pin allocator pools
      among the decoded objects it was taken from.
    - Memory per object is about its JSON size: bytes are not tracked by CPython's cyclic GC,
      and tuples and dicts of strings are untracked by it, so a large compact cache also
      costs the collector almost nothing.
    """

    def __init__(
        self, key_func: KeyFunc = meta_namespace_key, indexers: Indexers | None = None,
        *, error_handler: Callable[[UserCallbackError], None] | None = None, decoded_cache: int = 0,
    ) -> None:
        super().__init__(key_func, indexers, error_handler=error_handler)
        if decoded_cache < 0:
            raise InvalidArgumentError("decoded_cache must be >= 0")
        self.decoded_cache = decoded_cache
        self._decoded: OrderedDict[str, Any] = OrderedDict()
        self._shared: dict[Any, Any] = {}  # index-value tuples and label dicts, shared (`_share`)
        self.decodes = 0
        """How many objects reads have decoded (decoded-cache hits excluded)."""

    # -- encoding -------------------------------------------------------------------------

    def _encode(self, obj: Any, key: str) -> CompactObject:
        meta = obj.get("metadata") if isinstance(obj, dict) else None
        if not isinstance(meta, dict):
            meta = {}
        labels = meta.get("labels") or None
        if labels is not None:
            labels = self._shared_labels(labels)
        values = self._share(tuple(tuple(_intern(v) if type(v) is str else v
                                         for v in self._safe_values(name, func, obj, key))
                                   for name, func in self._indexers.items()))
        # orjson returns its output buffer as is: a 3 KB object's bytes hold a 32 KB block
        # (measured with tracemalloc). A copy of exactly its length is what the cache keeps.
        data = memoryview(orjson.dumps(obj)).tobytes()
        return CompactObject(data, str(meta.get("resourceVersion") or ""), labels, values)

    def _share(self, value: Any) -> Any:
        """The one equal `value` already kept (tuples of index values repeat across objects:
        one namespace, one node); the table starts over when full, so it stays bounded."""
        shared = self._shared.get(value)
        if shared is None:
            if len(self._shared) >= SHARED_CAPACITY:
                self._shared.clear()
            self._shared[value] = shared = value
        return shared

    def _shared_labels(self, labels: Any) -> Mapping[str, str] | None:
        """`labels` as a dict shared by every object with the same labels (never mutated:
        `labels_of` is a read-only view), its strings interned."""
        try:
            items = tuple(labels.items())
            shared = self._shared.get(items)
        except (AttributeError, TypeError):  # not a dict of hashable values: keep it as it is
            return labels if isinstance(labels, Mapping) else None
        if shared is None:
            if len(self._shared) >= SHARED_CAPACITY:
                self._shared.clear()
            shared = self._shared[items] = {_intern(k) if type(k) is str else k: _intern(v) if type(v) is str else v
                                            for k, v in items}
        return cast("Mapping[str, str]", shared)

    def _decode(self, key: str, entry: CompactObject) -> Any:
        """The object of `entry`, from the decoded cache when it is there; the caller holds no lock."""
        if self.decoded_cache:
            with self._lock:
                obj = self._decoded.get(key)
                if obj is not None and self._items.get(key) is entry:
                    self._decoded.move_to_end(key)
                    return obj
        obj = orjson.loads(entry.data)
        self.decodes += 1
        if self.decoded_cache:
            with self._lock:
                if self._items.get(key) is entry:
                    self._remember_locked(key, obj)
        return obj

    def _remember_locked(self, key: str, obj: Any) -> None:
        cache = self._decoded
        cache[key] = obj
        cache.move_to_end(key)
        if len(cache) > self.decoded_cache:
            cache.popitem(last=False)

    def _put_locked(self, key: str, obj: Any) -> CompactObject | None:
        entry = self._encode(obj, key)
        old: CompactObject | None = self._items.get(key)
        self._items[key] = entry
        self._move(old, entry, key)
        if self.decoded_cache:
            self._remember_locked(key, obj)
        return old

    def _remove_locked(self, key: str) -> CompactObject | None:
        old: CompactObject | None = self._items.pop(key, None)
        if old is not None:
            self._move(old, None, key)
            self._decoded.pop(key, None)
        return old

    def _move(self, old: CompactObject | None, new: CompactObject | None, key: str) -> None:
        empty: tuple[str, ...] = ()
        for i, name in enumerate(self._indexers):
            old_values = old.values[i] if old is not None else empty
            new_values = new.values[i] if new is not None else empty
            if old_values != new_values:
                _reindex(self._indices[name], old_values, new_values, key)

    @staticmethod
    def _old(cached: Any | None, old: CompactObject | None) -> Any | None:
        """The object a write replaced: its decoded-cache copy (taken before the write) or decoded."""
        if cached is not None:
            return cached
        return None if old is None else orjson.loads(old.data)

    # -- writes ---------------------------------------------------------------------------

    def update(self, obj: Any) -> None:
        self.upsert(self._key_func(obj), obj)

    def upsert(self, key: str, obj: Any) -> Any | None:
        with self._lock:
            cached = self._decoded.get(key)
            old = self._put_locked(key, obj)
        if self._errors:
            self._report_errors()
        return self._old(cached, old)

    def delete_key(self, key: str) -> Any | None:
        with self._lock:
            cached = self._decoded.get(key)
            old = self._remove_locked(key)
        if self._errors:
            self._report_errors()
        return self._old(cached, old)

    def write_batch(self, ops: builtins.list[tuple[str, Any]]) -> builtins.list[Any]:
        """As `Indexer.write_batch`; each previous object is decoded (or taken from the
        decoded cache), since the informer hands it to handlers as `old`."""
        previous: builtins.list[tuple[Any, CompactObject | None]] = []
        with self._lock:
            decoded = self._decoded
            for key, obj in ops:
                cached = decoded.get(key)
                old = self._remove_locked(key) if obj is None else self._put_locked(key, obj)
                previous.append((cached, old))
        if self._errors:
            self._report_errors()
        old_of = self._old
        return [old_of(cached, old) for cached, old in previous]

    def replace(self, objs: Iterable[Any], resource_version: str = "") -> None:
        pairs = [(self._key_func(obj), obj) for obj in objs]
        with self._lock:
            self._items = {}
            self._indices = {name: {} for name in self._indexers}
            self._decoded = OrderedDict()
            for key, obj in pairs:
                self._put_locked(key, obj)
            self._resource_version = resource_version
        if self._errors:
            self._report_errors()

    def add_indexers(self, indexers: Indexers) -> None:
        """Add indices; every cached object is decoded once to index it."""
        with self._lock:
            clash = sorted(set(indexers) & set(self._indexers))
            if clash:
                raise IndexerConflictError(f"indexer conflict: {', '.join(clash)}")
            self._indexers.update(indexers)
            self._namespace_only = False
            for name in indexers:
                self._indices[name] = {}
            for key, entry in list(self._items.items()):
                obj = orjson.loads(entry.data)
                extra = tuple(tuple(self._safe_values(name, func, obj, key)) for name, func in indexers.items())
                self._items[key] = entry._replace(values=entry.values + extra)
                for name, values in zip(indexers, extra, strict=True):
                    _reindex(self._indices[name], (), values, key)
        if self._errors:
            self._report_errors()

    # -- reads ----------------------------------------------------------------------------

    def get_by_key(self, key: str) -> Any | None:
        entry = self._items.get(key)
        return None if entry is None else self._decode(key, entry)

    def resource_version_of(self, key: str) -> str | None:
        entry = self._items.get(key)
        return None if entry is None else entry.resource_version

    def labels_of(self, key: str) -> Mapping[str, str] | None:
        """The cached object's labels without decoding it (None if not cached or unlabelled)."""
        entry = self._items.get(key)
        return None if entry is None else entry.labels

    def list(self) -> builtins.list[Any]:
        with self._lock:
            entries = builtins.list(self._items.items())
        return [self._decode(key, entry) for key, entry in entries]

    def items(self) -> builtins.list[tuple[str, Any]]:
        with self._lock:
            entries = builtins.list(self._items.items())
        return [(key, self._decode(key, entry)) for key, entry in entries]

    def _entries(self, keys: Iterable[str]) -> builtins.list[tuple[str, CompactObject]]:
        """Under the lock: the entries of `keys`."""
        items = self._items
        return [(k, items[k]) for k in keys]

    def index(self, name: str, obj: Any) -> builtins.list[Any]:
        with self._lock:
            func, index = self._index(name)
            keys: set[str] = set()
            for value in func(obj):
                keys |= index.get(value, set())
            entries = self._entries(keys)
        return [self._decode(k, e) for k, e in entries]

    def by_index(self, name: str, value: str) -> builtins.list[Any]:
        with self._lock:
            _, index = self._index(name)
            entries = self._entries(index.get(value, ()))
        return [self._decode(k, e) for k, e in entries]

    def intersect_indices(
        self, lookups: Sequence[tuple[str, Collection[str]]]
    ) -> tuple[builtins.list[int], builtins.list[tuple[str, Any]]]:
        sizes, entries = super().intersect_indices(lookups)  # one consistent read, under the lock
        return sizes, [(k, self._decode(k, e)) for k, e in entries]
