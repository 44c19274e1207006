"""The adapters' lifecycle helpers: FastAPI's lifespan and aiohttp's cleanup context start
the informers with the app and stop them with it."""

from __future__ import annotations

import aiohttp
import httpx
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
