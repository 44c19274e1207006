"""`FakeClock` for timing tests, and `eventually` for waiting on a condition.

`FakeClock.sleep` returns only when the test calls `advance()` past its deadline, and every
requested duration is recorded in `sleeps`, so backoff, Retry-After and resync periods
are asserted exactly, with no real waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import anyio


class FakeClock:
    def __init__(self, start: float = 1000.0) -> None:
        self._now = start
        self._sleepers: list[tuple[float, asyncio.Future[None]]] = []
        self.sleeps: list[float] = []

    def now(self) -> float:
        return self._now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if seconds <= 0:
            await asyncio.sleep(0)
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        entry = (self._now + seconds, future)
        self._sleepers.append(entry)
        try:
            await future
        finally:
            if entry in self._sleepers:
                self._sleepers.remove(entry)

    def advance(self, seconds: float) -> None:
        """Move time forward and wake every sleeper whose deadline has passed."""
        self._now += seconds
        for deadline, future in list(self._sleepers):
            if deadline <= self._now and not future.done():
                future.set_result(None)

    @property
    def pending(self) -> int:
        return sum(1 for _, f in self._sleepers if not f.done())

    async def wait_for_sleepers(self, count: int = 1, timeout: float = 10.0) -> None:
        """Wait (really) until `count` tasks are blocked in `sleep`."""
        await eventually(lambda: self.pending >= count, timeout)

    async def advance_until(self, predicate: Callable[[], bool], step: float, timeout: float = 10.0) -> None:
        """Let time pass as the code under test needs it, until `predicate()` holds.

        Whenever the predicate is false and some task is blocked in `sleep`, time moves by
        `step`. For tests whose path to a state may include a varying number of waits
        (a backoff after a drop, or not, depending on what arrived first): a single
        `advance()` would miss a sleep that starts after it. The predicate is checked
        before each step, so time never moves past the moment it became true.
        """
        with anyio.fail_after(timeout):
            while not predicate():
                if self.pending:
                    self.advance(step)
                await anyio.sleep(0.002)


async def eventually(predicate: Callable[[], bool], timeout: float = 10.0, interval: float = 0.002) -> None:
    """Wait until `predicate()` is true; `TimeoutError` after `timeout` seconds.

    For conditions with no event to wait on (state in another component); checks often,
    so a test waits only as long as the condition takes.
    """
    with anyio.fail_after(timeout):
        while not predicate():  # noqa: ASYNC110 - a bounded poll of state that has no event to wait on
            await anyio.sleep(interval)
