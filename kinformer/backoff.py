"""The reflector's backoff: client-go's `NewExponentialBackoffManager(800ms, 30s, 2m, 2.0, 1.0)`.

Each `next()` returns the current step with jitter added (`d + random() * jitter * d`, so
0.8 to 1.6 s first), then doubles the step up to the cap (30 s; so at most 60 s with jitter).
If more than `reset_after` (2 min) passed since the previous `next()`, the step starts over
at `initial`: a healthy period forgives earlier failures. The clock and the random source
are injectable; one `Backoff` per reflector.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from kinformer.clock import REAL_CLOCK, Clock


class Backoff:
    def __init__(
        self,
        initial: float = 0.8,
        cap: float = 30.0,
        factor: float = 2.0,
        jitter: float = 1.0,
        reset_after: float = 120.0,
        *,
        clock: Clock = REAL_CLOCK,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.initial, self.cap, self.factor, self.jitter, self.reset_after = initial, cap, factor, jitter, reset_after
        self._clock = clock
        self._rand = rand
        self._step = initial
        self._last: float | None = None

    def next(self) -> float:
        """The next delay in seconds (and advance the step)."""
        now = self._clock.now()
        if self._last is None or now - self._last > self.reset_after:
            self._step = self.initial
        self._last = now
        delay = self._step
        self._step = min(self._step * self.factor, self.cap)
        if self.jitter > 0:
            delay += self._rand() * self.jitter * delay
        return delay

    def reset(self) -> None:
        self._step = self.initial
        self._last = None
