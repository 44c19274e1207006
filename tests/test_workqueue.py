"""WorkQueue, DelayingQueue and RateLimitingQueue: one test per semantic (client-go's
queue_test.go, delaying_queue_test.go and rate_limiting_queue_test.go cover the same ground)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Hashable
from typing import Any

import anyio
import pytest

from kinformer import (
    DelayingQueue,
    ItemExponentialFailureRateLimiter,
    QueueEmptyError,
    RateLimitingQueue,
    ShutDownError,
    WorkQueue,
)
from kinformer.testing import FakeClock, eventually


async def started(*coros: Any) -> list[asyncio.Task[Any]]:
    """Start tasks in order, each one blocked in the queue before the next starts."""
    tasks = []
    for coro in coros:
        task = asyncio.ensure_future(coro)
        await anyio.wait_all_tasks_blocked()
        assert not task.done(), "expected the task to block"
        tasks.append(task)
    return tasks


# -- WorkQueue -----------------------------------------------------------------------------


async def test_items_are_handed_out_in_fifo_order() -> None:
    q: WorkQueue[str] = WorkQueue()
    for item in "cab":
        q.add(item)
    assert [await q.get() for _ in range(3)] == ["c", "a", "b"]


async def test_duplicates_collapse_while_queued() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    q.add("a")
    assert len(q) == 2
    assert [q.get_nowait(), q.get_nowait()] == ["a", "b"]
    with pytest.raises(QueueEmptyError):
        q.get_nowait()


async def test_item_added_while_processing_is_queued_again_at_done() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    assert await q.get() == "a"
    q.add("a")
    q.add("a")
    assert len(q) == 0, "not handed out again while it is processing"
    with pytest.raises(QueueEmptyError):
        q.get_nowait()
    q.done("a")
    assert len(q) == 1
    assert q.get_nowait() == "a"
    q.done("a")
    assert len(q) == 0


async def test_done_without_re_add_does_not_queue_again() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.done(q.get_nowait())
    assert len(q) == 0


async def test_done_of_an_item_not_processing_changes_nothing() -> None:
    # client-go would push a queued dirty item a second time here (two workers, one item).
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.done("a")
    q.done("never-added")
    assert len(q) == 1
    assert q.get_nowait() == "a"
    with pytest.raises(QueueEmptyError):
        q.get_nowait()


async def test_len_counts_ready_items_only() -> None:
    q: WorkQueue[int] = WorkQueue()
    q.add(1)
    q.add(2)
    q.get_nowait()
    q.add(1)  # dirty and processing: not ready
    assert len(q) == 1


async def test_get_waits_for_an_add() -> None:
    q: WorkQueue[str] = WorkQueue()
    (getter,) = await started(q.get())
    q.add("x")
    with anyio.fail_after(5):
        assert await getter == "x"


async def test_waiting_getters_are_served_in_arrival_order() -> None:
    q: WorkQueue[int] = WorkQueue()
    getters = await started(q.get(), q.get(), q.get())
    for item in (10, 20, 30):
        q.add(item)
    with anyio.fail_after(5):
        assert [await g for g in getters] == [10, 20, 30]


async def test_an_item_for_a_waiting_getter_cannot_be_taken_by_a_later_caller() -> None:
    q: WorkQueue[str] = WorkQueue()
    (waiter,) = await started(q.get())
    q.add("x")
    with pytest.raises(QueueEmptyError):  # already handed to the waiter
        q.get_nowait()
    later = asyncio.ensure_future(q.get())
    q.add("y")
    with anyio.fail_after(5):
        assert await waiter == "x"
        assert await later == "y"


async def test_a_getter_cancelled_after_the_hand_out_gives_the_item_back_first_in_line() -> None:
    q: WorkQueue[str] = WorkQueue()
    first, second = await started(q.get(), q.get())
    q.add("x")  # handed to `first`, which has not run yet
    first.cancel()
    with anyio.fail_after(5):
        with pytest.raises(asyncio.CancelledError):
            await first
        assert await second == "x"
    q.add("y")
    assert q.get_nowait() == "y"
    # and with nobody else waiting, it goes back to the front of the queue
    (third,) = await started(q.get())
    q.add("z")
    q.add("w")
    third.cancel()
    with pytest.raises(asyncio.CancelledError):
        await third
    assert [q.get_nowait(), q.get_nowait()] == ["z", "w"]


async def test_a_cancelled_waiting_getter_leaves_no_trace() -> None:
    q: WorkQueue[str] = WorkQueue()
    (getter,) = await started(q.get())
    getter.cancel()
    with pytest.raises(asyncio.CancelledError):
        await getter
    q.add("x")
    assert len(q) == 1
    assert q.get_nowait() == "x"


async def test_shut_down_ignores_adds_and_drains_what_is_queued() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    q.shut_down()
    assert q.shutting_down()
    q.add("c")
    assert [await q.get(), await q.get()] == ["a", "b"]
    with pytest.raises(ShutDownError):
        await q.get()
    with pytest.raises(ShutDownError):
        q.get_nowait()


async def test_shut_down_wakes_every_waiting_getter() -> None:
    q: WorkQueue[str] = WorkQueue()
    getters = await started(q.get(), q.get())
    q.shut_down()
    with anyio.fail_after(5):
        for getter in getters:
            with pytest.raises(ShutDownError):
                await getter


async def test_done_after_shut_down_still_queues_a_re_added_item() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.get_nowait()
    q.add("a")
    q.shut_down()
    q.done("a")
    assert q.get_nowait() == "a"


async def test_shut_down_with_drain_waits_for_every_handed_out_item() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.add("b")
    a, b = q.get_nowait(), q.get_nowait()
    (drain,) = await started(q.shut_down_with_drain())
    q.add("c")
    q.done(a)
    await anyio.wait_all_tasks_blocked()
    assert not drain.done()
    q.done(b)
    with anyio.fail_after(5):
        await drain
    assert q.shutting_down() and len(q) == 0


async def test_shut_down_with_drain_returns_at_once_when_nothing_is_processing() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("queued")
    with anyio.fail_after(5):
        await q.shut_down_with_drain()
    assert q.get_nowait() == "queued"  # like client-go: queued items are not waited for


async def test_shut_down_releases_a_waiting_shut_down_with_drain() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    q.get_nowait()
    (drain,) = await started(q.shut_down_with_drain())
    q.shut_down()
    with anyio.fail_after(5):
        await drain


async def test_async_for_yields_until_shut_down() -> None:
    q: WorkQueue[int] = WorkQueue()
    seen: list[int] = []

    async def worker() -> None:
        async for item in q:
            with q.processing(item):
                seen.append(item)
                if item == 2:
                    q.shut_down()

    for i in range(5):
        q.add(i)
    with anyio.fail_after(5):
        await worker()  # the loop ends by itself once shut down and drained
    assert seen == [0, 1, 2, 3, 4]


async def test_processing_calls_done_when_the_body_raises() -> None:
    q: WorkQueue[str] = WorkQueue()
    q.add("a")
    item = await q.get()
    q.add("a")
    with pytest.raises(RuntimeError), q.processing(item):
        raise RuntimeError("reconcile failed")
    assert q.get_nowait() == "a", "done() ran, so the re-added item is queued again"


async def test_workers_never_process_one_item_concurrently() -> None:
    q: WorkQueue[int] = WorkQueue()
    rng = random.Random(7)
    in_flight: dict[int, int] = {}
    last_added: dict[int, int] = {}
    last_started: dict[int, int] = {}
    tick = 0
    violations: list[int] = []

    async def worker() -> None:
        nonlocal tick
        async for item in q:
            with q.processing(item):
                tick += 1
                last_started[item] = tick
                in_flight[item] = in_flight.get(item, 0) + 1
                if in_flight[item] > 1:
                    violations.append(item)
                for _ in range(rng.randrange(3)):
                    await asyncio.sleep(0)
                in_flight[item] -= 1

    async def producer() -> None:
        nonlocal tick
        for _ in range(3000):
            item = rng.randrange(20)
            tick += 1
            last_added[item] = tick
            q.add(item)
            if rng.random() < 0.3:
                await asyncio.sleep(0)

    with anyio.fail_after(20):
        async with anyio.create_task_group() as tg:
            for _ in range(8):
                tg.start_soon(worker)
            await producer()
            await eventually(lambda: len(q) == 0 and not any(in_flight.values()))
            q.shut_down()
    assert violations == []
    # nothing lost: every item was processed after its last add
    assert all(last_started[item] > added for item, added in last_added.items())


# -- DelayingQueue --------------------------------------------------------------------------


async def test_add_after_zero_or_negative_adds_now() -> None:
    q: DelayingQueue[str] = DelayingQueue(clock=FakeClock())
    q.add_after("a", 0)
    q.add_after("b", -1)
    assert [q.get_nowait(), q.get_nowait()] == ["a", "b"]


async def test_add_after_queues_the_item_when_due_with_no_background_task() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("a", 5)
    assert len(q) == 0
    getter = asyncio.ensure_future(q.get())
    await clock.wait_for_sleepers(1)
    assert clock.sleeps == [5.0]
    clock.advance(4.999)
    await anyio.wait_all_tasks_blocked()
    assert not getter.done()
    clock.advance(0.001)
    with anyio.fail_after(5):
        assert await getter == "a"


async def test_the_earlier_ready_time_wins_for_a_duplicate() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("a", 10)
    q.add_after("a", 2)
    q.add_after("a", 7)  # later than the pending 2 s: ignored
    clock.advance(2)
    assert q.get_nowait() == "a"
    q.done("a")
    clock.advance(10)
    with pytest.raises(QueueEmptyError):  # the superseded 10 s and 7 s entries are gone
        q.get_nowait()


async def test_delayed_items_become_ready_in_ready_time_order_ties_in_call_order() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("c", 3)
    q.add_after("a", 1)
    q.add_after("b2", 2)
    q.add_after("b1", 2)
    clock.advance(3)
    assert [q.get_nowait() for _ in range(4)] == ["a", "b2", "b1", "c"]


async def test_a_waiting_item_can_be_added_meanwhile_and_comes_again_when_due() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("a", 5)
    q.add("a")
    assert q.get_nowait() == "a"
    q.done("a")
    clock.advance(5)
    assert q.get_nowait() == "a"


async def test_an_earlier_add_after_re_arms_the_sleeping_getter() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("late", 10)
    getter = asyncio.ensure_future(q.get())
    await clock.wait_for_sleepers(1)
    q.add_after("soon", 2)
    await eventually(lambda: clock.sleeps[-1] == 2.0 and clock.pending == 1)
    clock.advance(2)
    with anyio.fail_after(5):
        assert await getter == "soon"


async def test_one_getter_watches_the_clock_and_passes_the_role_on() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("later", 5)
    first, second = await started(q.get(), q.get())
    await clock.wait_for_sleepers(1)
    assert clock.pending == 1
    q.add("now")  # goes to `first`, the clock watcher; `second` takes over the clock
    with anyio.fail_after(5):
        assert await first == "now"
        await eventually(lambda: clock.pending == 1 and len(clock.sleeps) == 2)
        clock.advance(5)
        assert await second == "later"


async def test_cancelling_the_clock_watcher_hands_the_role_to_the_next_getter() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("x", 5)
    first, second = await started(q.get(), q.get())
    await clock.wait_for_sleepers(1)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    await eventually(lambda: clock.pending == 1 and len(clock.sleeps) == 2)
    clock.advance(5)
    with anyio.fail_after(5):
        assert await second == "x"


async def test_shut_down_drops_delayed_items_and_wakes_the_clock_watcher() -> None:
    clock = FakeClock()
    q: DelayingQueue[str] = DelayingQueue(clock=clock)
    q.add_after("x", 5)
    getter = asyncio.ensure_future(q.get())
    await clock.wait_for_sleepers(1)
    q.shut_down()
    with anyio.fail_after(5), pytest.raises(ShutDownError):
        await getter
    q.add_after("y", 1)
    clock.advance(10)
    with pytest.raises(ShutDownError):
        q.get_nowait()
    assert clock.pending == 0


# -- RateLimitingQueue ----------------------------------------------------------------------


class CountingLimiter:
    """Exponential (1 s doubling) that records every `when` call."""

    def __init__(self) -> None:
        self.inner: ItemExponentialFailureRateLimiter[Hashable] = ItemExponentialFailureRateLimiter(1.0, 100.0)
        self.calls: list[Hashable] = []

    def when(self, item: Hashable) -> float:
        self.calls.append(item)
        return self.inner.when(item)

    def forget(self, item: Hashable) -> None:
        self.inner.forget(item)

    def num_requeues(self, item: Hashable) -> int:
        return self.inner.num_requeues(item)


async def test_add_rate_limited_waits_for_the_limiters_delay() -> None:
    clock = FakeClock()
    limiter = CountingLimiter()
    q: RateLimitingQueue[str] = RateLimitingQueue(limiter, clock=clock)
    q.add_rate_limited("a")
    assert limiter.calls == ["a"] and q.num_requeues("a") == 1
    clock.advance(0.999)
    with pytest.raises(QueueEmptyError):
        q.get_nowait()
    clock.advance(0.001)
    assert q.get_nowait() == "a"


async def test_an_item_waiting_for_its_retry_is_not_charged_again() -> None:
    # kubernetes#132805: re-adds during the backoff neither count a failure nor move the retry.
    clock = FakeClock()
    limiter = CountingLimiter()
    q: RateLimitingQueue[str] = RateLimitingQueue(limiter, clock=clock)
    q.add_rate_limited("a")  # retry at +1 s
    q.add_rate_limited("a")
    q.add("a")  # an informer event runs it early...
    q.get_nowait()
    q.add_rate_limited("a")  # ...and it fails again while its retry is pending
    q.done("a")
    assert limiter.calls == ["a"] and q.num_requeues("a") == 1
    clock.advance(1)
    assert q.get_nowait() == "a"  # the retry ran: the mark is cleared
    q.add_rate_limited("a")
    q.done("a")
    assert limiter.calls == ["a", "a"] and q.num_requeues("a") == 2
    clock.advance(1.999)
    with pytest.raises(QueueEmptyError):
        q.get_nowait()
    clock.advance(0.001)
    assert q.get_nowait() == "a"


async def test_a_rate_limited_retry_can_come_sooner_than_a_pending_add_after() -> None:
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue(CountingLimiter(), clock=clock)
    q.add_after("a", 300)  # a requeue-after
    q.add_rate_limited("a")  # a failure: retry in 1 s, the earlier time wins
    clock.advance(1)
    assert q.get_nowait() == "a"


async def test_forget_clears_the_limiter_only() -> None:
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue(CountingLimiter(), clock=clock)
    q.add("a")
    q.get_nowait()
    q.add_rate_limited("a")
    clock.advance(1)
    q.forget("a")
    assert q.num_requeues("a") == 0
    q.add("a")
    assert len(q) == 0, "still processing: forget is not done"
    q.done("a")
    assert q.get_nowait() == "a"


async def test_the_default_limiter_is_the_controller_default() -> None:
    clock = FakeClock()
    q: RateLimitingQueue[str] = RateLimitingQueue(clock=clock)
    q.add_rate_limited("a")
    q.add_rate_limited("b")  # b is a distinct item: its own first failure
    clock.advance(0.005)
    assert [q.get_nowait(), q.get_nowait()] == ["a", "b"]


async def test_add_rate_limited_after_shut_down_is_ignored_and_not_charged() -> None:
    limiter = CountingLimiter()
    q: RateLimitingQueue[str] = RateLimitingQueue(limiter, clock=FakeClock())
    q.shut_down()
    q.add_rate_limited("a")
    assert limiter.calls == []
