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
    QueueEmptyError,
    SelectorError,
    ShutDownError,
    TooLargeResourceVersionError,
    TooManyRequestsError,
    UnauthorizedError,
)
from kinformer.factory import InformerFactory
from kinformer.fifo import Delta, DeltaFIFO, DeltaType
from kinformer.informer import Event, EventHandlerRegistration, EventStream, SharedIndexInformer
from kinformer.lister import Lister
from kinformer.listwatch import ListWatch
from kinformer.metrics import MetricsProvider, PrometheusMetricsProvider
from kinformer.objects import DeletedFinalStateUnknown, meta_namespace_key, split_key
from kinformer.ratelimit import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    RateLimiter,
    WithMaxWaitRateLimiter,
    default_controller_rate_limiter,
)
from kinformer.reflector import Reflector, ReflectorConfig, ReflectorStats
from kinformer.resources import Resource
from kinformer.selectors import FieldSelector, LabelSelector
from kinformer.store import NAMESPACE_INDEX, Indexer, namespace_index_func
from kinformer.workqueue import DelayingQueue, RateLimitingQueue, WorkQueue

__all__ = [
    "NAMESPACE_INDEX",
    "ApiError",
    "Backoff",
    "BucketRateLimiter",
    "DelayingQueue",
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
    "ItemExponentialFailureRateLimiter",
    "ItemFastSlowRateLimiter",
    "KeyFuncError",
    "KinformerError",
    "LabelSelector",
    "ListWatch",
    "Lister",
    "MaxOfRateLimiter",
    "MetricsProvider",
    "PrometheusMetricsProvider",
    "QueueEmptyError",
    "RateLimiter",
    "RateLimitingQueue",
    "Reflector",
    "ReflectorConfig",
    "ReflectorStats",
    "Resource",
    "SelectorError",
    "SharedIndexInformer",
    "ShutDownError",
    "TooLargeResourceVersionError",
    "TooManyRequestsError",
    "UnauthorizedError",
    "WithMaxWaitRateLimiter",
    "WorkQueue",
    "default_controller_rate_limiter",
    "meta_namespace_key",
    "namespace_index_func",
    "split_key",
]
