"""Work-queue and informer metrics with client-go's names.

Informer metrics (`InformerMetrics`, `informer_metrics(registry)`) are at the end of this
module: client-go v0.36's `informer_*` series, read from the informers at scrape time
except the processing latency (see `InformerMetrics`).

Work queues record through a pluggable provider.

The series are controller-runtime's (`pkg/metrics/workqueue.go`), so existing dashboards and
alerts work unchanged:

| series | type | labels | recorded |
|---|---|---|---|
| `workqueue_depth` | gauge | name, controller, priority | +1 when an item becomes dirty, -1 when it is handed out |
| `workqueue_adds_total` | counter | name, controller | each `add` that was not a duplicate |
| `workqueue_queue_duration_seconds` | histogram | name, controller | first add → handed out |
| `workqueue_work_duration_seconds` | histogram | name, controller | handed out → `done` |
| `workqueue_unfinished_work_seconds` | gauge | name, controller | sum of the ages of items being processed |
| `workqueue_longest_running_processor_seconds` | gauge | name, controller | age of the oldest item being processed |
| `workqueue_retries_total` | counter | name, controller | each `add_after` / `add_rate_limited` that was not ignored |

Controllers (`kinformer.controller`) add controller-runtime's own series
(`pkg/internal/controller/metrics`), all labelled `controller`, pre-created at zero when the
controller is constructed:

| series (`controller_runtime_` ...) | type | recorded |
|---|---|---|
| `reconcile_total` | counter, + `result` | each reconcile: `success`, `error`, `requeue`, `requeue_after` |
| `reconcile_errors_total` | counter | reconciles that raised (terminal ones included) |
| `terminal_reconcile_errors_total` | counter | reconciles that raised `TerminalError` |
| `reconcile_timeouts_total` | counter | reconciles cancelled by `reconcile_timeout` |
| `reconcile_time_seconds` | histogram | each reconcile's duration; controller-runtime's 40 buckets, 5 ms … 60 s |
| `max_concurrent_reconciles` | gauge | the controller's `workers` |
| `active_workers` | gauge | reconciles running now |

A provider records them if it implements `ControllerMetricsProvider`
(`new_controller_metrics(controller)`); `PrometheusMetricsProvider` does, the no-op one and
client-go-style `MetricsProvider`s that do not simply get no controller series.

`controller` carries the queue's name (as in controller-runtime, where a queue is named after
its controller); `priority` is always `""` (no priority queue). Histogram buckets are Go's
`prometheus.ExponentialBuckets(10e-9, 10, 12)`, computed the same way (1e-08 … 1000), so the
`le` labels are the same strings. All durations are measured on the queue's injected clock.

Providers:

- `MetricsProvider` is client-go's interface (`NewDepthMetric`, `NewAddsMetric`, ...), one
  factory per series taking the queue's name; implement it to plug in another metrics library.
- `PrometheusMetricsProvider(registry=None)` registers the series in a `prometheus_client`
  registry (the global one by default; tests pass a private `CollectorRegistry`). The two
  "unfinished" gauges are computed when the registry is scraped, from the queues still alive:
  no task, no timer. Needs the `metrics` extra (`pip install 'kinformer[metrics]'`).
- `NOOP_METRICS_PROVIDER` records nothing.
- A queue created without `metrics_provider=` uses `default_metrics_provider()`:
  what `set_default_metrics_provider` installed, else Prometheus on the global registry if
  `prometheus_client` is importable, else the no-op provider. It is resolved once, when a
  named queue is constructed.

A queue whose name is `""`, or whose provider is the no-op one, records nothing and pays
nothing per item: it gets no recorder at all, so its hot path has no metrics code in it.
With any other provider, gauges that are not refreshed on scrape are refreshed by
`await queue.run_metrics_updater()` (client-go's 500 ms loop), run in a task group the caller
owns.
"""

from __future__ import annotations

import time
import weakref
from bisect import bisect_left
from collections.abc import Callable, Hashable, Iterator, Mapping
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar, runtime_checkable

from kinformer.clock import Clock, RealClock

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

    from kinformer.factory import InformerFactory
    from kinformer.informer import SharedIndexInformer

T = TypeVar("T", bound=Hashable)

DEPTH = "workqueue_depth"
ADDS = "workqueue_adds_total"
QUEUE_DURATION = "workqueue_queue_duration_seconds"
WORK_DURATION = "workqueue_work_duration_seconds"
UNFINISHED_WORK = "workqueue_unfinished_work_seconds"
LONGEST_RUNNING_PROCESSOR = "workqueue_longest_running_processor_seconds"
RETRIES = "workqueue_retries_total"


def exponential_buckets(start: float, factor: float, count: int) -> list[float]:
    """Go's `prometheus.ExponentialBuckets`: each bound the previous times `factor`
    (repeated multiplication, not powers, so the floats are bit-identical to Go's)."""
    buckets = [start]
    for _ in range(count - 1):
        buckets.append(buckets[-1] * factor)
    return buckets


BUCKETS = tuple(exponential_buckets(10e-9, 10, 12))

# The `le` label values client_golang writes (Go's FormatFloat(b, 'g', -1, 64)): for bounds
# between 1e-8 and 1e3 that is Python's repr without a trailing ".0" ("1", not "1.0").
_LE_LABELS = [*(repr(b).removesuffix(".0") for b in BUCKETS), "+Inf"]


class GaugeMetric(Protocol):
    def inc(self) -> None: ...
    def dec(self) -> None: ...


class SettableGaugeMetric(Protocol):
    def set(self, value: float) -> None: ...


class CounterMetric(Protocol):
    def inc(self) -> None: ...


class HistogramMetric(Protocol):
    def observe(self, value: float) -> None: ...


class MetricsProvider(Protocol):
    """client-go's `MetricsProvider`: one factory per series, each given the queue's name."""

    def new_depth_metric(self, name: str) -> GaugeMetric: ...
    def new_adds_metric(self, name: str) -> CounterMetric: ...
    def new_latency_metric(self, name: str) -> HistogramMetric: ...
    def new_work_duration_metric(self, name: str) -> HistogramMetric: ...
    def new_unfinished_work_seconds_metric(self, name: str) -> SettableGaugeMetric: ...
    def new_longest_running_processor_seconds_metric(self, name: str) -> SettableGaugeMetric: ...
    def new_retries_metric(self, name: str) -> CounterMetric: ...


@runtime_checkable
class ScrapeRefreshingProvider(Protocol):
    """Optional extension: the provider calls `refresh` before each scrape, so gauges that
    change by themselves (the unfinished-work ones) need no updater task. `refresh` is held
    weakly: a queue that is garbage-collected stops being refreshed."""

    def refresh_on_scrape(self, refresh: Callable[[], None]) -> None: ...


class _Noop:
    __slots__ = ()

    def inc(self) -> None:
        return None

    def dec(self) -> None:
        return None

    def set(self, value: float) -> None:
        return None

    def observe(self, value: float) -> None:
        return None


_NOOP = _Noop()


class NoopMetricsProvider:
    """Records nothing; a queue given it gets no recorder at all."""

    def new_depth_metric(self, name: str) -> GaugeMetric:
        return _NOOP

    def new_adds_metric(self, name: str) -> CounterMetric:
        return _NOOP

    def new_latency_metric(self, name: str) -> HistogramMetric:
        return _NOOP

    def new_work_duration_metric(self, name: str) -> HistogramMetric:
        return _NOOP

    def new_unfinished_work_seconds_metric(self, name: str) -> SettableGaugeMetric:
        return _NOOP

    def new_longest_running_processor_seconds_metric(self, name: str) -> SettableGaugeMetric:
        return _NOOP

    def new_retries_metric(self, name: str) -> CounterMetric:
        return _NOOP


NOOP_METRICS_PROVIDER = NoopMetricsProvider()


class _Value:
    """A counter or gauge child: a plain float the collector reads at scrape time."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self) -> None:
        self.value += 1.0

    def dec(self) -> None:
        self.value -= 1.0

    def set(self, value: float) -> None:
        self.value = value


class _Histogram:
    """A histogram child: per-bucket counts (the last is +Inf) and the sum."""

    __slots__ = ("buckets", "counts", "sum")

    def __init__(self, buckets: tuple[float, ...] = BUCKETS) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        # Go's buckets are upper-inclusive (`le`): bisect_left finds the first bound >= value.
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value

    def cumulative(self, labels: list[str]) -> tuple[list[tuple[str, float]], float]:
        """(le, cumulative count) pairs and the sum, for a `HistogramMetricFamily`."""
        counts, total, out = list(self.counts), self.sum, []
        running = 0
        for bound, count in zip(labels, counts, strict=True):
            running += count
            out.append((bound, float(running)))
        return out, total


# -- controller series (controller-runtime's pkg/internal/controller/metrics) ----------------

RECONCILE_TOTAL = "controller_runtime_reconcile_total"
RECONCILE_ERRORS = "controller_runtime_reconcile_errors_total"
TERMINAL_RECONCILE_ERRORS = "controller_runtime_terminal_reconcile_errors_total"
RECONCILE_TIMEOUTS = "controller_runtime_reconcile_timeouts_total"
RECONCILE_TIME = "controller_runtime_reconcile_time_seconds"
MAX_CONCURRENT_RECONCILES = "controller_runtime_max_concurrent_reconciles"
ACTIVE_WORKERS = "controller_runtime_active_workers"

RECONCILE_RESULTS = ("error", "requeue_after", "requeue", "success")
"""The `result` label values of `controller_runtime_reconcile_total`, each pre-created at zero."""

RECONCILE_TIME_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8,
                          0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0,
                          15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0)
"""controller-runtime's buckets for `controller_runtime_reconcile_time_seconds`."""

_RECONCILE_LE_LABELS = [*(repr(b).removesuffix(".0") for b in RECONCILE_TIME_BUCKETS), "+Inf"]


class _ReconcileTimeHistogram(_Histogram):
    __slots__ = ()

    def __init__(self) -> None:
        super().__init__(RECONCILE_TIME_BUCKETS)


class ControllerMetrics:
    """One controller's children (controller-runtime's series; module docstring). The
    controller calls them directly: `total[result].inc()`, `reconcile_time.observe(s)`, ..."""

    __slots__ = ("active_workers", "errors", "max_concurrent_reconciles", "reconcile_time", "terminal_errors",
                 "timeouts", "total")

    def __init__(self, total: Mapping[str, CounterMetric], errors: CounterMetric, terminal_errors: CounterMetric,
                 timeouts: CounterMetric, reconcile_time: HistogramMetric,
                 max_concurrent_reconciles: SettableGaugeMetric, active_workers: GaugeMetric) -> None:
        self.total = total
        self.errors = errors
        self.terminal_errors = terminal_errors
        self.timeouts = timeouts
        self.reconcile_time = reconcile_time
        self.max_concurrent_reconciles = max_concurrent_reconciles
        self.active_workers = active_workers


@runtime_checkable
class ControllerMetricsProvider(Protocol):
    """A provider that also records controllers' series (module docstring)."""

    def new_controller_metrics(self, controller: str) -> ControllerMetrics: ...


_HELP = {
    DEPTH: "Current depth of workqueue by workqueue and priority",
    ADDS: "Total number of adds handled by workqueue",
    QUEUE_DURATION: "How long in seconds an item stays in workqueue before being requested",
    WORK_DURATION: "How long in seconds processing an item from workqueue takes.",
    UNFINISHED_WORK: "How many seconds of work has been done that is in progress and hasn't been observed by "
    "work_duration. Large values indicate stuck threads. One can deduce the number of stuck threads by "
    "observing the rate at which this increases.",
    LONGEST_RUNNING_PROCESSOR: "How many seconds has the longest running processor for workqueue been running.",
    RETRIES: "Total number of retries handled by workqueue",
    RECONCILE_TOTAL: "Total number of reconciliations per controller",
    RECONCILE_ERRORS: "Total number of reconciliation errors per controller",
    TERMINAL_RECONCILE_ERRORS: "Total number of terminal reconciliation errors per controller",
    RECONCILE_TIMEOUTS: "Total number of reconciliation timeouts per controller",
    RECONCILE_TIME: "Length of time per reconciliation per controller",
    MAX_CONCURRENT_RECONCILES: "Maximum number of concurrent reconciles per controller",
    ACTIVE_WORKERS: "Number of currently used workers per controller",
}

_CONTROLLER_COUNTERS = (RECONCILE_ERRORS, TERMINAL_RECONCILE_ERRORS, RECONCILE_TIMEOUTS)
_CONTROLLER_GAUGES = (MAX_CONCURRENT_RECONCILES, ACTIVE_WORKERS)


class PrometheusMetricsProvider:
    """The client-go / controller-runtime series in a `prometheus_client` registry.

    The children are plain Python numbers kept per queue name (two queues with one name
    share them, like Go's `WithLabelValues`), exported by one custom collector at scrape
    time: recording an item costs a few attribute updates, not `prometheus_client`'s locked
    metric objects (about ten times cheaper per item). A scrape from another thread (the
    `prometheus_client` HTTP server) reads them without locks: each value is read whole
    under the GIL, and a histogram's sum may lag its counts by the observation in flight.
    One provider per registry (a second would register the same series twice).
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        try:
            import prometheus_client
        except ImportError as exc:
            raise ImportError(
                "PrometheusMetricsProvider needs prometheus_client: pip install 'kinformer[metrics]'"
            ) from exc
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self._values: dict[str, dict[str, _Value]] = {
            DEPTH: {}, ADDS: {}, UNFINISHED_WORK: {}, LONGEST_RUNNING_PROCESSOR: {}, RETRIES: {}}
        self._histograms: dict[str, dict[str, _Histogram]] = {QUEUE_DURATION: {}, WORK_DURATION: {}}
        # Controller series: per controller name; reconcile_total by (controller, result).
        self._controller_values: dict[str, dict[str, _Value]] = {
            series: {} for series in (*_CONTROLLER_COUNTERS, *_CONTROLLER_GAUGES)}
        self._reconcile_total: dict[tuple[str, str], _Value] = {}
        self._reconcile_time: dict[str, _Histogram] = {}
        self._refreshers: list[weakref.WeakMethod[Callable[[], None]]] = []
        self.registry.register(_Collector(self))

    def _value(self, series: str, name: str) -> _Value:
        return self._values[series].setdefault(name, _Value())

    def _histogram(self, series: str, name: str) -> _Histogram:
        return self._histograms[series].setdefault(name, _Histogram())

    def new_depth_metric(self, name: str) -> GaugeMetric:
        return self._value(DEPTH, name)

    def new_adds_metric(self, name: str) -> CounterMetric:
        return self._value(ADDS, name)

    def new_latency_metric(self, name: str) -> HistogramMetric:
        return self._histogram(QUEUE_DURATION, name)

    def new_work_duration_metric(self, name: str) -> HistogramMetric:
        return self._histogram(WORK_DURATION, name)

    def new_unfinished_work_seconds_metric(self, name: str) -> SettableGaugeMetric:
        return self._value(UNFINISHED_WORK, name)

    def new_longest_running_processor_seconds_metric(self, name: str) -> SettableGaugeMetric:
        return self._value(LONGEST_RUNNING_PROCESSOR, name)

    def new_retries_metric(self, name: str) -> CounterMetric:
        return self._value(RETRIES, name)

    def new_controller_metrics(self, controller: str) -> ControllerMetrics:
        """controller-runtime's series for `controller`, every child created (at zero) now."""
        def value(series: str) -> _Value:
            return self._controller_values[series].setdefault(controller, _Value())

        total = {result: self._reconcile_total.setdefault((controller, result), _Value())
                 for result in RECONCILE_RESULTS}
        return ControllerMetrics(total, value(RECONCILE_ERRORS), value(TERMINAL_RECONCILE_ERRORS),
                                 value(RECONCILE_TIMEOUTS),
                                 self._reconcile_time.setdefault(controller, _ReconcileTimeHistogram()),
                                 value(MAX_CONCURRENT_RECONCILES), value(ACTIVE_WORKERS))

    def refresh_on_scrape(self, refresh: Callable[[], None]) -> None:
        self._refreshers.append(weakref.WeakMethod(refresh))

    def _refresh(self) -> None:
        alive = []
        for ref in self._refreshers:
            refresh = ref()
            if refresh is not None:
                refresh()
                alive.append(ref)
        self._refreshers = alive


class _Collector:
    """Exports a provider's children as the seven families (a `prometheus_client` collector)."""

    def __init__(self, provider: PrometheusMetricsProvider) -> None:
        self._provider = provider

    def describe(self) -> list[Any]:
        return list(self._families())

    def collect(self) -> Iterator[Any]:
        self._provider._refresh()
        return self._families()

    def _families(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        values, histograms = self._provider._values, self._provider._histograms
        labels = ["name", "controller"]
        depth = GaugeMetricFamily(DEPTH, _HELP[DEPTH], labels=[*labels, "priority"])
        for name, child in list(values[DEPTH].items()):
            depth.add_metric([name, name, ""], child.value)
        yield depth
        adds = CounterMetricFamily(ADDS, _HELP[ADDS], labels=labels)
        for name, child in list(values[ADDS].items()):
            adds.add_metric([name, name], child.value)
        yield adds
        bounds = _LE_LABELS
        for series in (QUEUE_DURATION, WORK_DURATION):
            family = HistogramMetricFamily(series, _HELP[series], labels=labels)
            for name, hist in list(histograms[series].items()):
                cumulative, total = hist.cumulative(bounds)
                family.add_metric([name, name], cumulative, total)
            yield family
        for series in (UNFINISHED_WORK, LONGEST_RUNNING_PROCESSOR):
            gauge = GaugeMetricFamily(series, _HELP[series], labels=labels)
            for name, child in list(values[series].items()):
                gauge.add_metric([name, name], child.value)
            yield gauge
        retries = CounterMetricFamily(RETRIES, _HELP[RETRIES], labels=labels)
        for name, child in list(values[RETRIES].items()):
            retries.add_metric([name, name], child.value)
        yield retries
        yield from self._controller_families()

    def _controller_families(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

        provider = self._provider
        if not provider._reconcile_time:
            return  # no controller: the registry shows only the work-queue series
        total = CounterMetricFamily(RECONCILE_TOTAL, _HELP[RECONCILE_TOTAL], labels=["controller", "result"])
        for (controller, result), child in list(provider._reconcile_total.items()):
            total.add_metric([controller, result], child.value)
        yield total
        for series in _CONTROLLER_COUNTERS:
            counter = CounterMetricFamily(series, _HELP[series], labels=["controller"])
            for controller, child in list(provider._controller_values[series].items()):
                counter.add_metric([controller], child.value)
            yield counter
        histogram = HistogramMetricFamily(RECONCILE_TIME, _HELP[RECONCILE_TIME], labels=["controller"])
        for controller, hist in list(provider._reconcile_time.items()):
            counts, running, cumulative = list(hist.counts), 0, []
            for bound, count in zip(_RECONCILE_LE_LABELS, counts, strict=True):
                running += count
                cumulative.append((bound, float(running)))
            histogram.add_metric([controller], cumulative, hist.sum)
        yield histogram
        for series in _CONTROLLER_GAUGES:
            gauge = GaugeMetricFamily(series, _HELP[series], labels=["controller"])
            for controller, child in list(provider._controller_values[series].items()):
                gauge.add_metric([controller], child.value)
            yield gauge


_installed: MetricsProvider | None = None
_automatic: MetricsProvider | None = None


def set_default_metrics_provider(provider: MetricsProvider | None) -> None:
    """The provider for queues created from now on without `metrics_provider=` (client-go's
    `SetProvider`, except that every call takes effect); `None` restores the automatic choice."""
    global _installed
    _installed = provider


def default_metrics_provider() -> MetricsProvider:
    """The installed default; else, chosen once per process, Prometheus on the global registry
    if `prometheus_client` is importable, else the no-op provider."""
    global _automatic
    if _installed is not None:
        return _installed
    if _automatic is None:
        try:
            _automatic = PrometheusMetricsProvider()
        except ImportError:
            _automatic = NOOP_METRICS_PROVIDER
    return _automatic


class QueueMetrics(Generic[T]):
    """One queue's recorder (client-go's `defaultQueueMetrics`); the queue calls it only
    when metrics are on. Add times are kept per item from its first add until it is handed
    out, start times from hand-out until `done`."""

    __slots__ = ("__weakref__", "_add_times", "_adds", "_depth", "_latency", "_longest", "_now",
                 "_start_times", "_unfinished", "_work")

    def __init__(self, provider: MetricsProvider, name: str, clock: Clock) -> None:
        # RealClock.now is time.monotonic(); calling the C function directly saves a frame per call.
        self._now: Callable[[], float] = time.monotonic if type(clock) is RealClock else clock.now
        self._depth = provider.new_depth_metric(name)
        self._adds = provider.new_adds_metric(name)
        self._latency = provider.new_latency_metric(name)
        self._work = provider.new_work_duration_metric(name)
        self._unfinished = provider.new_unfinished_work_seconds_metric(name)
        self._longest = provider.new_longest_running_processor_seconds_metric(name)
        self._add_times: dict[T, float] = {}
        self._start_times: dict[T, float] = {}
        if isinstance(provider, ScrapeRefreshingProvider):
            provider.refresh_on_scrape(self.update_unfinished_work)

    def add(self, item: T) -> None:
        self._adds.inc()
        self._depth.inc()
        if item not in self._add_times:
            self._add_times[item] = self._now()

    def merged(self) -> None:
        """Two adds of one item ended up as one queued entry (a hand-out was undone)."""
        self._depth.dec()

    def get(self, item: T) -> None:
        now = self._now()
        self._depth.dec()
        self._start_times[item] = now
        added = self._add_times.pop(item, None)
        if added is not None:
            self._latency.observe(now - added)

    def done(self, item: T) -> None:
        started = self._start_times.pop(item, None)
        if started is not None:
            self._work.observe(self._now() - started)

    def update_unfinished_work(self) -> None:
        now = self._now()
        total = oldest = 0.0
        # tuple() copies in one C call: a scrape thread never sees the dict change under it.
        for started in tuple(self._start_times.values()):
            age = now - started
            total += age
            oldest = max(oldest, age)
        self._unfinished.set(total)
        self._longest.set(oldest)


def queue_metrics(provider: MetricsProvider | None, name: str, clock: Clock) -> QueueMetrics[Any] | None:
    """The recorder for a queue, or None when nothing is to be recorded (no name, no-op provider)."""
    if not name:
        return None
    provider = provider if provider is not None else default_metrics_provider()
    if isinstance(provider, NoopMetricsProvider):
        return None
    return QueueMetrics(provider, name, clock)


def controller_metrics(provider: MetricsProvider | None, controller: str) -> ControllerMetrics | None:
    """A controller's recorder, or None when its provider records no controller series."""
    provider = provider if provider is not None else default_metrics_provider()
    if isinstance(provider, ControllerMetricsProvider):
        return provider.new_controller_metrics(controller)
    return None


def retry_metric(provider: MetricsProvider | None, name: str) -> CounterMetric | None:
    """The retries counter for a delaying queue, or None when nothing is to be recorded."""
    if not name:
        return None
    provider = provider if provider is not None else default_metrics_provider()
    if isinstance(provider, NoopMetricsProvider):
        return None
    return provider.new_retries_metric(name)


# -- informer metrics -----------------------------------------------------------------------

INFORMER_QUEUED_ITEMS = "informer_queued_items"
INFORMER_PROCESSING_LATENCY = "informer_processing_latency_seconds"
INFORMER_STORE_RESOURCE_VERSION = "informer_store_resource_version"
INFORMER_CACHED_ITEMS = "informer_cached_items"

INFORMER_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
"""component-base's `fifoProcessingLatency` buckets."""

_INFORMER_LE_LABELS = [*(repr(b).removesuffix(".0") for b in INFORMER_BUCKETS), "+Inf"]

_INFORMER_HELP = {
    INFORMER_QUEUED_ITEMS: "Number of items currently queued in the FIFO.",
    INFORMER_PROCESSING_LATENCY: "Time taken to process events after popping from the queue.",
    INFORMER_STORE_RESOURCE_VERSION: "The 15 least significant digits of the resource version of the store.",
    INFORMER_CACHED_ITEMS: "Number of objects in the informer's cache.",
}


def store_resource_version_value(rv: str) -> float:
    """client-go's gauge value for a resourceVersion: its 15 least significant digits (an
    etcd revision can outgrow a float's exact integers); 0 for an empty or non-numeric RV."""
    return float(int(rv[-15:])) if rv.isdigit() else 0.0


class _InformerEntry:
    __slots__ = ("factory", "histogram", "informer", "labels")

    def __init__(self, labels: tuple[str, str, str, str], informer: SharedIndexInformer[Any] | None,
                 factory: InformerFactory | None) -> None:
        self.labels = labels
        self.informer: weakref.ref[SharedIndexInformer[Any]] | None = (
            weakref.ref(informer) if informer is not None else None)
        self.factory: weakref.ref[InformerFactory] | None = weakref.ref(factory) if factory is not None else None
        self.histogram = _Histogram(INFORMER_BUCKETS)


class InformerMetrics:
    """client-go v0.36's informer series (`component-base/metrics/prometheus/clientgo/fifo`),
    plus kinformer's cache size, for the informers registered here.

    | series | type | value |
    |---|---|---|
    | `informer_queued_items` | gauge | keys waiting in the DeltaFIFO (at scrape time) |
    | `informer_processing_latency_seconds` | histogram | each popped key's cache write and hand-out |
    | `informer_store_resource_version` | gauge | last synced RV, 15 least significant digits (at scrape) |
    | `informer_cached_items` | gauge | objects in the cache (at scrape time; not in client-go) |

    Labels are `name` (who owns the informer: a component name, "kinformer" by default),
    `group`, `version`, `resource`. As in client-go, one (name, group, version, resource)
    is published once: `register` of a second informer with the same labels returns False
    and records nothing for it (give it another `name`). Informers are held weakly.

    The store RV is the reflector's (`last_sync_resource_version`): the cache is at that RV
    whenever `informer_queued_items` is 0, and behind it by what is queued otherwise.

    One `InformerMetrics` per registry (`informer_metrics(registry)` returns it); needs the
    `metrics` extra.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        try:
            import prometheus_client
        except ImportError as exc:
            from kinformer.errors import MissingExtraError

            raise MissingExtraError("informer metrics", "prometheus_client", "metrics") from exc
        self.registry = registry if registry is not None else prometheus_client.REGISTRY
        self._entries: dict[tuple[str, str, str, str], _InformerEntry] = {}
        self._factories: list[tuple[weakref.ref[InformerFactory], str]] = []
        self.registry.register(_InformerCollector(self))

    @staticmethod
    def _labels(informer: SharedIndexInformer[Any], name: str) -> tuple[str, str, str, str]:
        res = informer.list_watch.resource
        return (name, res.group, res.version, res.plural)

    def register(self, informer: SharedIndexInformer[Any], name: str = "kinformer") -> bool:
        """Publish `informer`'s series under `name`; False if those labels are taken by another
        informer (the same informer again is a no-op that returns True)."""
        labels = self._labels(informer, name)
        entry = self._entries.get(labels)
        if entry is not None:
            current = entry.informer() if entry.informer is not None else None
            if current is informer:
                return True
            if current is not None:
                return False
        entry = _InformerEntry(labels, informer, None)
        self._entries[labels] = entry
        informer.processing_latency = entry.histogram
        return True

    def register_factory(self, factory: InformerFactory, name: str = "kinformer") -> None:
        """Publish every informer of `factory`, including those it creates later (each is
        registered when it is first seen: at this call, then at each scrape)."""
        self._factories.append((weakref.ref(factory), name))
        self._adopt()

    def _adopt(self) -> None:
        alive = []
        for ref, name in self._factories:
            factory = ref()
            if factory is None:
                continue
            alive.append((ref, name))
            for informer in factory.informers.values():
                self.register(informer, name)
        self._factories = alive

    def _live(self) -> list[tuple[tuple[str, str, str, str], SharedIndexInformer[Any], _Histogram]]:
        self._adopt()
        out = []
        for labels, entry in list(self._entries.items()):
            informer = entry.informer() if entry.informer is not None else None
            if informer is None:
                del self._entries[labels]
                continue
            out.append((labels, informer, entry.histogram))
        return out


class _InformerCollector:
    def __init__(self, metrics: InformerMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Any]:
        return list(self._families([]))

    def collect(self) -> Iterator[Any]:
        return self._families(self._metrics._live())

    def _families(self, live: list[tuple[tuple[str, str, str, str], SharedIndexInformer[Any], _Histogram]],
                  ) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily

        labels = ["name", "group", "version", "resource"]
        queued = GaugeMetricFamily(INFORMER_QUEUED_ITEMS, _INFORMER_HELP[INFORMER_QUEUED_ITEMS], labels=labels)
        latency = HistogramMetricFamily(INFORMER_PROCESSING_LATENCY, _INFORMER_HELP[INFORMER_PROCESSING_LATENCY],
                                        labels=labels)
        rv = GaugeMetricFamily(INFORMER_STORE_RESOURCE_VERSION, _INFORMER_HELP[INFORMER_STORE_RESOURCE_VERSION],
                               labels=labels)
        cached = GaugeMetricFamily(INFORMER_CACHED_ITEMS, _INFORMER_HELP[INFORMER_CACHED_ITEMS], labels=labels)
        for values, informer, histogram in live:
            label_values = list(values)
            queued.add_metric(label_values, float(informer.queued))
            buckets, total = histogram.cumulative(_INFORMER_LE_LABELS)
            latency.add_metric(label_values, buckets, total)
            rv.add_metric(label_values, store_resource_version_value(informer.last_sync_resource_version))
            cached.add_metric(label_values, float(len(informer.indexer)))
        yield queued
        yield latency
        yield rv
        yield cached


_informer_metrics: weakref.WeakKeyDictionary[Any, InformerMetrics] = weakref.WeakKeyDictionary()


def informer_metrics(registry: CollectorRegistry | None = None) -> InformerMetrics:
    """The `InformerMetrics` of `registry` (the global one by default), created on first use.

    Raises `MissingExtraError` without prometheus_client.
    """
    if registry is None:
        try:
            import prometheus_client
        except ImportError as exc:
            from kinformer.errors import MissingExtraError

            raise MissingExtraError("informer metrics", "prometheus_client", "metrics") from exc
        registry = prometheus_client.REGISTRY
    found = _informer_metrics.get(registry)
    if found is None:
        found = _informer_metrics[registry] = InformerMetrics(registry)
    return found
