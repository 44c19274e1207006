"""SharedIndexInformer(store="compact") over real HTTP: the same events and reads as the
default store, handlers still get dicts, and a relist of an unchanged cache decodes nothing."""

from __future__ import annotations

from typing import Any

import pytest

from kinformer import CompactIndexer, DeletedFinalStateUnknown, Lister, ListWatch, Resource, SharedIndexInformer
from kinformer.store import CompactObject
from kinformer.testing import FakeApiServer, eventually, make_configmap


def _key(obj: Any) -> str:
    if isinstance(obj, DeletedFinalStateUnknown):
        return obj.key
    return f"{obj['metadata'].get('namespace')}/{obj['metadata']['name']}"


class View:
    """The handler's picture of the cache, checked against what it was told."""

    def __init__(self) -> None:
        self.view: dict[str, Any] = {}
        self.calls: list[tuple[str, str]] = []

    def on_add(self, obj: Any, initial: bool) -> None:
        assert isinstance(obj, dict) and _key(obj) not in self.view
        self.view[_key(obj)] = obj
        self.calls.append(("add", _key(obj)))

    def on_update(self, old: Any, new: Any) -> None:
        assert isinstance(old, dict) and isinstance(new, dict)
        assert self.view[_key(new)] == old  # equal, not the same dict: old was decoded
        self.view[_key(new)] = new
        self.calls.append(("update", _key(new)))

    def on_delete(self, obj: Any) -> None:
        del self.view[_key(obj)]
        self.calls.append(("delete", _key(obj)))


@pytest.mark.parametrize("decoded_cache", [0, 2])
async def test_compact_informer_events_and_reads(fake_api_server: FakeApiServer, fake_api_client: Any,
                                                 decoded_cache: int) -> None:
    for i in range(4):
        fake_api_server.create("configmaps", make_configmap(f"cm-{i}", "a" if i % 2 else "b", v=str(i)))
    inf = SharedIndexInformer(ListWatch(fake_api_client, Resource.configmaps), store="compact",
                              decoded_cache=decoded_cache)
    assert isinstance(inf.indexer, CompactIndexer)
    view = View()
    reg = inf.add_event_handler(view)
    async with inf:
        await reg.wait_synced()
        fake_api_server.update("configmaps", {**fake_api_server.get("configmaps", "cm-1", "a"), "data": {"v": "x"}})
        fake_api_server.delete("configmaps", "cm-2", "b")
        fake_api_server.create("configmaps", make_configmap("cm-9", "a"))
        await eventually(lambda: len(view.calls) == 7)
        assert view.calls[4:] == [("update", "a/cm-1"), ("delete", "b/cm-2"), ("add", "a/cm-9")]
        cached = dict(inf.indexer.items())
        assert view.view == cached
        assert all(isinstance(entry, CompactObject) for entry in inf.indexer._items.values())
        lister = Lister(inf)
        assert lister.get("cm-1", "a")["data"] == {"v": "x"}
        assert sorted(o["metadata"]["name"] for o in lister.list(namespace="a")) == ["cm-1", "cm-3", "cm-9"]
        assert lister.get("cm-2", "b") is None
        assert inf.indexer.resource_version_of("a/cm-1") == cached["a/cm-1"]["metadata"]["resourceVersion"]


async def test_compact_relist_of_an_unchanged_cache_decodes_nothing(fake_api_server: FakeApiServer,
                                                                    fake_api_client: Any) -> None:
    for i in range(5):
        fake_api_server.create("configmaps", make_configmap(f"cm-{i}"))
    inf = SharedIndexInformer(ListWatch(fake_api_client, Resource.configmaps), store="compact")
    view = View()
    reg = inf.add_event_handler(view)
    async with inf:
        await reg.wait_synced()
        indexer = inf.indexer
        assert isinstance(indexer, CompactIndexer)
        reflector = inf.reflector
        assert reflector is not None
        fake_api_server.create("secrets", {"apiVersion": "v1", "kind": "Secret",
                                           "metadata": {"name": "s", "namespace": "default"}})
        fake_api_server.compact()  # the configmap watch's RV is now too old: 410, one relist
        fake_api_server.drop_watches()
        await eventually(lambda: reflector.stats.lists >= 2 and reflector.state.__class__.__name__ == "Watching")
        assert indexer.decodes == 0
        assert len(view.view) == 5 and len(view.calls) == 5


def test_unknown_store_is_rejected() -> None:
    from kinformer.errors import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        SharedIndexInformer(ListWatch(None, Resource.configmaps), store="zip")  # type: ignore[arg-type]
