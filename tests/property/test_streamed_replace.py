"""A streamed relist, with pops interleaved between pages, ends in exactly the listed state.

Unchanged objects (same resourceVersion) are not re-delivered; objects not listed are
delivered as tombstones carrying their last known state; nothing else is delivered.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from kinformer import DeletedFinalStateUnknown, DeltaFIFO, DeltaType, Indexer
from tests.helpers import obj

NAMES = [f"o{i}" for i in range(12)]


@st.composite
def scenarios(draw: st.DrawFn) -> tuple[dict[str, int], dict[str, int], list[int], list[int]]:
    before = draw(st.dictionaries(st.sampled_from(NAMES), st.integers(1, 3)))
    after = draw(st.dictionaries(st.sampled_from(NAMES), st.integers(1, 3)))
    cuts = draw(st.lists(st.integers(1, 4), min_size=1, max_size=6))
    pops = draw(st.lists(st.integers(0, 3), min_size=len(cuts), max_size=len(cuts)))
    return before, after, cuts, pops


@given(scenarios())
@settings(max_examples=300, deadline=None)
def test_streamed_relist_converges(case: tuple[dict[str, int], dict[str, int], list[int], list[int]]) -> None:
    before, after, cuts, pops = case
    asyncio.run(_run(before, after, cuts, pops))


async def _run(before: dict[str, int], after: dict[str, int], cuts: list[int], pops: list[int]) -> None:
    store = Indexer()
    for name, rv in before.items():
        store.add(obj(name, rv=rv))
    fifo = DeltaFIFO(known_objects=store)
    delivered: list[tuple[DeltaType, Any]] = []

    def apply(deltas: list[Any], initial: bool) -> None:
        for d in deltas:
            delivered.append((d.type, d.object))
            if d.type is DeltaType.DELETED:
                store.delete(d.object)
            else:
                store.update(d.object)

    listing = [obj(name, rv=rv) for name, rv in after.items()]
    session = fifo.start_replace()
    i = 0
    for cut, n_pops in zip(cuts, pops, strict=True):
        await session.add_page(listing[i : i + cut])
        i += cut
        for _ in range(min(n_pops, len(fifo))):
            await fifo.pop(apply)
    await session.add_page(listing[i:])
    await session.finish()
    while len(fifo):
        await fifo.pop(apply)

    assert {k: o["metadata"]["resourceVersion"] for k, o in store.items()} == {
        f"default/{n}": str(rv) for n, rv in after.items()
    }
    replaced = {o["metadata"]["name"] for t, o in delivered if t is DeltaType.REPLACED}
    changed = {n for n, rv in after.items() if before.get(n) != rv}
    assert replaced == changed
    tombstones = {o.key: o.obj for t, o in delivered if t is DeltaType.DELETED}
    assert all(isinstance(o, DeletedFinalStateUnknown) for t, o in delivered if t is DeltaType.DELETED)
    assert tombstones == {f"default/{n}": obj(n, rv=rv) for n, rv in before.items() if n not in after}
