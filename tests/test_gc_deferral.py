"""Full collections are deferred while a list is applied, and only then (kinformer/_gc.py)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from typing import Any

import pytest

from kinformer import ListWatch, ReflectorConfig, Resource, SharedIndexInformer
from kinformer._gc import DEFERRED, defer_full_collections
from kinformer.testing import FakeApiServer, make_configmap


@pytest.fixture(autouse=True)
def _collector() -> Iterator[None]:
    before, enabled = gc.get_threshold(), gc.isenabled()
    yield
    gc.set_threshold(*before)
    if enabled:
        gc.enable()
    else:
        gc.disable()


def test_nested_deferrals_restore_the_threshold_once_the_last_ends() -> None:
    gc.set_threshold(700, 10, 10)
    first = defer_full_collections()
    second = defer_full_collections()
    assert gc.get_threshold() == (700, 10, DEFERRED)
    first()
    first()  # ending twice counts once
    assert gc.get_threshold() == (700, 10, DEFERRED)
    second()
    assert gc.get_threshold() == (700, 10, 10)


def test_a_threshold_changed_meanwhile_is_left_alone() -> None:
    gc.set_threshold(700, 10, 10)
    end = defer_full_collections()
    gc.set_threshold(500, 5, 42)  # the application's own decision
    end()
    assert gc.get_threshold() == (500, 5, 42)


@pytest.mark.parametrize("setup", ["disabled", "threshold 0"])
def test_a_process_that_manages_its_collector_is_left_alone(setup: str) -> None:
    gc.set_threshold(0 if setup == "threshold 0" else 700, 10, 10)
    if setup == "disabled":
        gc.disable()
    end = defer_full_collections()
    assert gc.get_threshold()[2] == 10
    end()
    assert gc.get_threshold()[2] == 10


@pytest.mark.parametrize("streaming", [False, True])
@pytest.mark.parametrize("defer", [True, False])
async def test_a_list_defers_full_collections_until_it_is_applied(fake_api_server: FakeApiServer,
                                                                 streaming: bool, defer: bool) -> None:
    gc.set_threshold(700, 10, 10)
    for i in range(7):
        fake_api_server.create("configmaps", make_configmap(f"c{i}", "default"))
    seen: list[int] = []

    def transform(obj: Any) -> Any:  # runs as each list page is queued
        seen.append(gc.get_threshold()[2])
        return obj

    config = ReflectorConfig(page_size=2, streaming_list=streaming, defer_full_gc=defer)
    informer: SharedIndexInformer[Any] = SharedIndexInformer(
        ListWatch(fake_api_server.api_client(), Resource.configmaps), transform=transform, reflector_config=config)
    try:
        async with informer:
            await informer.wait_for_sync()
            assert len(seen) == 7
            assert set(seen) == ({DEFERRED} if defer else {10})
            assert gc.get_threshold() == (700, 10, 10)  # restored once applied, while the watch goes on
            assert informer.reflector is not None and informer.reflector.stats.streaming_lists == int(streaming)
    finally:
        await informer.list_watch.api_client.close()
