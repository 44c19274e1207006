"""Informer metrics: client-go v0.36's names, labels and buckets, read at scrape time; one
(name, resource) published once; factories adopted; no cost and no prometheus_client needed
when off."""

from __future__ import annotations

import sys
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from kinformer import InformerFactory, ListWatch, Resource, SharedIndexInformer
from kinformer.errors import MissingExtraError
from kinformer.metrics import (
    INFORMER_BUCKETS,
    InformerMetrics,
    informer_metrics,
    store_resource_version_value,
)
from kinformer.testing import FakeApiServer, eventually, make_pod

LABELS = {"name": "kinformer", "group": "", "version": "v1", "resource": "pods"}


def value(registry: CollectorRegistry, series: str, **labels: str) -> float | None:
    return registry.get_sample_value(series, {**LABELS, **labels})


async def test_series_names_labels_and_values(fake_api_server: FakeApiServer) -> None:
    server = fake_api_server
    for i in range(3):
        server.create("pods", make_pod(i, "default", size=200))
    registry = CollectorRegistry()
    client = server.api_client()
    try:
        informer: SharedIndexInformer[Any] = SharedIndexInformer(ListWatch(client, Resource.pods))
        assert informer.processing_latency is None  # nothing recorded until registered
        assert informer_metrics(registry).register(informer)
        assert informer.processing_latency is not None
        async with informer:
            assert await informer.wait_for_sync(10)
            server.create("pods", make_pod(3, "default", size=200))
            await eventually(lambda: len(informer.indexer) == 4)
            assert value(registry, "informer_cached_items") == 4.0
            assert value(registry, "informer_queued_items") == 0.0
            rv = float(informer.last_sync_resource_version)
            assert value(registry, "informer_store_resource_version") == rv
            count = value(registry, "informer_processing_latency_seconds_count")
            assert count is not None and count >= 4  # one observation per popped key
            assert value(registry, "informer_processing_latency_seconds_bucket", le="+Inf") == count
            text = generate_latest(registry).decode()
        assert "# HELP informer_queued_items Number of items currently queued in the FIFO." in text
        assert "# TYPE informer_processing_latency_seconds histogram" in text
        assert ("# HELP informer_store_resource_version The 15 least significant digits of the resource version "
                "of the store.") in text
        # component-base's buckets, with Go's `le` strings.
        les = [line.split('le="')[1].split('"')[0] for line in text.splitlines()
               if line.startswith("informer_processing_latency_seconds_bucket")]
        assert les == ["0.001", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf"]
        assert len(INFORMER_BUCKETS) == 12
    finally:
        await client.close()


async def test_one_informer_per_name_and_resource_and_factories_adopted(fake_api_server: FakeApiServer) -> None:
    registry = CollectorRegistry()
    metrics = InformerMetrics(registry)
    client = fake_api_server.api_client()
    try:
        first: SharedIndexInformer[Any] = SharedIndexInformer(ListWatch(client, Resource.pods, namespace="a"))
        second: SharedIndexInformer[Any] = SharedIndexInformer(ListWatch(client, Resource.pods, namespace="b"))
        assert metrics.register(first) and metrics.register(first)
        assert not metrics.register(second)  # client-go: a duplicate (name, GVR) is not published
        assert second.processing_latency is None
        assert metrics.register(second, name="team-b")
        factory = InformerFactory(client)
        metrics.register_factory(factory, name="operator")
        factory.informer("deployments")  # created after registration: adopted at the next scrape
        assert registry.get_sample_value("informer_cached_items", {
            "name": "operator", "group": "apps", "version": "v1", "resource": "deployments"}) == 0.0
        assert registry.get_sample_value("informer_cached_items", {**LABELS, "name": "team-b"}) == 0.0
        assert registry.get_sample_value("informer_store_resource_version", LABELS) == 0.0  # never listed
    finally:
        await client.close()


def test_store_resource_version_keeps_the_15_least_significant_digits() -> None:
    assert store_resource_version_value("12345") == 12345.0
    assert store_resource_version_value("98765432109876543210") == 432109876543210.0
    assert store_resource_version_value("") == 0.0
    assert store_resource_version_value("not-a-number") == 0.0


def test_without_prometheus_client_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    from kinformer.web import CacheApi

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # `import prometheus_client` now fails
    with pytest.raises(MissingExtraError) as info:
        InformerMetrics(CollectorRegistry())
    assert info.value.extra == "metrics" and "pip install 'kinformer[metrics]'" in str(info.value)
    with pytest.raises(MissingExtraError):
        informer_metrics()
    cache = CacheApi(["pods"])
    cache.bind([SharedIndexInformer(ListWatch(object(), Resource.pods))])
    reply = cache.handle("GET", "/metrics")
    assert reply.status == 404
    assert b"pip install 'kinformer[metrics]'" in reply.body  # type: ignore[union-attr]
