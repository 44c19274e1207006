"""The soak's shape against the real kube-apiserver: writes with drops and compactions.

Informers (full, metadata-only, label-selected) watch through the loopback TCP proxy, which
drops every connection on a schedule and, now and then, refuses connections while objects
are deleted and etcd is compacted past the informers' RV (a real 410 → relist with
tombstones). At the end each cache and each handler-maintained mirror equals a consistent
list of the server. KINFORMER_E2E_SOAK_EVENTS sets the size (default 100,000 writes).
"""

from __future__ import annotations

import asyncio
import os
import random
from typing import Any

import anyio

from kinformer import DeletedFinalStateUnknown, ListWatch, Resource, SharedIndexInformer
from kinformer.testing import eventually
from tests.e2e.conftest import TcpProxy, raw
from tests.e2e.controlplane.cluster import Endpoints
from tests.e2e.helpers import cache_state, compact_etcd, converge, fast_config, server_state

CM = Resource.configmaps
EVENTS = int(os.environ.get("KINFORMER_E2E_SOAK_EVENTS", "100000"))
KEYS = 500


class Mirror:
    def __init__(self) -> None:
        self.view: dict[str, str] = {}
        self.tombstones = 0

    def on_add(self, obj: Any, initial: bool) -> None:
        self.view[f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"] = obj["metadata"]["resourceVersion"]

    def on_update(self, old: Any, new: Any) -> None:
        self.on_add(new, False)

    def on_delete(self, obj: Any) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            self.tombstones += 1
            self.view.pop(obj.key, None)
        else:
            self.view.pop(f"{obj['metadata']['namespace']}/{obj['metadata']['name']}", None)


async def test_soak_against_the_real_server(cluster: Endpoints, api: Any, proxied_api: Any, proxy: TcpProxy,
                                            namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/configmaps"
    rng = random.Random(3)
    informers = {
        "full": SharedIndexInformer(ListWatch(proxied_api, CM, namespace), reflector_config=fast_config()),
        "metadata": SharedIndexInformer(ListWatch(proxied_api, CM, namespace, metadata_only=True),
                                        reflector_config=fast_config()),
        "tier=a": SharedIndexInformer(ListWatch(proxied_api, CM, namespace, "tier=a"), reflector_config=fast_config()),
    }
    mirrors = {name: Mirror() for name in informers}
    for name, inf in informers.items():
        m = mirrors[name]
        inf.add_event_handler(m.on_add, m.on_update, m.on_delete)
    live: dict[int, str] = {}  # key index → last RV written
    sem = asyncio.Semaphore(25)
    lock = {i: asyncio.Lock() for i in range(KEYS)}

    async def write(i: int, n: int) -> None:
        async with sem, lock[i]:
            name = f"k-{i:04d}"
            if i not in live:
                body = {"metadata": {"name": name, "labels": {"tier": rng.choice("ab")}}, "data": {"n": str(n)}}
                status, obj = await raw(api, "POST", path, body)
                assert status == 201, obj
                live[i] = obj["metadata"]["resourceVersion"]
            elif rng.random() < 0.15:
                status, obj = await raw(api, "DELETE", f"{path}/{name}")
                assert status == 200, obj
                del live[i]
            else:
                body = {"metadata": {"name": name, "labels": {"tier": rng.choice("ab")}}, "data": {"n": str(n)}}
                status, obj = await raw(api, "PUT", f"{path}/{name}", body)
                assert status == 200, obj
                live[i] = obj["metadata"]["resourceVersion"]

    async with anyio.create_task_group() as tg:
        for inf in informers.values():
            tg.start_soon(inf.run)
        for inf in informers.values():
            assert await inf.wait_for_sync(60)
        batch = 1000
        for start in range(0, EVENTS, batch):
            await asyncio.gather(*(write(rng.randrange(KEYS), n) for n in range(start, start + batch)))
            if start % 5000 == 0:
                proxy.drop()
            if start and start % 25000 == 0:  # a gap with deletes, then etcd compacted past it
                proxy.refuse()
                for i in list(live)[:20]:
                    status, _ = await raw(api, "DELETE", f"{path}/k-{i:04d}")
                    assert status == 200
                    live.pop(i)
                status, created = await raw(api, "POST", path, {"metadata": {"name": f"gap-{start}"}})
                assert status == 201
                await compact_etcd(cluster.etcd, int(created["metadata"]["resourceVersion"]))
                proxy.accept()
        for name, inf in informers.items():
            selectors = {"label_selector": "tier=a"} if name == "tier=a" else {}
            await converge(inf, api, CM, namespace, timeout=120, **selectors)
            want = await server_state(api, CM, namespace, **selectors)
            await eventually(lambda m=mirrors[name], w=want: m.view == w, 60)  # type: ignore[misc]
            assert cache_state(inf) == want
        tg.cancel_scope.cancel()
    stats = informers["full"].reflector.stats  # type: ignore[union-attr]
    if EVENTS > 25000:
        assert stats.expired >= 1 and stats.relists >= 1 and mirrors["full"].tombstones >= 1
    assert stats.rewatches >= EVENTS // 5000 - 1
