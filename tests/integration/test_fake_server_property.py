"""FakeApiServer's history is exact: for random writes (`strategies.write_sequences`), any
in-window resume sees exactly the later events, and a paged list at any RV and page size is
exactly the state at that RV."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kinformer.testing import FakeApiServer, steps
from kinformer.testing import strategies as ks

KEYS = [f"default/cm{i}" for i in range(6)]
CM = "/api/v1/namespaces/default/configmaps"
KIND = {"Create": "ADDED", "Update": "MODIFIED", "Patch": "MODIFIED", "Delete": "DELETED"}


@given(writes=ks.write_sequences("configmaps", KEYS, min_size=1, max_size=25), data=st.data())
@settings(max_examples=40, deadline=None)
def test_resume_and_paged_lists_are_exact(writes: list[steps.Write], data: st.DataObject) -> None:
    asyncio.run(_run(writes, data))


async def _run(writes: list[steps.Write], data: st.DataObject) -> None:
    async with FakeApiServer() as server:
        start = int(server.resource_version)
        states: dict[int, dict[str, Any]] = {start: {}}
        log: list[tuple[int, str, str]] = []  # (rv, type, name)
        state: dict[str, Any] = {}
        for write in writes:
            obj = write.apply(server)
            kind = KIND[type(write).__name__]
            name = obj["metadata"]["name"]
            rv = int(obj["metadata"]["resourceVersion"])
            if kind == "DELETED":
                state.pop(name)
            else:
                state[name] = obj["data"]
            log.append((rv, kind, name))
            states[rv] = dict(state)
        end = int(server.resource_version)
        resume = data.draw(st.integers(start, end), label="resume")
        page = data.draw(st.integers(1, 7), label="page")
        at = data.draw(st.sampled_from(sorted(states)), label="list_at")

        async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {server.token}"}) as s:
            expected = [(rv, kind, name) for rv, kind, name in log if rv > resume]
            got: list[tuple[int, str, str]] = []
            async with s.get(server.url + CM, params={"watch": "1", "resourceVersion": str(resume),
                                                      "timeoutSeconds": "1"}) as resp:
                while len(got) < len(expected):
                    event = orjson.loads(await asyncio.wait_for(resp.content.readline(), 5))
                    meta = event["object"]["metadata"]
                    got.append((int(meta["resourceVersion"]), event["type"], meta["name"]))
            assert got == expected

            items: list[dict[str, Any]] = []
            params = {"limit": str(page), "resourceVersion": str(at), "resourceVersionMatch": "Exact"}
            while True:
                async with s.get(server.url + CM, params=params) as resp:
                    body = orjson.loads(await resp.read())
                assert body["metadata"]["resourceVersion"] == str(at)
                items += body["items"]
                token = body["metadata"].get("continue")
                if not token:
                    break
                params = {"limit": str(page), "continue": token}
            snapshot_rv = max(rv for rv in states if rv <= at)
            assert {i["metadata"]["name"]: i["data"] for i in items} == states[snapshot_rv]
            assert len(items) == len(states[snapshot_rv])
