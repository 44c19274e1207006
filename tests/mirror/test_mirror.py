"""Three FakeApiServers mirrored into SQLite and into PostgreSQL: the database equals the
servers exactly after churn, dropped watches, a 410, a database outage, and a process
restart with deletes while down (which resumes without a relist when history allows)."""

from __future__ import annotations

import random
import sqlite3
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.lowlevel
import pytest

from kinformer import Resource
from kinformer.backoff import Backoff
from kinformer.clock import Clock
from kinformer.mirror.storage import MirrorStorage
from kinformer.mirror.sync import Mirror
from kinformer.reflector import ReflectorConfig
from kinformer.testing import FakeApiServer, eventually, make_configmap, make_pod
from tests.mirror.conftest import Db

RESOURCES = [Resource.configmaps, Resource.pods]


def fast_backoff(clock: Clock) -> Backoff:
    return Backoff(initial=0.01, cap=0.05, clock=clock)


def new_mirror(storage: MirrorStorage, **kwargs: Any) -> Mirror:
    kwargs.setdefault("max_concurrent_lists", 2)
    return Mirror(storage, reflector_config=ReflectorConfig(backoff=fast_backoff), retry_initial=0.02,
                  retry_cap=0.2, checkpoint_interval=0.05, **kwargs)


@asynccontextmanager
async def servers(n: int = 3) -> AsyncIterator[list[FakeApiServer]]:
    started: list[FakeApiServer] = []
    try:
        for _ in range(n):
            s = FakeApiServer(bookmark_interval=0.1)
            await s.start()
            started.append(s)
        yield started
    finally:
        for s in started:
            await s.stop()


def seed(server: FakeApiServer, rng: random.Random, n: int = 30) -> None:
    for i in range(n):
        server.create("configmaps", make_configmap(f"cm-{i}", f"ns-{i % 3}", v=str(rng.random())))
        server.create("pods", make_pod(i, f"ns-{i % 2}", size=300))


def churn(server: FakeApiServer, rng: random.Random, steps: int = 40) -> None:
    for step in range(steps):
        objs = server.objects("configmaps")
        choice = rng.random()
        if choice < 0.3 or not objs:
            server.create("configmaps", make_configmap(f"new-{step}-{rng.randrange(10**6)}", "ns-0"))
        elif choice < 0.7:
            obj = objs[rng.choice(sorted(objs))]
            server.update("configmaps", {**obj, "data": {"v": str(rng.random())}})
        else:
            obj = objs[rng.choice(sorted(objs))]
            server.delete("configmaps", obj)
        pods = server.objects("pods")
        if pods and rng.random() < 0.3:
            server.delete("pods", pods[rng.choice(sorted(pods))])


def without_managed_fields(obj: dict[str, Any]) -> dict[str, Any]:
    """What the mirror stores: ListWatch drops managedFields at decode."""
    return {**obj, "metadata": {k: v for k, v in obj["metadata"].items() if k != "managedFields"}}


async def differences(storage: MirrorStorage, named: dict[str, FakeApiServer]) -> list[str]:
    out = []
    for name, server in named.items():
        for res in RESOURCES:
            stored = await storage.objects(name, res)
            live = {k: without_managed_fields(o) for k, o in server.objects(res).items()}
            if stored != live:
                missing = sorted(set(live) - set(stored))[:3]
                extra = sorted(set(stored) - set(live))[:3]
                stale = sorted(k for k in set(live) & set(stored) if live[k] != stored[k])[:3]
                out.append(f"{name}/{res.plural}: missing {missing} extra {extra} stale {stale}")
    return out


async def converge(mirror: Mirror, storage: MirrorStorage, named: dict[str, FakeApiServer],
                   timeout: float = 20.0) -> None:
    """Until the database equals every server (the mirror's state is checked, then the rows)."""
    diff: list[str] = []
    with anyio.move_on_after(timeout):
        while True:
            await mirror.wait_for_sync(timeout)
            diff = await differences(storage, named)
            if not diff:
                return
            await anyio.sleep(0.05)
    raise AssertionError(f"mirror did not converge: {diff}")


async def add_all(mirror: Mirror, named: dict[str, FakeApiServer], clients: dict[str, Any]) -> None:
    for name, server in named.items():
        clients.setdefault(name, server.api_client())
        await mirror.add_cluster(name, clients[name], resources=RESOURCES)


class SqliteLock:
    """Another process's write lock on the SQLite file: writes fail (busy) until released."""

    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None, timeout=0.1)

    def take(self) -> None:
        self.conn.execute("BEGIN EXCLUSIVE")

    def release(self) -> None:
        self.conn.execute("ROLLBACK")
        self.conn.close()


def outage(db: Db) -> tuple[Callable[[], None], Callable[[], None]]:
    """(stop, start) of the database."""
    if db.server is not None:
        return db.server.stop, db.server.start
    lock = SqliteLock(db.url.split(":///", 1)[1])
    return lock.take, lock.release


async def test_three_clusters_mirror_exactly_through_faults(db: Db) -> None:
    rng = random.Random(7)
    clients: dict[str, Any] = {}
    async with servers() as (a, b, c):
        named = {"a": a, "b": b, "c": c}
        for s in named.values():
            seed(s, rng)
        async with db.storage(busy_timeout=0.05) as storage:
            async with new_mirror(storage) as mirror:
                await add_all(mirror, named, clients)
                await converge(mirror, storage, named)
                assert mirror.health().healthy
                # churn, dropped watches, a compaction (410) while a watch is open
                for s in named.values():
                    churn(s, rng)
                a.drop_watches()
                churn(b, rng)
                c.compact()
                churn(c, rng)
                await converge(mirror, storage, named)
                informer = mirror.clusters["c"].informer(Resource.configmaps)
                assert informer is not None and informer.reflector.stats.expired >= 1
                # a database outage mid-sync: writes pause, the informers block, nothing is lost
                stop_db, start_db = outage(db)
                stop_db()
                try:
                    for s in named.values():
                        churn(s, rng, 60)
                    await eventually(lambda: not mirror.writer.health().healthy, 20)
                    assert mirror.writer.health().pending > 0
                    assert not mirror.health().healthy
                finally:
                    start_db()
                await converge(mirror, storage, named, timeout=30)
                assert mirror.writer.health().healthy and mirror.writer.stats.retries >= 1
            lists_before = {n: s.count("list") for n, s in named.items()}
            # down: deletes, updates and creates the new process must find
            for s in named.values():
                for key in sorted(s.objects("configmaps"))[:5]:
                    s.delete("configmaps", s.objects("configmaps")[key])
                churn(s, rng, 10)
            b.compact()  # b's history is gone: only b relists
        async with db.storage() as storage, new_mirror(storage) as mirror:
            await add_all(mirror, named, clients)
            await converge(mirror, storage, named)
            lists_after = {n: s.count("list") - lists_before[n] for n, s in named.items()}
            assert lists_after == {"a": 0, "b": len(RESOURCES), "c": 0}
            # unchanged rows were not rewritten: only what changed while down was written
            assert 0 < storage.stats.upserted < 60, storage.stats
        for client in clients.values():
            await client.close()


async def test_remove_cluster_purges_or_keeps_rows(db: Db) -> None:
    rng = random.Random(3)
    async with servers(2) as (a, b):
        named = {"a": a, "b": b}
        for s in named.values():
            seed(s, rng, 5)
        clients: dict[str, Any] = {}
        async with db.storage() as storage, new_mirror(storage) as mirror:
            await add_all(mirror, named, clients)
            await converge(mirror, storage, named)
            await mirror.remove_cluster("a", purge=True)
            await mirror.remove_cluster("b", purge=False)
            assert await storage.count("a") == 0 and await storage.count("b") == 10
            assert list(await storage.mirrored()) == ["b"]
            with pytest.raises(ValueError, match="not mirrored"):
                await mirror.remove_cluster("a")
        for client in clients.values():
            await client.close()


async def test_an_unreachable_cluster_pauses_and_keeps_its_rows(tmp_path: Any) -> None:
    rng = random.Random(5)
    async with servers(2) as (a, b):
        seed(a, rng, 5)
        seed(b, rng, 5)
        clients = {"a": a.api_client(), "b": b.api_client()}
        async with MirrorStorage(f"sqlite:///{tmp_path / 'm.db'}") as storage, new_mirror(storage) as mirror:
            await add_all(mirror, {"a": a, "b": b}, clients)
            await converge(mirror, storage, {"a": a, "b": b})
            await b.stop()
            await eventually(lambda: not mirror.health().clusters["b"].reachable)
            health = mirror.health()
            assert health.clusters["a"].healthy and not health.clusters["b"].healthy
            churn(a, rng, 10)
            await converge(mirror, storage, {"a": a})
            assert await storage.count("b") == 10
        for client in clients.values():
            await client.close()


async def test_concurrent_lists_are_capped(tmp_path: Any) -> None:
    async with servers(3) as named_servers:
        for s in named_servers:
            for i in range(40):
                s.create("configmaps", make_configmap(f"cm-{i}", "d"))
        async with MirrorStorage(f"sqlite:///{tmp_path / 'm.db'}") as storage:
            mirror = new_mirror(storage, max_concurrent_lists=1)
            peak = 0
            gate = mirror.list_gate

            async def watch_gate() -> None:
                nonlocal peak
                while True:
                    peak = max(peak, 1 - gate.value)
                    await anyio.lowlevel.checkpoint()

            clients = [s.api_client() for s in named_servers]
            async with mirror, anyio.create_task_group() as tg:
                tg.start_soon(watch_gate)
                for i, client in enumerate(clients):
                    await mirror.add_cluster(f"c{i}", client, resources=[Resource.configmaps])
                assert await mirror.wait_for_sync(20)
                tg.cancel_scope.cancel()
            assert peak == 1 and await storage.count() == 120
            for client in clients:
                await client.close()
