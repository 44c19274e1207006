"""FakeApiServer's history is exact: for random writes, any in-window resume sees exactly
the later events, and a paged list at any RV and page size is exactly the state at that RV."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kinformer.testing import FakeApiServer, make_configmap

NAMES = st.sampled_from([f"cm{i}" for i in range(6)])
OPS = st.lists(st.tuples(st.sampled_from(["create", "update", "delete"]), NAMES), min_size=1, max_size=25)
CM = "/api/v1/namespaces/default/configmaps"


@given(ops=OPS, data=st.data())
@settings(max_examples=40, deadline=None)
def test_resume_and_paged_lists_are_exact(ops: list[tuple[str, str]], data: st.DataObject) -> None:
    asyncio.run(_run(ops, data))


async def _run(ops: list[tuple[str, str]], data: st.DataObject) -> None:
    async with FakeApiServer() as server:
        start = int(server.resource_version)
        states: dict[int, dict[str, str]] = {start: {}}
        log: list[tuple[int, str, str]] = []  # (rv, type, name)
        state: dict[str, str] = {}
        n = 0
        for op, name in ops:
            n += 1
            exists = name in state
            if op == "create" and not exists:
                obj = server.create("configmaps", make_configmap(name, n=str(n)))
                kind = "ADDED"
            elif op == "update" and exists:
                obj = server.update("configmaps", {**server.get("configmaps", name, "default"), "data": {"n": str(n)}})
                kind = "MODIFIED"
            elif op == "delete" and exists:
                obj = server.delete("configmaps", name, "default")
                kind = "DELETED"
            else:
                continue
            rv = int(obj["metadata"]["resourceVersion"])
            if kind == "DELETED":
                state.pop(name)
            else:
                state[name] = obj["data"]["n"]
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
            assert {i["metadata"]["name"]: i["data"]["n"] for i in items} == states[snapshot_rv]
            assert len(items) == len(states[snapshot_rv])
