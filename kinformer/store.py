"""`Indexer`: the informer's cache — objects by key, plus named secondary indices.

Invariants (as client-go's `threadSafeMap` / `storeIndex`):
- `_items[key]` is the latest object for `key`; `_indices[name][value]` is exactly the set
  of keys whose object's index function returned `value`. A value whose key set becomes
  empty is removed, so `list_index_func_values` never reports a value with no objects.
- An update re-indexes only when an index function's values changed.
- Writes come from the event loop; reads may come from any thread (a sync endpoint in a
  thread pool). One `threading.Lock` guards every map; it is never held across an await.
- Objects are stored as given (no copy): callers must not mutate what they put or get.
- An index function that raises does not break the store: the object is stored and simply
  not found under that index (its values count as none); the error goes to `error_handler`
  as an `IndexFuncError` (default: logged). The informer routes it to its error reporting.
- An unknown index name raises `KeyError`; `add_indexers` with an existing name raises
  `IndexerConflictError` and changes nothing.
"""

from __future__ import annotations

import builtins
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping
from typing import Any

from kinformer._logging import get_logger
from kinformer.errors import IndexerConflictError, IndexFuncError, UserCallbackError
from kinformer.objects import KeyFunc, meta_namespace_key, namespace

IndexFunc = Callable[[Any], list[str]]
"""Maps an object to the index values it should be found under."""

Indexers = Mapping[str, IndexFunc]

NAMESPACE_INDEX = "namespace"



def namespace_index_func(obj: Any) -> list[str]:
    """Index objects by `metadata.namespace` (cluster-scoped objects under "")."""
    try:
        return [obj["metadata"].get("namespace") or ""]
    except (KeyError, TypeError, AttributeError):  # a tombstone or an odd object: the general path
        return [namespace(obj)]


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
            if old_values == new_values:
                continue
            index = self._indices[name]
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

    # -- reads ----------------------------------------------------------------------------

    def get(self, obj: Any) -> Any | None:
        return self.get_by_key(self._key_func(obj))

    def get_by_key(self, key: str) -> Any | None:
        # A single dict lookup is atomic under the GIL; no lock needed.
        return self._items.get(key)

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
