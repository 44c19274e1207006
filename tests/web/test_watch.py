"""Watches served from the shared history: selector transitions, resuming from a list's RV
without losing a change (randomised, with relists), 410s, bookmarks, server-sent events."""

from __future__ import annotations

import random
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import aiohttp
import anyio
import orjson
import pytest
from prometheus_client import CollectorRegistry

from kinformer import InformerFactory
from kinformer.testing import FakeApiServer, eventually
from kinformer.web import CacheApi, Response, StreamResponse
from tests.web.conftest import PREFIX, AiohttpClient, Background, Env, pod


async def next_events(stream: AsyncIterator[bytes], count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    out = []
    with anyio.fail_after(timeout):
        while len(out) < count:
            out.append(orjson.loads(await stream.__anext__()))
    return out


def stream_of(cache: CacheApi, path: str, *query: tuple[str, str], accept: str = "") -> AsyncGenerator[bytes, None]:
    reply = cache.handle("GET", path, [("watch", "true"), *query], {"Accept": accept} if accept else None)
    assert isinstance(reply, StreamResponse), reply
    return reply.body


def listing(cache: CacheApi, path: str, *query: tuple[str, str]) -> dict[str, Any]:
    reply = cache.handle("GET", path, list(query))
    assert isinstance(reply, Response) and reply.status == 200, reply
    result: dict[str, Any] = orjson.loads(reply.body)
    return result


async def test_watch_over_http_follows_selector_transitions(env: Env) -> None:
    http = AiohttpClient(env.cache)
    await http.start()
    try:
        assert http.session is not None
        async with http.session.get(http.url + PREFIX + "/api/v1/namespaces/default/pods",
                                    params={"watch": "true", "labelSelector": "app=web"}) as resp:
            assert resp.status == 200 and resp.content_type == "application/json"

            async def read(count: int) -> list[tuple[str, str]]:
                out = []
                with anyio.fail_after(5):
                    while len(out) < count:
                        event = orjson.loads(await resp.content.readline())
                        out.append((event["type"], event["object"]["metadata"]["name"]))
                return out

            assert sorted(await read(2)) == [("ADDED", "web-1"), ("ADDED", "web-2")]
            server = env.server
            server.create("pods", pod("web-9", "default", app="web"))
            server.patch("pods", "web-2", {"metadata": {"labels": {"app": "other"}}}, "default")
            server.patch("pods", "api-1", {"metadata": {"labels": {"app": "web"}}}, "default")
            server.patch("pods", "web-1", {"metadata": {"annotations": {"touched": "yes"}}}, "default")
            server.create("pods", pod("web-x", "team-a", app="web"))  # another namespace: not for this watch
            server.delete("pods", "web-9", "default")
            events = await read(5)
            # The informer's order: per object its changes in order; across objects, DeltaFIFO's
            # queue order (web-9's two deltas are popped together).
            assert sorted(events) == sorted([("ADDED", "web-9"), ("DELETED", "web-2"), ("ADDED", "api-1"),
                                             ("MODIFIED", "web-1"), ("DELETED", "web-9")])
            assert events.index(("ADDED", "web-9")) < events.index(("DELETED", "web-9"))
    finally:
        await http.stop()


def _apply(state: dict[str, dict[str, Any]], event: dict[str, Any]) -> None:
    obj = event["object"]
    key = f"{obj['metadata']['namespace']}/{obj['metadata']['name']}"
    if event["type"] == "DELETED":
        state.pop(key, None)
    elif event["type"] in ("ADDED", "MODIFIED"):
        state[key] = obj


def _rvs(objs: dict[str, dict[str, Any]]) -> dict[str, str]:
    return {k: o["metadata"]["resourceVersion"] for k, o in objs.items()}


@pytest.mark.parametrize("seed", [1, 2, 3])
async def test_list_then_watch_from_its_resource_version_misses_nothing(seed: int) -> None:
    """Lists taken at random moments while the cluster changes (with a compaction that makes the
    informer relist): replaying the watch from each list's RV onto its items gives exactly the
    cache, selector included."""
    rng = random.Random(seed)
    async with FakeApiServer(bookmark_interval=0.2) as server:
        for i in range(8):
            server.create("pods", pod(f"p{i}", "default", app=rng.choice(["a", "b"])))
        client = server.api_client()
        try:
            factory = InformerFactory(client)
            cache = CacheApi(["pods"], metrics_registry=CollectorRegistry(), watch_history=10_000)
            async with cache.run(factory):
                assert await factory.wait_for_cache_sync(10)
                informer = factory.informer("pods")
                lists: list[tuple[dict[str, Any], str]] = []
                for step in range(40):
                    choice = rng.random()
                    name = f"p{rng.randrange(12)}"
                    existing = server.objects("pods").get(f"default/{name}")
                    if existing is None:
                        server.create("pods", pod(name, "default", app=rng.choice(["a", "b"])))
                    elif choice < 0.3:
                        server.delete("pods", name, "default")
                    else:
                        server.patch("pods", name, {"metadata": {"labels": {"app": rng.choice(["a", "b"])},
                                                                 "annotations": {"step": str(step)}}}, "default")
                    if step == 20:
                        server.compact()
                        server.drop_watches()
                    if rng.random() < 0.25:
                        selector = rng.choice(["", "app=a"])
                        body = listing(cache, "/api/v1/namespaces/default/pods",
                                       *([("labelSelector", selector)] if selector else []))
                        lists.append((body, selector))
                await eventually(lambda: _rvs(dict(informer.indexer.items())) == _rvs(server.objects("pods")))
                assert informer.reflector is not None and informer.reflector.stats.relists >= 1
                assert lists
                for body, selector in lists:
                    state = {f"default/{o['metadata']['name']}": o for o in body["items"]}
                    stream = stream_of(cache, "/api/v1/namespaces/default/pods",
                                       ("resourceVersion", body["metadata"]["resourceVersion"]),
                                       *([("labelSelector", selector)] if selector else []))
                    wanted = {k: o for k, o in informer.indexer.items() if not selector or o["metadata"].get(
                        "labels", {}).get("app") == "a"}
                    with anyio.fail_after(5):
                        while _rvs(state) != _rvs(wanted):
                            event = orjson.loads(await stream.__anext__())
                            assert event["type"] != "ERROR", event
                            _apply(state, event)
                    await stream.aclose()
        finally:
            await client.close()


async def test_resource_versions_outside_the_history_get_410(env: Env) -> None:
    small = CacheApi(["pods"], watch_history=3, metrics_registry=env.registry)
    client = env.server.api_client()
    try:
        factory = InformerFactory(client)
        async with small.run(factory):
            assert await factory.wait_for_cache_sync(10)
            old_rv = listing(small, "/api/v1/pods")["metadata"]["resourceVersion"]
            for i in range(5):
                env.server.create("pods", pod(f"new-{i}", "default", app="new"))
            informer = factory.informer("pods")
            await eventually(lambda: "default/new-4" in informer.indexer)
            (expired,) = await next_events(stream_of(small, "/api/v1/pods", ("resourceVersion", old_rv)), 1)
            assert (expired["type"], expired["object"]["code"]) == ("ERROR", 410)
            assert expired["object"]["reason"] == "Expired"
            # The RV of a change still in the buffer resumes right after that change.
            rv = informer.indexer.get_by_key("default/new-3")["metadata"]["resourceVersion"]
            (after,) = await next_events(stream_of(small, "/api/v1/pods", ("resourceVersion", rv)), 1)
            assert (after["type"], after["object"]["metadata"]["name"]) == ("ADDED", "new-4")
            # A watcher that falls more than the history behind is ended the same way.
            lagging = stream_of(small, "/api/v1/pods", ("resourceVersion", "0"), ("labelSelector", "app=nobody"))
            for i in range(5):
                env.server.delete("pods", f"new-{i}", "default")
            await eventually(lambda: "default/new-4" not in informer.indexer)
            (gone,) = await next_events(lagging, 1)
            assert (gone["type"], gone["object"]["code"]) == ("ERROR", 410)
    finally:
        await client.close()


async def test_bookmarks_carry_a_resource_version_to_resume_from(fake_api_server: FakeApiServer) -> None:
    server = fake_api_server
    server.create("pods", pod("a", "default", app="x"))
    client = server.api_client()
    try:
        factory = InformerFactory(client)
        cache = CacheApi(["pods"], bookmark_interval=0.05, metrics_registry=CollectorRegistry())
        async with cache.run(factory):
            assert await factory.wait_for_cache_sync(10)
            stream = stream_of(cache, "/api/v1/pods", ("allowWatchBookmarks", "true"))
            added, bookmark = await next_events(stream, 2)
            assert added["type"] == "ADDED" and bookmark["type"] == "BOOKMARK"
            assert bookmark["object"]["kind"] == "Pod" and "annotations" not in bookmark["object"]["metadata"]
            server.create("pods", pod("b", "default", app="x"))
            resumed = stream_of(cache, "/api/v1/pods", ("resourceVersion", bookmark["object"]["metadata"][
                "resourceVersion"]))
            (event,) = await next_events(resumed, 1)
            assert (event["type"], event["object"]["metadata"]["name"]) == ("ADDED", "b")
    finally:
        await client.close()


async def test_server_sent_events_and_the_end_of_a_watch(fake_api_server: FakeApiServer) -> None:
    server = fake_api_server
    server.create("pods", pod("a", "default", app="x"))
    client = server.api_client()
    try:
        factory = InformerFactory(client)
        cache = CacheApi(["pods"], metrics_registry=CollectorRegistry())
        async with Background(cache.run(factory)):
            assert await factory.wait_for_cache_sync(10)
            reply = cache.handle("GET", "/api/v1/pods", [("watch", "true")], {"accept": "text/event-stream"})
            assert isinstance(reply, StreamResponse) and reply.content_type == "text/event-stream"
            assert reply.headers["Cache-Control"] == "no-cache"
            stream = reply.body
            first, second = await stream.__anext__(), await stream.__anext__()
            assert first.startswith(b"data: ") and first.endswith(b"\n\n")
            assert orjson.loads(first[6:])["type"] == "ADDED"
            end = orjson.loads(second[6:])
            assert end["type"] == "BOOKMARK"
            assert end["object"]["metadata"]["annotations"] == {"k8s.io/initial-events-end": "true"}
            pending = stream.__anext__()
        # The cache stopped: the watch ends instead of hanging.
        with anyio.fail_after(5), pytest.raises(StopAsyncIteration):
            await pending
        stopped = cache.handle("GET", "/api/v1/pods", [("watch", "true")])
        assert stopped.status == 503
    finally:
        await client.close()


async def test_watch_over_http_from_aiohttp_ends_at_timeout(env: Env) -> None:
    http = AiohttpClient(env.cache)
    await http.start()
    try:
        assert http.session is not None
        with anyio.fail_after(5):
            async with http.session.get(http.url + PREFIX + "/api/v1/pods",
                                        params={"watch": "1", "timeoutSeconds": "0.05",
                                                "fieldSelector": "metadata.name=db-1"}) as resp:
                lines = [orjson.loads(line) for line in (await resp.read()).splitlines()]
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in lines] == [("ADDED", "db-1")]
    except aiohttp.ClientError:
        raise
    finally:
        await http.stop()


async def test_the_cache_api_does_not_hold_up_informer_idleness(fake_api_server: FakeApiServer) -> None:
    """Bound but not running, the API registers nothing with the informer; running, its
    history drains as events come, so `wait_idle` settles either way."""
    server = fake_api_server
    server.create("pods", pod("a", "default", app="x"))
    client = server.api_client()
    try:
        factory = InformerFactory(client)
        bound = CacheApi(["pods"], metrics_registry=CollectorRegistry())
        bound.bind(factory)
        async with factory:
            informer = factory.informer("pods")
            server.create("pods", pod("b", "default", app="x"))
            await informer.wait_idle(resource_version=server.resource_version)
            running = CacheApi(["pods"], metrics_registry=CollectorRegistry())
            async with running.run([informer], start=False):
                server.create("pods", pod("c", "default", app="x"))
                await informer.wait_idle(resource_version=server.resource_version)
                assert [i["metadata"]["name"] for i in listing(running, "/api/v1/pods")["items"]] == ["a", "b", "c"]
    finally:
        await client.close()
