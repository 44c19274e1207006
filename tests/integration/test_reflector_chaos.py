"""Chaos: random writes interleaved with random faults; once faults stop, the cache equals
the server exactly (no lost delete, no stale object, no phantom)."""

from __future__ import annotations

import asyncio

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st

from kinformer import DeltaType
from kinformer.testing import FakeApiServer, make_configmap
from tests.integration.harness import Pipeline

NAMES = [f"c{i}" for i in range(8)]
# Each step carries a scheduling jitter (not synchronisation): how long the test lets the
# reflector run after it, so faults land at every point of a list/watch cycle.
JITTER = st.sampled_from([0.0, 0.0, 0.001, 0.003])
WRITE = st.tuples(st.sampled_from(["create", "update", "delete"]), st.sampled_from(NAMES), JITTER)
FAULT = st.tuples(st.sampled_from(["drop", "compact", "429", "500", "malformed"]), st.just(""), JITTER)
# A segment is either a gap (no watch gets through while its writes happen, then history
# is compacted, so resuming gets 410) or writes interleaved with faults.
SEGMENT = st.one_of(
    st.lists(WRITE, min_size=1, max_size=6).map(lambda ws: [("disconnect", "", 0.0), *ws, ("reconnect", "", 0.0)]),
    st.lists(st.one_of(WRITE, FAULT), min_size=1, max_size=8),
)
STEPS = st.lists(SEGMENT, min_size=1, max_size=6).map(lambda segments: [step for seg in segments for step in seg])

seen: list[tuple[int, int]] = []  # (410s, deletions) per example: the run must exercise both


@given(steps=STEPS, streaming=st.booleans())
@settings(max_examples=40, deadline=None, database=None)
def _chaos(steps: list[tuple[str, str, float]], streaming: bool) -> None:
    asyncio.run(_run(steps, streaming))


def test_cache_converges_to_server_after_chaos() -> None:
    seen.clear()
    _chaos()
    # Guard against a vacuous run: relists after 410, and deletions, must have happened.
    assert sum(1 for expired, _ in seen if expired) >= 5, seen
    assert sum(1 for _, deleted in seen if deleted) >= 5, seen


async def _run(steps: list[tuple[str, str, float]], streaming: bool) -> None:
    async with FakeApiServer(bookmark_interval=0.05) as server:
        for name in NAMES[:4]:
            server.create("configmaps", make_configmap(name))
        client = server.api_client()
        try:
            p = Pipeline(server, client, streaming_list=streaming)
            async with p.running():
                await p.converge()
                for op, name, jitter in steps:
                    exists = f"default/{name}" in server.objects("configmaps")
                    if op == "create" and not exists:
                        server.create("configmaps", make_configmap(name))
                    elif op == "update" and exists:
                        server.update("configmaps", {**server.get("configmaps", name, "default"), "data": {"x": op}})
                    elif op == "delete" and exists:
                        server.delete("configmaps", name, "default")
                    elif op == "drop":
                        server.drop_watches()
                    elif op == "compact":
                        server.compact()
                    elif op == "429":
                        server.fail_next(1, 429, verbs=["watch"])
                    elif op == "500":
                        server.fail_next(1, 500)
                    elif op == "malformed":
                        server.malformed_lines(1)
                    elif op == "disconnect":
                        server.fail_next(10**9, 429, verbs=["watch"])
                        server.drop_watches()
                    elif op == "reconnect":
                        server.compact()
                        server.clear_faults()
                    await anyio.sleep(jitter)
                server.clear_faults()
                await p.converge(15)
                seen.append((p.reflector.stats.expired, sum(d.type is DeltaType.DELETED for d in p.deltas)))
        finally:
            await client.close()
