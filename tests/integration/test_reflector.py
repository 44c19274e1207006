"""Reflector against FakeApiServer over real HTTP: sync, resume, relist, faults."""

from __future__ import annotations

import math
from typing import Any

import pytest

from kinformer import DeletedFinalStateUnknown, DeltaType, Resource
from kinformer.errors import DecodeError, TooManyRequestsError, WatchIdleTimeoutError
from kinformer.reflector import Stopped, Watching
from kinformer.testing import FakeApiServer, FakeClock, eventually, make_configmap
from tests.integration.harness import Pipeline


def seed(server: FakeApiServer, n: int, ns: str = "default", prefix: str = "cm") -> None:
    for i in range(n):
        server.create("configmaps", make_configmap(f"{prefix}-{i:05d}", ns))


def touch(server: FakeApiServer, name: str, ns: str = "default", value: str = "x") -> dict[str, Any]:
    return server.update("configmaps", {**server.get("configmaps", name, ns), "data": {"v": value}})


@pytest.mark.parametrize("page_size", [1, 7, 500])
async def test_initial_paged_sync(fake_api_server: FakeApiServer, fake_api_client: Any, page_size: int) -> None:
    n = 300 if page_size == 1 else 2500
    seed(fake_api_server, n)
    p = Pipeline(fake_api_server, fake_api_client, page_size=page_size)
    async with p.running():
        await p.reflector.wait_for_sync()
        await p.converge()
        assert isinstance(p.reflector.state, Watching)
    lists = [r for r in fake_api_server.requests if r.verb == "list"]
    assert len(lists) == math.ceil(n / page_size)
    assert lists[0].query["resourceVersion"] == "0" and lists[0].query["limit"] == str(page_size)
    assert all(d.type is DeltaType.REPLACED for d in p.deltas) and len(p.deltas) == n
    assert p.reflector.last_sync_resource_version == fake_api_server.resource_version


async def test_resume_after_drops_from_the_right_rv(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 10)
    p = Pipeline(fake_api_server, fake_api_client)
    async with p.running():
        await p.converge()
        for round_ in range(3):
            touch(fake_api_server, "cm-00001", value=str(round_))
            await p.converge()
            rv = p.reflector.last_sync_resource_version
            fake_api_server.drop_watches()
            touch(fake_api_server, "cm-00002", value=str(round_))
            await p.converge()
            rewatch = [r for r in fake_api_server.requests if r.verb == "watch"][-1]
            assert rewatch.query["resourceVersion"] == rv
    assert fake_api_server.count("list") == 1
    assert p.reflector.stats.relists == 0 and p.reflector.stats.watches == 4


async def test_scripted_10000_events_with_20_drops(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 100)
    p = Pipeline(fake_api_server, fake_api_client)
    async with p.running():
        await p.converge()
        fake_api_server.drop_watches_after(500)
        for i in range(10_000):
            touch(fake_api_server, f"cm-{i % 100:05d}", value=str(i))
            if i % 1000 == 999:
                await p.converge(30)
        await p.converge(30)
        fake_api_server.drop_watches_after(None)
        stats = p.reflector.stats
        # The 20th drop comes right after the 10,000th event: wait for its re-watch.
        await eventually(lambda: fake_api_server.count("watch") == 21)
        assert (fake_api_server.count("list"), stats.relists, stats.rewatches) == (1, 0, 20)
        assert stats.events == 10_000
        # One compaction while disconnected → exactly one relist.
        fake_api_server.stall_watches()
        await eventually(lambda: fake_api_server.open_watches == 1)
        touch(fake_api_server, "cm-00000", value="gap")
        fake_api_server.compact()
        fake_api_server.stall_watches(False)
        fake_api_server.drop_watches()
        await p.converge()
        await eventually(lambda: p.reflector.stats.relists == 1)
        assert fake_api_server.count("list") == 2 and stats.expired == 1


async def test_410_after_compaction_relists_with_tombstones(fake_api_server: FakeApiServer,
                                                           fake_api_client: Any) -> None:
    seed(fake_api_server, 20)
    clock = FakeClock()
    p = Pipeline(fake_api_server, fake_api_client, clock=clock)
    async with p.running():
        await p.converge()
        # The drop may come before or after the watch's first bookmark, so the re-watch that
        # meets the 429 happens at once or after a backoff: let time pass as needed.
        await eventually(lambda: fake_api_server.open_watches == 1)
        fake_api_server.fail_next(1, 429, verbs=["watch"])
        fake_api_server.drop_watches()
        await clock.advance_until(lambda: any(isinstance(e, TooManyRequestsError) for e in p.errors)
                                  and clock.pending > 0, step=1)
        for i in range(5):
            fake_api_server.delete("configmaps", f"cm-{i:05d}", "default")
        seed(fake_api_server, 3, prefix="new")
        touch(fake_api_server, "cm-00010", value="changed")
        fake_api_server.compact()
        await clock.advance_until(p.in_sync, step=100)
    stats = p.reflector.stats
    assert stats.expired == 1 and stats.relists == 1
    relist = [r for r in fake_api_server.requests if r.verb == "list"][-1]
    assert relist.query["resourceVersion"] == ""  # consistent read after 410
    tombstones = [d.object for d in p.deltas if d.type is DeltaType.DELETED]
    assert sorted(t.key for t in tombstones) == [f"default/cm-{i:05d}" for i in range(5)]
    assert all(isinstance(t, DeletedFinalStateUnknown) and t.obj is not None for t in tombstones)
    replaced_after_sync = [d.object["metadata"]["name"] for d in p.deltas[20:] if d.type is DeltaType.REPLACED]
    assert sorted(replaced_after_sync) == ["cm-00010", "new-00000", "new-00001", "new-00002"]


async def test_bookmarks_move_rv_without_store_writes(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 3, ns="watched")
    p = Pipeline(fake_api_server, fake_api_client, namespace="watched")
    async with p.running():
        await p.converge()
        before = len(p.deltas)
        seed(fake_api_server, 5, ns="elsewhere")
        target = fake_api_server.resource_version
        await eventually(lambda: p.reflector.last_sync_resource_version == target)
        assert len(p.deltas) == before and p.reflector.stats.bookmarks > 0


async def test_429_retry_after_is_honoured(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    clock = FakeClock()
    p = Pipeline(fake_api_server, fake_api_client, clock=clock)
    async with p.running():
        await p.converge()
        await eventually(lambda: fake_api_server.open_watches == 1)
        fake_api_server.fail_next(1, 429, retry_after=7, verbs=["watch"])
        fake_api_server.drop_watches()
        # At once or after the drop's backoff (see the test above), the re-watch meets the 429.
        await clock.advance_until(lambda: any(isinstance(e, TooManyRequestsError) for e in p.errors)
                                  and clock.pending > 0, step=1)
        assert clock.sleeps[-1] == 7
        fake_api_server.create("configmaps", make_configmap("late"))
        clock.advance(7)
        await p.converge()
    assert fake_api_server.count("list") == 1


async def test_stalled_watch_is_detected_by_idle_timeout(fake_api_server: FakeApiServer,
                                                         fake_api_client: Any) -> None:
    seed(fake_api_server, 2)
    p = Pipeline(fake_api_server, fake_api_client, idle_timeout=0.3)
    async with p.running():
        await p.converge()
        fake_api_server.stall_watches()
        fake_api_server.create("configmaps", make_configmap("while-stalled"))
        await eventually(lambda: any(isinstance(e, WatchIdleTimeoutError) for e in p.errors))
        fake_api_server.stall_watches(False)
        await p.converge()
    assert fake_api_server.count("list") == 1


async def test_malformed_line_recovers_without_relist(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 2)
    p = Pipeline(fake_api_server, fake_api_client)
    async with p.running():
        await p.converge()
        fake_api_server.malformed_lines(1)
        touch(fake_api_server, "cm-00000")
        touch(fake_api_server, "cm-00001")
        await p.converge()
        await eventually(lambda: p.reflector.stats.decode_errors == 1)
    assert any(isinstance(e, DecodeError) for e in p.errors)
    assert fake_api_server.count("list") == 1 and p.reflector.stats.relists == 0


async def test_500_on_list_backs_off_then_lists(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 4)
    clock = FakeClock()
    fake_api_server.fail_next(2, 500, verbs=["list"])
    p = Pipeline(fake_api_server, fake_api_client, clock=clock)
    async with p.running():
        await clock.wait_for_sleepers()
        clock.advance(60)
        await clock.wait_for_sleepers()
        clock.advance(60)
        await p.converge()
    assert fake_api_server.count("list") == 3 and p.reflector.stats.backoffs == 2


async def test_streaming_list_and_its_fallback(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 25)
    p = Pipeline(fake_api_server, fake_api_client, streaming_list=True)
    async with p.running():
        await p.reflector.wait_for_sync()
        await p.converge()
        touch(fake_api_server, "cm-00003")
        await p.converge()
    assert fake_api_server.count("list") == 0 and fake_api_server.count("watch") == 1
    first = fake_api_server.requests[0].query
    assert first["sendInitialEvents"] == "true" and first["resourceVersionMatch"] == "NotOlderThan"
    assert p.reflector.stats.streaming_lists == 1 and p.reflector.stats.streaming_fallbacks == 0

    async with FakeApiServer() as server:
        seed(server, 5)
        server.fail_next(1, 500, verbs=["watch"])
        client = server.api_client()
        try:
            q = Pipeline(server, client, streaming_list=True)
            async with q.running():
                await q.converge()
                await eventually(lambda: server.count("watch") == 2)
            assert [r.verb for r in server.requests[:3]] == ["watch", "list", "watch"]
            assert q.reflector.stats.streaming_fallbacks == 1
        finally:
            await client.close()


async def test_streaming_relist_after_410_uses_consistent_read(fake_api_server: FakeApiServer,
                                                              fake_api_client: Any) -> None:
    seed(fake_api_server, 5)
    p = Pipeline(fake_api_server, fake_api_client, streaming_list=True)
    async with p.running():
        await p.converge()
        fake_api_server.stall_watches()
        await eventually(lambda: fake_api_server.open_watches == 1)
        fake_api_server.delete("configmaps", "cm-00000", "default")
        fake_api_server.compact()
        fake_api_server.stall_watches(False)
        fake_api_server.drop_watches()
        await p.converge()
    watches = [r.query for r in fake_api_server.requests if r.verb == "watch"]
    assert watches[-1].get("sendInitialEvents") == "true" and watches[-1]["resourceVersion"] == ""
    assert any(isinstance(d.object, DeletedFinalStateUnknown) for d in p.deltas)


async def test_cancellation_closes_the_watch(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    p = Pipeline(fake_api_server, fake_api_client)
    async with p.running():
        await p.reflector.wait_for_sync()
        await eventually(lambda: fake_api_server.open_watches == 1)
    await eventually(lambda: fake_api_server.open_watches == 0)
    assert isinstance(p.reflector.state, Stopped)


async def test_resync_timer_queues_sync_deltas(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 3)
    clock = FakeClock()
    p = Pipeline(fake_api_server, fake_api_client, clock=clock)
    p.reflector.resync_period = 30.0
    async with p.running():
        await p.converge()
        await clock.wait_for_sleepers()
        clock.advance(30)
        await eventually(lambda: sum(d.type is DeltaType.SYNC for d in p.deltas) == 3)
    assert p.reflector.stats.resyncs == 1


async def test_cluster_scoped_resource(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    for name in ("a", "b"):
        fake_api_server.create("namespaces", {"metadata": {"name": name}})
    p = Pipeline(fake_api_server, fake_api_client, resource=Resource.namespaces)
    async with p.running():
        await p.converge()
    assert sorted(p.state()) == ["a", "b"]
