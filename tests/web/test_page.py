"""The read-only page in headless Chromium (Debian's `chromium`): the rendered DOM shows the
cache's objects, a change made after the page connected arrives live over server-sent
events, and the selector box filters (or shows the server's error)."""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import anyio
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from kinformer import InformerFactory
from kinformer.testing import FakeApiServer, eventually
from kinformer.web import CacheApi
from tests.web.conftest import AiohttpClient, Background, pod, seed

FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-extensions",
         "--hide-scrollbars", "--window-size=1200,600"]


@pytest.fixture(scope="session")
def chromium() -> str:
    """Debian's chromium; installed with apt-get when missing and we are root."""
    found = shutil.which("chromium")
    if found is None and os.geteuid() == 0 and shutil.which("apt-get"):
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "update", "-qq"], check=False, env=env, capture_output=True, timeout=600)
        subprocess.run(["apt-get", "install", "-y", "-qq", "chromium"], check=False, env=env, capture_output=True,
                       timeout=900)
        found = shutil.which("chromium")
    if found is None:
        pytest.skip("CHROMIUM IS NOT INSTALLED AND COULD NOT BE (apt-get install chromium): the page was NOT tested")
    return found


@pytest_asyncio.fixture
async def page_server() -> AsyncIterator[tuple[FakeApiServer, CacheApi, str, InformerFactory]]:
    """A seeded cluster, a cache serving pods and deployments with the page, on real HTTP."""
    async with FakeApiServer(bookmark_interval=0.2) as server:
        seed(server)
        client = server.api_client()
        factory = InformerFactory(client)
        cache = CacheApi(["pods", "deployments"], page=True, metrics_registry=CollectorRegistry())
        http = AiohttpClient(cache)
        try:
            async with Background(cache.run(factory)):
                assert await factory.wait_for_cache_sync(10)
                await http.start()
                yield server, cache, http.url + "/k8s/", factory
                await http.stop()
        finally:
            await client.close()


def _attr(tag: str, name: str) -> str | None:
    found = re.search(rf'{name}="([^"]*)"', tag)
    return found.group(1) if found else None


async def test_dump_dom_shows_the_cached_objects(chromium: str, page_server: Any, tmp_path: Path) -> None:
    _, _, url, factory = page_server
    # stopWhen closes the page's stream once that object is shown, so that the load can end.
    result = await anyio.run_process(
        [chromium, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=15000",
         "--dump-dom", url + "?stopWhen=team-a/web-3"], check=False)
    dom = result.stdout.decode()
    body = re.search(r"<body[^>]*>", dom)
    assert body is not None, result.stderr.decode()[-2000:]
    assert _attr(body.group(0), "data-state") == "live"
    assert _attr(body.group(0), "data-stopped") == "true"
    keys = re.findall(r'<tr data-key="([^"]+)"', dom)
    assert keys == sorted(factory.informer("pods").indexer.list_keys())
    assert "<td>Pending</td>" in dom and "app=web" in dom


class Cdp:
    """The few DevTools-protocol calls the live test needs, over aiohttp's websocket client."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self.next_id = 0

    async def call(self, method: str, **params: Any) -> Any:
        self.next_id += 1
        await self.ws.send_json({"id": self.next_id, "method": method, "params": params})
        while True:
            message = await self.ws.receive_json()
            if message.get("id") == self.next_id:
                assert "error" not in message, message
                return message["result"]

    async def js(self, expression: str) -> Any:
        result = await self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result["result"].get("value")

    async def until(self, expression: str, timeout: float = 10.0) -> None:
        with anyio.fail_after(timeout):
            while not await self.js(expression):  # noqa: ASYNC110 - polling the page's state over CDP
                await anyio.sleep(0.02)


@contextlib.asynccontextmanager
async def browser(chromium: str, url: str, profile: Path) -> AsyncIterator[Cdp]:
    log = profile.with_suffix(".log")
    with log.open("wb") as err:
        proc = await anyio.open_process([chromium, *FLAGS, f"--user-data-dir={profile}", "--remote-debugging-port=0",
                                         url], stdout=subprocess.DEVNULL, stderr=err)
    try:
        def devtools() -> str | None:
            found = re.search(rb"DevTools listening on ws://([^/\s]+)/", log.read_bytes())
            return found.group(1).decode() if found else None

        await eventually(lambda: devtools() is not None or proc.returncode is not None, timeout=20)
        address = devtools()
        assert address is not None, log.read_bytes()[-2000:]
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://{address}/json/list") as resp:
                targets = await resp.json()
            (target,) = [t for t in targets if t["type"] == "page"]
            async with session.ws_connect(target["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                yield Cdp(ws)
    finally:
        proc.terminate()
        with anyio.move_on_after(10):
            await proc.wait()
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        await proc.aclose()


async def test_the_page_updates_live_and_filters(chromium: str, page_server: Any, tmp_path: Path) -> None:
    server, _, url, factory = page_server
    pods = factory.informer("pods")
    async with browser(chromium, url, tmp_path / "profile") as cdp:
        rows = len(pods.indexer)
        await cdp.until(f"document.body.dataset.state === 'live' && document.body.dataset.rows === '{rows}'")
        # A pod created now, after the page connected, arrives through the event stream.
        server.create("pods", pod("live-1", "default", app="web"))
        await cdp.until("document.querySelector('tr[data-key=\"default/live-1\"]') !== null")
        server.delete("pods", "web-2", "default")
        await cdp.until("document.querySelector('tr[data-key=\"default/web-2\"]') === null")
        assert await cdp.js("document.body.dataset.rows") == str(len(pods.indexer))
        # The selector box: only matching objects, live.
        await cdp.js("(() => { const s = document.getElementById('selector'); s.value = 'app=web,tier';"
                     " s.dispatchEvent(new Event('input')); })()")
        await cdp.until("document.body.dataset.state === 'live' && document.body.dataset.rows === '2'")
        keys = await cdp.js("[...document.querySelectorAll('tr[data-key]')].map(r => r.dataset.key).join(' ')")
        assert keys == "default/web-1 team-a/web-3"
        # A selector that does not parse shows the server's message.
        await cdp.js("(() => { const s = document.getElementById('selector'); s.value = 'app in (web';"
                     " s.dispatchEvent(new Event('input')); })()")
        await cdp.until("document.body.dataset.state === 'error'")
        assert "unable to parse requirement" in await cdp.js("document.getElementById('message').textContent")
        # Another resource from the menu.
        await cdp.js("(() => { document.getElementById('selector').value = '';"
                     " const r = document.getElementById('resource'); r.value = 'deployments.apps';"
                     " r.dispatchEvent(new Event('change')); })()")
        await cdp.until("document.body.dataset.state === 'live' && document.body.dataset.rows === '1'")
        assert await cdp.js("document.querySelector('tr[data-key]').dataset.key") == "default/web"
