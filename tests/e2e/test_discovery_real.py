"""Discovery and the "every resource" mirror against a real kube-apiserver.

`discover()` must find the built-in resources with the group, preferred version, scope and
kind the server gives, leave out what cannot be listed and watched (componentstatuses,
bindings, the review APIs), subresources and events; a CRD created during the test must
appear once established (one served only at a version its group does not prefer
included) and vanish when deleted; an aggregated API answering 503 is tolerated. The
mirror (`resources="*"`, SQLite in tmp_path) must hold, at the end, exactly the server's
objects for every resource it mirrors, the CRDs' included.
"""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable
from typing import Any

import anyio

from kinformer import ListWatch, Resource
from kinformer.backoff import Backoff
from kinformer.clock import Clock
from kinformer.discovery import ResourceDiscovery, discover, group_resource
from kinformer.errors import ServerError
from kinformer.mirror.storage import MirrorStorage
from kinformer.mirror.sync import ClusterSync, Mirror
from kinformer.reflector import ReflectorConfig
from kinformer.testing import eventually
from tests.e2e.conftest import raw
from tests.e2e.helpers import configmap, create_many

GROUP = "e2e.kinformer.io"


def crd(plural: str, kind: str, versions: tuple[str, ...]) -> dict[str, Any]:
    schema = {"openAPIV3Schema": {"type": "object", "x-kubernetes-preserve-unknown-fields": True}}
    return {
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": f"{plural}.{GROUP}"},
        "spec": {"group": GROUP, "scope": "Namespaced",
                 "names": {"plural": plural, "singular": plural[:-1], "kind": kind, "listKind": f"{kind}List"},
                 "versions": [{"name": v, "served": True, "storage": i == 0, "schema": schema}
                              for i, v in enumerate(versions)]},
    }


async def create_crd(api: Any, versions: tuple[str, ...] = ("v1", "v1beta1")) -> Resource:
    """A fresh CRD (a unique plural per call; the first version stores), returned once the
    server says Established, as the Resource of its first version."""
    plural = f"widgets{uuid.uuid4().hex[:6]}s"
    kind = f"Widget{plural[7:13].capitalize()}"
    status, body = await raw(api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
                             crd(plural, kind, versions))
    assert status == 201, body
    with anyio.fail_after(30):
        while True:
            _, got = await raw(api, "GET", f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{plural}.{GROUP}")
            conditions = {c["type"]: c["status"] for c in (got.get("status") or {}).get("conditions") or ()}
            if conditions.get("Established") == "True":
                return Resource(GROUP, versions[0], plural, True, kind)
            await anyio.sleep(0.1)


async def delete_crd(api: Any, resource: Resource) -> None:
    status, body = await raw(api, "DELETE",
                             f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{resource.plural}.{GROUP}")
    assert status == 200, body


async def until_discovered(discovery: ResourceDiscovery, present: Resource | None = None,
                           absent: Resource | None = None, timeout: float = 30) -> None:
    """Refresh until discovery shows `present` and not `absent` (the server's discovery
    documents follow a CRD's establishment and deletion a moment later)."""
    with anyio.fail_after(timeout):
        while True:
            current = (await discovery.refresh()).current
            if (present is None or present in current) and (absent is None or absent not in current):
                return
            await anyio.sleep(0.1)


def by_group_resource(resources: Any) -> dict[str, Resource]:
    return {group_resource(r): r for r in resources}


async def test_discover_finds_the_builtin_resources(api: Any) -> None:
    result = await discover(api)
    assert result.failed == {}
    found = by_group_resource(result.resources)
    assert len(found) == len(result.resources)  # one version per group-resource: the preferred one
    expected = [
        Resource("", "v1", "pods", True, "Pod"),
        Resource("", "v1", "configmaps", True, "ConfigMap"),
        Resource("", "v1", "secrets", True, "Secret"),
        Resource("", "v1", "namespaces", False, "Namespace"),
        Resource("", "v1", "nodes", False, "Node"),
        Resource("apps", "v1", "deployments", True, "Deployment"),
        Resource("batch", "v1", "cronjobs", True, "CronJob"),
        Resource("autoscaling", "v2", "horizontalpodautoscalers", True, "HorizontalPodAutoscaler"),
        Resource("coordination.k8s.io", "v1", "leases", True, "Lease"),
        Resource("rbac.authorization.k8s.io", "v1", "clusterroles", False, "ClusterRole"),
        Resource("apiextensions.k8s.io", "v1", "customresourcedefinitions", False, "CustomResourceDefinition"),
    ]
    for resource in expected:
        assert found.get(group_resource(resource)) == resource
    # Not listable and watchable, subresources, and events (excluded by default):
    for name in ("componentstatuses", "bindings", "tokenreviews.authentication.k8s.io",
                 "selfsubjectaccessreviews.authorization.k8s.io", "events", "events.events.k8s.io"):
        assert name not in found
    assert not [r for r in result.resources if "/" in r.plural]
    assert {"v1", "apps/v1", "autoscaling/v2", "batch/v1"} <= result.group_versions
    assert "autoscaling/v1" in result.group_versions  # read, but its resources are autoscaling/v2's
    with_events = by_group_resource((await discover(api, exclude=())).resources)
    assert with_events["events"] == Resource("", "v1", "events", True, "Event")
    assert with_events["events.events.k8s.io"].version == "v1"
    # What discovery says can be listed can be listed.
    for resource in result.resources:
        lw = ListWatch(api, resource, None)
        async for _ in lw.list_pages("", limit=1):
            break


async def test_discovery_follows_crds_created_and_deleted(api: Any) -> None:
    discovery = ResourceDiscovery(api)
    first = await discovery.refresh()
    assert first.removed == frozenset() and first.added == first.current
    widgets = await create_crd(api)
    # A second CRD of the group served only at v1beta1, which is not the group's preferred
    # version (v1, from the first CRD): it is found at v1beta1.
    gadgets = await create_crd(api, ("v1beta1",))
    assert widgets not in first.current
    try:
        await until_discovered(discovery, present=widgets)
        await until_discovered(discovery, present=gadgets)
        served = by_group_resource(discovery.current)
        assert served[group_resource(widgets)] == widgets  # the preferred v1, not v1beta1 too
        assert served[group_resource(gadgets)] == gadgets
        assert gadgets.api_version == f"{GROUP}/v1beta1"
        assert len([r for r in discovery.current if r.group == GROUP]) == 2
    finally:
        await delete_crd(api, widgets)
    await until_discovered(discovery, absent=widgets)
    assert gadgets in discovery.current  # the group stays (now preferring v1beta1)
    await delete_crd(api, gadgets)
    await until_discovered(discovery, absent=gadgets)
    assert not [r for r in discovery.current if r.group == GROUP]
    assert not discovery.failed


async def test_discovery_tolerates_an_unavailable_aggregated_api(api: Any) -> None:
    """An APIService whose backend does not exist: the aggregator lists its group and
    answers 503 for its document, as metrics.k8s.io does while metrics-server is down."""
    group = f"agg{uuid.uuid4().hex[:6]}.{GROUP}"
    name = f"v1beta1.{group}"
    status, body = await raw(api, "POST", "/apis/apiregistration.k8s.io/v1/apiservices", {
        "apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService", "metadata": {"name": name},
        "spec": {"group": group, "version": "v1beta1", "service": {"namespace": "default", "name": "no-such-service"},
                 "insecureSkipTLSVerify": True, "groupPriorityMinimum": 100, "versionPriority": 10}})
    assert status == 201, body
    discovery = ResourceDiscovery(api)
    try:
        with anyio.fail_after(30):
            while True:
                change = await discovery.refresh()
                if f"{group}/v1beta1" in change.failed:
                    break
                await anyio.sleep(0.1)
        error = change.failed[f"{group}/v1beta1"]
        assert isinstance(error, ServerError) and error.code == 503, error
        assert list(change.failed) == [f"{group}/v1beta1"]
        assert Resource.pods in change.current and Resource.configmaps in change.current
        again = await discovery.refresh()  # still failing: nothing added or removed
        assert (again.added, again.removed) == (frozenset(), frozenset())
    finally:
        status, body = await raw(api, "DELETE", f"/apis/apiregistration.k8s.io/v1/apiservices/{name}")
        assert status == 200, body
    with anyio.fail_after(30):
        while True:
            if not (await discovery.refresh()).failed:
                break
            await anyio.sleep(0.1)


def _fast_backoff(clock: Clock) -> Backoff:
    return Backoff(initial=0.05, cap=0.5, clock=clock)


async def server_rvs(api: Any, resource: Resource) -> dict[str, str]:
    items, _ = await ListWatch(api, resource, None).list("")
    return {_key(o): o["metadata"]["resourceVersion"] for o in items}


def _key(obj: Any) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]


async def stored_rvs(storage: MirrorStorage, resource: Resource) -> dict[str, str]:
    return {k: o["metadata"]["resourceVersion"] for k, o in (await storage.objects("real", resource)).items()}


async def mirrored_equals_server(storage: MirrorStorage, api: Any, resource: Resource, timeout: float = 30) -> None:
    """Until the rows of `resource` are the server's objects at their resourceVersions (a
    fresh list each time: leases and endpoints change by themselves)."""
    with anyio.fail_after(timeout):
        while True:
            if await stored_rvs(storage, resource) == await server_rvs(api, resource):
                return
            await anyio.sleep(0.1)


async def test_mirror_every_resource_of_a_real_server(api: Any, namespace: str, tmp_path: Any) -> None:
    ns_path = f"/api/v1/namespaces/{namespace}"
    await create_many(api, f"{ns_path}/configmaps", [configmap(f"cm-{i}", app="mirror") for i in range(20)])
    status, _ = await raw(api, "POST", f"{ns_path}/secrets",
                          {"metadata": {"name": "s1"}, "stringData": {"k": "v"}})
    assert status == 201
    async with MirrorStorage(f"sqlite:///{tmp_path / 'mirror.db'}") as storage, \
            Mirror(storage, discovery_interval=3600, reflector_config=ReflectorConfig(backoff=_fast_backoff),
                   retry_initial=0.02, retry_cap=0.2, checkpoint_interval=0.05) as mirror:
        cluster = await mirror.add_cluster("real", api)
        assert await mirror.wait_for_sync(120), mirror.health()
        assert set(cluster.resources) == set((await discover(api)).resources)
        assert Resource.events not in cluster.resources

        widgets = await create_crd(api)
        gadgets = await create_crd(api, ("v1beta1",))  # at a version the group does not prefer
        try:
            for res, names in ((widgets, ("w0", "w1", "w2")), (gadgets, ("g0",))):
                for name in names:
                    status, body = await raw(api, "POST", f"/apis/{res.api_version}/namespaces/{namespace}/"
                                             f"{res.plural}", {"apiVersion": res.api_version, "kind": res.kind,
                                                               "metadata": {"name": name}, "spec": {"size": 1}})
                    assert status == 201, body
            await _rediscover_until(cluster, lambda: {widgets, gadgets} <= set(cluster.resources))
            assert await mirror.wait_for_sync(60), mirror.health()

            # Changes while mirroring: an update, a delete, a create, in both kinds.
            status, _ = await raw(api, "PUT", f"{ns_path}/configmaps/cm-0", configmap("cm-0", app="changed"))
            assert status == 200
            status, _ = await raw(api, "DELETE", f"{ns_path}/configmaps/cm-1")
            assert status == 200
            status, _ = await raw(api, "DELETE", f"/apis/{GROUP}/v1/namespaces/{namespace}/{widgets.plural}/w0")
            assert status == 200
            await create_many(api, f"{ns_path}/configmaps", [configmap("cm-new")])

            for resource in cluster.resources:
                await mirrored_equals_server(storage, api, resource)
            for resource in (Resource.configmaps, gadgets, widgets):  # widgets last: `rows` below
                prefix = f"/apis/{resource.api_version}" if resource.group else "/api/v1"
                status, listing = await raw(api, "GET", f"{prefix}/namespaces/{namespace}/{resource.plural}")
                assert status == 200
                rows = {k: v for k, v in (await storage.objects("real", resource)).items()
                        if k.startswith(f"{namespace}/")}
                type_meta = {"kind": resource.kind, "apiVersion": resource.api_version}
                for o in listing["items"]:
                    o["metadata"].pop("managedFields", None)  # dropped at decode (listwatch.py)
                assert rows == {_key(o): {**type_meta, **o} for o in listing["items"]}
            assert sorted(rows) == [f"{namespace}/w1", f"{namespace}/w2"]
            informer = cluster.informer(widgets)
            assert informer is not None
            assert len(await storage.objects("real", gadgets)) == 1
        finally:
            await delete_crd(api, widgets)
            await delete_crd(api, gadgets)
        # The CRDs' informers stop (their watches end, the relist gets 404, discovery runs)
        # and their rows go.
        await _rediscover_until(cluster, lambda: not {widgets, gadgets} & set(cluster.resources), poke=False)
        assert not informer.health().running
        assert await storage.objects("real", widgets) == {} and await storage.objects("real", gadgets) == {}
        assert mirror.health().clusters["real"].discovery_error is None


async def _rediscover_until(cluster: ClusterSync, condition: Callable[[], bool], timeout: float = 60,
                            poke: bool = True) -> None:
    """Until `condition()`; with `poke`, asking for discovery every half second (as the
    interval would): the server's discovery documents follow a CRD a moment after it is
    established."""
    with anyio.fail_after(timeout):
        while not condition():
            if poke:
                cluster.rediscover()
            with contextlib.suppress(TimeoutError):
                await eventually(condition, 0.5, interval=0.05)
