"""Work queues for controllers: client-go's `util/workqueue` for asyncio.

`WorkQueue` holds items (any hashable value: a key string, a request) for worker tasks.
Its state is three collections and one rule (client-go's `queue.go`):

- `queue`: ready items in the order they will be handed out; every queued item is dirty and
  not being processed.
- `dirty`: every item that needs processing (queued, or re-added while being processed).
- `processing`: items handed out by `get` and not yet `done`. An item may be dirty and
  processing at once; it is then queued again when `done` is called. So **an item is never
  handed to two workers at once**, and a change during processing is never lost.

Operations (the queue belongs to its event loop; none of them is thread-safe):

- `add(item)`: synchronous, O(1). Ignored after `shut_down()`; a no-op if the item is already
  dirty (duplicates collapse); else marks it dirty and queues it unless it is processing.
- `await get()`: the oldest ready item, moved to processing; waits if there is none.
  `get_nowait()` does the same or raises `QueueEmptyError`. Once shut down and empty, both
  raise `ShutDownError`. `get` does not yield to the event loop when an item is ready (like
  `asyncio.Queue.get`).
- `done(item)`: the worker finished `item`; if it was re-added meanwhile it is queued again
  now. `done` of an item that is not being processed does nothing (client-go would queue a
  dirty item twice, handing it to two workers; here it cannot).
- `shut_down()`: no more adds; `get` keeps handing out what is queued, then raises.
  Waiting getters are woken. Items waiting for a delay (below) are dropped, as in client-go.
- `await shut_down_with_drain()`: the same, and waits until every handed-out item is `done`.
  A `shut_down()` while it waits releases it (client-go's semantics). Like client-go, it
  waits for processing items only: what is still queued is handed out to whoever calls `get`.
- `len(queue)`: ready items (not those processing or delayed); `queue.processing_count`:
  items handed out and not yet done (counted from the hand-out, before the getter resumes);
  `queue.delayed_count`: items waiting for their `add_after` time. `shutting_down()`.

Fairness, written down because client-go leaves it implicit: ready items are handed out in
FIFO order (by the time they became ready), and waiting getters are served in the order they
started waiting. An item made ready while getters wait is handed straight to the longest
waiter, so a task calling `get` later cannot take it first.

Workers: `async for item in queue:` yields items until shut-down (ends at `ShutDownError`);
`with queue.processing(item):` calls `done(item)` when the block ends, also when it raises
or is cancelled. Use both together — the loop does not call `done` for you:

    async for key in queue:
        with queue.processing(key):
            await reconcile(key)

`DelayingQueue.add_after(item, seconds)` queues an item later (client-go's
`delaying_queue.go`): `seconds <= 0` adds now; else the item waits in a min-heap by ready time
(ties in call order), and for an item already waiting the earlier ready time wins. A waiting
item is not dirty: it can be added (and processed) meanwhile, and is added again when due.
There is no background task: waiting getters promote due items themselves. While delayed
items exist, one waiting getter (the "timer") sleeps on the injected clock until the earliest
is due, in a cancel scope that an earlier `add_after`, a hand-out to it or `shut_down()`
cancels; when it leaves, the next waiting getter takes the role. `get` and `get_nowait` also
promote due items first. So `add_after` + `get` work without starting anything, and a
`FakeClock` sees exactly one sleeper per queue.

`RateLimitingQueue` adds `add_rate_limited(item)` = `add_after(item, limiter.when(item))`,
`forget(item)` (clears the limiter's memory; `done` is still needed) and `num_requeues(item)`
(client-go's `rate_limiting_queue.go`), with one deliberate difference, kubernetes#132805:
**an item already waiting for a rate-limited retry is not charged again** — a second
`add_rate_limited` while its retry is pending neither calls `limiter.when` (so it does not
count a failure or take a token) nor moves the retry. The mark is cleared when the retry comes
due (is added to the queue) or at shut-down. So spurious re-adds during a backoff (an
informer event made the item run early and fail again) no longer push the delay towards
`max_delay`: failures counted <= retries run + 1. The limiters themselves keep client-go's
semantics: every `when` counts.

Metrics (see `kinformer.metrics`): a queue with `name=""` records nothing. With a name, the
provider (`metrics_provider=`, else the default) gets client-go's series. The choice is made
once, at construction: a recording queue has recording versions of `add`, `get`, `get_nowait`
and `done` installed on the instance, so a queue without a recorder runs the plain methods and
metrics cost it nothing per item (only `__anext__`, which as a dunder cannot be shadowed per
instance, tests one attribute per item).
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections import deque
from collections.abc import AsyncIterator, Hashable
from types import TracebackType
from typing import Any, Generic, TypeVar

import anyio

from kinformer.clock import REAL_CLOCK, Clock
from kinformer.errors import QueueEmptyError, ShutDownError
from kinformer.metrics import CounterMetric, MetricsProvider, QueueMetrics, queue_metrics, retry_metric
from kinformer.ratelimit import RateLimiter, default_controller_rate_limiter

T = TypeVar("T", bound=Hashable)


class _Getter:
    """A task waiting in `get`: `wake` is resolved to make it look again (an item was handed
    to it, it is to watch the clock, or the queue shut down)."""

    __slots__ = ("has_item", "item", "wake")

    def __init__(self, wake: asyncio.Future[None]) -> None:
        self.wake = wake
        self.has_item = False
        self.item: Any = None


class _Processing(Generic[T]):
    __slots__ = ("_item", "_queue")

    def __init__(self, queue: WorkQueue[T], item: T) -> None:
        self._queue = queue
        self._item = item

    def __enter__(self) -> T:
        return self._item

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self._queue.done(self._item)


class WorkQueue(Generic[T]):
    """client-go's work queue: dirty set, processing set, FIFO of ready items (module docstring)."""

    def __init__(self, name: str = "", clock: Clock = REAL_CLOCK, *,
                 metrics_provider: MetricsProvider | None = None) -> None:
        self.name = name
        self._clock = clock
        self._queue: deque[T] = deque()
        self._dirty: set[T] = set()
        self._processing: set[T] = set()
        self._getters: deque[_Getter] = deque()
        self._shutting_down = False
        self._drainers: list[asyncio.Future[None]] = []
        # Delayed items (used by DelayingQueue): a heap of (ready_at, seq, item) with lazy
        # deletion, `_waiting` holding each item's current (earliest) ready time. An entry
        # whose time is not its item's `_waiting` time was superseded and is skipped.
        self._heap: list[tuple[float, int, T]] = []
        self._waiting: dict[T, float] = {}
        self._seq = itertools.count()
        # Items whose pending delayed add is a rate-limited retry (RateLimitingQueue);
        # always a subset of `_waiting`.
        self._retry_pending: set[T] = set()
        self._timer: _Getter | None = None
        self._timer_scope: anyio.CancelScope | None = None
        self._timer_due = 0.0
        self._metrics = queue_metrics(metrics_provider, name, clock)
        if self._metrics is not None:
            self._install_metrics(self._metrics)

    # -- the four verbs --------------------------------------------------------------------

    def add(self, item: T) -> None:
        """Mark `item` as needing processing (see the module docstring)."""
        if self._shutting_down:
            return
        dirty = self._dirty
        if item in dirty:
            return
        dirty.add(item)
        if item in self._processing:
            return
        if self._getters:
            self._hand_out(item)
        else:
            self._queue.append(item)

    async def get(self) -> T:
        """The next ready item, now processing; call `done(item)` when finished with it.

        Waits while nothing is ready. Raises `ShutDownError` once shut down with nothing queued.
        """
        if self._waiting:
            self._promote_due()
        queue = self._queue
        if queue:
            item = queue.popleft()
            self._dirty.remove(item)
            self._processing.add(item)
            return item
        if self._shutting_down:
            raise ShutDownError(f"work queue {self.name!r} is shut down")
        return await self._wait()

    def get_nowait(self) -> T:
        """`get` without waiting: raises `QueueEmptyError` if nothing is ready (yet)."""
        if self._waiting:
            self._promote_due()
        queue = self._queue
        if queue:
            item = queue.popleft()
            self._dirty.remove(item)
            self._processing.add(item)
            return item
        if self._shutting_down:
            raise ShutDownError(f"work queue {self.name!r} is shut down")
        raise QueueEmptyError(f"work queue {self.name!r} has nothing ready")

    def done(self, item: T) -> None:
        """`item` is finished; if it was added again while processing, it is queued now."""
        processing = self._processing
        try:
            processing.remove(item)
        except KeyError:
            return
        if item in self._dirty:
            if self._getters:
                self._hand_out(item)
            else:
                self._queue.append(item)
        if self._drainers and not processing:
            self._release_drainers()

    def processing(self, item: T) -> _Processing[T]:
        """A context manager that calls `done(item)` when its block ends, however it ends."""
        return _Processing(self, item)

    def __aiter__(self) -> AsyncIterator[T]:
        return self

    async def __anext__(self) -> T:
        # `get`'s fast path inline (a dunder is looked up on the class, so it cannot be
        # shadowed like the verbs: a metered queue takes the `get` it installed).
        if self._metrics is None:
            if self._waiting:
                self._promote_due()
            queue = self._queue
            if queue:
                item = queue.popleft()
                self._dirty.remove(item)
                self._processing.add(item)
                return item
        try:
            return await self.get()
        except ShutDownError:
            raise StopAsyncIteration from None

    def __len__(self) -> int:
        return len(self._queue)

    @property
    def processing_count(self) -> int:
        """Items handed out by `get` and not yet `done`."""
        return len(self._processing)

    @property
    def delayed_count(self) -> int:
        """Items waiting for their `add_after` ready time."""
        return len(self._waiting)

    def shutting_down(self) -> bool:
        return self._shutting_down

    def shut_down(self) -> None:
        """No more adds; `get` drains what is queued, then raises. Releases `shut_down_with_drain`."""
        self._begin_shut_down()
        self._release_drainers()

    async def shut_down_with_drain(self) -> None:
        """`shut_down`, then wait until every handed-out item is `done` (or `shut_down()` is called)."""
        self._begin_shut_down()
        if not self._processing:
            return
        drained = asyncio.get_running_loop().create_future()
        self._drainers.append(drained)
        try:
            await drained
        finally:
            if drained in self._drainers:
                self._drainers.remove(drained)

    async def run_metrics_updater(self, period: float = 0.5) -> None:
        """Refresh the unfinished-work gauges every `period` seconds until shut-down.

        Only for providers that are not refreshed on scrape (the Prometheus provider is);
        returns at once when the queue records no metrics. Run it in a task group you own.
        """
        metrics = self._metrics
        if metrics is None:
            return
        while not self._shutting_down:
            metrics.update_unfinished_work()
            await self._clock.sleep(period)

    # -- waiting -------------------------------------------------------------------------------

    async def _wait(self) -> T:
        loop = asyncio.get_running_loop()
        getter = _Getter(loop.create_future())
        self._getters.append(getter)
        try:
            while not getter.has_item:
                if self._shutting_down:
                    raise ShutDownError(f"work queue {self.name!r} is shut down")
                if self._timer is None and self._waiting:
                    await self._watch_clock(getter)
                    continue
                if getter.wake.done():
                    getter.wake = loop.create_future()
                await getter.wake
            return getter.item  # type: ignore[no-any-return]
        except BaseException:
            if getter.has_item:
                # Cancelled after being handed an item it will never return: undo the hand-out.
                self._give_back(getter.item)
            else:
                self._getters.remove(getter)
            raise
        finally:
            if self._timer is None and self._waiting and self._getters:
                self._wake_timer()

    async def _watch_clock(self, getter: _Getter) -> None:
        """Be the timer: sleep until the earliest delayed item is due, promote, repeat."""
        clock = self._clock
        with anyio.CancelScope() as scope:
            self._timer, self._timer_scope = getter, scope
            try:
                while not getter.has_item and not self._shutting_down:
                    due = self._next_due()
                    if due is None:
                        break
                    delay = due - clock.now()
                    if delay > 0:
                        self._timer_due = due
                        await clock.sleep(delay)
                    else:
                        self._promote_due()
            finally:
                self._timer = self._timer_scope = None

    def _wake_timer(self) -> None:
        """Nominate the longest-waiting getter to watch the clock."""
        wake = self._getters[0].wake
        if not wake.done():
            wake.set_result(None)

    def _hand_out(self, item: T) -> None:
        """Give dirty, ready `item` to the longest-waiting getter (there is one)."""
        getter = self._getters.popleft()
        self._dirty.remove(item)
        self._processing.add(item)
        getter.item = item
        getter.has_item = True
        if getter is self._timer:
            assert self._timer_scope is not None
            self._timer_scope.cancel()
        elif not getter.wake.done():
            getter.wake.set_result(None)

    def _give_back(self, item: T) -> None:
        """Undo a hand-out to a getter that was cancelled before it returned: `item` goes
        back first in line, as if never handed out."""
        self._processing.discard(item)
        if item in self._dirty:
            # It was added again during the hand-out; the two adds are one queued entry.
            if self._metrics is not None:
                self._metrics.merged()
        else:
            self._dirty.add(item)
        if self._getters:
            self._hand_out(item)
        else:
            self._queue.appendleft(item)
        if self._drainers and not self._processing:
            self._release_drainers()

    def _begin_shut_down(self) -> None:
        self._shutting_down = True
        self._heap.clear()
        self._waiting.clear()
        self._retry_pending.clear()
        if self._timer_scope is not None:
            self._timer_scope.cancel()
        for getter in self._getters:
            if not getter.wake.done():
                getter.wake.set_result(None)

    def _release_drainers(self) -> None:
        for drained in self._drainers:
            if not drained.done():
                drained.set_result(None)
        self._drainers.clear()

    # -- delayed items ---------------------------------------------------------------------

    def _schedule(self, item: T, ready_at: float) -> None:
        current = self._waiting.get(item)
        if current is not None and current <= ready_at:
            return
        self._waiting[item] = ready_at
        heapq.heappush(self._heap, (ready_at, next(self._seq), item))
        if self._timer is not None:
            if ready_at < self._timer_due:
                assert self._timer_scope is not None
                self._timer_scope.cancel()
        elif self._getters:
            self._wake_timer()

    def _next_due(self) -> float | None:
        heap, waiting = self._heap, self._waiting
        while heap:
            ready_at, _, item = heap[0]
            if waiting.get(item) == ready_at:
                return ready_at
            heapq.heappop(heap)
        return None

    def _promote_due(self) -> None:
        """Add every delayed item whose time has come, in ready-time order."""
        now = self._clock.now()
        heap, waiting = self._heap, self._waiting
        while heap and heap[0][0] <= now:
            ready_at, _, item = heapq.heappop(heap)
            if waiting.get(item) != ready_at:
                continue
            del waiting[item]
            self._retry_pending.discard(item)
            self.add(item)

    # -- metrics -----------------------------------------------------------------------------

    def _install_metrics(self, metrics: QueueMetrics[T]) -> None:
        """Shadow the four verbs, on this instance only, with recording versions."""
        plain_add, plain_get, plain_get_nowait, plain_done = self.add, self.get, self.get_nowait, self.done
        dirty = self._dirty

        def add(item: T) -> None:
            if not self._shutting_down and item not in dirty:
                metrics.add(item)
            plain_add(item)

        async def get() -> T:
            item = await plain_get()
            metrics.get(item)
            return item

        def get_nowait() -> T:
            item = plain_get_nowait()
            metrics.get(item)
            return item

        def done(item: T) -> None:
            metrics.done(item)
            plain_done(item)

        self.add = add  # type: ignore[method-assign]
        self.get = get  # type: ignore[method-assign]
        self.get_nowait = get_nowait  # type: ignore[method-assign]
        self.done = done  # type: ignore[method-assign]


class DelayingQueue(WorkQueue[T]):
    """A `WorkQueue` with `add_after` (module docstring: earlier time wins, `<= 0` adds now)."""

    def __init__(self, name: str = "", clock: Clock = REAL_CLOCK, *,
                 metrics_provider: MetricsProvider | None = None) -> None:
        super().__init__(name, clock, metrics_provider=metrics_provider)
        self._retries: CounterMetric | None = retry_metric(metrics_provider, name)

    def add_after(self, item: T, seconds: float) -> None:
        """Add `item` once `seconds` have passed on the queue's clock; ignored after shut-down."""
        if self._shutting_down:
            return
        if self._retries is not None:
            self._retries.inc()
        if seconds <= 0:
            self.add(item)
            return
        self._schedule(item, self._clock.now() + seconds)


class RateLimitingQueue(DelayingQueue[T]):
    """A `DelayingQueue` whose retries are paced by a rate limiter.

    `rate_limiter` defaults to `default_controller_rate_limiter()` on the queue's clock.
    """

    def __init__(self, rate_limiter: RateLimiter[T] | None = None, name: str = "",
                 clock: Clock = REAL_CLOCK, *, metrics_provider: MetricsProvider | None = None) -> None:
        super().__init__(name, clock, metrics_provider=metrics_provider)
        self.rate_limiter: RateLimiter[T] = (
            rate_limiter if rate_limiter is not None else default_controller_rate_limiter(clock))

    def add_rate_limited(self, item: T) -> None:
        """`add_after(item, rate_limiter.when(item))`, unless `item` already waits for a
        rate-limited retry: then nothing happens (kubernetes#132805; module docstring)."""
        if self._shutting_down or item in self._retry_pending:
            return
        delay = self.rate_limiter.when(item)
        if delay > 0:
            self._retry_pending.add(item)
        self.add_after(item, delay)

    def forget(self, item: T) -> None:
        """Clear the limiter's memory of `item` (it succeeded); `done(item)` is still needed."""
        self.rate_limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self.rate_limiter.num_requeues(item)
