"""FakeApiServer beyond list/watch: auth modes, body media types, discovery for kubectl."""

from __future__ import annotations

import aiohttp

from kinformer.testing import FakeApiServer, make_configmap
from tests.integration.conftest import Raw

CM = "/api/v1/namespaces/default/configmaps"


async def test_anonymous_requests_only_when_allowed() -> None:
    for allow, anonymous_status in ((False, 401), (True, 200)):
        async with FakeApiServer(allow_anonymous=allow) as server, aiohttp.ClientSession() as session:
            async with session.get(server.url + CM) as resp:
                assert resp.status == anonymous_status
            async with session.get(server.url + CM, headers={"Authorization": "Bearer wrong"}) as resp:
                assert resp.status == 401  # a wrong token is refused either way
                assert (await resp.json())["reason"] == "Unauthorized"
            async with session.get(server.url + CM, headers={"Authorization": f"Bearer {server.token}"}) as resp:
                assert resp.status == 200


async def test_non_json_bodies_are_415(raw: Raw, server: FakeApiServer) -> None:
    """kubectl sends protobuf; the answer must say which media type is accepted."""
    for method, path in (("POST", CM), ("PUT", f"{CM}/x")):
        status, body = await raw.send(method, path, make_configmap("x"), "application/vnd.kubernetes.protobuf")
        assert status == 415 and body["reason"] == "UnsupportedMediaType"
        assert "application/json" in body["message"]
    assert server.objects("configmaps") == {}
    status, _ = await raw.send("POST", CM, make_configmap("x"), "application/json; charset=utf-8")
    assert status == 201


async def test_discovery_lists_short_names(raw: Raw) -> None:
    _, core, _ = await raw.get("/api/v1")
    by_name = {r["name"]: r for r in core["resources"]}
    assert by_name["namespaces"]["shortNames"] == ["ns"]
    assert by_name["configmaps"]["shortNames"] == ["cm"]
    assert by_name["secrets"]["shortNames"] == []
    _, apps, _ = await raw.get("/apis/apps/v1")
    assert {r["name"]: r["shortNames"] for r in apps["resources"]}["deployments"] == ["deploy"]
