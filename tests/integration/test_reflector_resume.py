"""`Reflector(initial_resource_version=rv)`: resume a watch without listing first."""

from __future__ import annotations

from typing import Any

import anyio

from kinformer import DeltaFIFO, DeltaType, Indexer, ListWatch, Reflector, ReflectorConfig, Resource
from kinformer.reflector import Watching
from kinformer.testing import FakeApiServer, eventually, make_configmap
from tests.integration.harness import fast_backoff


async def test_resume_watches_from_the_given_rv_without_a_list(fake_api_server: FakeApiServer,
                                                               fake_api_client: Any) -> None:
    server = fake_api_server
    for i in range(5):
        server.create("configmaps", make_configmap(f"cm-{i}", "default"))
    resume_at = server.resource_version
    known = Indexer()
    for obj in server.objects("configmaps").values():
        known.add(obj)  # the store's state at resume_at
    server.create("configmaps", make_configmap("later", "default"))
    server.delete("configmaps", "cm-0", "default")
    fifo = DeltaFIFO(known_objects=known)
    reflector = Reflector(ListWatch(fake_api_client, Resource.configmaps), fifo,
                          config=ReflectorConfig(backoff=fast_backoff), initial_resource_version=resume_at)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reflector.run)
        await eventually(lambda: len(fifo) == 2)
        assert reflector.has_synced()
        tg.cancel_scope.cancel()
    assert server.count("list") == 0
    watch = next(r for r in server.requests if r.verb == "watch")
    assert watch.query["resourceVersion"] == resume_at
    assert [d.type for d in fifo.get_by_key("default/later") or []] == [DeltaType.ADDED]
    assert [d.type for d in fifo.get_by_key("default/cm-0") or []] == [DeltaType.DELETED]
    assert reflector.stats.relists == 0


async def test_resume_from_a_compacted_rv_relists_once(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    server = fake_api_server
    server.create("configmaps", make_configmap("a", "default"))
    resume_at = server.resource_version
    server.create("configmaps", make_configmap("b", "default"))
    server.compact()
    fifo = DeltaFIFO(known_objects=Indexer())
    reflector = Reflector(ListWatch(fake_api_client, Resource.configmaps), fifo,
                          config=ReflectorConfig(backoff=fast_backoff), initial_resource_version=resume_at)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reflector.run)
        await eventually(lambda: reflector.stats.lists == 1 and isinstance(reflector.state, Watching)
                         and reflector.last_sync_resource_version == server.resource_version)
        tg.cancel_scope.cancel()
    lists = [r for r in server.requests if r.verb == "list"]
    assert len(lists) == 1 and lists[0].query["resourceVersion"] == ""
    assert reflector.stats.expired == 1
    assert sorted(fifo.list_keys()) == ["default/a", "default/b"]
