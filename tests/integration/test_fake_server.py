"""FakeApiServer: wire shapes, errors and faults, through kubernetes_asyncio and raw HTTP."""

from __future__ import annotations

import aiohttp
import anyio
import orjson
import pytest
from kubernetes_asyncio.client import AppsV1Api, CoreV1Api, CustomObjectsApi
from kubernetes_asyncio.client.exceptions import ApiException

from kinformer.resources import Resource
from kinformer.testing import INITIAL_EVENTS_END, FakeApiServer, make_configmap, make_deployment, make_pod
from tests.integration.conftest import Raw, read_events

CM = "/api/v1/namespaces/default/configmaps"


def seed(server: FakeApiServer, n: int, ns: str = "default") -> None:
    for i in range(n):
        server.create("configmaps", make_configmap(f"cm-{i:03d}", ns, i=str(i)))


# -- typed clients ------------------------------------------------------------------------

async def test_typed_paged_list_follows_continue(server: FakeApiServer) -> None:
    for i in range(7):
        server.create("pods", make_pod(i, "ns1"))
    server.create("pods", make_pod(99, "ns2"))
    client = server.api_client()
    try:
        api = CoreV1Api(client)
        names, token, rvs = [], None, set()
        while True:
            page = await api.list_namespaced_pod("ns1", limit=3, _continue=token)
            names += [p.metadata.name for p in page.items]
            rvs.add(page.metadata.resource_version)
            token = page.metadata._continue
            if not token:
                break
        assert len(names) == 7 and len(set(names)) == 7 and len(rvs) == 1
        everywhere = await api.list_pod_for_all_namespaces()
        assert len(everywhere.items) == 8
    finally:
        await client.close()


async def test_typed_apps_and_custom_objects(server: FakeApiServer) -> None:
    client = server.api_client()
    try:
        apps = AppsV1Api(client)
        created = await apps.create_namespaced_deployment("default", make_deployment("web", "default"))
        assert created.metadata.generation == 1 and created.metadata.uid
        listed = await apps.list_namespaced_deployment("default")
        assert [d.metadata.name for d in listed.items] == ["web"]
        server.create("customresourcedefinitions", {
            "metadata": {"name": "widgets.example.com"},
            "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"},
                     "scope": "Namespaced", "versions": [{"name": "v1", "served": True, "storage": True}]}})
        custom = CustomObjectsApi(client)
        await custom.create_namespaced_custom_object("example.com", "v1", "default", "widgets", {
            "apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": "w1"}, "spec": {"size": 1}})
        got = await custom.list_namespaced_custom_object("example.com", "v1", "default", "widgets")
        assert got["kind"] == "WidgetList"
        assert got["items"][0]["kind"] == "Widget"  # custom resources keep TypeMeta in lists
        with pytest.raises(ApiException) as info:
            await CoreV1Api(client).read_namespaced_pod("missing", "default")
        assert info.value.status == 404
    finally:
        await client.close()


# -- LIST ---------------------------------------------------------------------------------

async def test_list_shape(raw: Raw, server: FakeApiServer) -> None:
    status, body, _ = await raw.get(CM)
    assert status == 200
    assert body["kind"] == "ConfigMapList" and body["apiVersion"] == "v1"
    assert body["items"] == [] and body["metadata"]["resourceVersion"] == server.resource_version
    seed(server, 2)
    _, body, _ = await raw.get(CM)
    assert "kind" not in body["items"][0] and "apiVersion" not in body["items"][0]
    assert "continue" not in body["metadata"]


async def test_paging_shares_one_rv_and_counts_remaining(raw: Raw, server: FakeApiServer) -> None:
    seed(server, 5)
    _, first, _ = await raw.get(CM, limit="2")
    assert first["metadata"]["remainingItemCount"] == 3
    server.create("configmaps", make_configmap("cm-000a"))  # would sort into the next page
    _, second, _ = await raw.get(CM, limit="2", **{"continue": first["metadata"]["continue"]})
    _, third, _ = await raw.get(CM, limit="2", **{"continue": second["metadata"]["continue"]})
    names = [i["metadata"]["name"] for p in (first, second, third) for i in p["items"]]
    assert names == [f"cm-{i:03d}" for i in range(5)]
    assert {p["metadata"]["resourceVersion"] for p in (first, second, third)} == {first["metadata"]["resourceVersion"]}
    assert "continue" not in third["metadata"]


async def test_expired_continue_is_410(raw: Raw, server: FakeApiServer) -> None:
    seed(server, 3)
    _, first, _ = await raw.get(CM, limit="1")
    server.create("configmaps", make_configmap("late"))
    server.compact()
    status, body, _ = await raw.get(CM, limit="1", **{"continue": first["metadata"]["continue"]})
    assert status == 410 and body["reason"] == "Expired" and body["kind"] == "Status" and body["code"] == 410


async def test_resource_version_semantics(raw: Raw, server: FakeApiServer) -> None:
    seed(server, 2)
    rv_two = server.resource_version
    server.delete("configmaps", "cm-000", "default")
    _, exact, _ = await raw.get(CM, resourceVersion=rv_two, resourceVersionMatch="Exact")
    assert len(exact["items"]) == 2 and exact["metadata"]["resourceVersion"] == rv_two
    _, newer, _ = await raw.get(CM, resourceVersion=rv_two, resourceVersionMatch="NotOlderThan")
    assert len(newer["items"]) == 1 and int(newer["metadata"]["resourceVersion"]) > int(rv_two)
    status, body, _ = await raw.get(CM, resourceVersion="999999")
    assert status == 504 and body["details"]["causes"][0]["reason"] == "ResourceVersionTooLarge"
    assert "Too large resource version" in body["message"]
    server.compact()
    status, body, _ = await raw.get(CM, resourceVersion=rv_two, resourceVersionMatch="Exact")
    assert status == 410 and body["reason"] == "Expired"
    status, body, _ = await raw.get(CM, resourceVersionMatch="Exact")
    assert status == 422 and body["reason"] == "Invalid"


async def test_selectors(raw: Raw, server: FakeApiServer) -> None:
    server.create("pods", make_pod(1, "a", app="web", phase="Running"))
    server.create("pods", make_pod(2, "a", app="db", phase="Pending"))
    server.create("pods", make_pod(3, "b", app="web", phase="Pending"))
    _, body, _ = await raw.get("/api/v1/pods", labelSelector="app=web")
    assert sorted(i["metadata"]["namespace"] for i in body["items"]) == ["a", "b"]
    _, body, _ = await raw.get("/api/v1/pods", fieldSelector="status.phase=Pending,metadata.namespace=a")
    assert [i["metadata"]["labels"]["app"] for i in body["items"]] == ["db"]
    _, body, _ = await raw.get("/api/v1/pods", labelSelector="app=web", limit="1")
    assert "remainingItemCount" not in body["metadata"] and "continue" in body["metadata"]
    status, body, _ = await raw.get("/api/v1/pods", labelSelector="app in (web")
    assert status == 400 and body["reason"] == "BadRequest"
    status, body, _ = await raw.get("/api/v1/pods", fieldSelector="spec.bogus=1")
    assert status == 400 and "field label not supported" in body["message"]


async def test_auth_and_discovery(raw: Raw, server: FakeApiServer) -> None:
    async with aiohttp.ClientSession() as anon, anon.get(server.url + CM) as resp:
        assert resp.status == 401
        assert (await resp.json())["reason"] == "Unauthorized"
    _, api, _ = await raw.get("/api")
    assert api["versions"] == ["v1"]
    _, groups, _ = await raw.get("/apis")
    assert "apps" in [g["name"] for g in groups["groups"]]
    _, core, _ = await raw.get("/api/v1")
    pods = next(r for r in core["resources"] if r["name"] == "pods")
    assert pods["namespaced"] is True and "watch" in pods["verbs"]
    _, apps, _ = await raw.get("/apis/apps/v1")
    assert apps["groupVersion"] == "apps/v1"
    status, _, _ = await raw.get("/apis/nope/v1")
    assert status == 404


async def test_http_writes(raw: Raw, server: FakeApiServer) -> None:
    status, created = await raw.send("POST", CM, make_configmap("x", a="1"))
    assert status == 201 and created["metadata"]["resourceVersion"] == server.resource_version
    status, body = await raw.send("POST", CM, make_configmap("x"))
    assert status == 409 and body["reason"] == "AlreadyExists"
    stale = {**created, "data": {"a": "2"}}
    status, updated = await raw.send("PUT", f"{CM}/x", stale)
    assert status == 200 and updated["data"] == {"a": "2"}
    status, body = await raw.send("PUT", f"{CM}/x", stale)
    assert status == 409 and body["reason"] == "Conflict"
    status, patched = await raw.send("PATCH", f"{CM}/x", {"data": {"b": "3", "a": None}},
                                     "application/merge-patch+json")
    assert status == 200 and patched["data"] == {"b": "3"}
    assert patched["metadata"]["uid"] == created["metadata"]["uid"]
    status, _ = await raw.send("PATCH", f"{CM}/x", [{"op": "remove"}], "application/json-patch+json")
    assert status == 415
    status, gone = await raw.send("DELETE", f"{CM}/x", {})
    assert status == 200 and int(gone["metadata"]["resourceVersion"]) == int(server.resource_version)
    status, _, _ = await raw.get(f"{CM}/x")
    assert status == 404


async def test_generation_bumps_only_on_spec_change(server: FakeApiServer) -> None:
    d = server.create("deployments", make_deployment("web", "default"))
    d2 = server.update("deployments", {**d, "metadata": {**d["metadata"], "labels": {"x": "y"}}})
    assert d2["metadata"]["generation"] == 1
    d3 = server.update("deployments", {**d2, "spec": {**d2["spec"], "replicas": 5}})
    assert d3["metadata"]["generation"] == 2


# -- WATCH --------------------------------------------------------------------------------

async def test_watch_resumes_from_rv(raw: Raw, server: FakeApiServer) -> None:
    seed(server, 3)
    rv = server.resource_version
    server.update("configmaps", {**server.get("configmaps", "cm-001", "default"), "data": {"v": "2"}})
    server.delete("configmaps", "cm-002", "default")
    async with raw.watch(CM, resourceVersion=rv) as resp:
        events = await read_events(resp, 2)
        assert [e["type"] for e in events] == ["MODIFIED", "DELETED"]
        assert events[0]["object"]["kind"] == "ConfigMap"  # watch objects carry TypeMeta
        server.create("configmaps", make_configmap("new"))
        assert (await read_events(resp, 1))[0]["type"] == "ADDED"


async def test_watch_without_rv_sends_current_state_first(raw: Raw, server: FakeApiServer) -> None:
    seed(server, 2)
    for rv in ("0", ""):
        async with raw.watch(CM, resourceVersion=rv) as resp:
            events = await read_events(resp, 2)
            assert [e["type"] for e in events] == ["ADDED", "ADDED"]


async def test_bookmarks_and_timeout_close_cleanly(raw: Raw, server: FakeApiServer) -> None:
    seed(server, 1)
    async with raw.watch(CM, resourceVersion=server.resource_version, allowWatchBookmarks="true",
                         timeoutSeconds="1") as resp:
        events = await read_events(resp, 100, skip_bookmarks=False)  # ends at the clean close
    assert events and all(e["type"] == "BOOKMARK" for e in events)
    assert events[-1]["object"]["metadata"] == {"resourceVersion": server.resource_version}
    assert events[-1]["object"]["kind"] == "ConfigMap"


async def test_watch_selector_transitions(raw: Raw, server: FakeApiServer) -> None:
    cm = server.create("configmaps", {"metadata": {"name": "x", "namespace": "default", "labels": {"on": "no"}}})
    async with raw.watch(CM, resourceVersion=server.resource_version, labelSelector="on=yes") as resp:
        cm = server.update("configmaps", {**cm, "metadata": {**cm["metadata"], "labels": {"on": "yes"}}})
        cm = server.update("configmaps", {**cm, "data": {"a": "1"}})
        cm = server.update("configmaps", {**cm, "metadata": {**cm["metadata"], "labels": {"on": "no"}}})
        events = await read_events(resp, 3)
    assert [e["type"] for e in events] == ["ADDED", "MODIFIED", "DELETED"]
    assert events[2]["object"]["metadata"]["labels"] == {"on": "no"}


async def test_streaming_list(raw: Raw, server: FakeApiServer) -> None:
    seed(server, 3)
    rv = server.resource_version
    async with raw.watch(CM, sendInitialEvents="true", resourceVersionMatch="NotOlderThan",
                         allowWatchBookmarks="true", resourceVersion="") as resp:
        events = await read_events(resp, 4, skip_bookmarks=False)
    assert [e["type"] for e in events] == ["ADDED"] * 3 + ["BOOKMARK"]
    assert events[3]["object"]["metadata"]["annotations"] == {INITIAL_EVENTS_END: "true"}
    assert events[3]["object"]["metadata"]["resourceVersion"] == rv
    status, body, _ = await raw.get(CM, watch="true", sendInitialEvents="true")
    assert status == 422 and body["reason"] == "Invalid"
    assert body["details"]["causes"] == [{"reason": "FieldValueForbidden", "field": "resourceVersionMatch",
                                          "message": body["details"]["causes"][0]["message"]}]
    # As the real server: without allowWatchBookmarks the stream is accepted, with no end bookmark.
    async with raw.watch(CM, sendInitialEvents="true", resourceVersionMatch="NotOlderThan",
                         timeoutSeconds="1") as resp:
        events = await read_events(resp, 10, skip_bookmarks=False)
    assert [e["type"] for e in events] == ["ADDED"] * 3


async def test_watch_from_too_old_rv_gets_410_error_event(raw: Raw, server: FakeApiServer) -> None:
    seed(server, 2)
    rv = server.resource_version
    seed(server, 1, ns="other")
    server.compact()
    async with raw.watch(CM, resourceVersion=rv) as resp:
        events = await read_events(resp, 1)
    assert events[0]["type"] == "ERROR"
    status = events[0]["object"]
    assert (status["code"], status["reason"], status["kind"]) == (410, "Expired", "Status")
    assert status["message"].startswith(f"too old resource version: {rv} (")


async def test_history_window_trims_to_410() -> None:
    async with FakeApiServer(history_size=5) as server:
        rv = server.resource_version
        seed(server, 12)
        assert int(rv) < server.cluster.floor
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"}) as s:
            async with s.get(server.url + CM, params={"watch": "1", "resourceVersion": rv}) as resp:
                assert (await read_events(resp, 1))[0]["object"]["code"] == 410
            recent = str(server.cluster.floor)
            async with s.get(server.url + CM, params={"watch": "1", "resourceVersion": recent}) as resp:
                server.create("configmaps", make_configmap("after"))
                kinds = [e["type"] for e in await read_events(resp, 6)]
                assert "ERROR" not in kinds


# -- faults -------------------------------------------------------------------------------

async def test_drop_watches_is_an_unclean_end(raw: Raw, server: FakeApiServer) -> None:
    async with raw.watch(CM, resourceVersion=server.resource_version) as resp:
        server.create("configmaps", make_configmap("a"))
        await read_events(resp, 1)
        server.drop_watches()
        with pytest.raises(aiohttp.ClientPayloadError), anyio.fail_after(5):
            await resp.content.read()
    assert server.open_watches == 0


async def test_drop_after_k_events(raw: Raw, server: FakeApiServer) -> None:
    server.drop_watches_after(2)
    seed(server, 5)
    async with raw.watch(CM, resourceVersion="1") as resp:
        got = []
        with pytest.raises(aiohttp.ClientPayloadError), anyio.fail_after(5):
            while line := await resp.content.readline():
                got.append(orjson.loads(line))
    assert len(got) == 2


async def test_fail_next_with_retry_after(raw: Raw, server: FakeApiServer) -> None:
    server.fail_next(1, 429, retry_after=3, verbs=["watch"])
    status, _, _ = await raw.get(CM)
    assert status == 200  # only watches fail
    async with raw.watch(CM) as resp:
        assert resp.status == 429 and resp.headers["Retry-After"] == "3"
        body = await resp.json()
        assert body["reason"] == "TooManyRequests" and body["details"]["retryAfterSeconds"] == 3
    server.fail_next(2, 500)
    assert (await raw.get(CM))[0] == 500
    assert (await raw.get(CM))[0] == 500
    assert (await raw.get(CM))[0] == 200
    assert [r.verb for r in server.requests] == ["list", "watch", "list", "list", "list"]


async def test_malformed_line_then_valid_events(raw: Raw, server: FakeApiServer) -> None:
    server.malformed_lines(1)
    async with raw.watch(CM, resourceVersion=server.resource_version) as resp:
        server.create("configmaps", make_configmap("a"))
        with anyio.fail_after(5):
            bad = await resp.content.readline()
            good = await resp.content.readline()
        with pytest.raises(orjson.JSONDecodeError):
            orjson.loads(bad)
        assert orjson.loads(good)["type"] == "ADDED"


async def test_stalled_watch_sends_nothing_until_released(raw: Raw, server: FakeApiServer) -> None:
    async with raw.watch(CM, resourceVersion=server.resource_version, allowWatchBookmarks="true") as resp:
        server.stall_watches()
        server.create("configmaps", make_configmap("a"))
        with pytest.raises(TimeoutError):
            with anyio.fail_after(0.5):  # bookmarks every 0.1 s would arrive if not stalled
                await resp.content.readline()
        server.stall_watches(False)
        assert (await read_events(resp, 1))[0]["type"] == "ADDED"


async def test_slow_writes_still_deliver(raw: Raw, server: FakeApiServer) -> None:
    server.slow_writes(0.01)
    seed(server, 3)
    async with raw.watch(CM, resourceVersion="1") as resp:
        assert len(await read_events(resp, 3)) == 3


async def test_register_custom_resource_and_cluster_scoped_paths(raw: Raw, server: FakeApiServer) -> None:
    widgets = Resource("example.com", "v1", "widgets", kind="Widget")
    server.register(widgets)
    server.create(widgets, {"metadata": {"name": "w", "namespace": "ns"}})
    server.create("namespaces", {"metadata": {"name": "ns"}})
    _, body, _ = await raw.get("/apis/example.com/v1/namespaces/ns/widgets")
    assert [i["metadata"]["name"] for i in body["items"]] == ["w"]
    status, ns, _ = await raw.get("/api/v1/namespaces/ns")
    assert status == 200 and ns["kind"] == "Namespace" and "namespace" not in ns["metadata"]
