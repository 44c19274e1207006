"""ResourceVersionInformer: the decision table, seeding, resuming, against FakeApiServer."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from kinformer import ListWatch, Resource
from kinformer.fifo import ADDED, DELETED, UPDATED
from kinformer.mirror.rvinformer import RV, ResourceVersionInformer, is_newer, parse_rv
from kinformer.reflector import ReflectorConfig
from kinformer.testing import FakeApiServer, eventually, make_configmap
from tests.integration.harness import fast_backoff


class Recorder:
    def __init__(self) -> None:
        self.calls: list[tuple[Any, ...]] = []
        self.fail_on: str | None = None

    async def on_add(self, obj: dict[str, Any], initial: bool) -> None:
        self._maybe_fail(obj["metadata"]["name"])
        self.calls.append(("add", obj["metadata"]["name"], obj["metadata"]["resourceVersion"], initial))

    async def on_update(self, old_rv: RV, obj: dict[str, Any]) -> None:
        self.calls.append(("update", obj["metadata"]["name"], old_rv, obj["metadata"]["resourceVersion"]))

    async def on_delete(self, key: str, obj: dict[str, Any] | None) -> None:
        self.calls.append(("delete", key, obj is not None))

    def _maybe_fail(self, name: str) -> None:
        if name == self.fail_on:
            raise RuntimeError("handler bug")


def cm(name: str, rv: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "d",
                                                                  "resourceVersion": rv}}


def informer(rec: Recorder, known: dict[str, RV] | None = None) -> ResourceVersionInformer:
    return ResourceVersionInformer(ListWatch(object(), Resource.configmaps), rec, known=known)


def test_rv_parsing_and_order() -> None:
    assert parse_rv("123") == 123 and parse_rv("abc") == "abc" and parse_rv(None) == "" and parse_rv("²") == "²"
    assert is_newer(10, 9) and not is_newer(9, 10) and not is_newer(5, 5)
    assert is_newer("b", "a") and is_newer("a", "b") and not is_newer("a", "a") and is_newer(5, "x")


async def test_list_decisions_and_tombstones() -> None:
    rec = Recorder()
    inf = informer(rec, known={"d/same": 5, "d/older": 3, "d/newer": 9, "d/gone": 2})
    store = inf.reflector.store
    session = store.start_replace()
    await session.add_page([cm("same", "5"), cm("older", "7"), cm("newer", "8"), cm("new", "4")])
    await session.finish()
    assert rec.calls == [("update", "older", 3, "7"), ("add", "new", "4", True), ("delete", "d/gone", False)]
    assert inf.snapshot() == {"d/same": 5, "d/older": 7, "d/newer": 9, "d/new": 4}
    assert (inf.stats.unchanged, inf.stats.stale) == (1, 1)
    rec.calls.clear()
    second = store.start_replace()
    await second.add_page([cm("same", "5")])
    await second.finish()  # a relist: its adds are no longer initial, the rest are gone
    assert sorted(rec.calls) == [("delete", "d/new", False), ("delete", "d/newer", False),
                                 ("delete", "d/older", False)]


async def test_watch_decisions() -> None:
    rec = Recorder()
    inf = informer(rec, known={"d/a": 5})
    await inf.reflector.store.apply([
        (UPDATED, cm("a", "5")),  # replay of the known state
        (UPDATED, cm("a", "4")),  # stale
        (UPDATED, cm("a", "6")),
        (ADDED, cm("b", "7")),
        (DELETED, cm("a", "5")),  # a stale delete (older than the known state)
        (DELETED, cm("x", "9")),  # unknown key
        (DELETED, cm("b", "8")),
    ])
    assert rec.calls == [("update", "a", 5, "6"), ("add", "b", "7", False), ("delete", "d/b", True)]
    assert inf.snapshot() == {"d/a": 6}
    assert (inf.stats.unchanged, inf.stats.stale) == (1, 3)


async def test_a_raising_handler_is_counted_and_the_change_kept(caplog: pytest.LogCaptureFixture) -> None:
    rec = Recorder()
    rec.fail_on = "bad"
    inf = informer(rec)
    await inf.reflector.store.apply([(ADDED, cm("bad", "1")), (ADDED, cm("good", "2"))])
    assert inf.stats.handler_errors == 1 and "d/bad" in inf and rec.calls == [("add", "good", "2", False)]
    assert "mirror handler raised" in caplog.text


async def test_seeded_and_resumed_against_the_server(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    server = fake_api_server
    for i in range(5):
        server.create("configmaps", make_configmap(f"cm-{i}", "d"))
    rv = server.resource_version
    known: dict[str, RV] = {k: int(o["metadata"]["resourceVersion"]) for k, o in server.objects("configmaps").items()}
    server.delete("configmaps", "cm-1", "d")
    server.update("configmaps", {**server.get("configmaps", "cm-2", "d"), "data": {"x": "y"}})
    rec = Recorder()
    inf = ResourceVersionInformer(ListWatch(fake_api_client, Resource.configmaps), rec, known=known,
                                  resume_resource_version=rv, config=ReflectorConfig(backoff=fast_backoff))
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        await eventually(lambda: len(rec.calls) == 2)
        assert inf.has_synced() and inf.health().running
        tg.cancel_scope.cancel()
    assert server.count("list") == 0
    assert [c[0] for c in rec.calls] == ["delete", "update"] and rec.calls[0][1] == "d/cm-1"
    assert len(inf) == 4 and not inf.health().running


async def test_seeded_relist_reports_only_changes(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    server = fake_api_server
    for i in range(5):
        server.create("configmaps", make_configmap(f"cm-{i}", "d"))
    known: dict[str, RV] = {k: int(o["metadata"]["resourceVersion"]) for k, o in server.objects("configmaps").items()}
    known["d/gone-while-down"] = 1
    server.update("configmaps", {**server.get("configmaps", "cm-3", "d"), "data": {"x": "y"}})
    rec = Recorder()
    inf = ResourceVersionInformer(ListWatch(fake_api_client, Resource.configmaps), rec, known=known,
                                  config=ReflectorConfig(backoff=fast_backoff))
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        await inf.wait_for_sync()
        tg.cancel_scope.cancel()
    assert sorted(c[:2] for c in rec.calls) == [("delete", "d/gone-while-down"), ("update", "cm-3")]
    assert inf.stats.unchanged == 4
