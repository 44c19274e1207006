"""Shared pieces of the end-to-end tests."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import anyio

from kinformer import ListWatch, ReflectorConfig, Resource, SharedIndexInformer
from kinformer.backoff import Backoff
from tests.e2e.conftest import raw


def fast_config(**kw: Any) -> ReflectorConfig:
    return ReflectorConfig(backoff=lambda clock: Backoff(initial=0.05, cap=0.5, clock=clock), **kw)


async def create_many(api: Any, path: str, bodies: list[dict[str, Any]], concurrency: int = 25) -> list[Any]:
    sem = asyncio.Semaphore(concurrency)

    async def one(body: dict[str, Any]) -> Any:
        async with sem:
            status, created = await raw(api, "POST", path, body)
            assert status == 201, created
            return created

    return await asyncio.gather(*(one(b) for b in bodies))


def configmap(name: str, **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name}
    if labels:
        meta["labels"] = labels
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": {"k": name}}


async def server_state(api: Any, resource: Resource, namespace: str | None, **selectors: str) -> dict[str, str]:
    items, _ = await ListWatch(api, resource, namespace, **selectors).list("")
    return {f"{o['metadata'].get('namespace')}/{o['metadata']['name']}" if o["metadata"].get("namespace")
            else o["metadata"]["name"]: o["metadata"]["resourceVersion"] for o in items}


def cache_state(informer: SharedIndexInformer) -> dict[str, str]:
    return {k: o["metadata"]["resourceVersion"] for k, o in informer.indexer.items()}


async def converge(informer: SharedIndexInformer, api: Any, resource: Resource, namespace: str | None,
                   timeout: float = 30, **selectors: str) -> None:
    """Wait until the cache equals a fresh consistent list of the server."""
    with anyio.fail_after(timeout):
        while True:
            want = await server_state(api, resource, namespace, **selectors)
            if cache_state(informer) == want:
                return
            await anyio.sleep(0.1)


async def compact_etcd(etcd_url: str, revision: int) -> None:
    async with aiohttp.ClientSession() as session, session.post(
        f"{etcd_url}/v3/kv/compaction", json={"revision": str(revision), "physical": True}
    ) as resp:
        assert resp.status == 200, await resp.text()


class Recorder:
    def __init__(self) -> None:
        self.events: list[tuple[str, Any]] = []

    def on_add(self, obj: Any, initial: bool) -> None:
        self.events.append(("add", obj))

    def on_update(self, old: Any, new: Any) -> None:
        self.events.append(("update", new))

    def on_delete(self, obj: Any) -> None:
        self.events.append(("delete", obj))


@asynccontextmanager
async def running(informer: SharedIndexInformer) -> AsyncIterator[SharedIndexInformer]:
    async with informer:
        assert await informer.wait_for_sync(60), "informer did not sync"
        yield informer

