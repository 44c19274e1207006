"""Time as a dependency: everything that waits or reads the time takes a `Clock`.

`RealClock` is the event loop's monotonic time. Tests use `kinformer.testing.FakeClock`,
whose `sleep` returns only when the test advances time, so timing logic (backoff, resync,
delays) is tested exactly and without real sleeps.
"""

from __future__ import annotations

import asyncio
import time
from typing import Protocol


class Clock(Protocol):
    def now(self) -> float:
        """Monotonic seconds."""
        ...

    async def sleep(self, seconds: float) -> None: ...


class RealClock:
    def now(self) -> float:
        return time.monotonic()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds, 0.0))


REAL_CLOCK = RealClock()
