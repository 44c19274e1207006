"""`resources="*"`: the mirror follows discovery; a CRD created is mirrored, a CRD deleted
stops its informer cleanly and removes its rows."""

from __future__ import annotations

from typing import Any

from kinformer import Resource
from kinformer.mirror.storage import MirrorStorage
from kinformer.testing import FakeApiServer, eventually, make_configmap
from tests.mirror.test_mirror import new_mirror

WIDGETS = Resource("example.com", "v1", "widgets", True, "Widget")
CRD = {"metadata": {"name": "widgets.example.com"},
       "spec": {"group": "example.com", "names": {"plural": "widgets", "kind": "Widget"}, "scope": "Namespaced",
                "versions": [{"name": "v1", "served": True, "storage": True}]}}


async def test_every_resource_follows_crds(fake_api_server: FakeApiServer, fake_api_client: Any,
                                           tmp_path: Any) -> None:
    server = fake_api_server
    server.create("configmaps", make_configmap("cm", "default"))
    async with MirrorStorage(f"sqlite:///{tmp_path / 'm.db'}") as storage, \
            new_mirror(storage, discovery_interval=3600) as mirror:
        cluster = await mirror.add_cluster("a", fake_api_client)
        assert await mirror.wait_for_sync(20)
        assert Resource.pods in cluster.resources and Resource.events not in cluster.resources
        assert await storage.get("a", Resource.configmaps, "cm", "default") is not None
        server.create("customresourcedefinitions", CRD)
        server.create(WIDGETS, {"apiVersion": "example.com/v1", "kind": "Widget",
                                "metadata": {"name": "w1", "namespace": "default"}})
        cluster.rediscover()  # as the next discovery interval would
        await eventually(lambda: WIDGETS in cluster.resources, 10)
        assert await mirror.wait_for_sync(10)
        await eventually(lambda: cluster.informer(WIDGETS) is not None and len(cluster.informer(WIDGETS) or ()) == 1)
        assert await mirror.wait_for_sync(10)
        assert (await storage.get("a", WIDGETS, "w1", "default") or {})["kind"] == "Widget"
        informer = cluster.informer(WIDGETS)
        server.delete("customresourcedefinitions", "widgets.example.com")
        # No rediscover(): the informer's own 404 on its next watch asks for one.
        server.drop_watches()
        await eventually(lambda: WIDGETS not in cluster.resources, 10)
        assert informer is not None and not informer.health().running
        assert await storage.objects("a", WIDGETS) == {}
        assert [r for r, _ in (await storage.mirrored())["a"] if r == WIDGETS] == []
        assert mirror.health().clusters["a"].discovery_error is None
