"""Controllers on real informers over HTTP against FakeApiServer: the example operator
converging under conflicts, drops and a 410; backoff on a FakeClock; per-key serialisation
with 8 workers; graceful shutdown with work in flight; owner mapping through tombstones."""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import subprocess
import sys
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import anyio.lowlevel
import pytest
from kubernetes_asyncio.client import CoreV1Api

from kinformer import (
    Controller,
    ControllerState,
    DeletedFinalStateUnknown,
    InformerFactory,
    LeaderElector,
    LeadershipLostError,
    ListWatch,
    ReflectorConfig,
    Request,
    Resource,
    SharedIndexInformer,
)
from kinformer.testing import FakeApiServer, FakeClock, eventually, make_configmap
from tests.integration.harness import fast_backoff
from tests.leaderelection_harness import Partitionable

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "replicator.py"


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("replicator_example", EXAMPLE)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = load_example()


def fast_factory(api: Any) -> InformerFactory:
    return InformerFactory(api, reflector_config=ReflectorConfig(backoff=fast_backoff))


@asynccontextmanager
async def running(controller: Controller) -> AsyncIterator[None]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(controller.run)
        yield
        tg.cancel_scope.cancel()


def seed_sources(server: FakeApiServer, n: int) -> None:
    for i in range(n):
        cm = make_configmap(f"cm-{i:02d}", "src", v="0")
        cm["metadata"]["labels"] = {example.TARGET: "team-a" if i % 2 == 0 else "team-b"}
        server.create("configmaps", cm)


def edit(server: FakeApiServer, name: str, ns: str = "src", **changes: Any) -> None:
    server.update("configmaps", {**server.get("configmaps", name, ns), **changes})


def is_converged(server: FakeApiServer) -> bool:
    configmaps = server.objects("configmaps")
    return bool(example.expected_copies(configmaps) == example.actual_copies(configmaps))


async def test_the_example_converges_under_409_conflicts(fake_api_server: FakeApiServer,
                                                         fake_api_client: Any) -> None:
    server = fake_api_server
    seed_sources(server, 10)
    async with fast_factory(fake_api_client) as factory:
        controller = example.replicator(fake_api_client, factory)
        async with running(controller):
            await eventually(lambda: is_converged(server) and len(example.actual_copies(
                server.objects("configmaps"))) == 10)
            server.fail_next(3, 409, verbs=["update"])  # conflicts on the operator's replaces
            for i in range(10):
                edit(server, f"cm-{i:02d}", data={"v": "1"})
            for round_ in range(5):  # a racing writer edits the copies while the operator restores them
                for i in range(0, 10, 2):
                    edit(server, f"cm-{i:02d}", ns="team-a", data={"v": f"theirs-{round_}"})
                await anyio.lowlevel.checkpoint()
            await eventually(lambda: is_converged(server) and controller.stats().active == 0, 20)
            stats = controller.stats()
    assert stats.errors >= 3  # the injected 409s (and stale-resourceVersion ones) were retried
    copies = example.actual_copies(server.objects("configmaps"))
    assert all(data == {"v": "1"} for data in copies.values()) and len(copies) == 10


async def test_the_example_converges_across_watch_drops_and_a_410(fake_api_server: FakeApiServer,
                                                                  fake_api_client: Any) -> None:
    server = fake_api_server
    seed_sources(server, 12)
    async with fast_factory(fake_api_client) as factory:
        controller = example.replicator(fake_api_client, factory)
        async with running(controller):
            await eventually(lambda: is_converged(server))
            for round_ in range(3):
                server.drop_watches()
                edit(server, f"cm-{round_:02d}", data={"v": f"drop-{round_}"})
            # A partition long enough to lose history: every informer must relist (410).
            server.stall_watches()
            await eventually(lambda: server.open_watches == 2)
            server.delete("configmaps", "cm-05", "src")
            edit(server, "cm-06", metadata={**server.get("configmaps", "cm-06", "src")["metadata"],
                                            "labels": {example.TARGET: "team-a"}})  # moves its copy
            edit(server, "cm-07", data={"v": "during the partition"})
            server.compact()
            server.stall_watches(False)
            server.drop_watches()
            await eventually(lambda: is_converged(server), 20)
            informers = factory.informers.values()
            assert all(i.reflector is not None and i.reflector.stats.expired >= 1 for i in informers)
    copies = example.actual_copies(server.objects("configmaps"))
    assert "team-b/cm-05" not in copies and "team-a/cm-06" in copies and "team-b/cm-06" not in copies
    assert copies["team-b/cm-07"] == {"v": "during the partition"}


async def test_a_raising_reconcile_is_retried_with_backoff_on_the_fake_clock(
        fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    fake_api_server.create("configmaps", make_configmap("broken"))
    clock = FakeClock()
    attempts: list[float] = []

    async def reconcile(request: Request) -> None:
        attempts.append(clock.now())
        if len(attempts) < 6:
            raise RuntimeError("the API is having a bad day")

    informer = SharedIndexInformer(ListWatch(fake_api_client, Resource.configmaps))
    controller = Controller("retry", reconcile, clock=clock).watches(informer)
    async with informer, running(controller):
        for n in range(1, 6):
            await eventually(lambda n=n: len(attempts) == n)
            await clock.wait_for_sleepers()
            clock.advance(clock.sleeps[-1])
        await eventually(lambda: controller.stats().results.get("success") == 1)
    gaps = [round(b - a, 6) for a, b in itertools.pairwise(attempts)]
    assert gaps == [0.005, 0.01, 0.02, 0.04, 0.08]  # 5 ms doubling (client-go's default limiter)
    assert controller.stats().results == {"error": 5, "success": 1}


async def test_eight_workers_serialise_each_key_and_see_its_last_change(
        fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    server = fake_api_server
    names = [f"key-{i:02d}" for i in range(16)]
    for name in names:
        server.create("configmaps", make_configmap(name, v="0"))
    informer = SharedIndexInformer(ListWatch(fake_api_client, Resource.configmaps))
    in_flight: Counter[str] = Counter()
    peak = {"key": 0, "all": 0}
    seen: dict[str, str] = {}

    async def reconcile(request: Request) -> None:
        in_flight[request.name] += 1
        peak["key"] = max(peak["key"], in_flight[request.name])
        peak["all"] = max(peak["all"], sum(in_flight.values()))
        try:
            for _ in range(5):
                await anyio.lowlevel.checkpoint()
            obj = informer.indexer.get_by_key(request.key)
            seen[request.name] = obj["data"]["v"] if obj is not None else ""
        finally:
            in_flight[request.name] -= 1

    controller = Controller("serial", reconcile, workers=8).watches(informer)
    async with informer, running(controller):
        await eventually(lambda: len(seen) == 16)
        for round_ in range(1, 21):
            for name in names:
                edit(server, name, ns="default", data={"v": str(round_)})
            await anyio.lowlevel.checkpoint()
        await eventually(lambda: all(v == "20" for v in seen.values()) and controller.stats().active == 0, 20)
    assert peak["key"] == 1 and peak["all"] > 1


async def test_graceful_shutdown_lets_in_flight_writes_land(fake_api_server: FakeApiServer,
                                                            fake_api_client: Any) -> None:
    server = fake_api_server
    for name in ("slow-1", "slow-2"):
        server.create("configmaps", make_configmap(name))
    informer = SharedIndexInformer(ListWatch(fake_api_client, Resource.configmaps))
    release = anyio.Event()
    started: list[str] = []

    async def reconcile(request: Request) -> None:
        started.append(request.name)
        if request.name.startswith("slow"):
            await release.wait()
            # A write over HTTP after the cancellation: the reconcile is shielded, so it lands.
            await CoreV1Api(fake_api_client).patch_namespaced_config_map(
                request.name, "default", {"data": {"done": "yes"}})

    controller = Controller("shutdown", reconcile, workers=2, priority_queue=False).watches(informer)
    scope = anyio.CancelScope()
    ended = anyio.Event()

    async def run() -> None:
        with scope:
            await controller.run()
        ended.set()

    async with informer, anyio.create_task_group() as tg:
        tg.start_soon(run)
        await eventually(lambda: sorted(started) == ["slow-1", "slow-2"])
        server.create("configmaps", make_configmap("queued"))
        await eventually(lambda: controller.stats().queued == 1)
        scope.cancel()
        await eventually(lambda: controller.state is ControllerState.STOPPING)
        release.set()
        await eventually(ended.is_set)
    assert sorted(started) == ["slow-1", "slow-2"]  # "queued" was never taken
    assert all(server.get("configmaps", n, "default")["data"] == {"done": "yes"} for n in ("slow-1", "slow-2"))


async def test_owners_are_reconciled_for_children_deleted_during_a_partition(
        fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    server = fake_api_server
    for p in range(4):
        parent = server.create("configmaps", make_configmap(f"parent-{p}"))
        for c in range(2):
            server.create("secrets", {"metadata": {
                "name": f"child-{p}-{c}", "namespace": "default",
                "ownerReferences": [{"apiVersion": "v1", "kind": "ConfigMap", "name": f"parent-{p}",
                                     "uid": parent["metadata"]["uid"], "controller": True}]}})
    config = ReflectorConfig(backoff=fast_backoff)
    parents = SharedIndexInformer(ListWatch(fake_api_client, Resource.configmaps), reflector_config=config)
    children = SharedIndexInformer(ListWatch(fake_api_client, Resource.secrets), reflector_config=config)
    tombstones: list[DeletedFinalStateUnknown] = []
    children.add_event_handler(on_delete=lambda o: tombstones.append(o) if isinstance(
        o, DeletedFinalStateUnknown) else None)
    reconciled: list[Request] = []

    async def reconcile(request: Request) -> None:
        reconciled.append(request)

    controller = Controller("owners", reconcile).watches(parents).owns(children)
    async with parents, children, running(controller):
        await eventually(lambda: len(reconciled) == 4 and controller.stats().active == 0)
        reconciled.clear()
        server.stall_watches()
        await eventually(lambda: server.open_watches == 2)
        server.delete("secrets", "child-1-0", "default")
        server.delete("secrets", "child-3-1", "default")
        server.compact()
        server.stall_watches(False)
        server.drop_watches()
        await eventually(lambda: len(tombstones) == 2 and set(reconciled) >= {Request("default", "parent-1"),
                                                                             Request("default", "parent-3")})
        await eventually(lambda: controller.stats().active == 0)
    assert sorted(t.key for t in tombstones) == ["default/child-1-0", "default/child-3-1"]
    assert set(reconciled) == {Request("default", "parent-1"), Request("default", "parent-3")}


def test_the_example_runs_with_fake_and_converges() -> None:
    result = subprocess.run([sys.executable, str(EXAMPLE), "--fake"], capture_output=True, text=True,
                            timeout=120, cwd=ROOT, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "initial sync: 19 copies, converged=True" in result.stdout
    assert "after churn: 18 copies, converged=True" in result.stdout


def test_the_readme_shows_the_examples_operator_in_at_most_40_lines() -> None:
    source = EXAMPLE.read_text()
    start = source.index("\n", source.index("# -- the operator (README.md shows this part)")) + 1
    operator = source[start:source.index("# -- end of the operator")].rstrip("\n")
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## Operators"):]
    start = section.index("```python\n") + len("```python\n")
    block = section[start:section.index("\n```", start)]
    assert block == operator
    assert len(block.splitlines()) <= 40


@pytest.mark.parametrize("drop", [False, True])
async def test_a_restarted_controller_reconciles_everything_again(fake_api_server: FakeApiServer,
                                                                  fake_api_client: Any, drop: bool) -> None:
    for i in range(5):
        fake_api_server.create("configmaps", make_configmap(f"cm-{i}"))
    informer = SharedIndexInformer(ListWatch(fake_api_client, Resource.configmaps),
                                   reflector_config=ReflectorConfig(backoff=fast_backoff))
    counts: Counter[str] = Counter()

    async def reconcile(request: Request) -> None:
        counts[request.name] += 1

    controller = Controller("again", reconcile).watches(informer)
    async with informer:
        async with running(controller):
            await eventually(lambda: len(counts) == 5)
        if drop:
            fake_api_server.drop_watches()
        async with running(controller):  # like a re-elected leader: the cache is replayed
            await eventually(lambda: all(n == 2 for n in counts.values()) and len(counts) == 5)


# -- leader election ---------------------------------------------------------------------------


class Replica:
    """One operator replica: its own client, informer, controller and elector; a shared FakeClock."""

    def __init__(self, server: FakeApiServer, clock: FakeClock, identity: str, *, block: str | None = None) -> None:
        self.identity = identity
        self.api = server.api_client()
        self.lease_api = Partitionable(self.api)
        self.informer = SharedIndexInformer(ListWatch(self.api, Resource.configmaps),
                                            reflector_config=ReflectorConfig(backoff=fast_backoff))
        self.reconciled: list[str] = []
        self.cancelled_at: list[float] = []
        self.started_at: list[float] = []
        self.outcome: str | None = None
        self.done = anyio.Event()
        self.scope = anyio.CancelScope()
        self.clock = clock

        async def reconcile(request: Request) -> None:
            self.reconciled.append(request.name)
            if request.name == block:
                try:
                    await anyio.sleep_forever()
                except anyio.get_cancelled_exc_class():
                    self.cancelled_at.append(clock.now())
                    raise

        self.controller = Controller("ha", reconcile, clock=clock).watches(self.informer)
        self.elector = LeaderElector(self.lease_api, "ha", "default", identity, clock=clock, rand=lambda: 0.0,
                                     on_started_leading=lambda: self.started_at.append(clock.now()))

    async def run(self) -> None:
        try:
            with self.scope:
                await self.controller.run(leader_election=self.elector)
            self.outcome = "cancelled" if self.scope.cancelled_caught else "returned"
        except LeadershipLostError:
            self.outcome = "lost"
        finally:
            self.done.set()

    async def close(self) -> None:
        await self.api.close()


@asynccontextmanager
async def replicas(server: FakeApiServer, clock: FakeClock, *specs: tuple[str, str | None]) -> AsyncIterator[
        tuple[Replica, ...]]:
    group = tuple(Replica(server, clock, identity, block=block) for identity, block in specs)
    try:
        async with contextlib.AsyncExitStack() as stack:
            for replica in group:
                await stack.enter_async_context(replica.informer)
            async with anyio.create_task_group() as tg:
                for replica in group:
                    tg.start_soon(replica.run)
                yield group
                tg.cancel_scope.cancel()
    finally:
        for replica in group:
            await replica.close()


async def test_only_the_leader_reconciles_and_a_release_hands_over_at_once(fake_api_server: FakeApiServer) -> None:
    for i in range(5):
        fake_api_server.create("configmaps", make_configmap(f"cm-{i}"))
    clock = FakeClock()
    async with replicas(fake_api_server, clock, ("a", None)) as (a,):
        await clock.advance_until(lambda: len(a.reconciled) == 5, step=0.25)
        async with replicas(fake_api_server, clock, ("b", None)) as (b,):
            until = clock.now() + 30
            await clock.advance_until(lambda: clock.now() >= until, step=0.25)  # 15 renewals later
            assert a.elector.is_leader() and b.reconciled == [] and b.controller.state is ControllerState.CANDIDATE
            a.scope.cancel()
            await eventually(a.done.is_set)
            released = clock.now()
            await clock.advance_until(lambda: len(b.reconciled) == 5, step=0.25)
            assert b.started_at[0] - released <= 2.0  # the next attempt (retry_period, no jitter)
            assert a.outcome == "cancelled" and a.controller.state is ControllerState.IDLE
    assert sorted(b.reconciled) == [f"cm-{i}" for i in range(5)]


async def test_a_partitioned_leader_cancels_its_reconciles_before_another_can_lead(
        fake_api_server: FakeApiServer) -> None:
    fake_api_server.create("configmaps", make_configmap("slow"))
    clock = FakeClock()
    async with replicas(fake_api_server, clock, ("a", "slow")) as (a,):
        await clock.advance_until(lambda: a.reconciled == ["slow"], step=0.25)
        async with replicas(fake_api_server, clock, ("b", None)) as (b,):
            await clock.advance_until(lambda: b.elector.leader == "a", step=0.25)
            a.lease_api.partition("fail")  # renewals fail from now on; its reconcile is still running
            last_renewal = clock.now() + a.elector.safe_time_left() - a.elector.lease_duration
            await clock.advance_until(lambda: bool(b.started_at), step=0.25)
            await eventually(a.done.is_set)
            assert a.outcome == "lost"
            # A stopped at its renew deadline and cancelled the reconcile in flight one safety
            # margin before the lease could be taken over; b took it over only after that.
            assert a.cancelled_at[0] <= last_renewal + 15 - 1.0 < b.started_at[0]
            assert b.started_at[0] >= last_renewal + 15
            await clock.advance_until(lambda: b.reconciled == ["slow"], step=0.25)


async def test_controllers_share_an_elector_entered_by_the_caller(fake_api_server: FakeApiServer,
                                                                  fake_api_client: Any) -> None:
    fake_api_server.create("configmaps", make_configmap("one"))
    fake_api_server.create("secrets", {"metadata": {"name": "two", "namespace": "default"}})
    clock = FakeClock()
    seen: list[str] = []

    async def reconcile(request: Request) -> None:
        seen.append(request.name)

    configmaps = SharedIndexInformer(ListWatch(fake_api_client, Resource.configmaps))
    secrets = SharedIndexInformer(ListWatch(fake_api_client, Resource.secrets))
    elector = LeaderElector(fake_api_client, "shared", "default", "me", clock=clock)
    first = Controller("first", reconcile, clock=clock).watches(configmaps)
    second = Controller("second", reconcile, clock=clock).watches(secrets)
    async with configmaps, secrets, anyio.create_task_group() as tg:
        async def lead() -> None:
            async with elector.leading(), anyio.create_task_group() as inner:
                inner.start_soon(functools.partial(first.run, leader_election=elector))
                inner.start_soon(functools.partial(second.run, leader_election=elector))

        tg.start_soon(lead)
        await eventually(lambda: sorted(seen) == ["one", "two"])
        assert first.state is second.state is ControllerState.RUNNING
        tg.cancel_scope.cancel()
    assert first.state is second.state is ControllerState.IDLE
    assert fake_api_server.get(Resource.leases, "shared", "default")["spec"]["holderIdentity"] == ""  # released
