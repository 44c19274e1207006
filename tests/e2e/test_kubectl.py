"""kubectl, a client nobody here wrote, unmodified against kinformer's cache API.

kubectl v1.36.3 (built from its module by controlplane/build.sh) runs with no kubeconfig
(HOME and KUBECONFIG point into a temp dir; `--server` names the endpoint) against a
`CacheApi` over pods of a real kube-apiserver, and every answer is compared with the same
command run against that API server: lists with set-based label selectors and field
selectors (`-o json`, `-o name`, sorted `-o custom-columns`), get by name, a NotFound,
`--chunk-size` paging (the continue tokens are the cache's own), `--watch` (the same
events at the same resourceVersions), the default table output; and `kubectl
api-resources` shows what the cache serves.

The cache answers kubectl's Table request (`Accept: application/json;as=Table;...`) with the
list itself, and kubectl falls back to its built-in printing (kubectl logs "Falling back to
hardcoded types"): the table has the NAME and AGE columns, not the API server's pod
printer's READY/STATUS/RESTARTS, which are computed server-side
(k8s.io/kubernetes/pkg/printers). The test holds that difference down: the names, in
order, equal the server's.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import orjson
import pytest
from aiohttp import web

from kinformer import InformerFactory, Resource
from kinformer.web import CacheApi, aiohttp_app
from tests.e2e.conftest import raw
from tests.e2e.controlplane.cluster import Endpoints
from tests.e2e.helpers import converge, fast_config

PODS = [  # name, labels, restartPolicy
    ("api-0", {"app": "api", "tier": "back"}, "Always"),
    ("db-0", {"app": "db", "tier": "db"}, "Never"),
    ("web-0", {"app": "web", "tier": "front"}, "Always"),
    ("web-1", {"app": "web", "tier": "front"}, "OnFailure"),
    ("web-2", {"app": "web", "tier": "db"}, "Never"),
]


def pod(name: str, labels: dict[str, str], restart: str = "Always") -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": labels},
            "spec": {"restartPolicy": restart, "containers": [{"name": "c", "image": "registry.k8s.io/pause:3.10"}]}}


@dataclass
class Run:
    code: int
    out: str
    err: str


@dataclass
class Kubectl:
    """Runs the built kubectl against one server, reading no configuration of this machine."""

    path: str
    server: str
    auth: list[str]
    home: Path

    def command(self, *args: str) -> tuple[list[str], dict[str, str]]:
        env = {"HOME": str(self.home), "KUBECONFIG": str(self.home / "no-kubeconfig"), "PATH": os.defpath}
        return [self.path, "--server", self.server, *self.auth, *args], env

    async def __call__(self, *args: str) -> Run:
        argv, env = self.command(*args)
        proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        with anyio.fail_after(60):
            out, err = await proc.communicate()
        assert proc.returncode is not None
        return Run(proc.returncode, out.decode(), err.decode())


@asynccontextmanager
async def serving(api: Any, namespace: str) -> AsyncIterator[tuple[CacheApi, int]]:
    """A CacheApi over the namespace's pods, served by aiohttp on a free loopback port."""
    cache = CacheApi(["pods"])
    async with cache.run(InformerFactory(api, namespace=namespace, reflector_config=fast_config())):
        runner = web.AppRunner(aiohttp_app(cache), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            informer = cache.informer("pods")
            assert informer is not None and await informer.wait_for_sync(60)
            yield cache, port
        finally:
            await runner.cleanup()


@pytest.fixture
def homes(tmp_path: Path) -> tuple[Path, Path]:
    ours, theirs = tmp_path / "home-cache", tmp_path / "home-server"
    ours.mkdir()
    theirs.mkdir()
    return ours, theirs


async def create_pods(api: Any, namespace: str) -> None:
    for name, labels, restart in PODS:
        status, body = await raw(api, "POST", f"/api/v1/namespaces/{namespace}/pods", pod(name, labels, restart))
        assert status == 201, body


async def synced(cache: CacheApi, api: Any, namespace: str) -> None:
    informer = cache.informer("pods")
    assert informer is not None
    await converge(informer, api, Resource.pods, namespace)


def items(run: Run) -> list[Any]:
    assert run.code == 0, run.err
    listing = orjson.loads(run.out)
    assert listing["kind"] == "List"
    return list(listing["items"])


async def test_kubectl_lists_and_gets_what_the_server_says(api: Any, cluster: Endpoints, namespace: str,
                                                          kubectl_path: str, homes: tuple[Path, Path]) -> None:
    await create_pods(api, namespace)
    async with serving(api, namespace) as (cache, port):
        await synced(cache, api, namespace)
        ours = Kubectl(kubectl_path, f"http://127.0.0.1:{port}", [], homes[0])
        server = Kubectl(kubectl_path, cluster.server, ["--token", cluster.token, "--insecure-skip-tls-verify"],
                         homes[1])
        ns = ["-n", namespace]
        for selection in (["-l", "app=web"], ["-l", "app in (web,api),tier!=db"], ["-l", "!tier"],
                          ["--field-selector", "spec.restartPolicy=Never"],
                          ["--field-selector", "metadata.name=web-1"],
                          ["-l", "app=web", "--field-selector", "spec.restartPolicy!=Always"], []):
            want = items(await server("get", "pods", *ns, *selection, "-o", "json"))
            got = items(await ours("get", "pods", *ns, *selection, "-o", "json"))
            assert got == want, selection
            want_names = await server("get", "pods", *ns, *selection, "-o", "name")
            got_names = await ours("get", "pods", *ns, *selection, "-o", "name")
            assert got_names.code == 0 and got_names.out == want_names.out, (selection, got_names.err)
        assert [i["metadata"]["name"] for i in items(await ours("get", "pods", *ns, "-l", "app=web", "-o", "json"))] \
            == ["web-0", "web-1", "web-2"]

        got_one, want_one = await ours("get", "pod", "web-1", *ns, "-o", "json"), \
            await server("get", "pod", "web-1", *ns, "-o", "json")
        assert got_one.code == 0 and orjson.loads(got_one.out) == orjson.loads(want_one.out)
        assert orjson.loads(got_one.out)["kind"] == "Pod"

        columns = ["-o", "custom-columns=NAME:.metadata.name,APP:.metadata.labels.app,RESTART:.spec.restartPolicy",
                   "--sort-by=.spec.restartPolicy"]
        got_columns, want_columns = await ours("get", "pods", *ns, *columns), await server("get", "pods", *ns, *columns)
        assert got_columns.code == 0 and got_columns.out == want_columns.out, got_columns.err
        assert len(got_columns.out.splitlines()) == len(PODS) + 1

        missing, want_missing = await ours("get", "pod", "nope", *ns), await server("get", "pod", "nope", *ns)
        assert (missing.code, missing.err) == (want_missing.code, want_missing.err) == (
            1, 'Error from server (NotFound): pods "nope" not found\n')

        table, want_table = await ours("get", "pods", *ns), await server("get", "pods", *ns)
        assert table.code == 0, table.err
        assert table.out.splitlines()[0].split() == ["NAME", "AGE"]  # kubectl's own printing (module docstring)
        assert want_table.out.splitlines()[0].split()[:2] == ["NAME", "READY"]
        assert [line.split()[0] for line in table.out.splitlines()[1:]] == \
            [line.split()[0] for line in want_table.out.splitlines()[1:]] == [name for name, _, _ in PODS]


async def test_kubectl_pages_with_the_caches_continue_tokens(api: Any, cluster: Endpoints, namespace: str,
                                                            kubectl_path: str, homes: tuple[Path, Path]) -> None:
    await create_pods(api, namespace)
    async with serving(api, namespace) as (cache, port):
        await synced(cache, api, namespace)
        ours = Kubectl(kubectl_path, f"http://127.0.0.1:{port}", [], homes[0])
        server = Kubectl(kubectl_path, cluster.server, ["--token", cluster.token, "--insecure-skip-tls-verify"],
                         homes[1])
        for selection in ([], ["-l", "app=web"]):
            paged = await ours("get", "pods", "-n", namespace, *selection, "--chunk-size", "2", "-o", "name", "-v=6")
            whole = await server("get", "pods", "-n", namespace, *selection, "-o", "name")
            assert paged.code == 0 and paged.out == whole.out, paged.err
            pages = (len(whole.out.splitlines()) + 1) // 2
            requests = [line for line in paged.err.splitlines() if "/pods?" in line and 'status="200 OK"' in line]
            assert len(requests) == pages and sum("continue=" in r for r in requests) == pages - 1, paged.err


async def test_kubectl_api_resources_sees_what_the_cache_serves(api: Any, namespace: str, kubectl_path: str,
                                                               tmp_path: Path) -> None:
    async with serving(api, namespace) as (_, port):
        ours = Kubectl(kubectl_path, f"http://127.0.0.1:{port}", [], tmp_path)
        run = await ours("api-resources", "-o", "name")
        assert (run.code, run.out) == (0, "pods\n"), run.err
        wide = await ours("api-resources", "-o", "wide")
        assert wide.code == 0 and wide.out.splitlines()[1].split() == ["pods", "v1", "true", "Pod", "get,list,watch"], \
            wide.out


async def test_kubectl_watch_follows_the_cache(api: Any, cluster: Endpoints, namespace: str, kubectl_path: str,
                                              homes: tuple[Path, Path]) -> None:
    await create_pods(api, namespace)
    async with serving(api, namespace) as (cache, port), contextlib.AsyncExitStack() as stack:
        await synced(cache, api, namespace)
        ours = Kubectl(kubectl_path, f"http://127.0.0.1:{port}", [], homes[0])
        server = Kubectl(kubectl_path, cluster.server, ["--token", cluster.token, "--insecure-skip-tls-verify"],
                         homes[1])
        args = ("get", "pods", "-n", namespace, "-l", "app=web", "--watch", "--output-watch-events", "-o", "json")
        watches = [await stack.enter_async_context(watching(k, *args)) for k in (ours, server)]

        def seen(event: Any) -> tuple[str, str, str]:
            meta = event["object"]["metadata"]
            return event["type"], meta["name"], meta["resourceVersion"]

        with anyio.fail_after(30):
            initial = [[seen(await next_event(w)) for _ in range(3)] for w in watches]
            assert initial[0] == initial[1]
            assert [(t, n) for t, n, _ in initial[0]] == [("ADDED", "web-0"), ("ADDED", "web-1"), ("ADDED", "web-2")]
            for body in (pod("web-3", {"app": "web"}), pod("other", {"app": "other"})):  # "other" matches not
                status, created = await raw(api, "POST", f"/api/v1/namespaces/{namespace}/pods", body)
                assert status == 201, created
            status, _ = await raw(api, "DELETE", f"/api/v1/namespaces/{namespace}/pods/web-0",
                                  {"gracePeriodSeconds": 0})
            assert status == 200
            streams: list[list[tuple[str, str, str]]] = []
            for w in watches:
                events = [seen(await next_event(w))]
                while events[-1][:2] != ("DELETED", "web-0"):
                    events.append(seen(await next_event(w)))
                streams.append(events)
        assert streams[0] == streams[1]
        assert streams[0][0][:2] == ("ADDED", "web-3")
        assert all(w.returncode is None for w in watches)  # still watching: no error ended either


@asynccontextmanager
async def watching(kubectl: Kubectl, *args: str) -> AsyncIterator[asyncio.subprocess.Process]:
    argv, env = kubectl.command(*args)
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.terminate()
        await proc.wait()


async def next_event(proc: asyncio.subprocess.Process) -> Any:
    """The next watch event kubectl printed (`--output-watch-events -o json`: one per line)."""
    assert proc.stdout is not None
    line = await proc.stdout.readline()
    if not line:
        raise EOFError("kubectl ended its output")
    return orjson.loads(line)
