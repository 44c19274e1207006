"""ListWatch over a real kubernetes_asyncio client against FakeApiServer."""

from __future__ import annotations

import pytest

from kinformer import ExpiredError, Resource, TooManyRequestsError, UnauthorizedError
from kinformer.errors import ConnectionFailedError, DecodeError, TooLargeResourceVersionError
from kinformer.listwatch import ListWatch
from kinformer.testing import FakeApiServer, make_configmap, make_pod


async def test_pages_decode_complete_objects_without_managed_fields(fake_api_server: FakeApiServer,
                                                                    fake_api_client: object) -> None:
    for i in range(5):
        fake_api_server.create("pods", make_pod(i, "ns"))
    lw = ListWatch(fake_api_client, Resource.pods, "ns", page_size=2)
    pages = [p async for p in lw.list_pages("0")]
    assert [len(p.items) for p in pages] == [2, 2, 1]
    assert len({p.resource_version for p in pages}) == 1
    item = pages[0].items[0]
    assert (item["kind"], item["apiVersion"]) == ("Pod", "v1")
    assert "managedFields" not in item["metadata"]
    keep = ListWatch(fake_api_client, Resource.pods, "ns", keep_managed_fields=True)
    items, rv = await keep.list()
    assert len(items) == 5 and rv == fake_api_server.resource_version
    assert "managedFields" in items[0]["metadata"]


async def test_watch_yields_batches_and_strips_managed_fields(fake_api_server: FakeApiServer,
                                                             fake_api_client: object) -> None:
    lw = ListWatch(fake_api_client, Resource.pods)
    rv = fake_api_server.resource_version
    for i in range(3):
        fake_api_server.create("pods", make_pod(i, "ns"))
    events = []
    async with lw.watch(rv, 1) as stream:
        async for batch in stream:
            events += [e for e in batch if e.type != "BOOKMARK"]
    assert [e.type for e in events] == ["ADDED"] * 3
    assert all("managedFields" not in e.object["metadata"] for e in events)


async def test_metadata_only(fake_api_server: FakeApiServer, fake_api_client: object) -> None:
    fake_api_server.create("pods", make_pod(1, "ns"))
    lw = ListWatch(fake_api_client, Resource.pods, metadata_only=True)
    items, _ = await lw.list()
    assert items[0]["kind"] == "PartialObjectMetadata" and set(items[0]) == {"kind", "apiVersion", "metadata"}
    async with lw.watch("0", 1) as stream:
        batch = await stream.__anext__()
    assert batch[0].object["kind"] == "PartialObjectMetadata" and "spec" not in batch[0].object


async def test_errors_are_typed(fake_api_server: FakeApiServer, fake_api_client: object) -> None:
    lw = ListWatch(fake_api_client, Resource.configmaps)
    fake_api_server.fail_next(1, 429, retry_after=5)
    with pytest.raises(TooManyRequestsError) as info:
        await lw.list()
    assert info.value.retry_after == 5 and info.value.code == 429
    with pytest.raises(TooLargeResourceVersionError):
        await lw.list("999999")
    fake_api_server.create("configmaps", make_configmap("a"))
    fake_api_server.create("configmaps", make_configmap("b"))
    pages = lw.list_pages("", limit=1)
    await pages.__anext__()
    fake_api_server.create("configmaps", make_configmap("c"))
    fake_api_server.compact()
    with pytest.raises(ExpiredError):
        await pages.__anext__()
    bad = fake_api_server.api_client()
    bad.configuration.api_key = {"BearerToken": "wrong"}
    try:
        with pytest.raises(UnauthorizedError):
            await ListWatch(bad, Resource.configmaps).list()
    finally:
        await bad.close()


async def test_unreachable_server_is_connection_failed() -> None:
    server = FakeApiServer()
    await server.start()
    client = server.api_client()
    await server.stop()
    try:
        with pytest.raises(ConnectionFailedError):
            await ListWatch(client, Resource.configmaps).list()
    finally:
        await client.close()


@pytest.mark.parametrize(("line", "fragment"), [
    (b"{not json", "is not JSON"),
    (b'{"type":"MODIFIED"}', "not a watch event object"),
    (b'{"type":"WAT","object":{}}', "unknown watch event type"),
    (b'{"type":"ADDED","object":{"spec":{}}}', "without metadata"),
    (b'{"type":"ADDED","object":[]}', "has no object"),
])
def test_decode_errors_never_carry_the_body(line: bytes, fragment: str) -> None:
    lw = ListWatch(None, Resource.secrets)
    with pytest.raises(DecodeError) as info:
        lw.decode_event(line)
    assert fragment in str(info.value)
    assert line.decode() not in str(info.value)
