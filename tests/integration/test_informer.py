"""SharedIndexInformer, Lister and InformerFactory against FakeApiServer over real HTTP."""

from __future__ import annotations

import asyncio
import statistics
import time
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from kinformer import (
    DeletedFinalStateUnknown,
    InformerFactory,
    Lister,
    ListWatch,
    Resource,
    SharedIndexInformer,
)
from kinformer.testing import FakeApiServer, FakeClock, eventually, make_configmap, make_pod


def informer(server: FakeApiServer, client: Any, resource: Resource = Resource.configmaps,
             **kw: Any) -> SharedIndexInformer:
    return SharedIndexInformer(ListWatch(client, resource), **kw)


def seed(server: FakeApiServer, n: int, ns: str = "default") -> None:
    for i in range(n):
        server.create("configmaps", make_configmap(f"cm-{i:04d}", ns))


def touch(server: FakeApiServer, name: str, value: str, ns: str = "default") -> None:
    server.update("configmaps", {**server.get("configmaps", name, ns), "data": {"v": value}})


class Recorder:
    def __init__(self) -> None:
        self.view: dict[str, Any] = {}
        self.calls: list[tuple[str, ...]] = []

    def on_add(self, obj: Any, initial: bool) -> None:
        key = f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
        assert key not in self.view
        self.view[key] = obj
        self.calls.append(("add", key, str(initial)))

    def on_update(self, old: Any, new: Any) -> None:
        key = f"{new['metadata'].get('namespace')}/{new['metadata']['name']}"
        assert self.view[key] is old
        self.view[key] = new
        self.calls.append(("update", key))

    def on_delete(self, obj: Any) -> None:
        key = obj.key if isinstance(obj, DeletedFinalStateUnknown) else \
            f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"
        del self.view[key]
        self.calls.append(("delete", key))


async def test_informer_dispatches_and_caches(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 5)
    inf = informer(fake_api_server, fake_api_client)
    rec = Recorder()
    reg = inf.add_event_handler(rec)  # an object with on_add/on_update/on_delete
    async with inf:
        assert await inf.wait_for_sync(10)
        await reg.wait_synced()
        assert all(c[2] == "True" for c in rec.calls)
        touch(fake_api_server, "cm-0001", "x")
        fake_api_server.delete("configmaps", "cm-0002", "default")
        fake_api_server.create("configmaps", make_configmap("new"))
        await eventually(lambda: len(rec.calls) == 8)
        assert rec.view == {k: v for k, v in inf.indexer.items()}
        assert rec.calls[5:] == [("update", "default/cm-0001"), ("delete", "default/cm-0002"),
                                 ("add", "default/new", "False")]
        assert inf.last_sync_resource_version == fake_api_server.resource_version
        lister = Lister(inf.indexer)
        assert lister.get("cm-0001", "default")["data"] == {"v": "x"}
        assert lister.get("missing", "default") is None
        assert len(lister.list(namespace="default")) == 5
        assert lister.list(namespace="other") == []


async def test_coroutine_handlers_and_errors_do_not_stop_delivery(fake_api_server: FakeApiServer,
                                                                 fake_api_client: Any) -> None:
    seed(fake_api_server, 3)
    inf = informer(fake_api_server, fake_api_client)
    seen: list[str] = []

    async def on_add(obj: Any, initial: bool) -> None:
        await anyio.lowlevel.checkpoint()
        if obj["metadata"]["name"] == "cm-0001":
            raise RuntimeError("handler bug")
        seen.append(obj["metadata"]["name"])

    reg = inf.add_event_handler(on_add)
    async with inf:
        await reg.wait_synced()
        assert seen == ["cm-0000", "cm-0002"]
        assert reg.stats().errors == 1


async def test_late_registration_replays_cache(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 20)
    inf = informer(fake_api_server, fake_api_client)
    async with inf:
        await inf.wait_for_sync(10)
        rec = Recorder()
        gate = anyio.Event()

        async def on_add(obj: Any, initial: bool) -> None:
            await gate.wait()
            rec.on_add(obj, initial)

        reg = inf.add_event_handler(on_add, rec.on_update, rec.on_delete)
        touch(fake_api_server, "cm-0003", "late")
        await anyio.wait_all_tasks_blocked()
        assert not reg.has_synced()
        gate.set()
        await reg.wait_synced()
        # The update that raced the registration reaches the handler (replayed or delivered)...
        await eventually(lambda: rec.view["default/cm-0003"]["data"] == {"v": "late"})
        assert rec.view == {k: v for k, v in inf.indexer.items()}
        # ...and every object was added exactly once, flagged as the initial list.
        adds = [c for c in rec.calls if c[0] == "add"]
        assert len(adds) == 20 and all(c[2] == "True" for c in adds)


async def test_remove_stops_delivery(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    inf = informer(fake_api_server, fake_api_client)
    a, b = Recorder(), Recorder()
    reg_a = inf.add_event_handler(a)
    inf.add_event_handler(b)
    async with inf:
        await inf.wait_for_sync(10)
        fake_api_server.create("configmaps", make_configmap("one"))
        await eventually(lambda: len(a.calls) == 1 and len(b.calls) == 1)
        reg_a.remove()
        fake_api_server.create("configmaps", make_configmap("two"))
        await eventually(lambda: len(b.calls) == 2)
        assert len(a.calls) == 1


async def _isolation_run(server: FakeApiServer, client: Any, blocked: bool, objects: int,
                         events: int) -> tuple[list[float], Any]:
    """Write `events` updates at a steady pace; return the fast handlers' delivery latencies
    (server write → handler call) and the blocked handler's stats (if any)."""
    inf = informer(server, client)
    stuck = anyio.Event()
    slow_calls = 0

    async def slow(old: Any, new: Any) -> None:
        nonlocal slow_calls
        slow_calls += 1
        await stuck.wait()

    latencies: list[float] = []
    written: dict[str, float] = {}
    fast_views = [Recorder() for _ in range(3)]

    def timed(rec: Recorder) -> Any:
        def on_update(old: Any, new: Any) -> None:
            rec.on_update(old, new)
            t = written.get(new["metadata"]["resourceVersion"])
            if t is not None:
                latencies.append(time.perf_counter() - t)
        return on_update

    slow_reg = inf.add_event_handler(on_update=slow, max_pending=100) if blocked else None
    fast_regs = [inf.add_event_handler(r.on_add, timed(r), r.on_delete) for r in fast_views]
    async with inf:
        await inf.wait_for_sync(10)
        for reg in fast_regs:
            await reg.wait_synced()
        before = [len(r.calls) for r in fast_views]
        for i in range(events):
            name = f"cm-{i % objects:04d}"
            server.update("configmaps", {**server.get("configmaps", name, "default"), "data": {"v": str(i)}})
            written[server.resource_version] = time.perf_counter()
            if i % 10 == 9:
                await anyio.sleep(0.002)  # pacing the writer, not synchronisation
        await eventually(lambda: all(len(r.calls) == b + events for r, b in zip(fast_views, before, strict=True)), 30)
        for r in fast_views:
            assert r.view == {k: v for k, v in inf.indexer.items()}
        stats = None
        if slow_reg is not None:
            stats = slow_reg.stats()
            assert slow_calls == 1
            assert stats.coalescing and stats.backlog <= objects
            assert stats.peak_backlog <= 100
            stuck.set()
            await eventually(lambda: slow_reg.stats().backlog == 0)
    return latencies, stats


async def test_slow_handler_is_isolated_and_bounded(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    """One handler blocked; three others get every event; the blocked one's memory stays
    bounded by the number of objects (coalescing). Latencies are printed, not asserted:
    timing belongs to the benchmarks."""
    objects, events = 50, 3000
    seed(fake_api_server, objects)
    baseline, _ = await _isolation_run(fake_api_server, fake_api_client, False, objects, events)
    with_blocked, stats = await _isolation_run(fake_api_server, fake_api_client, True, objects, events)

    def pct(xs: list[float], q: int) -> float:
        return statistics.quantiles(xs, n=100)[q - 1] * 1000

    print(f"\nslow-handler isolation ({events} events over {objects} objects, 3 fast handlers): "
          f"fast p50/p99 without a blocked handler {pct(baseline, 50):.2f}/{pct(baseline, 99):.2f} ms, "
          f"with one {pct(with_blocked, 50):.2f}/{pct(with_blocked, 99):.2f} ms; blocked handler peak "
          f"backlog {stats.peak_backlog} (max_pending 100), {stats.backlog} pending at the end "
          f"({stats.coalesced} notifications coalesced)")


async def test_block_policy_delivers_every_event(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 3)
    inf = informer(fake_api_server, fake_api_client)
    seen: list[str] = []

    async def on_update(old: Any, new: Any) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(new["data"]["v"])

    inf.add_event_handler(on_update=on_update, max_pending=2, overflow="block")
    async with inf:
        await inf.wait_for_sync(10)
        for i in range(60):
            touch(fake_api_server, "cm-0000", str(i))
        await eventually(lambda: len(seen) == 60)
    assert seen == [str(i) for i in range(60)]


async def test_resync_with_fake_clock(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 4)
    clock = FakeClock()
    inf = informer(fake_api_server, fake_api_client, resync_period=30.0, clock=clock)
    resynced: list[str] = []
    never: list[str] = []
    inf.add_event_handler(on_update=lambda old, new: resynced.append(new["metadata"]["name"]))
    inf.add_event_handler(on_update=lambda old, new: never.append(new["metadata"]["name"]), resync_period=0)
    slower: list[str] = []
    inf.add_event_handler(on_update=lambda old, new: slower.append(new["metadata"]["name"]), resync_period=60)
    assert inf.resync_check_period == 30
    async with inf:
        await inf.wait_for_sync(10)
        await clock.wait_for_sleepers()
        clock.advance(30)
        await eventually(lambda: len(resynced) == 4)
        await clock.wait_for_sleepers()
        clock.advance(30)
        await eventually(lambda: len(resynced) == 8 and len(slower) == 4)
        assert never == []
        late: list[str] = []
        reg = inf.add_event_handler(on_update=lambda old, new: late.append("x"), resync_period=5)
        assert reg.listener.resync_period == 30  # raised to the check period after start


async def test_resync_period_rules_before_start(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    inf = informer(fake_api_server, fake_api_client)
    reg = inf.add_event_handler(on_add=lambda o, i: None, resync_period=0.2)
    assert reg.listener.resync_period == 1.0 and inf.resync_check_period == 1.0
    reg2 = inf.add_event_handler(on_add=lambda o, i: None, resync_period=10)
    assert reg2.listener.resync_period == 10


async def test_events_iterator(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    seed(fake_api_server, 2)
    inf = informer(fake_api_server, fake_api_client)
    async with inf:
        await inf.wait_for_sync(10)
        async with inf.events(max_pending=8) as events:
            got = []
            touch(fake_api_server, "cm-0000", "e")
            async for ev in events:
                got.append((ev.type, ev.object["metadata"]["name"], ev.is_in_initial_list))
                if len(got) == 3:
                    break
    assert got[:2] == [("ADDED", "cm-0000", True), ("ADDED", "cm-0001", True)]
    assert got[2] == ("MODIFIED", "cm-0000", False)


async def test_transform_prunes_before_caching(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    fake_api_server.create("pods", make_pod(1, "ns"))

    def slim(obj: Any) -> Any:
        return {"metadata": obj["metadata"], "status": {"phase": obj["status"]["phase"]}}

    inf = informer(fake_api_server, fake_api_client, Resource.pods, transform=slim)
    async with inf:
        await inf.wait_for_sync(10)
        (pod,) = inf.indexer.list()
        assert set(pod) == {"metadata", "status"}


async def test_factory_shares_informers_and_stops_cleanly(fake_api_server: FakeApiServer,
                                                         fake_api_client: Any) -> None:
    seed(fake_api_server, 3)
    fake_api_server.create("pods", make_pod(1, "default"))

    def client_tasks() -> int:
        """Tasks of the client side: not the fake server's own aiohttp/handler tasks."""
        def server_side(task: asyncio.Task[Any]) -> bool:
            code = getattr(task.get_coro(), "cr_code", None)
            filename = code.co_filename if code is not None else ""
            return "aiohttp" in filename or "kinformer/testing" in filename
        return sum(1 for t in asyncio.all_tasks() if not server_side(t))

    baseline = client_tasks()
    factory = InformerFactory(fake_api_client, namespace="default")
    first = factory.informer(Resource.configmaps)
    assert factory.informer("configmaps") is first
    assert factory.informer(Resource.configmaps, label_selector="a=b") is not first
    async with factory:
        pods = factory.informer("pods")  # requested after start: started too
        synced = await factory.wait_for_cache_sync(10)
        assert synced == {Resource.configmaps: True, Resource.pods: True}
        assert pods.has_synced() and len(factory.lister("pods").list()) == 1
        await eventually(lambda: fake_api_server.open_watches == 3)
        watches = [r for r in fake_api_server.requests if r.verb == "watch" and "configmaps" in r.path
                   and "labelSelector" not in r.query]
        assert len(watches) == 1
    await eventually(lambda: fake_api_server.open_watches == 0)
    assert client_tasks() == baseline
    with pytest.raises(Exception, match="stopped"):
        first.add_event_handler(on_add=lambda o, i: None)
