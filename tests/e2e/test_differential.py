"""The same scripted requests to the real API server and to FakeApiServer; the normalised
answers (status codes, Status reasons, event types and shapes, list metadata) must match.

Messages are not compared (they are prose); everything a client branches on is."""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
import pytest

from kinformer.testing import FakeApiServer
from tests.e2e.conftest import raw
from tests.e2e.controlplane.cluster import Endpoints
from tests.e2e.helpers import compact_etcd, configmap


def status_of(code: int, body: Any) -> dict[str, Any]:
    body = body if isinstance(body, dict) else {}
    details = body.get("details") or {}
    causes = sorted(f"{c.get('reason', '')}:{c.get('field', '')}" for c in details.get("causes") or [])
    return {"http": code, "kind": body.get("kind"), "reason": body.get("reason"), "code": body.get("code"),
            "causes": causes}


def list_of(code: int, body: Any) -> dict[str, Any]:
    items = body.get("items")
    return {"http": code, "kind": body.get("kind"), "apiVersion": body.get("apiVersion"),
            "metadata": sorted(body.get("metadata", {})), "items": None if items is None else len(items),
            "item_has_typemeta": bool(items) and "kind" in items[0]}


async def watch_events(api: Any, path: str, **query: str) -> list[dict[str, Any]]:
    resp = await api.call_api(path, "GET", query_params=[("watch", "true"), *query.items()],
                              header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
                              _preload_content=False)
    try:
        if resp.status != 200:
            return [{"http": resp.status, **status_of(resp.status, orjson.loads(await resp.read()))}]
        out = []
        async for line in resp.content:
            event = orjson.loads(line)
            obj = event["object"]
            shape: dict[str, Any] = {"type": event["type"], "kind": obj.get("kind")}
            if event["type"] == "ERROR":
                shape.update(code=obj.get("code"), reason=obj.get("reason"))
            elif event["type"] == "BOOKMARK":
                shape["annotations"] = sorted((obj["metadata"].get("annotations") or {}).items())
            out.append(shape)
            if event["type"] == "ERROR" or len(out) > 50:
                break
        return out
    finally:
        resp.close()


async def script(api: Any, ns: str, compact: Callable[[int], Awaitable[None]]) -> dict[str, Any]:
    """The request sequence; returns normalised observations keyed by step."""
    cms = f"/api/v1/namespaces/{ns}/configmaps"
    secrets = f"/api/v1/namespaces/{ns}/secrets"
    seen: dict[str, Any] = {}
    for i in range(3):
        code, _ = await raw(api, "POST", cms, configmap(f"c{i}"))
        assert code == 201
    code, page1 = await raw(api, "GET", cms, limit="2")
    seen["list page 1 (limit 2)"] = list_of(code, page1)
    code, page2 = await raw(api, "GET", cms, limit="2", **{"continue": page1["metadata"]["continue"]})
    seen["list page 2 (continue)"] = list_of(code, page2)
    code, empty = await raw(api, "GET", f"/api/v1/namespaces/{ns}/services")
    seen["empty list"] = list_of(code, empty)
    rv = page1["metadata"]["resourceVersion"]
    code, c1 = await raw(api, "GET", f"{cms}/c1")
    c1["data"] = {"changed": "yes"}
    await raw(api, "PUT", f"{cms}/c1", c1)
    await raw(api, "DELETE", f"{cms}/c2")
    seen["watch from RV"] = await watch_events(api, cms, resourceVersion=rv, timeoutSeconds="1")
    initial = await watch_events(api, cms, resourceVersion="0", timeoutSeconds="1")
    seen["watch from RV 0 (initial ADDED)"] = [e for e in initial if e["type"] != "BOOKMARK"]
    seen["list with future RV"] = status_of(*await raw(api, "GET", cms, resourceVersion=str(int(rv) + 10**9)))
    seen["bad label selector"] = status_of(*await raw(api, "GET", cms, labelSelector="app in (x"))
    seen["unsupported field selector"] = status_of(*await raw(api, "GET", cms, fieldSelector="spec.nope=1"))
    seen["resourceVersionMatch without RV"] = status_of(
        *await raw(api, "GET", cms, resourceVersionMatch="NotOlderThan"))
    seen["streaming list without its params"] = await watch_events(api, secrets, sendInitialEvents="true")
    seen["streaming list without bookmarks"] = await watch_events(
        api, secrets, sendInitialEvents="true", resourceVersionMatch="NotOlderThan", timeoutSeconds="1")
    code, _ = await raw(api, "POST", secrets, {"metadata": {"name": "s"}, "stringData": {"a": "b"}})
    seen["streaming list"] = [e for e in await watch_events(
        api, secrets, sendInitialEvents="true", resourceVersionMatch="NotOlderThan", allowWatchBookmarks="true",
        resourceVersion="", timeoutSeconds="1") if e["type"] != "BOOKMARK" or e["annotations"]]
    code, one = await raw(api, "GET", cms, limit="1")
    token = one["metadata"]["continue"]
    code, created = await raw(api, "POST", cms, configmap("after-token"))
    await compact(int(created["metadata"]["resourceVersion"]))
    seen["expired continue token"] = status_of(*await raw(api, "GET", cms, limit="1", **{"continue": token}))
    seen["watch from a compacted RV"] = (await watch_events(api, cms, resourceVersion=rv))[:1]
    return seen


async def test_fake_server_matches_the_real_one(cluster: Endpoints, api: Any, namespace: str) -> None:
    if cluster.etcd is None:
        pytest.skip("needs the built control plane's etcd to compact")
    etcd = cluster.etcd

    async def compact_real(revision: int) -> None:
        await compact_etcd(etcd, revision)

    real = await script(api, namespace, compact_real)
    async with FakeApiServer() as fake:
        client = fake.api_client()
        try:
            async def compact_fake(revision: int) -> None:
                fake.compact()

            faked = await script(client, namespace, compact_fake)
        finally:
            await client.close()
    mismatches = {step: {"real": real[step], "fake": faked.get(step)} for step in real if real[step] != faked.get(step)}
    print("\ndifferential check, real server:\n" + json.dumps(real, indent=1))
    assert not mismatches, json.dumps(mismatches, indent=1)
