"""kinformer: asyncio-native Kubernetes informers.

Reflector → DeltaFIFO → indexed cache → per-handler bounded queues, over plain dicts
decoded once by orjson. README.md gives the tour; each module's docstring states its invariants.
"""

__version__ = "0.1.0"

from kinformer.backoff import Backoff
from kinformer.errors import (
    AlreadyStartedError,
    ApiError,
    CacheSyncTimeoutError,
    ExpiredError,
    FIFOClosedError,
    ForbiddenError,
    HandlerError,
    HandlerSignatureError,
    KeyFuncError,
    KinformerError,
    NotFoundError,
    QueueEmptyError,
    SelectorError,
    ShutDownError,
    StoppedError,
    TooLargeResourceVersionError,
    TooManyRequestsError,
    TransformError,
    TransportError,
    UnauthorizedError,
    UserCallbackError,
)
from kinformer.factory import InformerFactory, SyncResult
from kinformer.fifo import Delta, DeltaFIFO, DeltaType
from kinformer.informer import (
    Event,
    EventHandlerRegistration,
    EventStream,
    EventType,
    InformerHealth,
    SharedIndexInformer,
)
from kinformer.lister import Lister, TypedLister
from kinformer.listwatch import ListWatch
from kinformer.metrics import MetricsProvider, PrometheusMetricsProvider
from kinformer.objects import DeletedFinalStateUnknown, KubeObject, meta_namespace_key, split_key
from kinformer.processor import EventHandler, HandlerObject, OnAdd, OnDelete, OnUpdate
from kinformer.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    WithMaxWaitRateLimiter,
    default_controller_rate_limiter,
)
from kinformer.reflector import Reflector, ReflectorConfig, ReflectorHealth, ReflectorStats
from kinformer.resources import Resource
from kinformer.selectors import FieldSelector, LabelSelector
from kinformer.store import NAMESPACE_INDEX, CompactIndexer, Indexer, namespace_index_func
from kinformer.typed import to_model
from kinformer.workqueue import DelayingQueue, RateLimitingQueue, WorkQueue

__all__ = [
    "NAMESPACE_INDEX",
    "AlreadyStartedError",
    "ApiError",
    "Backoff",
    "BucketRateLimiter",
    "CacheSyncTimeoutError",
    "CompactIndexer",
    "DelayingQueue",
    "DeletedFinalStateUnknown",
    "Delta",
    "DeltaFIFO",
    "DeltaType",
    "Event",
    "EventHandler",
    "EventHandlerRegistration",
    "EventStream",
    "EventType",
    "ExpiredError",
    "FIFOClosedError",
    "FieldSelector",
    "ForbiddenError",
    "HandlerError",
    "HandlerObject",
    "HandlerSignatureError",
    "Indexer",
    "InformerFactory",
    "InformerHealth",
    "ItemExponentialFailureRateLimiter",
    "ItemFastSlowRateLimiter",
    "KeyFuncError",
    "KinformerError",
    "KubeObject",
    "LabelSelector",
    "ListWatch",
    "Lister",
    "MaxOfRateLimiter",
    "MetricsProvider",
    "NotFoundError",
    "OnAdd",
    "OnDelete",
    "OnUpdate",
    "PrometheusMetricsProvider",
    "QueueEmptyError",
    "RateLimiter",
    "RateLimitingQueue",
    "Reflector",
    "ReflectorConfig",
    "ReflectorHealth",
    "ReflectorStats",
    "Resource",
    "SelectorError",
    "SharedIndexInformer",
    "ShutDownError",
    "StoppedError",
    "SyncResult",
    "TooLargeResourceVersionError",
    "TooManyRequestsError",
    "TransformError",
    "TransportError",
    "TypedLister",
    "UnauthorizedError",
    "UserCallbackError",
    "WithMaxWaitRateLimiter",
    "WorkQueue",
    "default_controller_rate_limiter",
    "meta_namespace_key",
    "namespace_index_func",
    "split_key",
    "to_model",
]
