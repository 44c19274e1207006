"""The end-to-end tier: a real kube-apiserver + etcd (built from their Go modules by
`controlplane/build.sh`, started by `controlplane/cluster.py`), or any cluster named by
`KINFORMER_E2E_KUBECONFIG` (tests that need to compact etcd are skipped there). kubectl,
built the same way, is the client nobody here wrote (test_kubectl.py)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest
import pytest_asyncio
import yaml
from kubernetes_asyncio.client import ApiClient, Configuration

from tests.e2e.controlplane.cluster import ControlPlane, Endpoints

HERE = Path(__file__).parent


@pytest.fixture(scope="session")
def cluster() -> Iterator[Endpoints]:
    external = os.environ.get("KINFORMER_E2E_KUBECONFIG")
    if external:
        config = yaml.safe_load(Path(external).read_text())
        context = next(c for c in config["contexts"] if c["name"] == config["current-context"])["context"]
        server = next(c for c in config["clusters"] if c["name"] == context["cluster"])["cluster"]["server"]
        user = next(u for u in config["users"] if u["name"] == context["user"])["user"]
        yield Endpoints(server, user.get("token", ""), external, None)
        return
    plane = ControlPlane(built("etcd", "kube-apiserver"))
    try:
        yield plane.start()
    finally:
        plane.stop()


def built(*binaries: str) -> str:
    """The directory holding `binaries`, built by controlplane/build.sh first if missing."""
    done = subprocess.run([str(HERE / "controlplane" / "build.sh"), *binaries], check=False, capture_output=True,
                          text=True)
    if done.returncode != 0:
        raise RuntimeError(f"controlplane/build.sh {' '.join(binaries)} failed:\n{done.stderr}")
    return done.stdout.strip().splitlines()[-1]


@pytest.fixture(scope="session")
def kubectl_path() -> str:
    return str(Path(built("kubectl")) / "kubectl")


class TcpProxy:
    """A loopback TCP proxy in front of the API server: `drop()` cuts every open
    connection (the client sees a dropped watch); `refuse()` turns new connections away
    until `accept()`."""

    def __init__(self, host: str, port: int) -> None:
        self.target = (host, port)
        self.port = 0
        self.refusing = False
        self._writers: set[asyncio.StreamWriter] = set()
        self._server: asyncio.base_events.Server | None = None
        self.connections = 0

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self.drop()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def drop(self) -> None:
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def refuse(self) -> None:
        self.refusing = True
        self.drop()

    def accept(self) -> None:
        self.refusing = False

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self.refusing:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.target)
        except OSError:
            writer.transport.abort()
            return
        self.connections += 1
        self._writers |= {writer, up_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            with contextlib.suppress(OSError, asyncio.IncompleteReadError):
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            dst.transport.abort()

        try:
            await asyncio.gather(pipe(reader, up_writer), pipe(up_reader, writer))
        finally:
            self._writers -= {writer, up_writer}


def make_client(server: str, token: str) -> ApiClient:
    config = Configuration(host=server)
    config.api_key = {"BearerToken": token}
    config.api_key_prefix = {"BearerToken": "Bearer"}
    config.verify_ssl = False
    return ApiClient(config)


@pytest_asyncio.fixture
async def proxy(cluster: Endpoints) -> AsyncIterator[TcpProxy]:
    url = urlparse(cluster.server)
    p = TcpProxy(url.hostname or "127.0.0.1", url.port or 443)
    await p.start()
    try:
        yield p
    finally:
        await p.stop()


@pytest_asyncio.fixture
async def api(cluster: Endpoints) -> AsyncIterator[ApiClient]:
    client = make_client(cluster.server, cluster.token)
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def proxied_api(cluster: Endpoints, proxy: TcpProxy) -> AsyncIterator[ApiClient]:
    client = make_client(f"https://127.0.0.1:{proxy.port}", cluster.token)
    try:
        yield client
    finally:
        await client.close()


@pytest_asyncio.fixture
async def namespace(api: ApiClient) -> AsyncIterator[str]:
    """A fresh namespace per test (left behind: no controller-manager finalizes it)."""
    name = f"e2e-{uuid.uuid4().hex[:8]}"
    await raw(api, "POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    yield name


async def raw(api: ApiClient, method: str, path: str, body: Any = None, **query: str) -> Any:
    """One request through the client's auth; returns (status, decoded body)."""
    import orjson

    resp = await api.call_api(path, method, query_params=list(query.items()), body=body,
                              header_params={"Content-Type": "application/json", "Accept": "application/json"},
                              auth_settings=["BearerToken"], _preload_content=False)
    try:
        data = await resp.read()
        try:
            return resp.status, (orjson.loads(data) if data else None)
        except orjson.JSONDecodeError:  # e.g. a plain-text 404 for a group not served yet
            return resp.status, data.decode(errors="replace")
    finally:
        resp.release()
