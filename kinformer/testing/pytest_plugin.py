"""pytest plugin (registered by kinformer's `pytest11` entry point): fixtures for operator tests.

- `fake_api_server`: a started `FakeApiServer` (bookmarks every 0.2 s), stopped after the test.
- `fake_api_client`: a `kubernetes_asyncio` `ApiClient` for it, closed after the test.

Both are async fixtures, run on the test's own event loop by whichever async plugin runs
the test:
- pytest-asyncio, `asyncio_mode = "auto"`: use them from any `async def` test.
- pytest-asyncio, `asyncio_mode = "strict"` (its default): mark the test
  `@pytest.mark.asyncio` (or the module: `pytestmark = pytest.mark.asyncio`).
- anyio's plugin: mark the test `@pytest.mark.anyio`; the asyncio backend only (the server
  is built on asyncio and aiohttp), so a trio `anyio_backend` is refused with a message.
  To mix anyio tests with pytest-asyncio, keep pytest-asyncio in strict mode: in auto mode
  it claims every async test, anyio-marked ones included, and the two plugins then both
  try to run each async fixture (anyio's documentation gives the same advice).

Invariants:
- Loading the plugin never fails a pytest run: it imports pytest, kinformer (whose required
  dependencies are installed with it) and pytest-asyncio only if that is installed (its
  absence is not an error); never hypothesis or any other optional package.
- A test whose async plugin cannot be found fails at set-up with a message naming what to
  install and which marker to use; other tests are not affected.
- The plugin's choice follows the test: a test that requests `anyio_backend` (every
  `@pytest.mark.anyio` test) gets anyio's runner, any other test pytest-asyncio's, so the
  fixtures always share the test's loop. pytest-asyncio runs them on the function-scoped
  loop (the default); a test with a wider `loop_scope` needs its own fixture.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any, TypeVar, cast

import pytest

from kinformer.testing.server import FakeApiServer

_F = TypeVar("_F", bound=Callable[..., Any])

_NO_PLUGIN = (
    "kinformer's {fixture!r} fixture is async and needs an async test plugin, and none is active. "
    "Install pytest-asyncio (pip install pytest-asyncio, or kinformer's 'testing' extra) and mark the "
    "test @pytest.mark.asyncio (or set asyncio_mode = \"auto\"), or use anyio's plugin with @pytest.mark.anyio."
)
_NOT_ASYNCIO = (
    "kinformer's {fixture!r} fixture runs on asyncio only; this test's anyio_backend is {backend!r}. "
    "Parametrize anyio_backend to \"asyncio\" for tests that use it."
)


def _asyncio_fixture(name: str) -> Callable[[_F], _F]:
    """`pytest_asyncio.fixture` when pytest-asyncio is installed, else a plain fixture (which
    `_resolve` never requests without the asyncio plugin active)."""
    try:
        import pytest_asyncio
    except ImportError:
        return cast(Callable[[_F], _F], pytest.fixture(name=name))
    return cast(Callable[[_F], _F], pytest_asyncio.fixture(name=name))


async def _serve() -> AsyncIterator[FakeApiServer]:
    async with FakeApiServer(bookmark_interval=0.2) as server:
        yield server


async def _client(server: FakeApiServer) -> AsyncIterator[Any]:
    client = server.api_client()
    try:
        yield client
    finally:
        await client.close()


# Each fixture has two implementations, chosen per test by `_resolve`: anyio's plugin runs a
# plain async fixture (in a test that requests `anyio_backend`); pytest-asyncio in strict mode
# runs only fixtures made by `pytest_asyncio.fixture` (auto mode would take either).

@pytest.fixture(name="_kinformer_fake_api_server_anyio")
async def _server_anyio() -> AsyncIterator[FakeApiServer]:
    async for server in _serve():
        yield server


@pytest.fixture(name="_kinformer_fake_api_client_anyio")
async def _client_anyio(fake_api_server: FakeApiServer) -> AsyncIterator[Any]:
    async for client in _client(fake_api_server):
        yield client


@_asyncio_fixture(name="_kinformer_fake_api_server_asyncio")
async def _server_asyncio() -> AsyncIterator[FakeApiServer]:
    async for server in _serve():
        yield server


@_asyncio_fixture(name="_kinformer_fake_api_client_asyncio")
async def _client_asyncio(fake_api_server: FakeApiServer) -> AsyncIterator[Any]:
    async for client in _client(fake_api_server):
        yield client


def _resolve(request: pytest.FixtureRequest, fixture: str) -> Any:
    plugins = request.config.pluginmanager
    if "anyio_backend" in request.fixturenames and plugins.has_plugin("anyio"):
        backend = request.getfixturevalue("anyio_backend")
        name = backend if isinstance(backend, str) else backend[0]
        if name != "asyncio":
            pytest.fail(_NOT_ASYNCIO.format(fixture=fixture, backend=name), pytrace=False)
        return request.getfixturevalue(f"_kinformer_{fixture}_anyio")
    if not plugins.has_plugin("asyncio"):
        pytest.fail(_NO_PLUGIN.format(fixture=fixture), pytrace=False)
    return request.getfixturevalue(f"_kinformer_{fixture}_asyncio")


@pytest.fixture
def fake_api_server(request: pytest.FixtureRequest) -> FakeApiServer:
    """A started `FakeApiServer` (bookmarks every 0.2 s), stopped after the test."""
    server: FakeApiServer = _resolve(request, "fake_api_server")
    return server


@pytest.fixture
def fake_api_client(request: pytest.FixtureRequest) -> Any:
    """A `kubernetes_asyncio` `ApiClient` for `fake_api_server`, closed after the test."""
    return _resolve(request, "fake_api_client")
