"""Discovery: preferred versions, list+watch only, no subresources, no events, failing groups
tolerated (and their informers kept), against a scripted discovery server and FakeApiServer."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
import pytest
import pytest_asyncio
from aiohttp import web

from kinformer import Resource
from kinformer.discovery import ResourceDiscovery, discover, group_resource
from kinformer.errors import ConnectionFailedError, ServerError
from kinformer.testing import FakeApiServer

LW = ["create", "delete", "get", "list", "patch", "update", "watch"]


def resource(name: str, kind: str, verbs: list[str] = LW, namespaced: bool = True) -> dict[str, Any]:
    return {"name": name, "kind": kind, "namespaced": namespaced, "verbs": verbs}


class Discovery:
    """A discovery-only API server whose documents (and failures) a test edits."""

    def __init__(self) -> None:
        self.docs: dict[str, Any] = {
            "/api": {"kind": "APIVersions", "versions": ["v1"]},
            "/api/v1": {"resources": [resource("pods", "Pod"), resource("pods/log", "Pod", ["get"]),
                                      resource("events", "Event"), resource("bindings", "Binding", ["create"]),
                                      resource("nodes", "Node", namespaced=False)]},
            "/apis/apps/v1": {"resources": [resource("deployments", "Deployment"),
                                            resource("deployments/scale", "Scale")]},
            "/apis/apps/v1beta1": {"resources": [resource("deployments", "Deployment"),
                                                 resource("oldthings", "OldThing")]},
            "/apis/events.k8s.io/v1": {"resources": [resource("events", "Event")]},
            "/apis/metrics.k8s.io/v1beta1": {"resources": [resource("pods", "PodMetrics", ["get", "list", "watch"])]},
        }
        self.groups = {"apps": ["v1", "v1beta1"], "events.k8s.io": ["v1"], "metrics.k8s.io": ["v1beta1"]}
        self.failing: dict[str, int] = {}
        self.runner: web.AppRunner | None = None
        self.url = ""

    async def handle(self, request: web.Request) -> web.Response:
        path = request.path
        if path in self.failing:
            code = self.failing[path]
            return web.json_response({"kind": "Status", "code": code, "reason": "ServiceUnavailable",
                                      "message": "the server is currently unable to handle the request"}, status=code)
        if path == "/apis":
            groups = [{"name": g, "versions": [{"groupVersion": f"{g}/{v}", "version": v} for v in vs],
                       "preferredVersion": {"groupVersion": f"{g}/{vs[0]}", "version": vs[0]}}
                      for g, vs in self.groups.items()]
            return web.json_response({"kind": "APIGroupList", "groups": groups})
        if path in self.docs:
            return web.Response(body=orjson.dumps(self.docs[path]), content_type="application/json")
        return web.json_response({"kind": "Status", "code": 404, "reason": "NotFound"}, status=404)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/{tail:.*}", self.handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]

    def client(self) -> Any:
        from kubernetes_asyncio.client import ApiClient, Configuration

        return ApiClient(Configuration(host=self.url))


@pytest_asyncio.fixture
async def stub() -> AsyncIterator[tuple[Discovery, Any]]:
    d = Discovery()
    await d.start()
    client = d.client()
    yield d, client
    await client.close()
    assert d.runner is not None
    await d.runner.cleanup()


def names(resources: Any) -> set[str]:
    return {f"{group_resource(r)}/{r.version}" for r in resources}


async def test_preferred_listable_watchable_no_subresources_no_events(stub: tuple[Discovery, Any]) -> None:
    _, client = stub
    result = await discover(client)
    # deployments at the preferred v1 only; oldthings, which only v1beta1 serves, at v1beta1.
    assert names(result.resources) == {"pods/v1", "nodes/v1", "deployments.apps/v1", "oldthings.apps/v1beta1",
                                       "pods.metrics.k8s.io/v1beta1"}
    assert len(result.resources) == len(names(result.resources))
    assert result.group_versions == {"v1", "apps/v1", "apps/v1beta1", "events.k8s.io/v1", "metrics.k8s.io/v1beta1"}
    nodes = next(r for r in result.resources if r.plural == "nodes")
    assert not nodes.namespaced and nodes.kind == "Node"
    assert not result.failed
    with_events = await discover(client, exclude=())
    assert {"events/v1", "events.events.k8s.io/v1"} <= names(with_events.resources)


async def test_a_failing_group_is_tolerated_and_named(stub: tuple[Discovery, Any]) -> None:
    d, client = stub
    d.failing["/apis/metrics.k8s.io/v1beta1"] = 503
    result = await discover(client)
    assert names(result.resources) == {"pods/v1", "nodes/v1", "deployments.apps/v1", "oldthings.apps/v1beta1"}
    assert list(result.failed) == ["metrics.k8s.io/v1beta1"]
    assert isinstance(result.failed["metrics.k8s.io/v1beta1"], ServerError)


async def test_a_failing_preferred_version_keeps_its_resources_at_that_version(stub: tuple[Discovery, Any]) -> None:
    d, client = stub
    rd = ResourceDiscovery(client)
    deployments = Resource("apps", "v1", "deployments")
    assert deployments in (await rd.refresh()).current
    d.failing["/apis/apps/v1"] = 503
    # discover() alone takes deployments from the version that answered, as client-go does ...
    assert "deployments.apps/v1beta1" in names((await discover(client)).resources)
    # ... but the running set keeps the informer it has rather than switching versions.
    second = await rd.refresh()
    assert not second.added and not second.removed and list(second.failed) == ["apps/v1"]
    assert [r for r in second.current if r.plural == "deployments"] == [deployments]


async def test_the_core_documents_failing_raises(stub: tuple[Discovery, Any]) -> None:
    d, client = stub
    d.failing["/apis"] = 503
    with pytest.raises(ServerError):
        await discover(client)


async def test_refresh_keeps_failed_groups_and_drops_vanished_ones(stub: tuple[Discovery, Any],
                                                                   caplog: pytest.LogCaptureFixture) -> None:
    d, client = stub
    rd = ResourceDiscovery(client)
    first = await rd.refresh()
    metrics = Resource("metrics.k8s.io", "v1beta1", "pods")
    assert metrics in first.added and not first.removed
    d.failing["/apis/metrics.k8s.io/v1beta1"] = 503
    second = await rd.refresh()
    assert not second.added and not second.removed and metrics in second.current
    assert "discovery failed for some groups" in caplog.text and "metrics.k8s.io/v1beta1" in caplog.text
    del d.groups["metrics.k8s.io"]  # the APIService is gone
    third = await rd.refresh()
    assert third.removed == {metrics} and not rd.failed


async def test_a_group_version_answering_404_is_gone_not_failed(stub: tuple[Discovery, Any]) -> None:
    d, client = stub
    rd = ResourceDiscovery(client)
    metrics = Resource("metrics.k8s.io", "v1beta1", "pods")
    assert metrics in (await rd.refresh()).current
    d.failing["/apis/metrics.k8s.io/v1beta1"] = 404  # still listed in /apis: deleted in between
    change = await rd.refresh()
    assert change.removed == {metrics} and not change.failed


async def test_unreachable_server_is_a_connection_error() -> None:
    from kubernetes_asyncio.client import ApiClient, Configuration

    client = ApiClient(Configuration(host="http://127.0.0.1:1"))
    try:
        with pytest.raises(ConnectionFailedError):
            await discover(client)
    finally:
        await client.close()


async def test_fake_server_discovery_sees_crds_come_and_go(fake_api_server: FakeApiServer,
                                                          fake_api_client: Any) -> None:
    rd = ResourceDiscovery(fake_api_client)
    first = await rd.refresh()
    assert Resource.pods in first.current and Resource.events not in first.current
    fake_api_server.create("customresourcedefinitions", {
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"}, "scope": "Namespaced",
                 "versions": [{"name": "v1", "served": True, "storage": True}]}})
    widgets = Resource("example.com", "v1", "widgets")
    assert (await rd.refresh()).added == {widgets}
    fake_api_server.delete("customresourcedefinitions", "widgets.example.com")
    assert (await rd.refresh()).removed == {widgets}
