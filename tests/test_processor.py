"""PendingQueue merge rules and resync-period rules."""

from __future__ import annotations

from typing import Any

import pytest
import structlog

from kinformer.processor import ADD, DELETE, UPDATE, Notification, PendingQueue, determine_resync_period
from tests.helpers import obj

LOG = structlog.get_logger("test")


def n(kind: str, name: str, rv: int, old_rv: int | None = None, initial: bool = False) -> Notification:
    return Notification(kind, obj(name, rv=rv), obj(name, rv=old_rv) if old_rv else None, initial)


def drain(q: PendingQueue) -> list[tuple[str, str, str, Any]]:
    out = []
    while (x := q.get_nowait()) is not None:
        out.append((x.kind, x.new["metadata"]["name"], x.new["metadata"]["resourceVersion"],
                    x.old["metadata"]["resourceVersion"] if x.old else None))
    return out


def full_queue(*items: Notification) -> PendingQueue:
    q = PendingQueue(1, "coalesce", LOG)
    q.put_nowait(n(ADD, "filler", 1))
    for item in items:
        q.put_nowait(item)
    assert q.coalescing
    return q


def test_fifo_below_capacity_keeps_every_event() -> None:
    q = PendingQueue(10, "coalesce", LOG)
    for item in (n(ADD, "a", 1), n(UPDATE, "a", 2, 1), n(UPDATE, "a", 3, 2)):
        q.put_nowait(item)
    assert not q.coalescing
    assert drain(q) == [("add", "a", "1", None), ("update", "a", "2", "1"), ("update", "a", "3", "2")]


@pytest.mark.parametrize(("events", "expected"), [
    ([n(ADD, "a", 1), n(UPDATE, "a", 2, 1)], [("add", "a", "2", None)]),
    ([n(UPDATE, "a", 2, 1), n(UPDATE, "a", 3, 2)], [("update", "a", "3", "1")]),
    ([n(ADD, "a", 1), n(DELETE, "a", 2)], []),
    ([n(UPDATE, "a", 2, 1), n(DELETE, "a", 3)], [("delete", "a", "3", None)]),
    ([n(DELETE, "a", 2), n(ADD, "a", 3)], [("delete", "a", "2", None), ("add", "a", "3", None)]),
    ([n(DELETE, "a", 2), n(ADD, "a", 3), n(UPDATE, "a", 4, 3)], [("delete", "a", "2", None), ("add", "a", "4", None)]),
    ([n(DELETE, "a", 2), n(ADD, "a", 3), n(DELETE, "a", 4)], [("delete", "a", "2", None)]),
    ([n(UPDATE, "a", 2, 1), n(UPDATE, "b", 2, 1), n(UPDATE, "a", 3, 2)],
     [("update", "a", "3", "1"), ("update", "b", "2", "1")]),
])
def test_coalescing_rules(events: list[Notification], expected: list[Any]) -> None:
    q = full_queue(*events)
    assert drain(q)[1:] == expected
    assert not q.coalescing


def test_merges_never_mutate_shared_notifications() -> None:
    shared = n(ADD, "a", 1)
    q = full_queue(shared, n(UPDATE, "a", 2, 1))
    assert shared.new["metadata"]["resourceVersion"] == "1"
    assert drain(q)[1] == ("add", "a", "2", None)


def test_initial_adds_are_counted_through_merges() -> None:
    q = full_queue(n(ADD, "a", 1, initial=True), n(ADD, "b", 1, initial=True))
    assert q.tracker.pending == 2
    q.put_nowait(n(UPDATE, "a", 2, 1))
    assert q.tracker.pending == 2
    q.put_nowait(n(DELETE, "b", 2))
    assert q.tracker.pending == 1


def test_block_policy_refuses_when_full() -> None:
    q = PendingQueue(2, "block", LOG)
    assert q.put_nowait(n(ADD, "a", 1)) and q.put_nowait(n(ADD, "b", 1))
    assert not q.put_nowait(n(ADD, "c", 1, initial=True))
    assert q.tracker.pending == 0 and len(q) == 2
    assert q.put_nowait(n(ADD, "c", 1), force=True) and len(q) == 3


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="max_pending"):
        PendingQueue(0, "coalesce", LOG)
    with pytest.raises(ValueError, match="overflow"):
        PendingQueue(1, "drop", LOG)  # type: ignore[arg-type]


def test_determine_resync_period() -> None:
    assert determine_resync_period(0, 10) == 0
    assert determine_resync_period(10, 0) == 0
    assert determine_resync_period(5, 10) == 10
    assert determine_resync_period(30, 10) == 30


def test_put_many_fits_in_one_step_and_counts_initial_adds() -> None:
    q = PendingQueue(3, "coalesce", LOG)
    q.put_many([n(ADD, "a", 1, initial=True), n(ADD, "b", 1, initial=True), n(ADD, "c", 1)], initial=2)
    assert not q.coalescing and len(q) == 3 and q.tracker.pending == 2 and q.peak == 3
    assert [x[1] for x in drain(q)] == ["a", "b", "c"]


def test_put_many_past_max_pending_coalesces_like_single_puts() -> None:
    q = PendingQueue(2, "coalesce", LOG)
    q.put_many([n(ADD, "a", 1), n(UPDATE, "a", 2, 1), n(UPDATE, "a", 3, 2), n(ADD, "b", 1)])
    assert q.coalescing
    assert drain(q) == [(ADD, "a", "3", None), (ADD, "b", "1", None)]


def test_put_many_on_a_full_block_queue_forces() -> None:
    q = PendingQueue(1, "block", LOG)
    q.put_many([n(ADD, "a", 1), n(ADD, "b", 1)])
    assert len(q) == 2 and not q.coalescing


async def _run_listener(listener: Any, until: Any) -> None:
    import anyio

    from kinformer.testing import eventually

    async with anyio.create_task_group() as tg:
        tg.start_soon(listener.run)
        await eventually(until)
        listener.stop()


async def test_a_sync_handler_that_removes_itself_gets_nothing_more_of_its_batch() -> None:
    from kinformer.processor import Listener, ResourceEventHandler

    seen: list[str] = []

    def on_add(o: Any) -> None:
        seen.append(o["metadata"]["name"])
        if len(seen) == 2:
            listener.stop()

    listener = Listener(ResourceEventHandler(on_add))
    listener.queue.put_many([n(ADD, name, 1) for name in "abcd"])
    await _run_listener(listener, listener.done.is_set)
    assert seen == ["a", "b"]
    assert listener.delivered == 2


async def test_an_async_handler_puts_the_rest_of_its_batch_back_while_it_waits() -> None:
    import anyio

    from kinformer.processor import Listener, ResourceEventHandler

    seen: list[str] = []
    backlog: list[int] = []
    gate = anyio.Event()

    async def on_add(o: Any) -> None:
        backlog.append(len(listener.queue))  # what others see while this call waits
        if not seen:
            await gate.wait()
        seen.append(o["metadata"]["name"])

    listener = Listener(ResourceEventHandler(on_add))
    listener.queue.put_many([n(ADD, name, 1) for name in "abc"])

    async def more() -> None:
        from kinformer.testing import eventually

        await eventually(lambda: bool(backlog))
        listener.queue.put_many([n(ADD, "d", 1)])
        gate.set()

    async with anyio.create_task_group() as tg:
        tg.start_soon(more)
        await _run_listener(listener, lambda: len(seen) == 4)
    assert seen == ["a", "b", "c", "d"]
    assert backlog[0] == 2  # b and c were back in the queue during a's await
