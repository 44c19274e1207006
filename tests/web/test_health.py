"""/readyz flips from 503 to 200 at sync; /livez fails once a watch has been failing longer
than the threshold, or (opt-in) when nothing arrived for too long; both on a FakeClock."""

from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry

from kinformer import InformerFactory
from kinformer.testing import FakeApiServer, FakeClock, eventually
from kinformer.web import CacheApi, LivenessPolicy, Response
from tests.web.conftest import pod


def get(cache: CacheApi, path: str, *query: tuple[str, str]) -> Response:
    reply = cache.handle("GET", path, list(query))
    assert isinstance(reply, Response)
    return reply


def text(reply: Response) -> str:
    return reply.body.decode()


async def test_readyz_is_503_until_every_cache_synced_and_lists_are_refused_meanwhile(
        fake_api_server: FakeApiServer) -> None:
    server = fake_api_server
    server.create("pods", pod("web-1", "default", app="web"))
    server.fail_next(1000, 500, verbs=["list"])
    clock = FakeClock()
    client = server.api_client()
    try:
        factory = InformerFactory(client, clock=clock)
        cache = CacheApi(["pods", "deployments"], metrics_registry=CollectorRegistry())
        before = get(cache, "/readyz")
        assert before.status == 503
        assert "[-]informer-sync/pods failed: reason withheld" in text(before)
        async with cache.run(factory):
            pods = factory.informer("pods")
            await eventually(lambda: pods.last_error is not None)
            reply = get(cache, "/readyz", ("verbose", ""))
            assert reply.status == 503 and reply.content_type.startswith("text/plain")
            assert text(reply) == ("[+]ping ok\n[-]informer-sync/pods failed: reason withheld\n"
                                   "[-]informer-sync/deployments.apps failed: reason withheld\nreadyz check failed\n")
            one = get(cache, "/readyz/informer-sync/pods")
            assert one.status == 503 and "has not synced yet; last list/watch error: ServerError: 500" in text(one)
            assert get(cache, "/readyz", ("exclude", "informer-sync/pods"),
                       ("exclude", "informer-sync/deployments.apps")).status == 200
            listing = cache.handle("GET", "/api/v1/pods")
            assert listing.status == 503 and listing.headers.get("Retry-After") == "1"
            assert b"has not synced yet" in listing.body  # type: ignore[union-attr]
            server.clear_faults()
            await clock.advance_until(lambda: bool(factory.health()) and all(
                h.synced for h in factory.health().values()), step=1.0)
            ready = get(cache, "/readyz")
            assert (ready.status, text(ready)) == (200, "ok")
            assert cache.handle("GET", "/api/v1/pods").status == 200
    finally:
        await client.close()


def _failing_for(informer: Any, clock: FakeClock) -> float:
    since = informer.health().failing_since
    return clock.now() - since if since is not None else -1.0


async def test_livez_fails_when_every_request_is_refused_beyond_the_threshold(
        fake_api_server: FakeApiServer) -> None:
    """A wrong token: lists and watches fail alike, `last_error` stays set, `failing_since` ages."""
    server = fake_api_server
    server.create("pods", pod("web-1", "default", app="web"))
    clock = FakeClock()
    client = server.api_client()
    try:
        factory = InformerFactory(client, clock=clock)
        cache = CacheApi(["pods"], liveness=LivenessPolicy(failure_threshold=120.0),
                         metrics_registry=CollectorRegistry())
        async with cache.run(factory):
            assert await factory.wait_for_cache_sync(10)
            pods = factory.informer("pods")
            server.token = "rotated"
            server.drop_watches()
            await eventually(lambda: pods.last_error is not None)
            assert pods.health().permanent
            await clock.advance_until(lambda: _failing_for(pods, clock) >= 110, step=10.0)
            assert get(cache, "/livez").status == 200
            await clock.advance_until(lambda: _failing_for(pods, clock) >= 120, step=10.0)
            detail = get(cache, "/livez/informer-watch/pods")
            assert detail.status == 503
            assert text(detail).startswith("internal server error: list/watch failing for 120s (threshold 120s): "
                                           "UnauthorizedError: 401"), text(detail)
    finally:
        await client.close()


async def test_livez_fails_when_watches_are_refused_beyond_the_threshold(fake_api_server: FakeApiServer) -> None:
    server = fake_api_server
    server.create("pods", pod("web-1", "default", app="web"))
    clock = FakeClock()
    client = server.api_client()
    try:
        factory = InformerFactory(client, clock=clock)
        cache = CacheApi(["pods"], liveness=LivenessPolicy(failure_threshold=300.0),
                         metrics_registry=CollectorRegistry())
        async with cache.run(factory):
            assert await factory.wait_for_cache_sync(10)
            pods = factory.informer("pods")
            assert text(get(cache, "/livez")) == "ok"
            server.fail_next(1000, 500, verbs=["watch"])  # lists still work: each relist "recovers"
            server.drop_watches()
            await eventually(lambda: pods.last_error is not None)
            start = clock.now()
            assert get(cache, "/livez").status == 200  # a blip is no reason to restart
            await clock.advance_until(lambda: clock.now() - start >= 290 and pods.last_error is not None, step=10.0)
            assert get(cache, "/livez").status == 200
            await clock.advance_until(lambda: clock.now() - start >= 300 and pods.last_error is not None, step=10.0)
            assert pods.reflector is not None and pods.reflector.stats.relists > 3  # the cache lives on relists
            dead = get(cache, "/livez")
            assert dead.status == 503
            assert text(dead) == "[+]ping ok\n[-]informer-watch/pods failed: reason withheld\nlivez check failed\n"
            detail = text(get(cache, "/livez/informer-watch/pods"))
            assert detail.startswith("internal server error: no watch event or bookmark for 300s (threshold 300s) "
                                     "while list/watch keeps failing"), detail
            assert get(cache, "/readyz").status == 200  # still synced: readiness is about the cache
            server.clear_faults()
            await clock.advance_until(lambda: pods.reflector is not None and pods.reflector.stats.bookmarks > 0,
                                      step=10.0)
            assert text(get(cache, "/livez")) == "ok"
        stopped = get(cache, "/livez/informer-watch/pods")
        assert (stopped.status, text(stopped)) == (503, "internal server error: informer stopped\n")
    finally:
        await client.close()


async def test_livez_stale_after_fails_a_silent_informer() -> None:
    async with FakeApiServer(bookmark_interval=3600.0) as server:  # no bookmarks: silence means silence
        server.create("pods", pod("web-1", "default", app="web"))
        clock = FakeClock()
        client = server.api_client()
        try:
            factory = InformerFactory(client, clock=clock)
            cache = CacheApi(["pods"], liveness=LivenessPolicy(stale_after=60.0),
                             metrics_registry=CollectorRegistry())
            async with cache.run(factory):
                assert await factory.wait_for_cache_sync(10)
                assert get(cache, "/livez").status == 200
                clock.advance(59.0)
                assert get(cache, "/livez").status == 200
                clock.advance(1.0)
                stale = get(cache, "/livez/informer-watch/pods")
                assert (stale.status, text(stale)) == (
                    503, "internal server error: no list, event or bookmark for 60s (threshold 60s)\n")
                server.create("pods", pod("web-2", "default", app="web"))
                await eventually(lambda: get(cache, "/livez").status == 200)
        finally:
            await client.close()
