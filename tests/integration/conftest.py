from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import anyio
import orjson
import pytest_asyncio

from kinformer.testing import FakeApiServer


class Raw:
    """Raw HTTP against the fake server, for asserting wire shapes."""

    def __init__(self, server: FakeApiServer, session: aiohttp.ClientSession) -> None:
        self.server, self.session = server, session

    async def get(self, path: str, **params: str) -> tuple[int, Any, aiohttp.ClientResponse]:
        async with self.session.get(self.server.url + path, params=params) as resp:
            return resp.status, orjson.loads(await resp.read()), resp

    async def send(self, method: str, path: str, body: Any, content_type: str = "application/json") -> tuple[int, Any]:
        async with self.session.request(method, self.server.url + path, data=orjson.dumps(body),
                                        headers={"Content-Type": content_type}) as resp:
            return resp.status, orjson.loads(await resp.read())

    def watch(self, path: str, **params: str) -> Any:
        return self.session.get(self.server.url + path, params={"watch": "true", **params})


async def read_events(resp: aiohttp.ClientResponse, count: int, timeout: float = 5.0,
                      skip_bookmarks: bool = True) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    with anyio.fail_after(timeout):
        while len(out) < count:
            line = await resp.content.readline()
            if not line:
                break
            event = orjson.loads(line)
            if skip_bookmarks and event["type"] == "BOOKMARK":
                continue
            out.append(event)
    return out


@pytest_asyncio.fixture
async def server(fake_api_server: FakeApiServer) -> FakeApiServer:
    """The plugin's `fake_api_server` (bookmarks every 0.2 s), under a shorter name."""
    return fake_api_server


@pytest_asyncio.fixture
async def raw(server: FakeApiServer) -> AsyncIterator[Raw]:
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"}) as session:
        yield Raw(server, session)
