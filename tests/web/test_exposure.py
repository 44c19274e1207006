"""What the HTTP API lets out, through both adapters over HTTP: Secrets and deny-listed
resources are not served unless allowed, Secret data is redacted unless revealed, the bearer
token guards everything but health checks, and no token or Secret value reaches the logs."""

from __future__ import annotations

import base64
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from kinformer import InformerFactory, Resource
from kinformer.errors import InvalidArgumentError
from kinformer.testing import FakeApiServer, eventually, make_configmap, make_namespace
from kinformer.web import CacheApi, redact_secret, redact_secrets
from kinformer.web.exposure import LAST_APPLIED, REDACTED_ANNOTATION, BearerAuth, group_resource
from tests.web.conftest import Background, Client, make_client, pod

TOKEN = "srv-tok-N0dBR3Vlc3NhYmxl"
WRONG = "srv-wrong-QW5vdGhlck9uZQ"
PASSWORD = "s3cr3t-staple-battery"
ENCODED = base64.b64encode(PASSWORD.encode()).decode()
USER = base64.b64encode(b"admin").decode()
NEEDLES = (TOKEN, WRONG, PASSWORD, ENCODED)
ADAPTERS = ["aiohttp", "fastapi"]


def secret(name: str, namespace: str = "default") -> dict[str, Any]:
    applied = orjson.dumps({"apiVersion": "v1", "kind": "Secret", "stringData": {"password": PASSWORD}}).decode()
    return {"apiVersion": "v1", "kind": "Secret", "type": "Opaque",
            "metadata": {"name": name, "namespace": namespace, "annotations": {LAST_APPLIED: applied}},
            "data": {"password": ENCODED, "user": USER}, "stringData": {"password": PASSWORD}}


REDACTED_DATA = {"password": "", "user": ""}


def assert_redacted(obj: dict[str, Any]) -> None:
    assert obj["data"] == REDACTED_DATA and obj["stringData"] == {"password": ""}
    annotations = obj["metadata"]["annotations"]
    assert annotations[LAST_APPLIED] == "" and annotations[REDACTED_ANNOTATION] == "redacted"
    assert not any(n.encode() in orjson.dumps(obj) for n in NEEDLES)


@dataclass
class Caches:
    server: FakeApiServer
    factory: InformerFactory
    default: CacheApi   # pods, secrets, configmaps asked for; secrets denied by default
    allowed: CacheApi   # secrets allowed (redacted), configmaps on the deny list
    revealed: CacheApi  # secrets allowed and revealed
    guarded: CacheApi   # pods behind a bearer token


@contextlib.asynccontextmanager
async def caches_env() -> AsyncIterator[Caches]:
    async with FakeApiServer(bookmark_interval=0.2) as server:
        server.create("namespaces", make_namespace("default"))
        server.create("pods", pod("web-1", "default", app="web"))
        server.create("secrets", secret("db"))
        server.create("configmaps", make_configmap("cfg", "default"))
        client = server.api_client()
        factory = InformerFactory(client)
        wanted = ["pods", "secrets", "configmaps"]
        caches = Caches(
            server, factory,
            CacheApi(wanted, metrics_registry=CollectorRegistry()),
            CacheApi(wanted, allow_secrets=True, deny=["cm"], metrics_registry=CollectorRegistry()),
            CacheApi(wanted, allow_secrets=True, reveal_secret_data=True, metrics_registry=CollectorRegistry()),
            CacheApi(["pods"], bearer_token=TOKEN, metrics_registry=CollectorRegistry()),
        )
        all_caches = (caches.default, caches.allowed, caches.revealed, caches.guarded)
        for cache in all_caches:
            cache.bind(factory)

        @contextlib.asynccontextmanager
        async def running() -> AsyncIterator[None]:
            async with factory, contextlib.AsyncExitStack() as stack:
                for cache in all_caches:
                    await stack.enter_async_context(cache.run(start=False))
                yield

        try:
            async with Background(running()):
                assert await factory.wait_for_cache_sync(10)
                yield caches
        finally:
            await client.close()


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def caches() -> AsyncIterator[Caches]:
    async with caches_env() as env:
        yield env


@contextlib.asynccontextmanager
async def http(kind: str, cache: CacheApi) -> AsyncIterator[Client]:
    async with make_client(kind, cache) as client:
        yield client


def resource_names(discovery: dict[str, Any]) -> list[str]:
    return sorted(r["name"] for r in discovery["resources"])


# -- denied resources ---------------------------------------------------------------------

@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("kind", ADAPTERS)
async def test_secrets_are_forbidden_and_undiscovered_by_default(caches: Caches, kind: str) -> None:
    async with http(kind, caches.default) as api:
        for path, params in [("/api/v1/secrets", []), ("/api/v1/namespaces/default/secrets", []),
                             ("/api/v1/namespaces/default/secrets/db", []),
                             ("/api/v1/namespaces/default/secrets", [("watch", "true")])]:
            reply = await api.request("GET", path, params)
            assert reply.status == 403, (path, reply.body)
            status = reply.json()
            assert (status["kind"], status["reason"], status["code"]) == ("Status", "Forbidden", 403)
            assert status["details"] == {"kind": "secrets"}
            assert "--allow-secrets" in status["message"]
            assert not any(n.encode() in reply.body for n in NEEDLES)
        assert resource_names((await api.request("GET", "/api/v1")).json()) == ["configmaps", "pods"]
        assert (await api.request("GET", "/api/v1/configmaps")).status == 200
    assert caches.default.informer("secrets") is None
    assert [r.plural for r in caches.default.resources] == ["pods", "configmaps"]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("kind", ADAPTERS)
async def test_a_deny_listed_resource_is_forbidden_and_undiscovered(caches: Caches, kind: str) -> None:
    async with http(kind, caches.allowed) as api:
        reply = await api.request("GET", "/api/v1/namespaces/default/configmaps/cfg")
        assert (reply.status, reply.json()["reason"]) == (403, "Forbidden")
        assert "deny list" in reply.json()["message"]
        assert (await api.request("GET", "/api/v1/configmaps", [("watch", "1")])).status == 403
        assert resource_names((await api.request("GET", "/api/v1")).json()) == ["pods", "secrets"]


async def test_a_denied_resource_is_never_informed(fake_api_server: FakeApiServer,
                                                  caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kinformer.web")
    fake_api_server.create("secrets", secret("db"))
    fake_api_server.create("pods", pod("web-1", "default", app="web"))
    client = fake_api_server.api_client()
    try:
        factory = InformerFactory(client)
        cache = CacheApi(["pods", "secrets"], metrics_registry=CollectorRegistry())
        async with cache.run(factory):
            assert await factory.wait_for_cache_sync(10)
            assert [key[0] for key in factory.informers] == [Resource.pods]
        assert not any("secrets" in r.path for r in fake_api_server.requests)
        assert "resource denied, not served" in caplog.text and "resource=secrets" in caplog.text
        # An application's own informer of secrets in a bound factory is skipped, not served.
        mine = InformerFactory(client)
        mine.informer("secrets")
        mine.informer("pods")
        bound = CacheApi(metrics_registry=CollectorRegistry())
        bound.bind(mine)
        assert [r.plural for r in bound.resources] == ["pods"]
    finally:
        await client.close()


# -- redaction ----------------------------------------------------------------------------

@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("kind", ADAPTERS)
async def test_allowed_secrets_are_redacted_in_list_get_and_watch(caches: Caches, kind: str) -> None:
    name = f"churn-{kind}"
    server = caches.server
    async with http(kind, caches.allowed) as api:
        listing = (await api.request("GET", "/api/v1/namespaces/default/secrets")).json()
        for item in listing["items"]:
            assert_redacted(item)
        assert "db" in [i["metadata"]["name"] for i in listing["items"]]
        assert_redacted((await api.request("GET", "/api/v1/namespaces/default/secrets/db")).json())
        initial = await api.request("GET", "/api/v1/secrets", [("watch", "true"), ("timeoutSeconds", "0.2")])
        events = initial.lines()
        assert [e["type"] for e in events] == ["ADDED"] * len(listing["items"]) and events
        for event in events:
            assert_redacted(event["object"])
        rv = listing["metadata"]["resourceVersion"]
        server.create("secrets", secret(name))
        server.update("secrets", {**server.get("secrets", name, "default"), "data": {"password": ENCODED,
                                                                                      "user": ENCODED}})
        server.delete("secrets", name, "default")
        informer = caches.factory.informer("secrets")
        await eventually(lambda: informer.last_sync_resource_version == server.resource_version)
        await eventually(lambda: f"default/{name}" not in informer.indexer)
        changes = (await api.request("GET", "/api/v1/namespaces/default/secrets",
                                     [("watch", "true"), ("resourceVersion", rv),
                                      ("timeoutSeconds", "0.2")])).lines()
        assert [(e["type"], e["object"]["metadata"]["name"]) for e in changes] == [
            ("ADDED", name), ("MODIFIED", name), ("DELETED", name)]
        for event in changes:
            assert_redacted(event["object"])
    cached = caches.factory.informer("secrets").indexer.get_by_key("default/db")
    assert cached["data"]["password"] == ENCODED  # the shared cache keeps the real object


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("kind", ADAPTERS)
async def test_a_redacted_secrets_data_cannot_be_probed_with_a_field_selector(caches: Caches, kind: str) -> None:
    async with http(kind, caches.allowed) as api:
        for selector in (f"data.password={ENCODED}", f"stringData.password!={PASSWORD}"):
            for params in ([("fieldSelector", selector)], [("fieldSelector", selector), ("watch", "1")]):
                reply = await api.request("GET", "/api/v1/secrets", params)
                assert (reply.status, reply.json()["reason"]) == (400, "BadRequest")
                assert "is not a known field selector" in reply.json()["message"]
                assert not any(n.encode() in reply.body for n in (PASSWORD, ENCODED))
        reply = await api.request("GET", "/api/v1/secrets", [("fieldSelector", "metadata.name=db,type=Opaque")])
        assert [i["metadata"]["name"] for i in reply.json()["items"]] == ["db"]
    async with http(kind, caches.revealed) as api:
        reply = await api.request("GET", "/api/v1/secrets", [("fieldSelector", f"data.password={ENCODED}")])
        assert reply.status == 200 and "db" in [i["metadata"]["name"] for i in reply.json()["items"]]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("kind", ADAPTERS)
async def test_the_query_endpoint_redacts_secrets_and_refuses_probes(caches: Caches, kind: str) -> None:
    async with http(kind, caches.default) as api:
        reply = await api.request("GET", "/query/core/v1/secrets")
        assert (reply.status, reply.json()["reason"]) == (403, "Forbidden")
    async with http(kind, caches.allowed) as api:
        reply = await api.request("GET", "/query/core/v1/secrets", [("orderBy", "-metadata.name"), ("count", "true")])
        assert reply.status == 200
        (item,) = reply.json()["items"]
        assert_redacted(item)
        for params in ([("where", f"data.password={ENCODED}")], [("whereIn", f"stringData.password={PASSWORD},x")],
                       [("orderBy", "-data.password")], [("fieldSelector", f"data.password={ENCODED}")],
                       [("where", f"metadata.annotations.{LAST_APPLIED}=x")]):
            reply = await api.request("GET", "/query/core/v1/secrets", params)
            assert (reply.status, reply.json()["reason"]) == (400, "BadRequest"), params
            assert "cannot be used on redacted secrets" in reply.json()["message"]
            assert not any(n.encode() in reply.body for n in (PASSWORD, ENCODED))
        reply = await api.request("GET", "/query/core/v1/configmaps")
        assert (reply.status, reply.json()["reason"]) == (403, "Forbidden")  # on this cache's deny list
    async with http(kind, caches.revealed) as api:
        reply = await api.request("GET", "/query/core/v1/secrets", [("where", f"data.password={ENCODED}")])
        assert reply.status == 200
        assert [i["data"]["password"] for i in reply.json()["items"]] == [ENCODED]


@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("kind", ADAPTERS)
async def test_secret_data_is_revealed_only_when_asked(caches: Caches, kind: str) -> None:
    async with http(kind, caches.revealed) as api:
        got = (await api.request("GET", "/api/v1/namespaces/default/secrets/db")).json()
        assert got["data"] == {"password": ENCODED, "user": USER}
        assert REDACTED_ANNOTATION not in got["metadata"]["annotations"]
        items = (await api.request("GET", "/api/v1/secrets", [("fieldSelector", "metadata.name=db")])).json()["items"]
        assert items[0]["data"]["password"] == ENCODED and items[0]["stringData"] == {"password": PASSWORD}
        events = (await api.request("GET", "/api/v1/secrets", [("watch", "1"), ("timeoutSeconds", "0.1"),
                                                               ("fieldSelector", "metadata.name=db")])).lines()
        assert [e["object"]["data"]["password"] for e in events] == [ENCODED]


def test_redaction_forms_and_the_transform() -> None:
    original = secret("db")
    redacted = redact_secret(original)
    assert_redacted(redacted)
    assert original == secret("db")  # the input is not changed
    assert redact_secret(redacted) == redacted  # idempotent
    assert redact_secrets(original) == redacted
    configmap = make_configmap("cfg", "default")
    assert redact_secrets(configmap) is configmap
    bare = redact_secret({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "x"}})
    assert bare["metadata"]["annotations"] == {REDACTED_ANNOTATION: "redacted"} and "data" not in bare


async def test_the_redacting_transform_keeps_data_out_of_the_cache(fake_api_server: FakeApiServer) -> None:
    fake_api_server.create("secrets", secret("db"))
    client = fake_api_server.api_client()
    try:
        async with InformerFactory(client, transform=redact_secrets) as factory:
            secrets = factory.informer("secrets")
            assert await factory.wait_for_cache_sync(10)
            fake_api_server.update("secrets", {**fake_api_server.get("secrets", "db", "default"),
                                               "data": {"password": ENCODED, "more": ENCODED}})
            await eventually(lambda: "more" in secrets.indexer.get_by_key("default/db")["data"])
            cached = secrets.indexer.get_by_key("default/db")
            assert cached["data"] == {"password": "", "more": ""} and cached["stringData"] == {"password": ""}
            assert cached["metadata"]["annotations"][LAST_APPLIED] == ""
            assert not any(n.encode() in orjson.dumps(cached) for n in NEEDLES)
    finally:
        await client.close()


def test_exposure_options_are_checked(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgumentError, match="needs allow_secrets"):
        CacheApi(["pods"], reveal_secret_data=True)
    with pytest.raises(InvalidArgumentError, match="both allowed"):
        CacheApi(["pods"], allow_secrets=True, deny=["secrets"])
    assert [group_resource(n) for n in ("cm", "Secret", "deployments.apps", "widgets.example.com", "foo")] == [
        ("", "configmaps"), ("", "secrets"), ("apps", "deployments"), ("example.com", "widgets"), ("", "foo")]
    assert CacheApi(["pods", "deploy"], deny=["deployments.apps"]).resources == [Resource.pods]
    with pytest.raises(InvalidArgumentError, match="not both"):
        CacheApi(bearer_token=TOKEN, bearer_token_file=tmp_path / "t")
    for bad in ("", "has space", "tab\there", "ümlaut"):
        with pytest.raises(InvalidArgumentError) as info:
            BearerAuth(bad)
        assert bad not in str(info.value) or not bad
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    assert CacheApi(bearer_token_file=token_file).authenticated
    assert TOKEN not in repr(BearerAuth(TOKEN))
    (tmp_path / "empty").write_text("\n")
    with pytest.raises(InvalidArgumentError, match="is empty"):
        CacheApi(bearer_token_file=tmp_path / "empty")
    with pytest.raises(InvalidArgumentError, match="cannot read the bearer token file") as missing:
        CacheApi(bearer_token_file=tmp_path / "missing")
    assert "No such file" in str(missing.value)


# -- bearer token -------------------------------------------------------------------------

@pytest.mark.asyncio(loop_scope="module")
@pytest.mark.parametrize("kind", ADAPTERS)
async def test_the_bearer_token_guards_everything_but_health(caches: Caches, kind: str) -> None:
    good = {"Authorization": f"Bearer {TOKEN}"}
    async with http(kind, caches.guarded) as api:
        for headers, error in [(None, ""), ({"Authorization": f"Bearer {WRONG}"}, ', error="invalid_token"'),
                               ({"Authorization": f"Basic {TOKEN}"}, ', error="invalid_token"'),
                               ({"Authorization": f"Bearer {TOKEN}x"}, ', error="invalid_token"'),
                               ({"Authorization": "Bearer"}, ', error="invalid_token"')]:
            for method, path in [("GET", "/api/v1/pods"), ("GET", "/api"), ("GET", "/metrics"),
                                 ("GET", "/api/v1/secrets"), ("DELETE", "/api/v1/namespaces/default/pods/web-1")]:
                reply = await api.request(method, path, headers=headers)
                assert reply.status == 401, (method, path, headers)
                assert reply.json() == {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                                        "message": "Unauthorized", "reason": "Unauthorized", "code": 401}
                www = {k.lower(): v for k, v in reply.headers.items()}["www-authenticate"]
                assert www == 'Bearer realm="kinformer"' + error
                assert not any(n.encode() in reply.body or n in str(reply.headers) for n in (TOKEN, WRONG))
        listing = await api.request("GET", "/api/v1/pods", headers=good)
        assert listing.status == 200 and [i["metadata"]["name"] for i in listing.json()["items"]] == ["web-1"]
        assert (await api.request("GET", "/api/v1/pods", headers={"Authorization": f"bearer {TOKEN}"})).status == 200
        assert (await api.request("GET", "/metrics", headers=good)).status == 200
        assert (await api.request("DELETE", "/api/v1/pods", headers=good)).status == 405  # authenticated first
        for path in ("/readyz", "/livez", "/healthz", "/readyz/ping", "/livez/informer-watch/pods"):
            reply = await api.request("GET", path, [("verbose", "1")])
            assert reply.status == 200, (path, reply.text)


@pytest.mark.asyncio(loop_scope="module")
async def test_two_authorization_headers_are_refused(caches: Caches) -> None:
    from multidict import CIMultiDict

    headers = CIMultiDict([("Authorization", f"Bearer {TOKEN}"), ("Authorization", f"Bearer {WRONG}")])
    assert caches.guarded.handle("GET", "/api/v1/pods", (), headers).status == 401
    assert caches.guarded.handle("GET", "/api/v1/pods", (), {"authorization": f"Bearer {TOKEN}"}).status == 200


# -- logs ---------------------------------------------------------------------------------

@pytest.mark.asyncio(loop_scope="module")
async def test_no_token_or_secret_value_reaches_the_logs(caches: Caches, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    bodies: list[bytes] = []
    for kind in ADAPTERS:
        async with http(kind, caches.guarded) as api:
            for headers in (None, {"Authorization": f"Bearer {WRONG}"}, {"Authorization": f"Bearer {TOKEN}"},
                            {"Authorization": f"Bearer {TOKEN} {WRONG}"}):
                for path in ("/api/v1/pods", "/api/v1/secrets", "/nowhere", "/readyz"):
                    bodies.append((await api.request("GET", path, headers=headers)).body)
        for cache in (caches.default, caches.allowed):
            async with http(kind, cache) as api:
                for path, params in [("/api/v1/secrets", []), ("/api/v1/secrets", [("watch", "1"),
                                                                                   ("timeoutSeconds", "0.05")]),
                                     ("/api/v1/namespaces/default/secrets/db", []),
                                     ("/api/v1/secrets", [("fieldSelector", f"data.password={ENCODED}")]),
                                     ("/api/v1/secrets", [("labelSelector", f"x={PASSWORD}")])]:
                    bodies.append((await api.request("GET", path, params)).body)
    async with http("aiohttp", caches.revealed) as api:
        assert ENCODED.encode() in (await api.request("GET", "/api/v1/namespaces/default/secrets/db")).body
    # Every logger but the test's own HTTP client (httpx logs the URLs it requests, probes included).
    text = "".join(r.getMessage() + str(r.__dict__) for r in caplog.records if not r.name.startswith("httpx"))
    assert any(r.name.startswith("httpx") for r in caplog.records)  # the capture did capture
    for needle in NEEDLES:
        assert needle not in text, needle
    for body in bodies:
        for needle in (TOKEN, WRONG, ENCODED):
            assert needle.encode() not in body, (needle, body)
