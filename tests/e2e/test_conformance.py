"""kinformer against a real kube-apiserver: the conformance scenarios of the reflector and
informer (paging, resume, 410, streaming lists, selectors, CRDs, metadata-only, secrets)."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import anyio
import pytest
import structlog

from kinformer import DeletedFinalStateUnknown, ListWatch, Resource, SharedIndexInformer
from kinformer.testing import eventually
from tests.e2e.conftest import TcpProxy, raw
from tests.e2e.controlplane.cluster import Endpoints
from tests.e2e.helpers import Recorder, compact_etcd, configmap, converge, create_many, fast_config, running

CM = Resource.configmaps


def cm_path(ns: str) -> str:
    return f"/api/v1/namespaces/{ns}/configmaps"


async def test_paged_initial_sync_of_1200_configmaps(api: Any, namespace: str) -> None:
    await create_many(api, cm_path(namespace), [configmap(f"cm-{i:04d}") for i in range(1200)])
    inf = SharedIndexInformer(ListWatch(api, CM, namespace), reflector_config=fast_config())
    async with running(inf):
        assert len(inf.indexer) == 1200
        await converge(inf, api, CM, namespace)
        stats = inf.reflector.stats
        assert stats.lists == 1 and stats.list_pages == 3  # RV "0" from etcd, 500 per page
        assert inf.indexer.list()[0]["kind"] == "ConfigMap"  # TypeMeta filled in for list items


async def test_watch_resumes_without_relist_after_a_drop(proxied_api: Any, api: Any, proxy: TcpProxy,
                                                        namespace: str) -> None:
    await create_many(api, cm_path(namespace), [configmap(f"a-{i}") for i in range(5)])
    inf = SharedIndexInformer(ListWatch(proxied_api, CM, namespace), reflector_config=fast_config())
    async with running(inf):
        for round_ in range(3):
            await eventually(lambda n=round_ + 1: inf.reflector.stats.watches == n, 30)
            proxy.drop()
            await create_many(api, cm_path(namespace), [configmap(f"b-{round_}")])
            await converge(inf, api, CM, namespace)
        stats = inf.reflector.stats
        assert stats.lists == 1 and stats.relists == 0 and stats.expired == 0
        assert stats.watches >= 4


async def test_410_after_compaction_relists_once_with_tombstones(cluster: Endpoints, proxied_api: Any, api: Any,
                                                                proxy: TcpProxy, namespace: str) -> None:
    if cluster.etcd is None:
        pytest.skip("needs the built control plane's etcd to compact")
    await create_many(api, cm_path(namespace), [configmap(f"c-{i}") for i in range(10)])
    inf = SharedIndexInformer(ListWatch(proxied_api, CM, namespace), reflector_config=fast_config())
    deleted: list[Any] = []
    inf.add_event_handler(on_delete=deleted.append)
    async with running(inf):
        proxy.refuse()  # a gap: the informer cannot reconnect
        for i in range(3):
            status, _ = await raw(api, "DELETE", f"{cm_path(namespace)}/c-{i}")
            assert status == 200
        created = await create_many(api, cm_path(namespace), [configmap("during-gap")])
        await compact_etcd(cluster.etcd, int(created[0]["metadata"]["resourceVersion"]))
        proxy.accept()
        await converge(inf, api, CM, namespace)
        await eventually(lambda: len(deleted) == 3, 30)
        stats = inf.reflector.stats
        assert stats.expired == 1 and stats.relists == 1
        assert sorted(d.key for d in deleted) == [f"{namespace}/c-{i}" for i in range(3)]
        assert all(isinstance(d, DeletedFinalStateUnknown) for d in deleted)


async def test_streaming_list_ends_at_the_initial_events_bookmark(api: Any, namespace: str) -> None:
    path = f"/api/v1/namespaces/{namespace}/secrets"
    await create_many(api, path, [{"metadata": {"name": f"s-{i}"}, "stringData": {"k": "v"}} for i in range(20)])
    lw = ListWatch(api, Resource.secrets, namespace)
    events = []
    async with lw.watch("", 30, send_initial_events=True) as stream:
        async for batch in stream:
            events += batch
            if any(e.type == "BOOKMARK" and (e.object["metadata"].get("annotations") or {}).get(
                    "k8s.io/initial-events-end") == "true" for e in batch):
                break
    assert [e.type for e in events if e.type != "BOOKMARK"] == ["ADDED"] * 20
    inf = SharedIndexInformer(lw, reflector_config=fast_config(streaming_list=True))
    async with running(inf):
        await converge(inf, api, Resource.secrets, namespace)
        stats = inf.reflector.stats
        assert stats.streaming_lists == 1 and stats.streaming_fallbacks == 0 and stats.list_pages == 0


async def test_streaming_list_falls_back_when_the_stream_fails(proxied_api: Any, api: Any, proxy: TcpProxy,
                                                              namespace: str) -> None:
    await create_many(api, cm_path(namespace), [configmap(f"f-{i}") for i in range(5)])
    proxy.refuse()
    inf = SharedIndexInformer(ListWatch(proxied_api, CM, namespace), reflector_config=fast_config(streaming_list=True))
    async with inf:
        await eventually(lambda: inf.reflector is not None and inf.reflector.stats.streaming_fallbacks >= 1, 30)
        proxy.accept()
        assert await inf.wait_for_sync(60)
        await converge(inf, api, CM, namespace)


async def test_selectors_move_objects_in_and_out(api: Any, namespace: str) -> None:
    await create_many(api, cm_path(namespace), [configmap("moving", app="db")])
    await create_many(api, cm_path(namespace), [configmap("named")])
    by_label = SharedIndexInformer(ListWatch(api, CM, namespace, label_selector="app=web"),
                                   reflector_config=fast_config())
    by_field = SharedIndexInformer(ListWatch(api, CM, namespace, field_selector="metadata.name=named"),
                                   reflector_config=fast_config())
    rec = Recorder()
    by_label.add_event_handler(rec.on_add, rec.on_update, rec.on_delete)
    async with running(by_label), running(by_field):
        assert len(by_label.indexer) == 0 and list(by_field.indexer.list_keys()) == [f"{namespace}/named"]
        status, got = await raw(api, "GET", f"{cm_path(namespace)}/moving")
        got["metadata"]["labels"] = {"app": "web"}
        status, got = await raw(api, "PUT", f"{cm_path(namespace)}/moving", got)
        assert status == 200
        await eventually(lambda: len(by_label.indexer) == 1, 30)
        got["metadata"]["labels"] = {"app": "db"}
        status, got = await raw(api, "PUT", f"{cm_path(namespace)}/moving", got)
        await eventually(lambda: len(by_label.indexer) == 0, 30)
    assert [kind for kind, _ in rec.events] == ["add", "delete"]


async def test_crd_created_at_run_time_is_informed_by_gvr(api: Any, namespace: str) -> None:
    group = f"e2e{uuid.uuid4().hex[:6]}.kinformer.dev"
    crd = {"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
           "metadata": {"name": f"widgets.{group}"},
           "spec": {"group": group, "scope": "Namespaced",
                    "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
                    "versions": [{"name": "v1", "served": True, "storage": True, "schema": {"openAPIV3Schema": {
                        "type": "object", "x-kubernetes-preserve-unknown-fields": True}}}]}}
    status, body = await raw(api, "POST", "/apis/apiextensions.k8s.io/v1/customresourcedefinitions", crd)
    assert status == 201, body
    widgets = Resource(group, "v1", "widgets", kind="Widget")
    path = widgets.collection_path(namespace)

    async def established() -> bool:
        status, _ = await raw(api, "GET", path)
        return bool(status == 200)

    with anyio.fail_after(60):
        while not await established():  # noqa: ASYNC110 - polling the server until the CRD is served
            await anyio.sleep(0.2)
    await create_many(api, path, [{"apiVersion": f"{group}/v1", "kind": "Widget", "metadata": {"name": f"w{i}"},
                                   "spec": {"size": i}} for i in range(3)])
    inf = SharedIndexInformer(ListWatch(api, widgets, namespace), reflector_config=fast_config())
    async with running(inf):
        assert sorted(o["spec"]["size"] for o in inf.indexer.list()) == [0, 1, 2]
        assert {o["kind"] for o in inf.indexer.list()} == {"Widget"}


async def test_metadata_only_informer(api: Any, namespace: str) -> None:
    await create_many(api, cm_path(namespace), [configmap(f"m-{i}") for i in range(3)])
    inf = SharedIndexInformer(ListWatch(api, CM, namespace, metadata_only=True), reflector_config=fast_config())
    async with running(inf):
        objs = inf.indexer.list()
        assert len(objs) == 3
        assert all(o["kind"] == "PartialObjectMetadata" and "data" not in o for o in objs)
        await create_many(api, cm_path(namespace), [configmap("m-new")])
        await eventually(lambda: len(inf.indexer) == 4, 30)
        new = inf.indexer.get_by_key(f"{namespace}/m-new")
        assert new["kind"] == "PartialObjectMetadata" and "data" not in new


async def test_secret_informer_logs_no_secret_data(proxied_api: Any, api: Any, proxy: TcpProxy,
                                                   namespace: str) -> None:
    secret_value = f"very-secret-{uuid.uuid4().hex}"
    path = f"/api/v1/namespaces/{namespace}/secrets"
    await create_many(api, path, [{"metadata": {"name": "creds"}, "stringData": {"password": secret_value}}])
    import base64

    encoded = base64.b64encode(secret_value.encode()).decode()
    with structlog.testing.capture_logs() as logs:
        inf = SharedIndexInformer(ListWatch(proxied_api, Resource.secrets, namespace), reflector_config=fast_config())

        def broken(obj: Any, initial: bool) -> None:
            raise ValueError("handler failure")

        inf.add_event_handler(broken)
        async with running(inf):
            proxy.drop()
            await create_many(api, path, [{"metadata": {"name": "more"}, "stringData": {"password": secret_value}}])
            await eventually(lambda: len(inf.indexer) == 2, 30)
            await asyncio.sleep(0)
    assert logs, "expected some log lines (handler failures, dropped watch)"
    text = repr(logs)
    assert secret_value not in text and encoded not in text
