"""Clients nobody here wrote, unmodified, against the cache served by the aiohttp adapter:
kubernetes_asyncio's typed API (list with selectors, read, paging, 404s, its Watch), and
kinformer's own informer using the cache as its API server (a read-only proxy)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest
import pytest_asyncio
from kubernetes_asyncio.client import ApiClient, AppsV1Api, Configuration, CoreV1Api
from kubernetes_asyncio.client.exceptions import ApiException
from kubernetes_asyncio.watch import Watch

from kinformer import ListWatch, Resource, SharedIndexInformer
from kinformer.testing import eventually
from tests.web.conftest import PREFIX, AiohttpClient, Env, pod


@pytest_asyncio.fixture
async def typed(env: Env) -> AsyncIterator[ApiClient]:
    """A kubernetes_asyncio client whose host is the cache's mount point (no credentials)."""
    http = AiohttpClient(env.cache)
    await http.start()
    client = ApiClient(Configuration(host=http.url + PREFIX))
    try:
        yield client
    finally:
        await client.close()
        await http.stop()


async def test_typed_list_with_label_selector_and_read(typed: ApiClient, env: Env) -> None:
    v1 = CoreV1Api(typed)
    pods = await v1.list_namespaced_pod("default", label_selector="app=web,tier in (frontend,backend)")
    assert pods.kind == "PodList"
    assert pods.metadata.resource_version == env.server.resource_version
    assert [p.metadata.name for p in pods.items] == ["web-1", "web-2"]
    assert [p.status.phase for p in pods.items] == ["Running", "Pending"]
    everywhere = await v1.list_pod_for_all_namespaces(label_selector="tier=frontend",
                                                      field_selector="status.phase=Running")
    assert [(p.metadata.namespace, p.metadata.name) for p in everywhere.items] == [("default", "web-1"),
                                                                                    ("team-a", "web-3")]
    one = await v1.read_namespaced_pod("web-3", "team-a")
    assert (one.metadata.name, one.metadata.labels, one.spec.containers[0].name) == (
        "web-3", {"app": "web", "tier": "frontend"}, "app")
    namespace = await v1.read_namespace("team-a")
    assert namespace.metadata.name == "team-a"
    deployments = await AppsV1Api(typed).list_namespaced_deployment("default")
    assert [d.metadata.name for d in deployments.items] == ["web"]


async def test_typed_paging_and_errors(typed: ApiClient) -> None:
    v1 = CoreV1Api(typed)
    seen: list[str] = []
    token: str | None = None
    while True:
        page = await v1.list_pod_for_all_namespaces(limit=2, _continue=token)
        seen += [p.metadata.name for p in page.items]
        token = page.metadata._continue
        if not token:
            break
    assert seen == ["api-1", "web-1", "web-2", "db-1", "web-3"]
    with pytest.raises(ApiException) as missing:
        await v1.read_namespaced_pod("nope", "default")
    assert missing.value.status == 404
    with pytest.raises(ApiException) as bad:
        await v1.list_namespaced_pod("default", label_selector="app in (web")
    assert bad.value.status == 400 and b"unable to parse requirement" in bad.value.body.encode()
    with pytest.raises(ApiException) as write:
        await v1.delete_namespaced_pod("web-1", "default")
    assert write.value.status == 405
    with pytest.raises(ApiException) as unserved:
        await v1.list_namespaced_config_map("default")
    assert unserved.value.status == 404


async def test_typed_watch_sees_changes_from_the_cache(typed: ApiClient, env: Env) -> None:
    v1 = CoreV1Api(typed)
    listed = await v1.list_namespaced_pod("default", label_selector="app=web")
    watch = Watch()
    events: list[tuple[str, str]] = []

    async def follow() -> None:
        async with watch.stream(v1.list_namespaced_pod, "default", label_selector="app=web",
                                resource_version=listed.metadata.resource_version, timeout_seconds=10) as stream:
            async for event in stream:
                events.append((event["type"], event["object"].metadata.name))
                if len(events) == 3:
                    watch.stop()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(follow)
            env.server.create("pods", pod("web-9", "default", app="web"))
            env.server.patch("pods", "web-2", {"metadata": {"labels": {"app": "other"}}}, "default")  # leaves
            env.server.create("pods", pod("api-9", "default", app="api"))  # never matches
            env.server.delete("pods", "web-1", "default")
    assert events == [("ADDED", "web-9"), ("DELETED", "web-2"), ("DELETED", "web-1")]


async def test_a_kinformer_informer_can_use_the_cache_as_its_server(typed: ApiClient, env: Env) -> None:
    """List, then watch from the list's RV, through the cache: the informer follows the
    upstream changes exactly, including deletes, with one shared upstream watch."""
    informer: SharedIndexInformer[Any] = SharedIndexInformer(ListWatch(typed, Resource.pods, namespace="default"))
    upstream = env.factory.informer("pods")

    def same() -> bool:
        mine = {k: o["metadata"]["resourceVersion"] for k, o in informer.indexer.items()}
        theirs = {k: o["metadata"]["resourceVersion"] for k, o in upstream.indexer.items() if k.startswith("default/")}
        return mine == theirs

    async with informer:
        assert await informer.wait_for_sync(10)
        assert same() and len(informer.indexer) == 3
        watches_before = env.server.count("watch")
        for i in range(20):
            env.server.create("pods", pod(f"churn-{i}", "default", app="churn"))
            if i % 3 == 0:
                env.server.delete("pods", f"churn-{i}", "default")
        env.server.delete("pods", "api-1", "default")
        env.server.create("pods", pod("elsewhere", "team-a", app="web"))
        await eventually(lambda: upstream.indexer.get_by_key("team-a/elsewhere") is not None)
        await eventually(same)
        assert "default/api-1" not in informer.indexer and "default/churn-19" in informer.indexer
        assert informer.reflector is not None and informer.reflector.stats.relists == 0
        assert env.server.count("watch") == watches_before  # no new upstream watch for the new client
