"""Fixtures for the web API: a seeded FakeApiServer, a running CacheApi over it, and the two
adapters (aiohttp over real HTTP, FastAPI through httpx's ASGI transport) behind one client
interface, both mounted under /k8s."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp
import orjson
import pytest
import pytest_asyncio
from aiohttp import web
from prometheus_client import CollectorRegistry

from kinformer import InformerFactory, Resource
from kinformer.testing import FakeApiServer, make_deployment, make_namespace, make_pod
from kinformer.web import CacheApi, aiohttp_app

WIDGETS = Resource("example.com", "v1", "widgets", kind="Widget")
SERVED = [Resource.pods, Resource.deployments, Resource.namespaces, WIDGETS]
PREFIX = "/k8s"


def pod(name: str, namespace: str, *, phase: str = "Running", **labels: str) -> dict[str, Any]:
    obj = make_pod(0, namespace, size=0, phase=phase)
    obj["metadata"]["name"] = name
    obj["metadata"]["labels"] = dict(labels)
    return obj


# name, namespace, phase, labels
PODS = [
    ("web-1", "default", "Running", {"app": "web", "tier": "frontend"}),
    ("web-2", "default", "Pending", {"app": "web", "tier": "backend"}),
    ("api-1", "default", "Running", {"app": "api"}),
    ("web-3", "team-a", "Running", {"app": "web", "tier": "frontend"}),
    ("db-1", "team-a", "Failed", {"app": "db", "tier": "backend"}),
]


def seed(server: FakeApiServer) -> None:
    server.register(WIDGETS)
    for ns in ("default", "team-a"):
        server.create("namespaces", make_namespace(ns))
    for name, ns, phase, labels in PODS:
        server.create("pods", pod(name, ns, phase=phase, **labels))
    server.create("deployments", make_deployment("web", "default"))
    server.create(WIDGETS, {"apiVersion": "example.com/v1", "kind": "Widget",
                            "metadata": {"name": "w1", "namespace": "default"}, "spec": {"size": 3}})


@dataclass
class Env:
    server: FakeApiServer
    cache: CacheApi
    factory: InformerFactory
    registry: CollectorRegistry


class Background:
    """Runs an async context manager in a task of its own, entered and left in that task
    (pytest-asyncio may set up and tear down a fixture in different tasks, and a task
    group's cancel scope must be left in the task that entered it)."""

    def __init__(self, cm: Any) -> None:
        self._cm = cm
        self._entered = asyncio.Event()
        self._stop = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        async with self._cm:
            self._entered.set()
            await self._stop.wait()

    async def __aenter__(self) -> Background:
        self._task = asyncio.create_task(self._run())
        entered = asyncio.ensure_future(self._entered.wait())
        await asyncio.wait([self._task, entered], return_when=asyncio.FIRST_COMPLETED)
        if self._task.done():
            entered.cancel()
            self._task.result()
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._stop.set()
        assert self._task is not None
        await self._task


@contextlib.asynccontextmanager
async def make_env() -> AsyncIterator[Env]:
    async with FakeApiServer(bookmark_interval=0.2) as server:
        seed(server)
        client = server.api_client()
        registry = CollectorRegistry()
        factory = InformerFactory(client)
        cache = CacheApi(SERVED, metrics_registry=registry)
        try:
            async with Background(cache.run(factory)):
                assert await factory.wait_for_cache_sync(10)
                yield Env(server, cache, factory, registry)
        finally:
            await client.close()


@pytest_asyncio.fixture
async def env() -> AsyncIterator[Env]:
    async with make_env() as e:
        yield e


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def shared_env() -> AsyncIterator[Env]:
    """One seeded server and cache for a module's read-only tests (setting up costs ~0.2 s)."""
    async with make_env() as e:
        yield e


@dataclass
class Reply:
    status: int
    content_type: str
    body: bytes
    headers: dict[str, str]

    def json(self) -> Any:
        return orjson.loads(self.body)

    def lines(self) -> list[Any]:
        return [orjson.loads(line) for line in self.body.splitlines() if line.strip()]

    @property
    def text(self) -> str:
        return self.body.decode()


class Client(Protocol):
    name: str

    async def request(self, method: str, path: str, params: Iterable[tuple[str, str]] = (),
                      headers: dict[str, str] | None = None) -> Reply: ...


class AiohttpClient:
    """aiohttp_app mounted as a sub-app at /k8s, served on a real loopback port."""

    name = "aiohttp"

    def __init__(self, cache: CacheApi) -> None:
        self.cache = cache
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> None:
        root = web.Application()
        root.add_subapp(PREFIX + "/", aiohttp_app(self.cache))
        self.runner = web.AppRunner(root, access_log=None, shutdown_timeout=0.1)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        server = site._server
        assert server is not None
        port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
        self.url = f"http://127.0.0.1:{port}"
        self.session = aiohttp.ClientSession()

    async def stop(self) -> None:
        if self.session is not None:
            await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()

    async def request(self, method: str, path: str, params: Iterable[tuple[str, str]] = (),
                      headers: dict[str, str] | None = None) -> Reply:
        assert self.session is not None
        async with self.session.request(method, self.url + PREFIX + path, params=list(params),
                                        headers=headers) as resp:
            return Reply(resp.status, resp.headers.get("Content-Type", ""), await resp.read(), dict(resp.headers))


class FastApiClient:
    """fastapi_router included at /k8s in a FastAPI app, driven through httpx.ASGITransport."""

    name = "fastapi"

    def __init__(self, cache: CacheApi) -> None:
        import httpx
        from fastapi import FastAPI

        from kinformer.web import fastapi_router

        app = FastAPI()
        app.include_router(fastapi_router(cache), prefix=PREFIX)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, params: Iterable[tuple[str, str]] = (),
                      headers: dict[str, str] | None = None) -> Reply:
        resp = await self.client.request(method, PREFIX + path, params=list(params), headers=headers)
        return Reply(resp.status_code, resp.headers.get("content-type", ""), resp.content, dict(resp.headers))


@contextlib.asynccontextmanager
async def make_client(kind: str, cache: CacheApi) -> AsyncIterator[Client]:
    client: AiohttpClient | FastApiClient = AiohttpClient(cache) if kind == "aiohttp" else FastApiClient(cache)
    await client.start()
    try:
        yield client
    finally:
        await client.stop()


@pytest_asyncio.fixture(params=["aiohttp", "fastapi"])
async def api(request: pytest.FixtureRequest, env: Env) -> AsyncIterator[Client]:
    async with make_client(request.param, env.cache) as client:
        yield client


@pytest_asyncio.fixture(scope="module", loop_scope="module", params=["aiohttp", "fastapi"])
async def shared_api(request: pytest.FixtureRequest, shared_env: Env) -> AsyncIterator[Client]:
    async with make_client(request.param, shared_env.cache) as client:
        yield client
