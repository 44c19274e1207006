"""kinformer: asyncio-native Kubernetes informers.

Reflector → DeltaFIFO → indexed cache → per-handler bounded queues, over plain dicts
decoded once by orjson. See README.md for the tour and DESIGN notes in each module.
"""

__version__ = "0.1.0"

from kinformer.backoff import Backoff
from kinformer.errors import (
    ApiError,
    ExpiredError,
    FIFOClosedError,
    KeyFuncError,
    KinformerError,
    LeaderElectionConfigError,
    LeaderElectionError,
    LeadershipLostError,
    SelectorError,
    TooLargeResourceVersionError,
    TooManyRequestsError,
    UnauthorizedError,
)
from kinformer.factory import InformerFactory
from kinformer.fifo import Delta, DeltaFIFO, DeltaType
from kinformer.informer import Event, EventHandlerRegistration, EventStream, SharedIndexInformer
from kinformer.leaderelection import ElectionState, LeaderElector, Leadership
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
    "ElectionState",
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
    "LeaderElectionConfigError",
    "LeaderElectionError",
    "LeaderElector",
    "Leadership",
    "LeadershipLostError",
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
