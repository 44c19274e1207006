"""`GET /query/{group|core}/{version}/{resource}` through both adapters (aiohttp over real
HTTP, FastAPI through httpx): the endpoint table of test_endpoints.py's shape for the
read-only rows, then typed ordering, cursor paging under concurrent writes, and 503."""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from kinformer import InformerFactory
from kinformer.query import LABEL_INDEX
from kinformer.testing import FakeClock, eventually
from kinformer.web import CacheApi
from tests.web.conftest import PODS, Client, Env, Reply, make_client, pod
from tests.web.test_endpoints import Row, _status, is_status, keys, pods_where

Q = "/query/core/v1/pods"


def _items(expected: list[str], *, kind: str = "Pod", api_version: str = "v1",
           next_cursor: bool = False) -> Callable[[Reply, Env], None]:
    def check(reply: Reply, env: Env) -> None:
        body = reply.json()
        assert keys(body) == expected
        assert body["resourceVersion"] == env.server.resource_version
        assert all(i["kind"] == kind and i["apiVersion"] == api_version for i in body["items"])
        assert (body["nextCursor"] is not None) == next_cursor
        assert "total" not in body and "explain" not in body
    return check


def _counted(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert keys(body) == pods_where(lambda *a: True)[:2]
    assert (body["total"], body["remaining"]) == (len(PODS), len(PODS) - 2)
    assert body["nextCursor"]


def _explained(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert keys(body) == ["default/web-1", "default/web-2"]
    (source,) = body["explain"]["sources"]
    steps = {s["clause"]: (s["index"], s["keys"]) for s in source["steps"]}
    assert steps == {"namespace in (default)": ("namespace", 3), "label app=web": (LABEL_INDEX, 3),
                     "name contains 'web'": (None, None)}
    assert source["candidates"] == 2 and source["objects"] == len(PODS)
    assert body["explain"]["order"] == ["metadata.name", "cluster", "key"]


ALL = pods_where(lambda *a: True)

QUERY_ROWS = [
    Row("query-all", Q, check=_items(ALL)),
    Row("query-namespaces-comma", Q, [("namespace", "team-a,nope")],
        check=_items(pods_where(lambda n, ns, p, lb: ns == "team-a"))),
    Row("query-namespaces-repeated", Q, [("namespace", "team-a"), ("namespace", "default")], check=_items(ALL)),
    Row("query-labels-and-fields", Q, [("labelSelector", "app in (web,db)"), ("labelSelector", "tier"),
                                       ("fieldSelector", "status.phase!=Pending")],
        check=_items(pods_where(lambda n, ns, p, lb: lb["app"] in ("web", "db") and "tier" in lb and p != "Pending"))),
    Row("query-where", Q, [("where", "metadata.labels.tier=frontend"), ("where", "metadata.namespace=team-a")],
        check=_items(["team-a/web-3"])),
    Row("query-where-wildcard", Q, [("where", "spec.containers[*].image=registry.example/app-0:1.0")],
        check=_items(ALL)),
    Row("query-where-wildcard-none", Q, [("where", "spec.containers[*].image=nginx")], check=_items([])),
    Row("query-where-quoted-key", Q, [("where", 'metadata.labels["tier"]=backend')],
        check=_items(["default/web-2", "team-a/db-1"])),
    Row("query-where-in", Q, [("whereIn", "status.phase=Pending,Failed")],
        check=_items(["default/web-2", "team-a/db-1"])),
    Row("query-name-contains", Q, [("nameContains", "WEB"), ("nameContains", "-1")], check=_items(["default/web-1"])),
    Row("query-owned-by", Q, [("ownedBy", "00000000-0000-4000-8000-000000000000")], check=_items(ALL)),
    Row("query-owned-by-nobody", Q, [("ownedBy", "nope")], check=_items([])),
    Row("query-order-desc", Q, [("orderBy", "-metadata.name")],
        check=_items(["team-a/web-3", "default/web-2", "default/web-1", "team-a/db-1", "default/api-1"])),
    Row("query-order-two-fields", Q, [("orderBy", "-metadata.namespace,status.phase"), ("orderBy", "metadata.name")],
        check=_items(["team-a/db-1", "team-a/web-3", "default/web-2", "default/api-1", "default/web-1"])),
    Row("query-limit", Q, [("limit", "2")], check=_items(ALL[:2], next_cursor=True)),
    Row("query-count", Q, [("limit", "2"), ("count", "true")], check=_counted),
    Row("query-explain", Q, [("namespace", "default"), ("labelSelector", "app=web"), ("nameContains", "web"),
                             ("orderBy", "metadata.name"), ("explain", "1")], check=_explained),
    Row("query-apps-group", "/query/apps/v1/deployments", check=_items(["default/web"], kind="Deployment",
                                                                         api_version="apps/v1")),
    Row("query-custom-resource", "/query/example.com/v1/widgets", [("where", "spec.size=3")],
        check=_items(["default/w1"], kind="Widget", api_version="example.com/v1")),
    Row("query-cluster-scoped", "/query/core/v1/namespaces", [("orderBy", "-metadata.name")],
        check=_items(["/team-a", "/default"], kind="Namespace")),
    Row("query-bad-label-selector", Q, [("labelSelector", "app in (web")], status=400,
        check=_status(400, "BadRequest", "unable to parse requirement")),
    Row("query-bad-field-selector", Q, [("fieldSelector", "status.phase")], status=400,
        check=_status(400, "BadRequest", "fieldSelector")),
    Row("query-where-without-value", Q, [("where", "spec.nodeName")], status=400,
        check=_status(400, "BadRequest", "expected path=value")),
    Row("query-bad-path", Q, [("where", "spec..nodeName=x")], status=400,
        check=_status(400, "BadRequest", "invalid path")),
    Row("query-order-by-wildcard", Q, [("orderBy", "spec.containers[*].image")], status=400,
        check=_status(400, "BadRequest", "reaches several values")),
    Row("query-bad-cursor", Q, [("cursor", "bm90IGEgY3Vyc29y")], status=400,
        check=_status(400, "BadRequest", "invalid cursor")),
    Row("query-zero-limit", Q, [("limit", "0")], status=400, check=_status(400, "BadRequest", "limit")),
    Row("query-bad-limit", Q, [("limit", "ten")], status=400, check=_status(400, "BadRequest", "limit")),
    Row("query-unknown-parameter", Q, [("labelselector", "app=web")], status=400,
        check=_status(400, "BadRequest", "unknown parameter 'labelselector'")),
    Row("query-empty-name-contains", Q, [("nameContains", "")], status=400,
        check=_status(400, "BadRequest", "nameContains")),
    Row("query-unknown-resource", "/query/core/v1/configmaps", status=404, check=_status(404, "NotFound")),
    Row("query-wrong-group", "/query/apps/v1/pods", status=404, check=_status(404, "NotFound")),
    Row("query-short-path", "/query/core/v1", status=404, check=_status(404, "NotFound")),
    Row("query-long-path", "/query/core/v1/pods/web-1", status=404, check=_status(404, "NotFound")),
    Row("query-write-refused", Q, method="POST", status=405, check=_status(405, "MethodNotAllowed")),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", QUERY_ROWS, ids=[r.id for r in QUERY_ROWS])
async def test_query_endpoint(shared_api: Client, shared_env: Env, row: Row) -> None:
    reply = await shared_api.request(row.method, row.path, row.params, row.headers)
    assert reply.status == row.status, (shared_api.name, reply.status, reply.body[:500])
    row.check(reply, shared_env)


@pytest.mark.asyncio(loop_scope="module")
async def test_a_cursor_belongs_to_its_ordering(shared_api: Client) -> None:
    first = (await shared_api.request("GET", Q, [("orderBy", "metadata.name"), ("limit", "1")])).json()
    second = await shared_api.request("GET", Q, [("orderBy", "metadata.name"), ("limit", "1"),
                                                 ("cursor", first["nextCursor"])])
    assert [i["metadata"]["name"] for i in second.json()["items"]] == ["db-1"]
    other = await shared_api.request("GET", Q, [("orderBy", "-metadata.name"), ("cursor", first["nextCursor"])])
    body = is_status(other, 400, "BadRequest")
    assert "issued for order_by('metadata.name')" in body["message"]


def typed_pod(name: str, priority: int, at: str, images: list[str]) -> dict[str, Any]:
    obj = pod(name, "typed", app="typed")
    obj["metadata"]["annotations"] = {"at": at}
    obj["spec"]["priority"] = priority
    obj["spec"]["containers"] = [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]
    return obj


async def test_ordering_is_by_typed_values(api: Client, env: Env) -> None:
    # Text order would put 10 before 9 and the +02:00 instant (22:00Z) after 23:00Z.
    for name, priority, at, images in [
        ("p-a", 10, "2026-01-01T00:00:00+02:00", ["nginx:1", "sidecar:2"]),
        ("p-b", 9, "2025-12-31T23:00:00Z", ["sidecar:2"]),
        ("p-c", 100, "2025-12-31T22:30:00.5Z", ["redis:7"]),
        ("p-d", 2, "2025-12-31T23:59:59.999999Z", ["nginx:1"]),
    ]:
        env.server.create("pods", typed_pod(name, priority, at, images))
    informer = env.factory.informer("pods")
    await eventually(lambda: len(informer.indexer.index_keys("namespace", "typed")) == 4)

    async def order(*params: tuple[str, str]) -> list[str]:
        reply = await api.request("GET", Q, [("namespace", "typed"), *params])
        assert reply.status == 200, reply.body
        return [i["metadata"]["name"] for i in reply.json()["items"]]

    assert await order(("orderBy", "spec.priority")) == ["p-d", "p-b", "p-a", "p-c"]
    assert await order(("orderBy", "-spec.priority")) == ["p-c", "p-a", "p-b", "p-d"]
    assert await order(("orderBy", 'metadata.annotations["at"]')) == ["p-a", "p-c", "p-b", "p-d"]
    assert await order(("orderBy", '-metadata.annotations["at"]')) == ["p-d", "p-b", "p-c", "p-a"]
    # where on a wildcard path matches any container; its text form matches the number.
    assert await order(("where", "spec.containers[*].image=sidecar:2")) == ["p-a", "p-b"]
    assert await order(("whereIn", "spec.containers[*].image=redis:7,nginx:1"),
                       ("orderBy", "spec.priority")) == ["p-d", "p-a", "p-c"]
    assert await order(("where", "spec.priority=100")) == ["p-c"]
    # resourceVersions order numerically: the seeded pods' have one digit, these two.
    rvs = {f"{o['metadata']['namespace']}/{o['metadata']['name']}": o["metadata"]["resourceVersion"]
           for o in informer.indexer.list()}
    by_number = sorted(rvs, key=lambda k: int(rvs[k]))
    assert by_number != sorted(rvs, key=lambda k: rvs[k])  # the test can tell the two apart
    reply = await api.request("GET", Q, [("orderBy", "metadata.resourceVersion")])
    assert keys(reply.json()) == by_number
    reply = await api.request("GET", Q, [("orderBy", "-metadata.resourceVersion"), ("limit", "2")])
    assert keys(reply.json()) == by_number[::-1][:2]


async def test_cursor_paging_never_repeats_or_skips_an_unchanged_object(api: Client, env: Env) -> None:
    """Page by priority, 3 at a time, while creating, deleting and re-prioritising pods
    between pages: each pod no write touched appears exactly once, in order."""
    rng = random.Random(15)
    informer = env.factory.informer("pods")
    names = [f"c-{i:02d}" for i in range(32)]
    for i, name in enumerate(names):
        env.server.create("pods", typed_pod(name, rng.randrange(8), "2026-01-01T00:00:00Z", [f"img:{i % 3}"]))
    await eventually(lambda: len(informer.indexer.index_keys("namespace", "typed")) == len(names))
    untouched = {n: int(env.server.get("pods", n, "typed")["spec"]["priority"]) for n in names}
    current = set(names)
    params = [("namespace", "typed"), ("orderBy", "spec.priority"), ("limit", "3"), ("count", "true")]
    seen: list[str] = []
    cursor = None
    for round_ in range(40):
        reply = await api.request("GET", Q, params + ([("cursor", cursor)] if cursor else []))
        assert reply.status == 200, reply.body
        body = reply.json()
        assert body["total"] == len(informer.indexer.index_keys("namespace", "typed"))
        seen += [i["metadata"]["name"] for i in body["items"]]
        cursor = body["nextCursor"]
        if cursor is None:
            break
        created = f"new-{round_}"
        env.server.create("pods", typed_pod(created, rng.randrange(8), "2026-01-01T00:00:00Z", []))
        current.add(created)
        victim = rng.choice(sorted(current))
        current.remove(victim)
        untouched.pop(victim, None)
        env.server.delete("pods", victim, "typed")
        moved = rng.choice(sorted(current))
        untouched.pop(moved, None)
        obj = env.server.get("pods", moved, "typed")
        obj["spec"]["priority"] = rng.randrange(8)
        env.server.update("pods", obj)

        def applied(created: str = created, victim: str = victim, moved: str = moved,
                    priority: int = obj["spec"]["priority"]) -> bool:
            cached = informer.indexer.get_by_key(f"typed/{moved}")
            return (informer.indexer.get_by_key(f"typed/{created}") is not None
                    and informer.indexer.get_by_key(f"typed/{victim}") is None
                    and cached is not None and cached["spec"]["priority"] == priority)
        await eventually(applied)
    else:
        pytest.fail("paging did not end")
    assert len(untouched) >= 10  # the property is about these; enough of them survived the writes
    expected = sorted(untouched, key=lambda n: (untouched[n], n))
    assert [n for n in seen if n in untouched] == expected


async def test_503_until_the_cache_runs_and_syncs(env: Env) -> None:
    client = env.server.api_client()
    try:
        cache = CacheApi(["pods"], metrics_registry=CollectorRegistry())
        clock = FakeClock()
        factory = InformerFactory(client, clock=clock)
        cache.bind(factory)
        env.server.fail_next(1000, 500, verbs=["list"])
        for kind in ("aiohttp", "fastapi"):
            async with make_client(kind, cache) as api:
                reply = await api.request("GET", Q)
                body = is_status(reply, 503, "ServiceUnavailable")
                assert "is not running" in body["message"]
                assert {k.lower(): v for k, v in reply.headers.items()}["retry-after"] == "1"
        async with cache.run():
            pods = factory.informer("pods")
            await eventually(lambda: pods.last_error is not None)
            for kind in ("aiohttp", "fastapi"):
                async with make_client(kind, cache) as api:
                    body = is_status(await api.request("GET", Q, [("count", "true")]), 503, "ServiceUnavailable")
                    assert "has not synced yet" in body["message"]
            env.server.clear_faults()
            await clock.advance_until(pods.has_synced, step=1.0)
            async with make_client("aiohttp", cache) as api:
                reply = await api.request("GET", Q, [("count", "true")])
                assert reply.status == 200 and reply.json()["total"] == len(PODS)
    finally:
        await client.close()


async def test_a_namespace_scoped_cache_answers_for_its_namespace_only(env: Env) -> None:
    client = env.server.api_client()
    try:
        scoped = CacheApi(["pods"], metrics_registry=CollectorRegistry())
        factory = InformerFactory(client, namespace="team-a")
        async with scoped.run(factory), make_client("aiohttp", scoped) as api:
            assert await factory.wait_for_cache_sync(10)
            ok = await api.request("GET", Q, [("namespace", "team-a")])
            assert keys(ok.json()) == ["team-a/db-1", "team-a/web-3"]
            for params in ([], [("namespace", "team-a,default")], [("namespace", "default")]):
                is_status(await api.request("GET", Q, params), 403, "Forbidden")
    finally:
        await client.close()
