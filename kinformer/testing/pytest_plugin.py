"""pytest plugin (registered by kinformer's entry point): fixtures for operator tests.

- `fake_api_server`: a started `FakeApiServer` (bookmarks every 0.2 s), stopped after the test.
- `fake_api_client`: a `kubernetes_asyncio` `ApiClient` for it, closed after the test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest_asyncio

from kinformer.testing.server import FakeApiServer


@pytest_asyncio.fixture
async def fake_api_server() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(bookmark_interval=0.2) as server:
        yield server


@pytest_asyncio.fixture
async def fake_api_client(fake_api_server: FakeApiServer) -> AsyncIterator[Any]:
    client = fake_api_server.api_client()
    try:
        yield client
    finally:
        await client.close()
