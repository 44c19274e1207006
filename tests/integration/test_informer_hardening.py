"""Informer behaviour a user's code can break or hang on: each test failed before its fix."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.lowlevel
import pytest

from kinformer import InformerFactory, ListWatch, Resource, SharedIndexInformer
from kinformer.errors import (
    AlreadyStartedError,
    CacheSyncTimeoutError,
    HandlerError,
    HandlerSignatureError,
    IndexFuncError,
    InvalidArgumentError,
    SelectorError,
    StoppedError,
    TransformError,
    UnauthorizedError,
)
from kinformer.testing import FakeApiServer, eventually, make_configmap


def informer(client: Any, **kw: Any) -> SharedIndexInformer:
    return SharedIndexInformer(ListWatch(client, Resource.configmaps), **kw)


async def test_remove_lets_the_call_in_flight_finish(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    started, release = anyio.Event(), anyio.Event()
    calls: list[str] = []

    async def on_add(obj: Any, initial: bool) -> None:
        calls.append("start " + obj["metadata"]["name"])
        started.set()
        await release.wait()
        calls.append("end " + obj["metadata"]["name"])

    inf = informer(fake_api_client)
    async with inf:
        reg = inf.add_event_handler(on_add)
        await inf.wait_for_sync()
        fake_api_server.create("configmaps", make_configmap("first"))
        with anyio.fail_after(5):
            await started.wait()
        reg.remove()  # returns at once, with the call still running
        fake_api_server.create("configmaps", make_configmap("second"))
        await eventually(lambda: "default/second" in inf.indexer)
        release.set()
        with anyio.fail_after(5):
            await reg.listener.done.wait()
    assert calls == ["start first", "end first"]


async def test_shutdown_waits_for_the_call_in_flight_within_the_grace(fake_api_client: Any,
                                                                      fake_api_server: FakeApiServer) -> None:
    started, release = anyio.Event(), anyio.Event()
    finished: list[str] = []

    async def on_add(obj: Any, initial: bool) -> None:
        started.set()
        await release.wait()
        finished.append(obj["metadata"]["name"])

    fake_api_server.create("configmaps", make_configmap("a"))
    inf = informer(fake_api_client, shutdown_grace=30.0)
    inf.add_event_handler(on_add)
    scope, stopped = anyio.CancelScope(), anyio.Event()

    async def runner() -> None:
        with scope:
            await inf.run()
        stopped.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(runner)
            await started.wait()
            scope.cancel()
            await anyio.wait_all_tasks_blocked()
            assert finished == [] and not stopped.is_set()  # still running, not cancelled
            release.set()
            await stopped.wait()
    assert finished == ["a"]


async def test_shutdown_cancels_a_call_that_outlives_the_grace(fake_api_client: Any,
                                                               fake_api_server: FakeApiServer) -> None:
    started = anyio.Event()
    outcome: list[str] = []

    async def on_add(obj: Any, initial: bool) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            outcome.append("cancelled")
            raise

    fake_api_server.create("configmaps", make_configmap("a"))
    inf = informer(fake_api_client, shutdown_grace=0.05)
    inf.add_event_handler(on_add)
    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(inf.run)
            await started.wait()
            tg.cancel_scope.cancel()
    assert outcome == ["cancelled"]


async def test_shutdown_is_prompt_while_handlers_come_and_go(fake_api_client: Any) -> None:
    inf = informer(fake_api_client)
    rounds = 0
    refused: list[BaseException] = []

    async def churn() -> None:
        nonlocal rounds
        while True:
            try:
                reg = inf.add_event_handler(lambda obj, initial: None)
            except StoppedError as exc:
                refused.append(exc)
                return
            rounds += 1
            await anyio.lowlevel.checkpoint()
            reg.remove()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as outer:
            outer.start_soon(churn)
            async with anyio.create_task_group() as tg:
                tg.start_soon(inf.run)
                await inf.wait_for_sync()
                await eventually(lambda: rounds > 20)
                tg.cancel_scope.cancel()
    assert len(refused) == 1 and "stopped" in str(refused[0])
    with pytest.raises(StoppedError):
        inf.add_event_handler(lambda obj, initial: None)
    with pytest.raises(AlreadyStartedError):
        await inf.run()


async def test_a_raising_transform_skips_that_object_only(fake_api_server: FakeApiServer,
                                                          fake_api_client: Any) -> None:
    def transform(obj: Any) -> Any:
        if (obj.get("data") or {}).get("v") == "boom":
            raise ValueError("cannot transform")
        return obj

    reported: list[BaseException] = []
    inf = informer(fake_api_client, transform=transform, watch_error_handler=lambda r, e: reported.append(e))
    fake_api_server.create("configmaps", {**make_configmap("bad"), "data": {"v": "boom"}})
    fake_api_server.create("configmaps", make_configmap("good"))
    async with inf:
        await inf.wait_for_sync()
        assert inf.indexer.list_keys() == ["default/good"]
        fake_api_server.create("configmaps", {**make_configmap("bad2"), "data": {"v": "boom"}})
        fake_api_server.create("configmaps", make_configmap("later"))
        await eventually(lambda: "default/later" in inf.indexer)
        assert "default/bad2" not in inf.indexer
        # its next change that transforms cleanly brings it in
        fake_api_server.update("configmaps", {**fake_api_server.get("configmaps", "bad2", "default"),
                                              "data": {"v": "fine"}})
        await eventually(lambda: "default/bad2" in inf.indexer)
        assert inf.health().healthy  # a user callback error is not a list/watch failure
    assert inf.stats().callback_errors == 2
    assert [type(e) for e in reported] == [TransformError, TransformError]
    assert "default/bad" in str(reported[0]) and isinstance(reported[0].__cause__, ValueError)


async def test_a_raising_index_function_leaves_the_object_cached_but_unindexed(
        fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    def by_team(obj: Any) -> list[str]:
        return [obj["metadata"]["labels"]["team"]]  # KeyError for unlabelled objects

    reported: list[BaseException] = []
    inf = informer(fake_api_client, indexers={"team": by_team}, watch_error_handler=lambda r, e: reported.append(e))
    fake_api_server.create("configmaps", make_configmap("unlabelled"))
    fake_api_server.create("configmaps", {**make_configmap("a"), "metadata": {
        "name": "a", "namespace": "default", "labels": {"team": "x"}}})
    async with inf:
        await inf.wait_for_sync()
        assert sorted(inf.indexer.list_keys()) == ["default/a", "default/unlabelled"]
        assert [o["metadata"]["name"] for o in inf.indexer.by_index("team", "x")] == ["a"]
    assert [type(e) for e in reported] == [IndexFuncError]


async def test_handler_errors_go_to_its_error_handler(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    errors: list[HandlerError] = []
    seen: list[str] = []

    def on_add(obj: Any) -> None:  # the one-argument form is accepted
        seen.append(obj["metadata"]["name"])
        if obj["metadata"]["name"] == "bad":
            raise RuntimeError("handler bug")

    fake_api_server.create("configmaps", make_configmap("bad"))
    fake_api_server.create("configmaps", make_configmap("ok"))
    inf = informer(fake_api_client)
    async with inf:
        reg = inf.add_event_handler(on_add, error_handler=errors.append)
        with anyio.fail_after(5):
            await reg.wait_synced()
    assert sorted(seen) == ["bad", "ok"] and len(errors) == 1
    assert "default/bad" in str(errors[0]) and isinstance(errors[0].__cause__, RuntimeError)
    assert reg.stats().errors == 1


def test_handler_signatures_are_checked_at_registration(fake_api_client: Any) -> None:
    inf = informer(fake_api_client)
    with pytest.raises(HandlerSignatureError, match="on_update"):
        inf.add_event_handler(on_update=lambda new: None)
    with pytest.raises(HandlerSignatureError, match="on_delete"):
        inf.add_event_handler(on_delete=lambda a, b: None)
    with pytest.raises(HandlerSignatureError, match="on_add"):
        inf.add_event_handler(on_add=lambda: None)
    with pytest.raises(HandlerSignatureError, match="callable"):
        inf.add_event_handler(on_add=print, on_update=42)
    inf.add_event_handler(lambda obj: None, lambda old, new: None, lambda obj: None)
    inf.add_event_handler(lambda *args: None, lambda old, new, extra=None: None)


@pytest.mark.parametrize("how", ["close", "remove", "informer stops"])
async def test_events_never_hang(fake_api_server: FakeApiServer, fake_api_client: Any, how: str) -> None:
    inf = informer(fake_api_client)
    ended: list[str] = []
    with anyio.fail_after(10):
        async with anyio.create_task_group() as outer, anyio.create_task_group() as tg:
            tg.start_soon(inf.run)
            await inf.wait_for_sync()
            stream = inf.events()

            async def consume() -> None:
                async for _ in stream:
                    pass
                ended.append(how)

            outer.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            if how == "close":
                stream.close()
            elif how == "remove":
                stream._registration.remove()
            else:
                tg.cancel_scope.cancel()
            if how != "informer stops":
                await eventually(lambda: bool(ended))
                tg.cancel_scope.cancel()
    assert ended == [how]


async def test_exceptions_leave_async_with_unwrapped(fake_api_client: Any) -> None:
    with pytest.raises(ValueError, match="mine"):
        async with informer(fake_api_client):
            raise ValueError("mine")
    with pytest.raises(KeyError):
        async with InformerFactory(fake_api_client) as factory:
            factory.informer(Resource.configmaps)
            raise KeyError("mine")


def test_bad_selectors_fail_at_construction(fake_api_client: Any) -> None:
    with pytest.raises(SelectorError, match="==="):
        ListWatch(fake_api_client, Resource.pods, label_selector="app===x")
    factory = InformerFactory(fake_api_client)
    with pytest.raises(SelectorError):
        factory.informer(Resource.pods, field_selector="status.phase")


async def test_permanent_failures_are_visible(fake_api_server: FakeApiServer) -> None:
    client = fake_api_server.api_client()
    client.configuration.api_key = {"BearerToken": "wrong-token"}
    widgets = Resource("example.com", "v1", "widgets", kind="Widget")
    try:
        async with InformerFactory(client) as factory:
            pods = factory.informer(Resource.pods)
            factory.informer(widgets)
            result = await factory.wait_for_cache_sync(0.5)
            assert not result and result == {Resource.pods: False, widgets: False}
            await eventually(lambda: pods.last_error is not None)
            health = pods.health()
            assert not health and health.permanent and isinstance(health.last_error, UnauthorizedError)
            assert health.consecutive_failures >= 1 and health.failing_since is not None
            with pytest.raises(CacheSyncTimeoutError, match="UnauthorizedError"):
                await factory.wait_for_cache_sync(0.1, raise_on_timeout=True)
    finally:
        await client.close()


async def test_missing_crd_is_a_visible_404(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    widgets = Resource("example.com", "v1", "widgets", kind="Widget")
    async with InformerFactory(fake_api_client) as factory:
        inf = factory.informer(widgets)
        factory.informer(Resource.configmaps)
        await eventually(lambda: inf.last_error is not None)
        health = factory.health()
        assert [h.permanent for h in health.values()] == [True, False]
        assert getattr(inf.last_error, "code", None) == 404


async def test_lister_knows_sync_and_namespacing(fake_api_server: FakeApiServer, fake_api_client: Any) -> None:
    fake_api_server.create("configmaps", make_configmap("a"))
    async with InformerFactory(fake_api_client) as factory:
        lister = factory.lister(Resource.configmaps)
        namespaces = factory.lister(Resource.namespaces)
        assert not lister.has_synced()
        await factory.wait_for_cache_sync(5)
        assert lister.has_synced()
        assert lister.get("a", "default") is not None
        with pytest.raises(InvalidArgumentError, match="namespaced"):
            lister.get("a")
        assert namespaces.get("default") is None  # cluster-scoped: no namespace needed


async def test_wait_idle_settles_after_every_write_is_handled(fake_api_server: FakeApiServer,
                                                               fake_api_client: Any) -> None:
    seen: list[str] = []

    async def on_add(obj: Any, initial: bool) -> None:
        await anyio.lowlevel.checkpoint()
        seen.append(obj["metadata"]["name"])

    inf = informer(fake_api_client)
    inf.add_event_handler(on_add)
    assert not inf.idle()
    async with inf:
        for i in range(50):
            fake_api_server.create("configmaps", make_configmap(f"c{i}"))
        await inf.wait_idle(resource_version=fake_api_server.resource_version)
        assert len(seen) == 50 and inf.idle()
