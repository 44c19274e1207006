"""Reflector behaviour where it once differed from client-go: each test failed before its fix."""

from __future__ import annotations

from typing import Any

import pytest

from kinformer.errors import ExpiredError, ServerError, TooLargeResourceVersionError, UnexpectedObjectError
from kinformer.reflector import BackingOff, Listing, Watching
from kinformer.testing import FakeApiServer, FakeClock, eventually, make_configmap
from tests.integration.harness import Pipeline
from tests.integration.scripted import Answer, ScriptedServer, configmap, list_body, scripted_server, status


async def _run_scripted(server: ScriptedServer, until: Any, **config: Any) -> Pipeline:
    client = server.api_client()
    try:
        p = Pipeline(server, client, **config)  # type: ignore[arg-type]
        async with p.running():
            await eventually(lambda: until(p))
        return p
    finally:
        await client.close()


async def test_watch_events_of_another_kind_are_skipped_and_counted() -> None:
    async with scripted_server() as server:
        server.then(
            Answer(body=list_body([configmap("a", "5")], "5")),
            Answer(watch=True, hold=True, body=[
                {"type": "ADDED", "object": configmap("svc", "6", kind="Service")},
                {"type": "ADDED", "object": configmap("dep", "7", api_version="apps/v1")},
                {"type": "ADDED", "object": configmap("b", "8")},
            ]),
        )
        p = await _run_scripted(server, lambda p: p.reflector.last_sync_resource_version == "8")
    assert sorted(p.indexer.list_keys()) == ["default/a", "default/b"]
    assert p.reflector.stats.unexpected_objects == 2
    assert [type(e) for e in p.errors] == [UnexpectedObjectError, UnexpectedObjectError]
    assert "'Service'" in str(p.errors[0]) and "'apps/v1'" in str(p.errors[1])
    assert server.verbs() == ["list", "watch"]  # the watch went on: no re-watch, no relist


async def test_watch_object_without_kind_gets_type_meta() -> None:
    bare = configmap("bare", "6")
    del bare["kind"], bare["apiVersion"]
    async with scripted_server() as server:
        server.then(Answer(body=list_body([], "5")),
                    Answer(watch=True, hold=True, body=[{"type": "ADDED", "object": bare}]))
        p = await _run_scripted(server, lambda p: p.reflector.last_sync_resource_version == "6")
    obj = p.indexer.get_by_key("default/bare")
    assert obj is not None and obj["kind"] == "ConfigMap" and obj["apiVersion"] == "v1"
    assert p.reflector.stats.unexpected_objects == 0


TOO_LARGE_FORMATS = {
    "cause reason (1.18.6+)": status(504, "Timeout", "Too large resource version: 99, current: 10",
                                     [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}]),
    "cause message (1.17.0-1.18.5)": status(504, "Timeout", "Timeout: request did not complete within 3s",
                                            [{"message": "Too large resource version"}]),
    "message only (before 1.17)": status(504, "Timeout", "Too large resource version: 99, current: 10"),
}


@pytest.mark.parametrize("body", TOO_LARGE_FORMATS.values(), ids=TOO_LARGE_FORMATS.keys())
async def test_too_large_rv_in_every_format_relists_consistently(body: dict[str, Any]) -> None:
    async with scripted_server() as server:
        server.then(
            Answer(status=504, body=body),                            # LIST rv=0: too large
            Answer(status=500, body=status(500, "InternalError", "x")),  # LIST rv="": still consistent after
            Answer(body=list_body([configmap("a", "10")], "10")),     # LIST rv="": ok
            Answer(watch=True, body=[{"type": "ERROR", "object": status(500, "InternalError", "boom")}]),
            Answer(body=list_body([configmap("a", "11")], "11")),     # the next round: back to the synced RV
            Answer(watch=True, hold=True, body=[]),
        )
        p = await _run_scripted(server, lambda p: p.reflector.last_sync_resource_version == "11")
    lists = [q for _, q in server.requests if q.get("watch") != "true"]
    assert [q.get("resourceVersion") for q in lists] == ["0", "", "", "10"]
    assert "resourceVersionMatch" not in lists[1] and "resourceVersionMatch" not in lists[2]
    assert lists[3]["resourceVersionMatch"] == "NotOlderThan"
    assert isinstance(p.errors[0], TooLargeResourceVersionError)
    assert p.reflector.stats.relists == 1  # two lists succeeded


async def test_a_plain_504_is_not_too_large() -> None:
    async with scripted_server() as server:
        server.then(Answer(status=504, body=status(504, "Timeout", "request timed out")),
                    Answer(body=list_body([], "3")))
        p = await _run_scripted(server, lambda p: p.reflector.has_synced())
    assert [q.get("resourceVersion") for _, q in server.requests[:2]] == ["0", "0"]
    assert type(p.errors[0]) is ServerError


async def test_410_on_list_and_on_watch_reach_the_error_handler() -> None:
    async with scripted_server() as server:
        server.then(
            Answer(status=410, body=status(410, "Expired", "too old resource version")),
            Answer(body=list_body([configmap("a", "20")], "20")),
            Answer(watch=True, body=[{"type": "ERROR", "object": status(410, "Expired", "too old")}]),
            Answer(body=list_body([configmap("a", "30")], "30")),
        )
        p = await _run_scripted(server, lambda p: p.reflector.last_sync_resource_version == "30")
    assert [type(e) for e in p.errors] == [ExpiredError, ExpiredError]
    stats = p.reflector.stats
    assert stats.expired == 2 and stats.errors == 2 and stats.relists == 1
    assert [q.get("resourceVersion") for _, q in server.requests[:4]] == ["0", "", "20", ""]


async def test_no_relist_is_reported_when_no_list_succeeded() -> None:
    clock = FakeClock()
    async with scripted_server() as server:
        server.then(*[Answer(status=500, body=status(500, "InternalError", "x"))] * 3,
                    Answer(body=list_body([], "4")))
        client = server.api_client()
        try:
            p = Pipeline(server, client, clock=clock)  # type: ignore[arg-type]
            async with p.running():
                for _ in range(3):
                    await clock.wait_for_sleepers()
                    clock.advance(60)
                await eventually(lambda: len(server.requests) >= 4)
                await eventually(p.reflector.has_synced)
        finally:
            await client.close()
    stats = p.reflector.stats
    assert stats.lists == 4 and stats.relists == 0 and stats.errors == 3
    health = p.reflector.health()
    assert health.last_error is None and health.consecutive_failures == 0  # the 4th list cleared it


async def test_a_store_resync_error_ends_the_round_and_the_reflector_goes_on(
        fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    for i in range(3):
        fake_api_server.create("configmaps", make_configmap(f"cm-{i}"))
    clock = FakeClock()
    p = Pipeline(fake_api_server, fake_api_client, clock=clock)
    p.reflector.resync_period = 30.0
    calls = 0

    async def broken_resync() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("store cannot resync")

    p.fifo.resync = broken_resync  # type: ignore[method-assign]
    async with p.running():
        await p.converge()
        await eventually(lambda: fake_api_server.open_watches == 1)
        await clock.wait_for_sleepers()  # the resync timer
        clock.advance(30)
        await eventually(lambda: isinstance(p.reflector.state, BackingOff))
        state = p.reflector.state
        assert isinstance(state, BackingOff) and state.then == Listing(
            p.reflector.last_sync_resource_version, "NotOlderThan")
        await clock.wait_for_sleepers(2)  # the backoff and the next resync wait
        clock.advance(1)
        fake_api_server.create("configmaps", make_configmap("after"))
        await p.converge()
        assert isinstance(p.reflector.state, Watching)
    assert calls == 1 and isinstance(p.errors[0], RuntimeError)
    assert fake_api_server.count("list") == 2 and p.reflector.stats.relists == 1
