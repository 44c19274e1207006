"""`Lister`: read-only queries over an informer's cache.

Returns the cached dicts themselves (no copies, for speed): do not mutate them. Namespace
queries use the namespace index when the indexer has it, else a scan.
"""

from __future__ import annotations

from typing import Any

from kinformer.objects import namespace as namespace_of
from kinformer.selectors import FieldSelector, LabelSelector
from kinformer.store import NAMESPACE_INDEX, Indexer


class Lister:
    def __init__(self, indexer: Indexer) -> None:
        self.indexer = indexer

    def get(self, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """The cached object, or None."""
        result: dict[str, Any] | None = self.indexer.get_by_key(f"{namespace}/{name}" if namespace else name)
        return result

    def list(
        self,
        namespace: str | None = None,
        label_selector: str | LabelSelector | None = None,
        field_selector: str | FieldSelector | None = None,
    ) -> list[dict[str, Any]]:
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
