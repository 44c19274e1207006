"""DeltaFIFO unit tests, including the client-go delta_fifo_test scenarios."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from kinformer import DeletedFinalStateUnknown, Delta, DeltaFIFO, DeltaType, FIFOClosedError, Indexer
from tests.helpers import obj

A, U, D, R, S = (DeltaType.ADDED, DeltaType.UPDATED, DeltaType.DELETED, DeltaType.REPLACED,
                 DeltaType.SYNC)


def known(*objs: dict[str, Any]) -> Indexer:
    idx = Indexer()
    for o in objs:
        idx.add(o)
    return idx


async def drain(f: DeltaFIFO) -> list[list[Delta]]:
    out = []
    while len(f):
        out.append(await f.pop())
    return out


async def test_add_update_delete_accumulate_per_key_in_fifo_order() -> None:
    f = DeltaFIFO()
    a1, b1, a2 = obj("a", rv=1), obj("b", rv=1), obj("a", rv=2)
    await f.add(a1)
    await f.add(b1)
    await f.update(a2)
    await f.delete(a2)
    assert f.list_keys() == ["default/a", "default/b"]
    assert await f.pop() == [Delta(A, a1), Delta(U, a2), Delta(D, a2)]
    assert await f.pop() == [Delta(A, b1)]


async def test_delete_of_unknown_object_is_dropped() -> None:
    f = DeltaFIFO()
    await f.delete(obj("ghost"))
    assert len(f) == 0
    f2 = DeltaFIFO(known_objects=known(obj("a")))
    await f2.delete(obj("ghost"))
    await f2.delete(obj("a"))
    assert f2.list_keys() == ["default/a"]


async def test_trailing_double_delete_is_deduped_keeping_the_real_object() -> None:
    f = DeltaFIFO(known_objects=known(obj("a")))
    real = obj("a", rv=3)
    await f.delete(DeletedFinalStateUnknown("default/a", obj("a")))
    await f.delete(real)
    assert f.get_by_key("default/a") == [Delta(D, real)]
    await f.delete(DeletedFinalStateUnknown("default/a", None))
    assert f.get_by_key("default/a") == [Delta(D, real)]
    older, newer = obj("b", rv=1), obj("b", rv=2)
    await f.add(older)
    await f.delete(older)
    await f.delete(newer)
    assert f.get_by_key("default/b") == [Delta(A, older), Delta(D, older)]


async def test_replace_makes_deletions_without_known_objects() -> None:
    f = DeltaFIFO()
    foo, bar = obj("foo", rv=5), obj("bar", rv=6)
    await f.add(foo)
    await f.replace([bar], "0")
    assert await drain(f) == [
        [Delta(A, foo), Delta(D, DeletedFinalStateUnknown("default/foo", foo))],
        [Delta(R, bar)],
    ]


async def test_replace_makes_deletions_with_known_objects() -> None:
    foo, bar, baz = obj("foo", rv=5), obj("bar", rv=6), obj("baz", rv=7)
    f = DeltaFIFO(known_objects=known(foo, bar, baz))
    foo2 = obj("foo", rv=10)
    await f.delete(bar)
    await f.replace([foo2], "0")
    assert await drain(f) == [
        [Delta(D, bar)],
        [Delta(R, foo2)],
        [Delta(D, DeletedFinalStateUnknown("default/baz", baz))],
    ]


async def test_replace_after_queued_delete_keeps_single_delete() -> None:
    foo = obj("foo", rv=5)
    f = DeltaFIFO(known_objects=known(foo))
    await f.delete(foo)
    await f.replace([], "0")
    assert await drain(f) == [[Delta(D, foo)]]


async def test_replace_tombstone_of_queued_tombstone_unwraps_the_object() -> None:
    foo = obj("foo", rv=5)
    f = DeltaFIFO()
    await f.add(foo)
    await f.replace([], "1")
    await f.replace([], "2")
    assert await drain(f) == [[Delta(A, foo), Delta(D, DeletedFinalStateUnknown("default/foo", foo))]]


async def test_resync_skips_queued_keys_and_missing_known_objects() -> None:
    foo, bar = obj("foo"), obj("bar")
    f = DeltaFIFO(known_objects=known(foo, bar))
    await f.update(obj("foo", rv=2))
    await f.resync()
    assert await drain(f) == [[Delta(U, obj("foo", rv=2))], [Delta(S, bar)]]
    f2 = DeltaFIFO()
    await f2.resync()
    assert len(f2) == 0


async def test_resync_of_non_existing_key_emits_nothing() -> None:
    class Flaky:
        def list_keys(self) -> list[str]:
            return ["default/gone"]

        def get_by_key(self, key: str) -> Any:
            return None

    f = DeltaFIFO(known_objects=Flaky())
    await f.resync()
    assert len(f) == 0


async def test_has_synced_after_initial_population_is_popped() -> None:
    f = DeltaFIFO()
    assert not f.has_synced()
    await f.replace([obj("a"), obj("b")], "1")
    assert not f.has_synced()
    seen: list[bool] = []
    await f.pop(lambda d, initial: seen.append(initial))
    assert not f.has_synced()
    await f.pop(lambda d, initial: seen.append(initial))
    assert f.has_synced()
    assert seen == [True, True]
    await f.add(obj("c"))
    await f.pop(lambda d, initial: seen.append(initial))
    assert seen[-1] is False


async def test_has_synced_counts_deletions_of_initial_replace() -> None:
    f = DeltaFIFO(known_objects=known(obj("old")))
    await f.replace([obj("a")], "1")
    await f.pop()
    assert not f.has_synced()
    assert (await f.pop())[0].type is D
    assert f.has_synced()


async def test_has_synced_true_when_add_comes_first() -> None:
    f = DeltaFIFO()
    await f.add(obj("a"))
    await f.pop()
    assert f.has_synced()
    f2 = DeltaFIFO()
    await f2.replace([], "1")
    assert f2.has_synced()


async def test_pop_waits_for_an_item() -> None:
    f = DeltaFIFO()
    got: list[list[Delta]] = []
    async with anyio.create_task_group() as tg:
        async def consume() -> None:
            got.append(await f.pop())
        tg.start_soon(consume)
        await anyio.wait_all_tasks_blocked()
        assert got == []
        await f.add(obj("a"))
    assert got == [[Delta(A, obj("a"))]]


async def test_async_process_runs_under_the_lock() -> None:
    f = DeltaFIFO()
    await f.add(obj("a"))
    order: list[str] = []
    gate = anyio.Event()

    async def process(deltas: list[Delta], initial: bool) -> None:
        order.append("process-start")
        await gate.wait()
        order.append("process-end")

    async with anyio.create_task_group() as tg:
        tg.start_soon(f.pop, process)
        await anyio.wait_all_tasks_blocked()

        async def producer() -> None:
            await f.add(obj("b"))
            order.append("added")
        tg.start_soon(producer)
        await anyio.wait_all_tasks_blocked()
        assert order == ["process-start"]
        gate.set()
    assert order == ["process-start", "process-end", "added"]


async def test_close_drains_then_raises() -> None:
    f = DeltaFIFO()
    await f.add(obj("a"))
    f.close()
    assert f.is_closed()
    assert (await f.pop())[0].object == obj("a")
    with pytest.raises(FIFOClosedError):
        await f.pop()


async def test_close_wakes_a_waiting_pop() -> None:
    f = DeltaFIFO()
    with anyio.fail_after(5):
        async with anyio.create_task_group() as tg:
            async def consume() -> None:
                with pytest.raises(FIFOClosedError):
                    await f.pop()
            tg.start_soon(consume)
            await anyio.wait_all_tasks_blocked()
            f.close()


async def test_pop_batch_pops_up_to_max_in_order() -> None:
    f = DeltaFIFO()
    for i in range(5):
        await f.add(obj(f"o{i}"))
    seen: list[str] = []
    batch = await f.pop_batch(lambda d, initial: seen.append(d[0].object["metadata"]["name"]), 3)
    assert len(batch) == 3 and seen == ["o0", "o1", "o2"]
    assert f.list_keys() == ["default/o3", "default/o4"]


async def test_transform_applies_to_entering_objects_not_tombstones_or_sync() -> None:
    calls: list[Any] = []

    def transform(o: Any) -> Any:
        calls.append(o)
        return {**o, "transformed": True}

    foo = obj("foo")
    f = DeltaFIFO(known_objects=known(foo), transform=transform)
    await f.add(obj("a"))
    await f.update(obj("a", rv=2))
    await f.replace([obj("b")], "1")
    await f.resync()
    deltas = await drain(f)
    by_type = {d.type: d.object for ds in deltas for d in ds}
    assert by_type[A]["transformed"] and by_type[U]["transformed"] and by_type[R]["transformed"]
    assert isinstance(by_type[D], DeletedFinalStateUnknown)
    assert len(calls) == 3


async def test_list_and_get_by_key_are_copies() -> None:
    f = DeltaFIFO()
    await f.add(obj("a"))
    got = f.get_by_key("default/a")
    assert got is not None
    got.clear()
    assert f.get_by_key("default/a") == [Delta(A, obj("a"))]
    assert f.list() == [obj("a")]
    assert f.get_by_key("nope") is None


async def test_streamed_replace_skips_unchanged_and_deletes_after_last_page() -> None:
    a, b, c = obj("a", rv=1), obj("b", rv=1), obj("c", rv=1)
    store = known(a, b, c)
    f = DeltaFIFO(known_objects=store)
    session = f.start_replace()
    await session.add_page([obj("a", rv=1)])
    await session.add_page([obj("b", rv=2), obj("d", rv=3)])
    assert f.list_keys() == ["default/b", "default/d"]
    await session.finish()
    assert await drain(f) == [
        [Delta(R, obj("b", rv=2))],
        [Delta(R, obj("d", rv=3))],
        [Delta(D, DeletedFinalStateUnknown("default/c", c))],
    ]
    with pytest.raises(RuntimeError):
        await session.add_page([])


async def test_streamed_initial_replace_has_synced_with_interleaved_pops() -> None:
    store = Indexer()
    f = DeltaFIFO(known_objects=store)

    def apply(deltas: list[Delta], initial: bool) -> None:
        assert initial
        store.update(deltas[-1].object)

    session = f.start_replace()
    await session.add_page([obj("a"), obj("b")])
    await f.pop(apply)
    assert not f.has_synced()
    await session.add_page([obj("c")])
    await f.pop(apply)
    await f.pop(apply)
    assert not f.has_synced()
    await session.finish()
    assert f.has_synced()
    assert sorted(store.list_keys()) == ["default/a", "default/b", "default/c"]


async def test_apply_batches_events_with_delete_rules() -> None:
    f = DeltaFIFO(known_objects=known(obj("k")))
    a1, a2 = obj("a", rv=1), obj("a", rv=2)
    await f.apply([(A, a1), (U, a2), (D, obj("ghost")), (D, obj("k"))])
    assert await drain(f) == [[Delta(A, a1), Delta(U, a2)], [Delta(D, obj("k"))]]
    assert f.has_synced()


async def _paged_relist(fifo: DeltaFIFO, pages: list[list[Any]], after_page: Any) -> None:
    session = fifo.start_replace()
    for page in pages:
        await session.add_page(page)
        await after_page()
    await session.finish()
    await after_page()


@pytest.mark.parametrize("first_list", [True, False])
async def test_inline_consumption_processes_each_list_page_as_the_pop_loop_would(first_list: bool) -> None:
    """With consume_inline, a replace session's pages are processed as they arrive (the
    queue never holds a page of decoded objects), giving exactly the batches and `initial`
    prefixes that popping after each page gives."""
    pages = [[obj(f"p{i}", rv=10 + i) for i in range(p * 4, p * 4 + 4)] for p in range(3)]
    results: list[list[tuple[list[Any], int]]] = []
    for inline in (True, False):
        store = Indexer()
        fifo = DeltaFIFO(known_objects=store)
        got: list[tuple[list[Any], int]] = []

        def process(popped: list[Any], initial: int, got: list[tuple[list[Any], int]] = got,
                    store: Indexer = store) -> None:
            got.append(([(d.key, [(x.type, x.object) for x in d]) for d in popped], initial))
            for deltas in popped:
                for delta in deltas:
                    if delta.type is DeltaType.DELETED:
                        store.delete_key(deltas.key)
                    else:
                        store.update(delta.object)

        if not first_list:  # a relist: one cached object is gone, one queued update is pending
            store.update(obj("gone", rv=1))
            store.update(obj("p0", rv=2))
            await fifo.update(obj("p1", rv=3))
            await fifo.pop_many(process, 10)
            got.clear()
        queued_during_list: list[int] = []

        async def after_page(fifo: DeltaFIFO = fifo, inline: bool = inline,
                             queued: list[int] = queued_during_list) -> None:
            queued.append(len(fifo.list_keys()))
            if not inline:
                while fifo.list_keys():
                    await fifo.pop_many(process, 3)

        if inline:
            fifo.consume_inline(process, 3)
        await _paged_relist(fifo, pages, after_page)
        if inline:
            assert queued_during_list == [0] * (len(pages) + 1)
        assert fifo.has_synced()
        results.append(got)
    assert results[0] == results[1]
    assert results[0], "the list was processed"
