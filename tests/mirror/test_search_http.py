"""The mirror's search over HTTP (`SearchApi`), on SQLite and the real PostgreSQL, through
both adapters: aiohttp over a loopback port, FastAPI through httpx's ASGI transport."""

from __future__ import annotations

import base64
import uuid
from dataclasses import dataclass
from typing import Any

import aiohttp
import anyio
import httpx
import orjson
import pytest
from aiohttp import web
from fastapi import FastAPI

from kinformer import Resource
from kinformer.errors import InvalidArgumentError
from kinformer.mirror.http import SearchApi, search_aiohttp_app, search_fastapi_router
from kinformer.mirror.storage import MirrorStorage, StreamBatch
from kinformer.testing import FakeApiServer, eventually, make_configmap
from tests.mirror.conftest import Db, PostgresServer
from tests.mirror.test_mirror import new_mirror

PREFIX = "/mirror"


@dataclass
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return orjson.loads(self.body)


class Http:
    def __init__(self, kind: str, api: SearchApi) -> None:
        self.kind, self.api = kind, api
        self.runner: web.AppRunner | None = None
        self.session: aiohttp.ClientSession | None = None
        self.client: httpx.AsyncClient | None = None
        self.url = ""

    async def __aenter__(self) -> Http:
        if self.kind == "aiohttp":
            root = web.Application()
            root.add_subapp(PREFIX + "/", search_aiohttp_app(self.api))
            self.runner = web.AppRunner(root, access_log=None, shutdown_timeout=0.1)
            await self.runner.setup()
            site = web.TCPSite(self.runner, "127.0.0.1", 0)
            await site.start()
            self.url = f"http://127.0.0.1:{self.runner.addresses[0][1]}"
            self.session = aiohttp.ClientSession()
        else:
            app = FastAPI()
            app.include_router(search_fastapi_router(self.api), prefix=PREFIX)
            self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://test")
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self.session is not None:
            await self.session.close()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.client is not None:
            await self.client.aclose()

    async def get(self, path: str, *params: tuple[str, str], method: str = "GET",
                  headers: dict[str, str] | None = None) -> Reply:
        if self.session is not None:
            async with self.session.request(method, self.url + PREFIX + path, params=list(params),
                                            headers=headers) as resp:
                return Reply(resp.status, {k.lower(): v for k, v in resp.headers.items()}, await resp.read())
        assert self.client is not None
        r = await self.client.request(method, PREFIX + path, params=list(params), headers=headers)
        return Reply(r.status_code, {k.lower(): v for k, v in r.headers.items()}, r.content)


def pod(name: str, ns: str, rv: int, *, owner: str = "", **labels: str) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": ns, "uid": f"uid-{name}", "resourceVersion": str(rv),
                            "labels": labels}
    if owner:
        meta["ownerReferences"] = [{"uid": owner, "controller": True}]
    return {"metadata": meta, "spec": {"nodeName": "n1" if rv % 2 else "n2"}}  # listed items: no TypeMeta


DATA = {
    "a": [pod("web-1", "default", 9, app="web"), pod("web-2", "default", 10, app="web", owner="rs-1"),
          pod("db-1", "team-a", 3, app="db")],
    "b": [pod("web-1", "default", 100, app="web"), pod("api-1", "team-a", 11, app="api")],
    "c": [pod("web-9", "default", 2, app="web", owner="rs-1")],
}
NODE = {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "node-1", "uid": "n", "resourceVersion": "5"}}


async def load(storage: MirrorStorage) -> None:
    await storage.write([StreamBatch(c, Resource.pods, objs) for c, objs in DATA.items()]
                        + [StreamBatch("a", Resource.nodes, [NODE])])


def hits(reply: Reply) -> list[tuple[str, str]]:
    assert reply.status == 200, reply.body
    return [(i["cluster"], f"{i['object']['metadata'].get('namespace', '')}/{i['object']['metadata']['name']}")
            for i in reply.json()["items"]]


def status(reply: Reply, code: int, reason: str, contains: str = "") -> None:
    body = reply.json()
    assert (reply.status, body["kind"], body["status"], body["code"], body["reason"]) == (
        code, "Status", "Failure", code, reason), body
    assert contains in body["message"], body["message"]


PODS = "/search/core/v1/pods"


@pytest.mark.parametrize("adapter", ["aiohttp", "fastapi"])
async def test_search_over_http(storage: MirrorStorage, adapter: str) -> None:
    await load(storage)
    async with Http(adapter, SearchApi(storage)) as http:
        everything = await http.get("/search")
        assert len(hits(everything)) == 7
        node = next(i for i in everything.json()["items"] if i["resource"] == "nodes")
        assert node == {"cluster": "a", "resource": "nodes", "object": NODE}
        assert [i["resource"] for i in everything.json()["items"]][:2] == ["nodes", "pods"]  # ties: (cluster, gvr, key)
        first = everything.json()["items"][1]
        assert (first["object"]["kind"], first["object"]["apiVersion"]) == ("Pod", "v1")  # filled in: listed items

        assert hits(await http.get(PODS, ("clusters", "b,c"))) == [
            ("b", "default/web-1"), ("b", "team-a/api-1"), ("c", "default/web-9")]
        assert hits(await http.get(PODS, ("clusters", "c"), ("clusters", "a"), ("namespace", "team-a"))) == [
            ("a", "team-a/db-1")]
        assert hits(await http.get(PODS, ("labelSelector", "app in (web,db)"), ("fieldSelector", "spec.nodeName=n1"),
                                   ("clusters", "a,b"))) == [("a", "default/web-1"), ("a", "team-a/db-1")]
        assert hits(await http.get(PODS, ("where", "spec.nodeName=n2"), ("whereIn", "metadata.labels.app=web,api"),
                                   ("nameContains", "WEB"))) == [("a", "default/web-2"), ("b", "default/web-1"),
                                                                 ("c", "default/web-9")]
        assert hits(await http.get(PODS, ("ownedBy", "rs-1"))) == [("a", "default/web-2"), ("c", "default/web-9")]
        # resourceVersions order as numbers, not text (9 < 10 < 100).
        by_rv = hits(await http.get(PODS, ("orderBy", "-metadata.resourceVersion")))
        assert by_rv == [("b", "default/web-1"), ("b", "team-a/api-1"), ("a", "default/web-2"),
                         ("a", "default/web-1"), ("a", "team-a/db-1"), ("c", "default/web-9")]

        pages: list[tuple[str, str]] = []
        params = [("orderBy", "-metadata.resourceVersion"), ("limit", "4"), ("count", "1")]
        cursor = None
        while True:
            page = await http.get(PODS, *params, *([("cursor", cursor)] if cursor else []))
            assert page.json()["total"] == 6
            pages += hits(page)
            cursor = page.json()["nextCursor"]
            if cursor is None:
                break
        assert pages == by_rv
        assert "total" not in (await http.get(PODS)).json()

        status(await http.get(PODS, ("labelSelector", "app in (web")), 400, "BadRequest", "labelSelector")
        status(await http.get(PODS, ("where", "spec.containers[*].image=x")), 400, "BadRequest", "no [*]")
        status(await http.get(PODS, ("orderBy", "spec.nodeName")), 400, "BadRequest", "allowed are")
        status(await http.get(PODS, ("cursor", "garbage")), 400, "BadRequest", "does not decode")
        other = (await http.get(PODS, ("orderBy", "metadata.name"), ("limit", "1"))).json()["nextCursor"]
        status(await http.get(PODS, ("cursor", other)), 400, "BadRequest", "another ordering")
        status(await http.get(PODS, ("explain", "true")), 400, "BadRequest", "unknown parameter 'explain'")
        status(await http.get(PODS, ("limit", "0")), 400, "BadRequest", "limit")
        status(await http.get("/search/core/v1"), 404, "NotFound")
        status(await http.get("/query/core/v1/pods"), 404, "NotFound")
        status(await http.get(PODS, method="POST"), 405, "MethodNotAllowed")
        assert hits(await http.get("/search/core/v1/nosuchthings")) == []


async def test_an_unreachable_database_is_503(postgres: PostgresServer) -> None:
    """PostgreSQL only: a SQLite file cannot go away."""
    db = Db(postgres.url(), f"t_{uuid.uuid4().hex[:12]}", postgres)
    async with db.storage() as storage:
        await load(storage)
        async with Http("aiohttp", SearchApi(storage)) as http:
            postgres.stop()
            try:
                reply = await http.get(PODS)
                status(reply, 503, "ServiceUnavailable", "unreachable")
                assert reply.headers["retry-after"] == "1"
            finally:
                postgres.start()
            # The pool's connections died with the server: a search may fail once more (503) while
            # the pool reconnects.
            with anyio.fail_after(10):
                while (reply := await http.get(PODS)).status == 503:  # noqa: ASYNC110 - no event for "reconnected"
                    await anyio.sleep(0.01)
            assert len(hits(reply)) == 6


async def test_with_a_mirror_search_waits_for_each_clusters_first_sync(tmp_path: Any) -> None:
    async with FakeApiServer() as a, FakeApiServer() as b, MirrorStorage(
            f"sqlite:///{tmp_path / 'm.db'}") as storage, new_mirror(storage) as mirror:
        a.create("configmaps", make_configmap("a-0", "default"))
        b.create("configmaps", make_configmap("b-0", "default"))
        b.fail_next(10**6, 500, verbs=["list"])
        ca, cb = a.api_client(), b.api_client()
        try:
            await mirror.add_cluster("a", ca, resources=["configmaps"])
            await mirror.add_cluster("b", cb, resources=["configmaps"])
            api = SearchApi(storage, mirror)
            async with Http("aiohttp", api) as http:
                await eventually(mirror.clusters["a"].in_sync)
                assert (await http.get("/readyz/mirror-sync/a")).status == 200
                cms = "/search/core/v1/configmaps"
                assert hits(await http.get(cms, ("clusters", "a"))) == [("a", "default/a-0")]
                waiting = await http.get(cms)
                status(waiting, 503, "ServiceUnavailable", "cluster b has not synced")
                assert waiting.headers["retry-after"] == "1"
                ready = await http.get("/readyz", ("verbose", ""))
                assert ready.status == 503 and b"[+]mirror-sync/a ok" in ready.body
                assert b"[-]mirror-sync/b failed" in ready.body
                b.clear_faults()

                await eventually(mirror.clusters["b"].in_sync)
                assert hits(await http.get(cms)) == [("a", "default/a-0"), ("b", "default/b-0")]
                # Synced once is enough: a write backlog or an outage later does not hide the rows.
                b.fail_next(10**6, 500, verbs=["list", "watch"])
                b.drop_watches()
                assert (await http.get(cms, ("clusters", "b"))).status == 200
        finally:
            await ca.close()
            await cb.close()


PASSWORD = "m1rr0r-hunter2"
ENCODED = base64.b64encode(PASSWORD.encode()).decode()
SECRET = {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
          "metadata": {"name": "db", "namespace": "default", "uid": "s", "resourceVersion": "7"},
          "data": {"password": ENCODED}}
TOKEN = "mirror-tok-Zm9vYmFy"


@pytest.mark.parametrize("adapter", ["aiohttp", "fastapi"])
async def test_search_follows_the_exposure_rules(storage: MirrorStorage, adapter: str, tmp_path: Any) -> None:
    await load(storage)
    await storage.write([StreamBatch("a", Resource.secrets, [SECRET])])
    secrets = "/search/core/v1/secrets"
    async with Http(adapter, SearchApi(storage)) as http:  # secrets denied by default
        everything = await http.get("/search", ("count", "true"))
        assert "secrets" not in [i["resource"] for i in everything.json()["items"]]
        assert everything.json()["total"] == 7  # left out in SQL: counts and pages stay exact
        status(await http.get(secrets), 403, "Forbidden", "allow_secrets")
    async with Http(adapter, SearchApi(storage, allow_secrets=True, deny=["nodes"])) as http:
        (item,) = (await http.get(secrets)).json()["items"]
        assert item["object"]["data"] == {"password": ""}
        mixed = (await http.get("/search")).json()["items"]
        assert [i["object"]["data"] for i in mixed if i["resource"] == "secrets"] == [{"password": ""}]
        assert "nodes" not in [i["resource"] for i in mixed]
        status(await http.get("/search/core/v1/nodes"), 403, "Forbidden")
        for probe in (("where", f"data.password={ENCODED}"), ("orderBy", "-data.password")):
            reply = await http.get(secrets, probe)
            status(reply, 400, "BadRequest", "cannot be used on redacted secrets")
            assert ENCODED.encode() not in reply.body and PASSWORD.encode() not in reply.body
            reply = await http.get("/search", probe)
            if probe[0] == "where":  # over every resource the same filter leaves secrets out
                assert reply.status == 200 and "secrets" not in [i["resource"] for i in reply.json()["items"]]
            else:  # search orders by its typed columns only, whatever the resource
                status(reply, 400, "BadRequest", "allowed are")
            assert ENCODED.encode() not in reply.body and PASSWORD.encode() not in reply.body
        by_node = await http.get("/search", ("where", "spec.nodeName=n1"))  # legit for pods, not for secrets
        assert {i["resource"] for i in by_node.json()["items"]} == {"pods"}
    async with Http(adapter, SearchApi(storage, allow_secrets=True, reveal_secret_data=True)) as http:
        (item,) = (await http.get(secrets, ("where", f"data.password={ENCODED}"))).json()["items"]
        assert item["object"]["data"] == {"password": ENCODED}
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN + "\n")
    async with Http(adapter, SearchApi(storage, bearer_token_file=token_file)) as http:
        reply = await http.get(PODS)
        status(reply, 401, "Unauthorized")
        assert reply.headers["www-authenticate"].startswith("Bearer")
        status(await http.get(PODS, headers={"Authorization": "Bearer wrong"}), 401, "Unauthorized")
        assert len(hits(await http.get(PODS, headers={"Authorization": f"Bearer {TOKEN}"}))) == 6
        assert (await http.get("/readyz")).status == 200  # health stays open
        assert TOKEN.encode() not in reply.body
    with pytest.raises(InvalidArgumentError):
        SearchApi(storage, reveal_secret_data=True)
