"""Mirror many clusters into SQL (Clusterpedia's job): see rvinformer.py, storage.py, writer.py,
sync.py and search.py.

`ResourceVersionInformer` needs only kinformer's core; everything else needs SQLAlchemy (the
`sql` extra; `postgres` for PostgreSQL) and is imported on first use, so that a missing extra
is a `MissingExtraError` naming it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kinformer.mirror.rvinformer import RV, ResourceVersionInformer, RVEventHandler, RVInformerStats

if TYPE_CHECKING:
    from kinformer.mirror.search import SearchQuery, SearchResult, search
    from kinformer.mirror.storage import MirrorStorage
    from kinformer.mirror.sync import ClusterHealth, ClusterSync, Mirror, MirrorHealth
    from kinformer.mirror.writer import MirrorWriter

_LAZY = {
    "MirrorStorage": "kinformer.mirror.storage",
    "MirrorWriter": "kinformer.mirror.writer",
    "Mirror": "kinformer.mirror.sync",
    "ClusterSync": "kinformer.mirror.sync",
    "ClusterHealth": "kinformer.mirror.sync",
    "MirrorHealth": "kinformer.mirror.sync",
    "search": "kinformer.mirror.search",
    "SearchResult": "kinformer.mirror.search",
    "SearchQuery": "kinformer.mirror.search",
}

__all__ = [
    "RV",
    "ClusterHealth",
    "ClusterSync",
    "Mirror",
    "MirrorHealth",
    "MirrorStorage",
    "MirrorWriter",
    "RVEventHandler",
    "RVInformerStats",
    "ResourceVersionInformer",
    "SearchQuery",
    "SearchResult",
    "search",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kinformer.mirror' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
