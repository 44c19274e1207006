"""`Lister`: read-only queries over an informer's cache.

Returns the cached dicts themselves (no copies, for speed): do not mutate them. Namespace
queries use the namespace index when the indexer has it, else a scan.

Before the informer has synced, a lister answers from a partial cache (possibly empty):
check `has_synced()` (or `await informer.wait_for_sync()`) before trusting a "not found".
Built from an informer (`Lister(informer)`, `factory.lister(...)`) it knows whether the
resource is namespaced, so `get(name)` without a namespace on a namespaced resource raises
instead of quietly returning None.
"""

from __future__ import annotations

from typing import Any, Generic, Protocol, TypeVar

from kinformer.errors import InvalidArgumentError
from kinformer.objects import ObjT
from kinformer.objects import namespace as namespace_of
from kinformer.selectors import FieldSelector, LabelSelector
from kinformer.store import NAMESPACE_INDEX, Indexer
from kinformer.typed import to_model

M = TypeVar("M")


class _Informer(Protocol):
    """What a Lister needs of an informer (a `SharedIndexInformer`)."""

    @property
    def indexer(self) -> Indexer: ...

    def has_synced(self) -> bool: ...


class Lister(Generic[ObjT]):
    def __init__(self, source: Indexer | _Informer, *, namespaced: bool | None = None) -> None:
        if isinstance(source, Indexer):
            self.indexer = source
            self._informer: _Informer | None = None
        else:
            self.indexer = source.indexer
            self._informer = source
            if namespaced is None:
                list_watch = getattr(source, "list_watch", None)
                namespaced = list_watch.resource.namespaced if list_watch is not None else None
        self.namespaced = namespaced

    def has_synced(self) -> bool:
        """True once the informer behind this lister has synced (always True for a bare Indexer)."""
        return self._informer.has_synced() if self._informer is not None else True

    def get(self, name: str, namespace: str | None = None) -> ObjT | None:
        """The cached object, or None."""
        if not namespace and self.namespaced:
            raise InvalidArgumentError(f"{name!r}: this resource is namespaced; call get(name, namespace=...)")
        result: ObjT | None = self.indexer.get_by_key(f"{namespace}/{name}" if namespace else name)
        return result

    def list(
        self,
        namespace: str | None = None,
        label_selector: str | LabelSelector | None = None,
        field_selector: str | FieldSelector | None = None,
    ) -> list[ObjT]:
        objs: list[ObjT]
        if namespace is not None:
            try:
                objs = self.indexer.by_index(NAMESPACE_INDEX, namespace)
            except KeyError:
                objs = [o for o in self.indexer.list() if namespace_of(o) == namespace]
        else:
            objs = self.indexer.list()
        labels = LabelSelector.parse(label_selector) if isinstance(label_selector, str | None) else label_selector
        fields = FieldSelector.parse(field_selector) if isinstance(field_selector, str | None) else field_selector
        if labels.empty() and fields.empty():
            return objs
        return [o for o in objs if labels.matches_object(o) and fields.matches(o)]

    def typed(self, model: type[M]) -> TypedLister[M]:
        """A view that returns kubernetes_asyncio models (`lister.typed(V1Pod).get(...)`); cold path only."""
        return TypedLister(self, model)


class TypedLister(Generic[M]):
    """`Lister.typed(model)`: the same reads, each result converted with `to_model` (typed.py)."""

    def __init__(self, lister: Lister[Any], model: type[M]) -> None:
        self._lister = lister
        self._model = model

    def get(self, name: str, namespace: str | None = None) -> M | None:
        obj = self._lister.get(name, namespace)
        return to_model(obj, self._model) if obj is not None else None

    def list(self, namespace: str | None = None, label_selector: str | LabelSelector | None = None,
             field_selector: str | FieldSelector | None = None) -> list[M]:
        return [to_model(o, self._model) for o in self._lister.list(namespace, label_selector, field_selector)]
