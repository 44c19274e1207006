"""FakeApiServer: deleting a CRD deletes its objects and stops serving its resource."""

from __future__ import annotations

from typing import Any

from kinformer import Resource
from kinformer.testing import FakeApiServer
from tests.integration.conftest import Raw, read_events

WIDGETS = Resource("example.com", "v1", "widgets", True, "Widget")
CRD = {"metadata": {"name": "widgets.example.com"},
       "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"}, "scope": "Namespaced",
                "versions": [{"name": "v1", "served": True, "storage": True}]}}


def widget(name: str) -> dict[str, Any]:
    return {"apiVersion": "example.com/v1", "kind": "Widget", "metadata": {"name": name, "namespace": "default"}}


async def test_deleting_a_crd_deletes_its_objects_then_unserves_it(raw: Raw, server: FakeApiServer) -> None:
    server.create("customresourcedefinitions", CRD)
    server.create(WIDGETS, widget("w1"))
    status, groups, _ = await raw.get("/apis")
    assert status == 200 and "example.com" in [g["name"] for g in groups["groups"]]
    async with raw.watch("/apis/example.com/v1/widgets", resourceVersion=server.resource_version) as resp:
        server.delete("customresourcedefinitions", "widgets.example.com")
        events = await read_events(resp, 1)
    assert [(e["type"], e["object"]["metadata"]["name"]) for e in events] == [("DELETED", "w1")]
    status, body, _ = await raw.get("/apis/example.com/v1/widgets")
    assert status == 404 and body["reason"] == "NotFound"
    assert (await raw.get("/apis/example.com/v1"))[0] == 404
    _, groups, _ = await raw.get("/apis")
    assert "example.com" not in [g["name"] for g in groups["groups"]]
    server.create("customresourcedefinitions", CRD)  # and it can come back, empty
    status, body, _ = await raw.get("/apis/example.com/v1/widgets")
    assert status == 200 and body["items"] == []
