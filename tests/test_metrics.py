"""Work-queue metrics: client-go / controller-runtime names, labels and buckets; pluggable
providers; nothing recorded (and nothing paid) for unnamed queues."""

from __future__ import annotations

import asyncio
import gc
import sys
from collections.abc import Iterator
from typing import Any

import anyio
import pytest
from prometheus_client import CollectorRegistry

from kinformer import DelayingQueue, PrometheusMetricsProvider, RateLimitingQueue, WorkQueue
from kinformer import metrics as metrics_module
from kinformer.metrics import BUCKETS, NOOP_METRICS_PROVIDER, default_metrics_provider, set_default_metrics_provider
from kinformer.ratelimit import ItemExponentialFailureRateLimiter
from kinformer.testing import FakeClock

GO_BUCKETS = (1e-08, 1e-07, 1e-06, 9.999999999999999e-06, 9.999999999999999e-05, 0.001, 0.01, 0.1, 1.0, 10.0,
              100.0, 1000.0)


GO_LE = ["1e-08", "1e-07", "1e-06", "9.999999999999999e-06", "9.999999999999999e-05", "0.001", "0.01", "0.1", "1",
         "10", "100", "1000", "+Inf"]


@pytest.fixture
def registry() -> CollectorRegistry:
    return CollectorRegistry()


@pytest.fixture
def provider(registry: CollectorRegistry) -> PrometheusMetricsProvider:
    return PrometheusMetricsProvider(registry)


def sample(registry: CollectorRegistry, series: str, name: str = "q", **labels: str) -> float | None:
    return registry.get_sample_value(series, {"name": name, "controller": name, **labels})


def test_buckets_are_gos_exponential_buckets() -> None:
    assert BUCKETS == GO_BUCKETS


async def test_series_names_labels_and_values(registry: CollectorRegistry,
                                             provider: PrometheusMetricsProvider) -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue("q", clock, metrics_provider=provider)
    q.add("a")
    q.add("b")
    q.add("a")  # duplicate: not an add
    assert sample(registry, "workqueue_adds_total") == 2
    assert sample(registry, "workqueue_depth", priority="") == 2
    clock.advance(2)
    item = await q.get()
    assert sample(registry, "workqueue_depth", priority="") == 1
    assert sample(registry, "workqueue_queue_duration_seconds_count") == 1
    assert sample(registry, "workqueue_queue_duration_seconds_sum") == 2
    assert sample(registry, "workqueue_queue_duration_seconds_bucket", le="1") == 0
    assert sample(registry, "workqueue_queue_duration_seconds_bucket", le="10") == 1
    assert sample(registry, "workqueue_queue_duration_seconds_bucket", le="+Inf") == 1
    clock.advance(3)
    q.done(item)
    assert sample(registry, "workqueue_work_duration_seconds_count") == 1
    assert sample(registry, "workqueue_work_duration_seconds_sum") == 3
    bounds = [s.labels["le"] for m in registry.collect() if m.name == "workqueue_work_duration_seconds"
              for s in m.samples if s.name.endswith("_bucket")]
    assert bounds == GO_LE  # the strings client_golang writes, in order


async def test_unfinished_work_is_computed_at_scrape_time_without_a_task(
        registry: CollectorRegistry, provider: PrometheusMetricsProvider) -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue("q", clock, metrics_provider=provider)
    q.add("a")
    q.add("b")
    q.get_nowait()
    clock.advance(4)
    q.get_nowait()
    clock.advance(1)
    assert sample(registry, "workqueue_unfinished_work_seconds") == 5 + 1
    assert sample(registry, "workqueue_longest_running_processor_seconds") == 5
    q.done("a")
    clock.advance(1)
    assert sample(registry, "workqueue_unfinished_work_seconds") == 2
    assert sample(registry, "workqueue_longest_running_processor_seconds") == 2
    assert clock.pending == 0


async def test_retries_count_add_after_and_charged_rate_limited_adds(
        registry: CollectorRegistry, provider: PrometheusMetricsProvider) -> None:
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue(ItemExponentialFailureRateLimiter(1.0, 10.0), "q", clock,
                                                  metrics_provider=provider)
    q.add_after("a", 0)  # client-go counts every add_after, delayed or not
    q.add_after("b", 5)
    q.add_rate_limited("c")
    q.add_rate_limited("c")  # already waiting for its retry: not charged, not counted
    assert sample(registry, "workqueue_retries_total") == 3
    q.shut_down()
    q.add_after("d", 1)
    assert sample(registry, "workqueue_retries_total") == 3
    # a delayed item counts as an add when it comes due, not before
    d: DelayingQueue[str] = DelayingQueue("d", clock, metrics_provider=provider)
    d.add_after("x", 1)
    assert sample(registry, "workqueue_adds_total", name="d") == 0
    clock.advance(1)
    assert d.get_nowait() == "x"
    assert sample(registry, "workqueue_adds_total", name="d") == 1


async def test_re_add_while_processing_counts_like_client_go(registry: CollectorRegistry,
                                                            provider: PrometheusMetricsProvider) -> None:
    q: WorkQueue[str] = WorkQueue("q", FakeClock(), metrics_provider=provider)
    q.add("a")
    q.get_nowait()
    q.add("a")  # dirty while processing: an add, and depth counts it
    assert sample(registry, "workqueue_adds_total") == 2
    assert sample(registry, "workqueue_depth", priority="") == 1
    q.done("a")
    q.get_nowait()
    assert sample(registry, "workqueue_depth", priority="") == 0


async def test_an_undone_hand_out_keeps_depth_exact(registry: CollectorRegistry,
                                                    provider: PrometheusMetricsProvider) -> None:
    q: WorkQueue[str] = WorkQueue("q", FakeClock(), metrics_provider=provider)
    getter = asyncio.ensure_future(q.get())
    await anyio.wait_all_tasks_blocked()
    q.add("a")  # handed to the getter...
    q.add("a")  # ...re-added before it ran...
    getter.cancel()  # ...which is cancelled: one queued "a"
    with pytest.raises(asyncio.CancelledError):
        await getter
    assert len(q) == 1
    assert sample(registry, "workqueue_depth", priority="") == 1
    q.get_nowait()
    assert sample(registry, "workqueue_depth", priority="") == 0
    assert sample(registry, "workqueue_queue_duration_seconds_count") == 1


def test_an_unnamed_queue_records_nothing_and_runs_the_plain_methods(
        registry: CollectorRegistry, provider: PrometheusMetricsProvider) -> None:
    q: WorkQueue[str] = WorkQueue("", metrics_provider=provider)
    q.add("a")
    q.done(q.get_nowait())
    assert not {"add", "get", "get_nowait", "done"} & set(vars(q))
    assert all(not m.samples for m in registry.collect())
    quiet: list[WorkQueue[str]] = [WorkQueue("q", metrics_provider=NOOP_METRICS_PROVIDER),
                                   DelayingQueue("q", metrics_provider=NOOP_METRICS_PROVIDER)]
    assert all("add" not in vars(x) for x in quiet)


class Recorder:
    """A MetricsProvider for another metrics library: records every call."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str, Any]] = []

    def _metric(self, kind: str, name: str) -> Any:
        recorder = self

        class Metric:
            def inc(self) -> None:
                recorder.calls.append((kind, name, "inc"))

            def dec(self) -> None:
                recorder.calls.append((kind, name, "dec"))

            def set(self, value: float) -> None:
                recorder.calls.append((kind, name, ("set", value)))

            def observe(self, value: float) -> None:
                recorder.calls.append((kind, name, ("observe", value)))

        return Metric()

    def new_depth_metric(self, name: str) -> Any:
        return self._metric("depth", name)

    def new_adds_metric(self, name: str) -> Any:
        return self._metric("adds", name)

    def new_latency_metric(self, name: str) -> Any:
        return self._metric("latency", name)

    def new_work_duration_metric(self, name: str) -> Any:
        return self._metric("work", name)

    def new_unfinished_work_seconds_metric(self, name: str) -> Any:
        return self._metric("unfinished", name)

    def new_longest_running_processor_seconds_metric(self, name: str) -> Any:
        return self._metric("longest", name)

    def new_retries_metric(self, name: str) -> Any:
        return self._metric("retries", name)

    def of(self, kind: str) -> list[Any]:
        return [what for k, _, what in self.calls if k == kind]


async def test_a_custom_provider_gets_client_gos_calls() -> None:
    clock = FakeClock()
    rec = Recorder()
    q: DelayingQueue[str] = DelayingQueue("jobs", clock, metrics_provider=rec)
    q.add("a")
    clock.advance(1)
    q.get_nowait()
    clock.advance(2)
    q.done("a")
    q.add_after("b", 3)
    assert {name for _, name, _ in rec.calls} == {"jobs"}
    assert rec.of("adds") == ["inc"]
    assert rec.of("depth") == ["inc", "dec"]
    assert rec.of("latency") == [("observe", 1.0)]
    assert rec.of("work") == [("observe", 2.0)]
    assert rec.of("retries") == ["inc"]


async def test_run_metrics_updater_refreshes_a_custom_providers_gauges() -> None:
    clock = FakeClock()
    rec = Recorder()
    q: WorkQueue[str] = WorkQueue("jobs", clock, metrics_provider=rec)
    q.add("a")
    q.get_nowait()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            tg.start_soon(q.run_metrics_updater, 0.5)
            await clock.wait_for_sleepers(1)
            assert rec.of("unfinished")[-1] == ("set", 0.0)
            clock.advance(0.5)
            await clock.wait_for_sleepers(1)
            assert rec.of("unfinished")[-1] == ("set", 0.5)
            assert rec.of("longest")[-1] == ("set", 0.5)
            q.shut_down()
            clock.advance(0.5)  # the updater ends at shut-down
    unnamed: WorkQueue[str] = WorkQueue("", clock)
    with anyio.fail_after(5):
        await unnamed.run_metrics_updater()  # nothing to refresh: returns at once


@pytest.fixture
def restore_default() -> Iterator[None]:
    saved = metrics_module._installed, metrics_module._automatic
    yield
    metrics_module._installed, metrics_module._automatic = saved


def test_the_default_provider_is_used_when_none_is_given(restore_default: None) -> None:
    rec = Recorder()
    set_default_metrics_provider(rec)
    q: WorkQueue[str] = WorkQueue("dflt")
    q.add("a")
    assert rec.of("adds") == ["inc"]
    set_default_metrics_provider(None)
    assert isinstance(default_metrics_provider(), PrometheusMetricsProvider)  # prometheus_client is installed


def test_without_prometheus_client_metrics_are_a_no_op(restore_default: None,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import now fails
    with pytest.raises(ImportError, match=r"kinformer\[metrics\]"):
        PrometheusMetricsProvider()
    set_default_metrics_provider(None)
    metrics_module._automatic = None  # as in a process without the extra
    assert default_metrics_provider() is NOOP_METRICS_PROVIDER
    q: WorkQueue[str] = WorkQueue("named")
    assert "add" not in vars(q), "no recorder: the plain methods run"


def test_a_collected_queue_stops_being_refreshed(registry: CollectorRegistry,
                                                 provider: PrometheusMetricsProvider) -> None:
    clock = FakeClock()
    q: WorkQueue[str] = WorkQueue("q", clock, metrics_provider=provider)
    q.add("a")
    q.get_nowait()
    clock.advance(1)
    assert sample(registry, "workqueue_unfinished_work_seconds") == 1
    del q
    gc.collect()
    clock.advance(1)
    assert sample(registry, "workqueue_unfinished_work_seconds") == 1  # last value, no longer refreshed
    assert provider._refreshers == []
