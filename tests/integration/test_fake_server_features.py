"""FakeApiServer beyond list/watch: auth modes, media types, kubectl discovery, Leases and optimistic
concurrency, generateName and generation, delete options and the garbage collector."""

from __future__ import annotations

import datetime
from typing import Any

import aiohttp
import orjson
import pytest
from kubernetes_asyncio.client import (
    AppsV1Api,
    CoordinationV1Api,
    CoreV1Api,
    V1Lease,
    V1LeaseSpec,
    V1ObjectMeta,
)
from kubernetes_asyncio.client.exceptions import ApiException

from kinformer.testing import FakeApiServer, make_configmap, make_deployment
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


# -- Leases over HTTP: create / read / replace, MicroTime, optimistic concurrency --------------

LEASES = "/apis/coordination.k8s.io/v1/namespaces/default/leases"


def _micro(when: datetime.datetime) -> str:
    """MicroTime as kube-apiserver accepts it (`datetime.isoformat()` drops a zero fraction)."""
    return when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


NOON = datetime.datetime(2026, 12, 1, 10, 0, tzinfo=datetime.UTC)


def _lease(name: str, holder: str, when: datetime.datetime = NOON) -> V1Lease:
    return V1Lease(metadata=V1ObjectMeta(name=name),
                   spec=V1LeaseSpec(holder_identity=holder, lease_duration_seconds=15, lease_transitions=0,
                                    acquire_time=_micro(when), renew_time=_micro(when)))


async def test_lease_round_trip_with_micro_time(server: FakeApiServer, fake_api_client: Any) -> None:
    api = CoordinationV1Api(fake_api_client)
    created = await api.create_namespaced_lease("default", _lease("leader", "a"))
    assert created.spec.renew_time == NOON and created.spec.acquire_time == NOON
    assert server.get("leases", "leader", "default")["spec"]["renewTime"] == "2026-12-01T10:00:00.000000Z"
    # Re-sent as read, the model's whole-second datetimes serialise without a fraction:
    # refused, as kube-apiserver refuses them.
    created.spec.holder_identity = "b"
    with pytest.raises(ApiException) as info:
        await api.replace_namespaced_lease("leader", "default", created)
    assert info.value.status == 400 and "2026-12-01T10:00:00+00:00" in orjson.loads(info.value.body)["message"]
    # A datetime with microseconds and an offset is fine, and stored in UTC.
    later = datetime.datetime(2026, 12, 1, 11, 0, 5, 250000, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    created.spec.acquire_time, created.spec.renew_time = _micro(NOON), later
    created.spec.lease_transitions = 1
    replaced = await api.replace_namespaced_lease("leader", "default", created)
    assert server.get("leases", "leader", "default")["spec"]["renewTime"] == "2026-12-01T10:00:05.250000Z"
    read = await api.read_namespaced_lease("leader", "default")
    assert (read.spec.holder_identity, read.spec.lease_transitions, read.spec.renew_time) == ("b", 1, later)
    assert read.metadata.resource_version == replaced.metadata.resource_version != created.metadata.resource_version


async def test_lease_replace_is_optimistic(server: FakeApiServer, fake_api_client: Any, raw: Raw) -> None:
    api = CoordinationV1Api(fake_api_client)
    first = await api.create_namespaced_lease("default", _lease("leader", "a"))
    stale_rv = first.metadata.resource_version
    first.spec.acquire_time = first.spec.renew_time = _micro(NOON)
    first.spec.holder_identity = "b"
    await api.replace_namespaced_lease("leader", "default", first)  # first still carries stale_rv
    first.spec.holder_identity = "c"
    with pytest.raises(ApiException) as info:
        await api.replace_namespaced_lease("leader", "default", first)
    assert info.value.status == 409 and orjson.loads(info.value.body)["reason"] == "Conflict"
    # Leases must name the version they replace (AllowUnconditionalUpdate is false).
    first.metadata.resource_version = None
    with pytest.raises(ApiException) as info:
        await api.replace_namespaced_lease("leader", "default", first)
    assert info.value.status == 422
    assert "metadata.resourceVersion" in orjson.loads(info.value.body)["message"]
    assert server.get("leases", "leader", "default")["spec"]["holderIdentity"] == "b"
    # PATCH with a resourceVersion is the same precondition; without one it is unconditional.
    with pytest.raises(ApiException) as info:
        await api.patch_namespaced_lease("leader", "default",
                                         {"metadata": {"resourceVersion": stale_rv}, "spec": {"holderIdentity": "d"}})
    assert info.value.status == 409
    current = server.get("leases", "leader", "default")["metadata"]["resourceVersion"]
    patched = await api.patch_namespaced_lease("leader", "default", {"metadata": {"resourceVersion": current},
                                                                      "spec": {"holderIdentity": "d"}})
    assert patched.spec.holder_identity == "d"
    patched = await api.patch_namespaced_lease("leader", "default", {"spec": {"leaseTransitions": 3}})
    assert (patched.spec.holder_identity, patched.spec.lease_transitions) == ("d", 3)
    # A PUT of a missing Lease creates it (AllowCreateOnUpdate).
    body = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "new"},
            "spec": {"holderIdentity": "z", "renewTime": "2026-12-01T10:00:00.000001+00:00"}}
    status, made = await raw.send("PUT", f"{LEASES}/new", body)
    assert status == 201 and made["metadata"]["uid"] and made["spec"]["renewTime"] == "2026-12-01T10:00:00.000001Z"


async def test_micro_time_must_have_six_fractional_digits(raw: Raw, server: FakeApiServer) -> None:
    """kube-apiserver parses MicroTime with Go's RFC3339Micro; so does the fake (a client that
    passes here must pass there)."""
    for renew in ("2026-12-01T10:00:00Z", "2026-12-01T10:00:00+00:00", "2026-12-01T10:00:00.000000000Z", 5):
        body = {"metadata": {"name": "x"}, "spec": {"renewTime": renew}}
        status, error = await raw.send("POST", LEASES, body)
        assert status == 400 and error["reason"] == "BadRequest", renew
        assert "spec.renewTime is MicroTime" in error["message"]
    assert server.objects("leases") == {}


async def test_conflict_on_stale_resource_version_for_put_and_patch_of_other_kinds(raw: Raw,
                                                                                 server: FakeApiServer) -> None:
    cm = server.create("configmaps", make_configmap("x", a="1"))
    server.update("configmaps", {**cm, "data": {"a": "2"}})
    status, body = await raw.send("PUT", f"{CM}/x", {**cm, "data": {"a": "3"}})
    assert status == 409 and body["reason"] == "Conflict"
    stale = {"metadata": {"resourceVersion": cm["metadata"]["resourceVersion"]}, "data": {"a": "3"}}
    status, body = await raw.send("PATCH", f"{CM}/x", stale, "application/merge-patch+json")
    assert status == 409 and body["reason"] == "Conflict"
    assert server.get("configmaps", "x", "default")["data"] == {"a": "2"}
    # Built-ins other than Leases accept an unconditional PUT and do not create on PUT.
    status, body = await raw.send("PUT", f"{CM}/x", {"metadata": {"name": "x"}, "data": {"a": "4"}})
    assert status == 200 and body["data"] == {"a": "4"}
    status, _ = await raw.send("PUT", f"{CM}/y", {"metadata": {"name": "y"}})
    assert status == 404


async def test_patch_leaves_the_stored_previous_version_intact(raw: Raw, server: FakeApiServer) -> None:
    cm = server.create("configmaps", make_configmap("x", a="1"))
    rv = cm["metadata"]["resourceVersion"]
    status, _ = await raw.send("PATCH", f"{CM}/x", {"data": {"a": "2"}}, "application/merge-patch+json")
    assert status == 200
    assert cm["metadata"]["resourceVersion"] == rv
    _, listed, _ = await raw.get(CM, resourceVersion=rv, resourceVersionMatch="Exact")
    assert [(i["metadata"]["resourceVersion"], i["data"]) for i in listed["items"]] == [(rv, {"a": "1"})]


# -- generateName, generation ------------------------------------------------------------------

async def test_generate_name_and_generation_over_http(server: FakeApiServer, fake_api_client: Any) -> None:
    core = CoreV1Api(fake_api_client)
    names = set()
    for _ in range(3):
        made = await core.create_namespaced_config_map("default", {"metadata": {"generateName": "job-"}})
        assert made.metadata.name.startswith("job-") and len(made.metadata.name) == len("job-") + 5
        names.add(made.metadata.name)
    assert len(names) == 3
    apps = AppsV1Api(fake_api_client)
    made = await apps.create_namespaced_deployment("default", make_deployment("web", "default"))
    assert made.metadata.generation == 1
    labelled = await apps.patch_namespaced_deployment("web", "default", {"metadata": {"labels": {"x": "y"}}})
    assert labelled.metadata.generation == 1
    scaled = await apps.patch_namespaced_deployment("web", "default", {"spec": {"replicas": 5}})
    assert scaled.metadata.generation == 2 and scaled.spec.replicas == 5


async def test_cluster_scoped_objects_drop_a_namespace(server: FakeApiServer) -> None:
    made = server.create("namespaces", {"metadata": {"name": "team", "namespace": "ignored"}})
    assert "namespace" not in made["metadata"]
    updated = server.update("namespaces", {**made, "metadata": {**made["metadata"], "namespace": "ignored"}})
    assert "namespace" not in updated["metadata"]
    assert server.delete("namespaces", "team")["metadata"]["name"] == "team"


# -- the garbage collector ----------------------------------------------------------------------

def _owned(name: str, *owners: dict[str, Any], kind: str = "configmaps") -> dict[str, Any]:
    refs = [{"apiVersion": o["apiVersion"], "kind": o["kind"], "name": o["metadata"]["name"],
             "uid": o["metadata"]["uid"], "controller": i == 0} for i, o in enumerate(owners)]
    return {"metadata": {"name": name, "namespace": "default", "ownerReferences": refs}}


def _writes_after(server: FakeApiServer, rv: str) -> list[tuple[str, str]]:
    return [(e.type, e.obj["metadata"]["name"]) for e in server.cluster.events_after(int(rv))]


def _tree(server: FakeApiServer) -> tuple[dict[str, Any], dict[str, Any], dict[str, Any]]:
    """deployment → replicaset → pod (all over ownerReferences), plus an unrelated pod."""
    deployment = server.create("deployments", make_deployment("web", "default"))
    replicaset = server.create("replicasets", {"metadata": {**_owned("web-1", deployment)["metadata"]}})
    pod = server.create("pods", {"metadata": {**_owned("web-1-a", replicaset)["metadata"]}})
    server.create("pods", {"metadata": {"name": "unrelated", "namespace": "default"}})
    return deployment, replicaset, pod


async def test_without_the_collector_dependents_stay() -> None:
    async with FakeApiServer() as server:
        _tree(server)
        server.delete("deployments", "web", "default", propagation_policy="Background")
        assert set(server.objects("replicasets")) == {"default/web-1"}
        assert set(server.objects("pods")) == {"default/web-1-a", "default/unrelated"}


async def test_background_deletion_cascades_owner_first() -> None:
    async with FakeApiServer(garbage_collector=True) as server:
        _tree(server)
        rv = server.resource_version
        client = server.api_client()
        try:
            await AppsV1Api(client).delete_namespaced_deployment("web", "default")  # default policy
        finally:
            await client.close()
        assert server.objects("deployments") == {} and server.objects("replicasets") == {}
        assert set(server.objects("pods")) == {"default/unrelated"}
        assert _writes_after(server, rv) == [("DELETED", "web"), ("DELETED", "web-1"), ("DELETED", "web-1-a")]


async def test_foreground_deletes_dependents_before_their_owner() -> None:
    async with FakeApiServer(garbage_collector=True) as server:
        _tree(server)
        rv = server.resource_version
        async with (aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"}) as session,
                    session.delete(server.url + "/apis/apps/v1/namespaces/default/deployments/web",
                                   json={"propagationPolicy": "Foreground"}) as resp):
            assert resp.status == 200
        assert _writes_after(server, rv) == [("DELETED", "web-1-a"), ("DELETED", "web-1"), ("DELETED", "web")]


async def test_orphan_removes_the_owner_reference_then_the_owner() -> None:
    async with FakeApiServer(garbage_collector=True) as server:
        owner = server.create("configmaps", make_configmap("src"))
        server.create("configmaps", _owned("copy", owner))
        rv = server.resource_version
        async with (aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"}) as session,
                    session.delete(server.url + f"{CM}/src", params={"propagationPolicy": "Orphan"}) as resp):
            assert resp.status == 200
        assert _writes_after(server, rv) == [("MODIFIED", "copy"), ("DELETED", "src")]
        assert "ownerReferences" not in server.get("configmaps", "copy", "default")["metadata"]


async def test_a_dependent_with_another_owner_survives_until_the_last_goes() -> None:
    async with FakeApiServer(garbage_collector=True) as server:
        a = server.create("configmaps", make_configmap("a"))
        b = server.create("configmaps", make_configmap("b"))
        server.create("configmaps", _owned("shared", a, b))
        server.delete("configmaps", "a", "default")
        refs = server.get("configmaps", "shared", "default")["metadata"]["ownerReferences"]
        assert [r["name"] for r in refs] == ["b"]  # the dangling reference is removed
        server.delete("configmaps", "b", "default", propagation_policy="Foreground")
        assert set(server.objects("configmaps")) == set()


async def test_ownership_cycles_terminate() -> None:
    async with FakeApiServer(garbage_collector=True) as server:
        for policy in ("Foreground", "Background"):
            a = server.create("configmaps", make_configmap("a"))
            b = server.create("configmaps", _owned("b", a))
            server.update("configmaps", {**a, "metadata": {**a["metadata"], **_owned("a", b)["metadata"]}})
            server.delete("configmaps", "a", "default", propagation_policy=policy)
            assert server.objects("configmaps") == {}, policy


async def test_delete_options_are_checked_before_anything_is_deleted() -> None:
    async with FakeApiServer(garbage_collector=True) as server:
        owner = server.create("configmaps", make_configmap("src"))
        server.create("configmaps", _owned("copy", owner))
        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"}) as session:
            for options, status, reason in (
                ({"propagationPolicy": "Foreground", "preconditions": {"uid": "not-it"}}, 409, "Conflict"),
                ({"preconditions": {"resourceVersion": "1"}}, 409, "Conflict"),
                ({"propagationPolicy": "Sometimes"}, 422, "Invalid"),
            ):
                async with session.delete(server.url + f"{CM}/src", json=options) as resp:
                    assert (resp.status, (await resp.json())["reason"]) == (status, reason), options
            assert set(server.objects("configmaps")) == {"default/src", "default/copy"}
            good = {"preconditions": {"uid": owner["metadata"]["uid"],
                                      "resourceVersion": owner["metadata"]["resourceVersion"]}}
            async with session.delete(server.url + f"{CM}/src", json=good) as resp:
                assert resp.status == 200
            for body in (b"", b"null"):  # DeleteOptions are optional
                server.create("configmaps", make_configmap("again"))
                async with session.delete(server.url + f"{CM}/again", data=body) as resp:
                    assert resp.status == 200, body
        assert server.objects("configmaps") == {}
