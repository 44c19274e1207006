"""kinformer: asyncio-native Kubernetes informers.

Reflector → DeltaFIFO → indexed cache → per-handler bounded queues, over plain dicts
decoded once by orjson. README.md gives the tour; each module's docstring states its invariants.
"""

__version__ = "0.1.0"

from kinformer.backoff import Backoff
from kinformer.errors import (
    ApiError,
    ExpiredError,
    FIFOClosedError,
    KeyFuncError,
    KinformerError,
    SelectorError,
    TooLargeResourceVersionError,
    TooManyRequestsError,
    UnauthorizedError,
)
from kinformer.factory import InformerFactory
from kinformer.fifo import Delta, DeltaFIFO, DeltaType
from kinformer.informer import Event, EventHandlerRegistration, EventStream, SharedIndexInformer
from kinformer.lister import Lister
from kinformer.listwatch import ListWatch
from kinformer.objects import DeletedFinalStateUnknown, meta_namespace_key, split_key
from kinformer.reflector import Reflector, ReflectorConfig, ReflectorStats
from kinformer.resources import Resource
from kinformer.selectors import FieldSelector, LabelSelector
from kinformer.store import NAMESPACE_INDEX, Indexer, namespace_index_func

__all__ = [
    "NAMESPACE_INDEX",
    "ApiError",
    "Backoff",
    "DeletedFinalStateUnknown",
    "Delta",
    "DeltaFIFO",
    "DeltaType",
    "Event",
    "EventHandlerRegistration",
    "EventStream",
    "ExpiredError",
    "FIFOClosedError",
    "FieldSelector",
    "Indexer",
    "InformerFactory",
    "KeyFuncError",
    "KinformerError",
    "LabelSelector",
    "ListWatch",
    "Lister",
    "Reflector",
    "ReflectorConfig",
    "ReflectorStats",
    "Resource",
    "SelectorError",
    "SharedIndexInformer",
    "TooLargeResourceVersionError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "meta_namespace_key",
    "namespace_index_func",
    "split_key",
]
