"""The adapters' lifecycle helpers: FastAPI's lifespan and aiohttp's cleanup context start
the informers with the app and stop them with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import aiohttp
import anyio
import httpx
import pytest
from aiohttp import web
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from kinformer import InformerFactory
from kinformer.testing import FakeApiServer, eventually
from kinformer.web import CacheApi, aiohttp_app, aiohttp_cleanup_ctx, fastapi_lifespan, fastapi_router
from tests.web.conftest import pod


async def test_fastapi_lifespan_runs_the_factory(fake_api_server: FakeApiServer) -> None:
    fake_api_server.create("pods", pod("a", "default", app="x"))
    client = fake_api_server.api_client()
    try:
        factory = InformerFactory(client)
        cache = CacheApi(["pods"], metrics_registry=CollectorRegistry())
        app = FastAPI(lifespan=fastapi_lifespan(cache, factory))
        app.include_router(fastapi_router(cache), prefix="/k8s")
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test") as http:
            assert (await http.get("/k8s/readyz")).status_code == 503  # not started before the lifespan
            async with app.router.lifespan_context(app):
                pods = factory.informer("pods")
                await eventually(pods.has_synced)
                assert (await http.get("/k8s/readyz")).text == "ok"
                body = (await http.get("/k8s/api/v1/pods")).json()
                assert [i["metadata"]["name"] for i in body["items"]] == ["a"]
            assert not cache.running and not pods.health().running
    finally:
        await client.close()


async def test_aiohttp_cleanup_ctx_runs_the_factory(fake_api_server: FakeApiServer) -> None:
    fake_api_server.create("pods", pod("a", "default", app="x"))
    client = fake_api_server.api_client()
    try:
        factory = InformerFactory(client)
        cache = CacheApi(["pods"], metrics_registry=CollectorRegistry())
        root = web.Application()
        root.add_subapp("/k8s/", aiohttp_app(cache))
        root.cleanup_ctx.append(aiohttp_cleanup_ctx(cache, factory))
        runner = web.AppRunner(root, shutdown_timeout=0.1)
        await runner.setup()  # runs the cleanup context's startup half
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            pods = factory.informer("pods")
            await eventually(pods.has_synced)
            async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/k8s/readyz") as resp:
                assert (resp.status, await resp.text()) == (200, "ok")
        finally:
            await runner.cleanup()  # and its cleanup half
        assert not cache.running and not pods.health().running
    finally:
        await client.close()


async def test_the_readmes_fastapi_example_runs_as_written(fake_api_server: FakeApiServer,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    fake_api_server.create("pods", pod("web-1", "default", app="web"))
    from kubernetes_asyncio.config import kube_config

    # What load_kube_config() reads: $KUBECONFIG, captured when kubernetes_asyncio is imported.
    monkeypatch.setattr(kube_config, "KUBE_CONFIG_DEFAULT_LOCATION", fake_api_server.kubeconfig_path())
    readme = (Path(__file__).parent.parent.parent / "README.md").read_text()
    source = readme.split("## Serving caches over HTTP")[1].split("```python")[1].split("```")[0]
    assert len(source.strip().splitlines()) <= 20
    namespace: dict[str, Any] = {}
    exec(compile(source, "README.md", "exec"), namespace)
    app = namespace["app"]
    async with app.router.lifespan_context(app), httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                                                     base_url="http://test") as http:
        async def ready() -> bool:
            return (await http.get("/k8s/readyz")).status_code == 200

        with anyio.fail_after(10):
            while not await ready():  # noqa: ASYNC110 - the example's informers sync in the background
                await anyio.sleep(0.01)
        body = (await http.get("/k8s/api/v1/pods", params={"labelSelector": "app=web"})).json()
        assert [i["metadata"]["name"] for i in body["items"]] == ["web-1"]
