"""One endpoint table, run through both adapters (aiohttp and FastAPI): same requests, same answers."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest

from kinformer.testing import eventually
from tests.web.conftest import PODS, Client, Env, Reply, pod


def names(body: Any) -> list[str]:
    return [i["metadata"]["name"] for i in body["items"]]


def keys(body: Any) -> list[str]:
    return [f"{i['metadata'].get('namespace', '')}/{i['metadata']['name']}" for i in body["items"]]


def pods_where(pred: Callable[[str, str, str, dict[str, str]], bool]) -> list[str]:
    return sorted(f"{ns}/{name}" for name, ns, phase, labels in PODS if pred(name, ns, phase, labels))


def is_status(reply: Reply, code: int, reason: str) -> dict[str, Any]:
    body: dict[str, Any] = reply.json()
    assert reply.content_type.startswith("application/json")
    assert body["kind"] == "Status" and body["apiVersion"] == "v1" and body["status"] == "Failure"
    assert body["code"] == code == reply.status and body["reason"] == reason, body
    return body


@dataclass(frozen=True)
class Row:
    id: str
    path: str
    params: list[tuple[str, str]] = field(default_factory=list)
    status: int = 200
    check: Callable[[Reply, Env], None] = lambda reply, env: None
    method: str = "GET"
    headers: dict[str, str] = field(default_factory=dict)


def _pod_list(expected: list[str]) -> Callable[[Reply, Env], None]:
    def check(reply: Reply, env: Env) -> None:
        body = reply.json()
        assert body["kind"] == "PodList" and body["apiVersion"] == "v1"
        assert body["metadata"]["resourceVersion"] == env.server.resource_version
        assert keys(body) == expected
        # Built-in list items come without TypeMeta, as from the API server.
        assert all("kind" not in i and "apiVersion" not in i for i in body["items"])
    return check


def _status(code: int, reason: str, contains: str = "") -> Callable[[Reply, Env], None]:
    def check(reply: Reply, env: Env) -> None:
        body = is_status(reply, code, reason)
        assert contains in body["message"], body["message"]
    return check


def _get_pod(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert body["kind"] == "Pod" and body["apiVersion"] == "v1"
    expected = env.server.get("pods", "web-2", "default")
    expected["metadata"].pop("managedFields", None)  # the informer drops managedFields by default
    assert body == expected


def _not_found_pod(reply: Reply, env: Env) -> None:
    body = is_status(reply, 404, "NotFound")
    assert body["message"] == 'pods "nope" not found'
    assert body["details"] == {"name": "nope", "kind": "pods"}


def _first_page(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert keys(body) == pods_where(lambda *a: True)[:2]
    assert body["metadata"]["continue"] and body["metadata"]["remainingItemCount"] == len(PODS) - 2


def _deployments(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert (body["kind"], body["apiVersion"], names(body)) == ("DeploymentList", "apps/v1", ["web"])


def _widgets(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert (body["kind"], body["apiVersion"], names(body)) == ("WidgetList", "example.com/v1", ["w1"])
    # Custom resources' items keep kind/apiVersion, as from the API server.
    assert body["items"][0]["kind"] == "Widget" and body["items"][0]["apiVersion"] == "example.com/v1"


def _namespaces(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert (body["kind"], names(body)) == ("NamespaceList", ["default", "team-a"])


def _namespace(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert (body["kind"], body["metadata"]["name"]) == ("Namespace", "team-a")


def _api_versions(reply: Reply, env: Env) -> None:
    assert reply.json() == {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []}


def _core_resources(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert (body["kind"], body["groupVersion"]) == ("APIResourceList", "v1")
    by_name = {r["name"]: r for r in body["resources"]}
    assert set(by_name) == {"pods", "namespaces"}
    assert by_name["pods"] == {"name": "pods", "singularName": "pod", "namespaced": True, "kind": "Pod",
                               "verbs": ["get", "list", "watch"]}
    assert by_name["namespaces"]["namespaced"] is False


def _groups(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert body["kind"] == "APIGroupList"
    assert [(g["name"], g["preferredVersion"]["groupVersion"]) for g in body["groups"]] == [
        ("apps", "apps/v1"), ("example.com", "example.com/v1")]


def _group(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert (body["kind"], body["name"], body["versions"]) == ("APIGroup", "apps",
                                                              [{"groupVersion": "apps/v1", "version": "v1"}])


def _apps_resources(reply: Reply, env: Env) -> None:
    body = reply.json()
    assert body["groupVersion"] == "apps/v1" and [r["name"] for r in body["resources"]] == ["deployments"]


def _text(expected: str) -> Callable[[Reply, Env], None]:
    def check(reply: Reply, env: Env) -> None:
        assert reply.content_type.startswith("text/plain")
        assert reply.text == expected
    return check


def _metrics(reply: Reply, env: Env) -> None:
    assert reply.content_type.startswith("text/plain")
    text = reply.text
    assert 'informer_cached_items{group="",name="kinformer",resource="pods",version="v1"} 5.0' in text
    assert 'informer_queued_items{group="apps",name="kinformer",resource="deployments",version="v1"} 0.0' in text
    assert "informer_processing_latency_seconds_bucket" in text
    rv = env.factory.informer("pods").last_sync_resource_version
    assert f'informer_store_resource_version{{group="",name="kinformer",resource="pods",version="v1"}} {rv}.0' in text


def _watch_initial(reply: Reply, env: Env) -> None:
    assert reply.content_type.startswith("application/json")
    events = reply.lines()
    assert [e["type"] for e in events] == ["ADDED", "ADDED"]
    assert sorted(e["object"]["metadata"]["name"] for e in events) == ["web-1", "web-3"]
    assert events[0]["object"]["kind"] == "Pod"  # watch events carry TypeMeta


def _watch_initial_end(reply: Reply, env: Env) -> None:
    events = reply.lines()
    assert [e["type"] for e in events] == ["ADDED", "ADDED", "ADDED", "BOOKMARK"]
    bookmark = events[-1]["object"]
    assert bookmark["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
    assert bookmark["metadata"]["resourceVersion"] == env.server.resource_version


def _watch_expired(reply: Reply, env: Env) -> None:
    (event,) = reply.lines()
    assert event["type"] == "ERROR"
    assert (event["object"]["kind"], event["object"]["code"], event["object"]["reason"]) == ("Status", 410, "Expired")


ROWS = [
    Row("list-namespaced", "/api/v1/namespaces/default/pods",
        check=_pod_list(pods_where(lambda n, ns, p, lb: ns == "default"))),
    Row("list-all-namespaces", "/api/v1/pods", check=_pod_list(pods_where(lambda *a: True))),
    Row("label-equality", "/api/v1/pods", [("labelSelector", "app=web")],
        check=_pod_list(pods_where(lambda n, ns, p, lb: lb.get("app") == "web"))),
    Row("label-set-based", "/api/v1/pods", [("labelSelector", "app in (web,db),tier!=frontend")],
        check=_pod_list(pods_where(lambda n, ns, p, lb: lb["app"] in ("web", "db") and lb.get("tier") != "frontend"))),
    Row("label-not-exists", "/api/v1/namespaces/default/pods", [("labelSelector", "!tier")],
        check=_pod_list(["default/api-1"])),
    Row("field-selector", "/api/v1/pods", [("fieldSelector", "status.phase!=Running")],
        check=_pod_list(pods_where(lambda n, ns, p, lb: p != "Running"))),
    Row("field-and-label", "/api/v1/pods", [("fieldSelector", "metadata.namespace=team-a"), ("labelSelector", "app")],
        check=_pod_list(["team-a/db-1", "team-a/web-3"])),
    Row("get", "/api/v1/namespaces/default/pods/web-2", check=_get_pod),
    Row("get-missing", "/api/v1/namespaces/default/pods/nope", status=404, check=_not_found_pod),
    Row("get-without-namespace", "/api/v1/pods/web-1", status=404, check=_status(404, "NotFound")),
    Row("limit", "/api/v1/pods", [("limit", "2")], check=_first_page),
    Row("bad-continue", "/api/v1/pods", [("limit", "2"), ("continue", "not-a-token")], status=400,
        check=_status(400, "BadRequest", "continue key is not valid")),
    Row("expired-continue", "/api/v1/pods", [("limit", "2"), ("continue", "eyJzIjo5OTksIm8iOjJ9")], status=410,
        check=_status(410, "Expired", "too old to display a consistent list")),
    Row("bad-limit", "/api/v1/pods", [("limit", "many")], status=400, check=_status(400, "BadRequest", "limit")),
    Row("bad-label-selector", "/api/v1/pods", [("labelSelector", "app in (web")], status=400,
        check=_status(400, "BadRequest", "unable to parse requirement")),
    Row("bad-field-selector", "/api/v1/pods", [("fieldSelector", "status.phase")], status=400,
        check=_status(400, "BadRequest", "field selector")),
    Row("apps-group", "/apis/apps/v1/namespaces/default/deployments", check=_deployments),
    Row("custom-resource", "/apis/example.com/v1/widgets", check=_widgets),
    Row("cluster-scoped-list", "/api/v1/namespaces", check=_namespaces),
    Row("cluster-scoped-get", "/api/v1/namespaces/team-a", check=_namespace),
    Row("cluster-scoped-with-namespace", "/api/v1/namespaces/default/namespaces", status=404,
        check=_status(404, "NotFound")),
    Row("unknown-resource", "/api/v1/configmaps", status=404, check=_status(404, "NotFound")),
    Row("wrong-group", "/api/v1/namespaces/default/deployments", status=404, check=_status(404, "NotFound")),
    Row("unknown-group", "/apis/nope.io/v1/things", status=404, check=_status(404, "NotFound")),
    Row("subresource", "/api/v1/namespaces/default/pods/web-1/status", status=404, check=_status(404, "NotFound")),
    Row("not-an-api-path", "/nothing/here", status=404, check=_status(404, "NotFound")),
    Row("page-disabled", "/", status=404, check=_status(404, "NotFound")),
    Row("write-refused", "/api/v1/namespaces/default/pods", method="POST", status=405,
        check=_status(405, "MethodNotAllowed")),
    Row("discovery-api", "/api", check=_api_versions),
    Row("discovery-core", "/api/v1", check=_core_resources),
    Row("discovery-groups", "/apis", check=_groups),
    Row("discovery-group", "/apis/apps", check=_group),
    Row("discovery-group-version", "/apis/apps/v1", check=_apps_resources),
    Row("discovery-unknown-group", "/apis/nope.io", status=404, check=_status(404, "NotFound")),
    Row("readyz", "/readyz", check=_text("ok")),
    Row("readyz-verbose", "/readyz", [("verbose", "")], check=_text(
        "[+]ping ok\n[+]informer-sync/pods ok\n[+]informer-sync/deployments.apps ok\n[+]informer-sync/namespaces ok\n"
        "[+]informer-sync/widgets.example.com ok\nreadyz check passed\n")),
    Row("readyz-one-check", "/readyz/informer-sync/deployments.apps", check=_text("ok")),
    Row("readyz-unknown-check", "/readyz/nope", status=404),
    Row("livez", "/livez", check=_text("ok")),
    Row("livez-exclude", "/livez", [("verbose", "1"), ("exclude", "informer-watch/pods"), ("exclude", "nope")],
        check=_text("[+]ping ok\n[+]informer-watch/pods excluded: ok\n[+]informer-watch/deployments.apps ok\n"
                    "[+]informer-watch/namespaces ok\n[+]informer-watch/widgets.example.com ok\n"
                    'warn: some health checks cannot be excluded: no matches for "nope"\nlivez check passed\n')),
    Row("metrics", "/metrics", check=_metrics),
    # Watches that end by themselves (timeoutSeconds), so both adapters can return the whole body.
    Row("watch-initial", "/api/v1/pods", [("watch", "true"), ("labelSelector", "tier=frontend"),
                                          ("timeoutSeconds", "0.1")], check=_watch_initial),
    Row("watch-initial-events-end", "/api/v1/namespaces/default/pods",
        [("watch", "1"), ("sendInitialEvents", "true"), ("resourceVersionMatch", "NotOlderThan"),
         ("allowWatchBookmarks", "true"), ("timeoutSeconds", "0.1")], check=_watch_initial_end),
    Row("watch-unknown-rv", "/api/v1/pods", [("watch", "true"), ("resourceVersion", "1")], check=_watch_expired),
    Row("watch-initial-needs-match", "/api/v1/pods", [("watch", "true"), ("sendInitialEvents", "true")], status=422,
        check=_status(422, "Invalid", "NotOlderThan")),
]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("row", ROWS, ids=[r.id for r in ROWS])
async def test_endpoint(shared_api: Client, shared_env: Env, row: Row) -> None:
    """Read-only rows, so one server and cache serve them all (per adapter)."""
    reply = await shared_api.request(row.method, row.path, row.params, row.headers)
    assert reply.status == row.status, (shared_api.name, reply.status, reply.body[:500])
    row.check(reply, shared_env)


async def test_pages_are_one_snapshot_while_the_cache_changes(api: Client, env: Env) -> None:
    """limit/continue: every page is cut from the first page's state, as on the API server."""
    first = (await api.request("GET", "/api/v1/pods", [("limit", "2")])).json()
    before = keys(first)
    rv = first["metadata"]["resourceVersion"]
    env.server.delete("pods", "web-3", "team-a")
    env.server.create("pods", pod("zz-new", "team-a", app="web"))
    informer = env.factory.informer("pods")
    await eventually(lambda: informer.indexer.get_by_key("team-a/zz-new") is not None)
    token = first["metadata"]["continue"]
    while token:
        page = (await api.request("GET", "/api/v1/pods", [("limit", "2"), ("continue", token)])).json()
        assert page["metadata"]["resourceVersion"] == rv
        before += keys(page)
        token = page["metadata"].get("continue")
    assert before == pods_where(lambda *a: True)
    now = keys((await api.request("GET", "/api/v1/pods")).json())
    assert "team-a/zz-new" in now and "team-a/web-3" not in now


async def test_a_namespace_scoped_informer_serves_only_its_namespace(api: Client, env: Env) -> None:
    """An informer for one namespace must not answer for all namespaces as if it held them."""
    from kinformer import InformerFactory
    from kinformer.web import CacheApi

    client = env.server.api_client()
    try:
        scoped = CacheApi(["pods"], metrics_registry=env.registry)
        factory = InformerFactory(client, namespace="team-a")
        async with scoped.run(factory):
            assert await factory.wait_for_cache_sync(10)
            body = scoped.handle("GET", "/api/v1/namespaces/team-a/pods")
            assert body.status == 200
            refused = scoped.handle("GET", "/api/v1/pods")
            assert refused.status == 403
            assert b'this cache holds namespace \\"team-a\\" only' in refused.body  # type: ignore[union-attr]
            assert scoped.handle("GET", "/api/v1/namespaces/default/pods").status == 403
    finally:
        await client.close()
