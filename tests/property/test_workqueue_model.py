"""WorkQueue against a reference model of client-go's queue.go, with waiting getters.

The model is the obvious one: a list, a dirty set, a processing set, and the getters waiting
in arrival order (an item made ready while getters wait goes to the first of them). Random
interleavings of add / get_nowait / get (waiting) / done / cancel / shut_down must agree with
it, and: an item is never held by two workers at once; an item re-added while processing is
handed out again after `done`; nothing is lost or duplicated; after shut-down the queue drains,
then raises `ShutDownError`.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kinformer import DelayingQueue, QueueEmptyError, ShutDownError, WorkQueue
from kinformer.testing import FakeClock

ITEMS = st.integers(0, 5)
SHUT = "ShutDownError"
CANCELLED = "cancelled"


class Model:
    def __init__(self) -> None:
        self.queue: list[int] = []
        self.dirty: set[int] = set()
        self.processing: set[int] = set()
        self.shut = False
        self.waiters: list[int] = []  # getter ids, longest waiting first
        self.outcome: dict[int, Any] = {}  # getter id -> item, SHUT or CANCELLED

    def ready(self, item: int, front: bool = False) -> None:
        if self.waiters:
            self.hand_out(self.waiters.pop(0), item)
        elif front:
            self.queue.insert(0, item)
        else:
            self.queue.append(item)

    def hand_out(self, getter: int, item: int) -> None:
        self.dirty.discard(item)
        self.processing.add(item)
        self.outcome[getter] = item

    def add(self, item: int) -> None:
        if self.shut or item in self.dirty:
            return
        self.dirty.add(item)
        if item not in self.processing:
            self.ready(item)

    def done(self, item: int) -> None:
        if item not in self.processing:
            return
        self.processing.remove(item)
        if item in self.dirty:
            self.ready(item)

    def take(self) -> int:
        item = self.queue.pop(0)
        self.hand_out(-1, item)
        return item


class WorkQueueMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.q: WorkQueue[int] = WorkQueue()
        self.model = Model()
        self.tasks: dict[int, asyncio.Task[int]] = {}
        self.next_id = 0
        self.held: list[int] = []  # items returned to a worker and not yet done

    def teardown(self) -> None:
        for task in self.tasks.values():
            task.cancel()
        self.loop.run_until_complete(asyncio.sleep(0))
        self.loop.close()

    def settle(self) -> None:
        """Run the loop until every getter the model resolved has finished, then check it."""
        for gid, expected in list(self.model.outcome.items()):
            if gid < 0:
                continue
            task = self.tasks.pop(gid)
            self.model.outcome.pop(gid)
            self.loop.run_until_complete(asyncio.wait({task}, timeout=5))
            assert task.done(), f"getter {gid} should have finished with {expected!r}"
            if expected == CANCELLED:
                assert task.cancelled()
            elif expected == SHUT:
                assert isinstance(task.exception(), ShutDownError)
            else:
                assert task.result() == expected
                self.held.append(expected)
        self.model.outcome.pop(-1, None)

        async def blocked() -> None:
            await anyio.wait_all_tasks_blocked()

        self.loop.run_until_complete(blocked())
        for gid, task in self.tasks.items():
            assert not task.done(), f"getter {gid} finished, the model says it still waits"

    @rule(item=ITEMS)
    def add(self, item: int) -> None:
        self.q.add(item)
        self.model.add(item)
        self.settle()

    @rule()
    def get_nowait(self) -> None:
        try:
            got: Any = self.q.get_nowait()
        except ShutDownError:
            got = SHUT
        except QueueEmptyError:
            got = None
        if self.model.queue:
            assert got == self.model.take()
            self.held.append(got)
        else:
            assert got == (SHUT if self.model.shut else None)

    @rule()
    def start_getter(self) -> None:
        gid, self.next_id = self.next_id, self.next_id + 1
        self.tasks[gid] = self.loop.create_task(self.q.get())
        if self.model.queue:
            self.model.outcome[gid] = self.model.queue[0]
            self.model.take()
        elif self.model.shut:
            self.model.outcome[gid] = SHUT
        else:
            self.model.waiters.append(gid)
        self.settle()

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def done(self, data: st.DataObject) -> None:
        item = data.draw(st.sampled_from(self.held))
        self.held.remove(item)
        self.q.done(item)
        self.model.done(item)
        self.settle()

    @rule(item=ITEMS)
    def done_not_processing(self, item: int) -> None:
        if item in self.model.processing:
            return
        self.q.done(item)
        self.model.done(item)
        self.settle()

    @precondition(lambda self: self.model.waiters)
    @rule(data=st.data())
    def cancel_waiting_getter(self, data: st.DataObject) -> None:
        gid = data.draw(st.sampled_from(self.model.waiters))
        self.model.waiters.remove(gid)
        self.model.outcome[gid] = CANCELLED
        self.tasks[gid].cancel()
        self.settle()

    @precondition(lambda self: self.model.waiters)
    @rule(item=ITEMS, more=st.lists(ITEMS, max_size=3))
    def add_then_cancel_the_getter_it_went_to(self, item: int, more: list[int]) -> None:
        """The race a hand-out must survive: cancelled after being given an item (and more
        added meanwhile), before it ran."""
        head = self.model.waiters[0]
        self.q.add(item)
        self.model.add(item)
        if self.model.outcome.get(head) != item:
            self.settle()
            return
        for other in more:
            self.q.add(other)
            self.model.add(other)
        self.tasks[head].cancel()
        self.model.outcome[head] = CANCELLED
        # given back: first in line again
        self.model.processing.discard(item)
        self.model.dirty.add(item)
        self.model.ready(item, front=True)
        self.settle()

    @rule()
    def shut_down(self) -> None:
        self.q.shut_down()
        self.model.shut = True
        for gid in self.model.waiters:
            self.model.outcome[gid] = SHUT
        self.model.waiters.clear()
        self.settle()

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert len(self.q) == len(self.model.queue)
        assert list(self.q._queue) == self.model.queue
        assert self.q._dirty == self.model.dirty
        assert self.q._processing == self.model.processing
        assert self.q.shutting_down() == self.model.shut

    @invariant()
    def never_held_twice(self) -> None:
        assert len(self.held) == len(set(self.held))
        assert set(self.held) <= self.model.processing

    @invariant()
    def queued_items_are_dirty_and_not_processing(self) -> None:
        assert len(self.model.queue) == len(set(self.model.queue))
        assert set(self.model.queue) <= self.model.dirty
        assert not set(self.model.queue) & self.model.processing


WorkQueueMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=40, deadline=None)
TestWorkQueueModel = WorkQueueMachine.TestCase


@settings(max_examples=300, deadline=None)
@given(steps=st.lists(st.one_of(
    st.tuples(st.just("after"), ITEMS, st.integers(-2, 10)),
    st.tuples(st.just("advance"), st.integers(0, 6), st.just(0)),
    st.tuples(st.just("add"), ITEMS, st.just(0)),
), max_size=40))
def test_delaying_queue_against_a_model(steps: list[tuple[str, int, int]]) -> None:
    """add_after: `<= 0` adds now, the earlier ready time wins, due items become ready in
    ready-time order (ties in call order); a waiting item can be added meanwhile."""
    clock = FakeClock(0.0)
    q: DelayingQueue[int] = DelayingQueue(clock=clock)
    waiting: dict[int, tuple[float, int]] = {}  # item -> (ready_at, call number)
    ready: list[int] = []
    for n, (op, a, b) in enumerate(steps):
        if op == "after":
            q.add_after(a, b)
            if b <= 0:
                if a not in ready:
                    ready.append(a)
            elif a not in waiting or waiting[a][0] > clock.now() + b:
                waiting[a] = (clock.now() + b, n)
        elif op == "add":
            q.add(a)
            if a not in ready:
                ready.append(a)
        else:
            clock.advance(a)
            for item, _ in sorted(((i, w) for i, w in waiting.items() if w[0] <= clock.now()),
                                  key=lambda iw: iw[1]):
                del waiting[item]
                if item not in ready:
                    ready.append(item)
        if op != "advance":
            continue
        got = []
        while True:
            try:
                got.append(q.get_nowait())
            except QueueEmptyError:
                break
        for item in got:
            q.done(item)
        assert got == ready
        ready = []
