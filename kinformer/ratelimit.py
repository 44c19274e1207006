"""Rate limiters for work-queue retries: client-go's `util/workqueue/default_rate_limiters.go`.

A rate limiter answers one question for `RateLimitingQueue.add_rate_limited`: how long must
this item wait before it is queued again? Every limiter has three methods:

- `when(item) -> float`: seconds to wait. **Each call counts one failure of `item`** (or, for
  the bucket, takes one token): `when` is not a query, it is the retry being booked. This is
  client-go's exact semantics; the "do not charge an item twice while it already waits"
  rule (kubernetes#132805) lives in `RateLimitingQueue.add_rate_limited`, not here.
- `forget(item)`: the item succeeded (or was given up on): clear what is remembered of it.
- `num_requeues(item) -> int`: how many failures are remembered for `item`.

The limiters:

- `ItemExponentialFailureRateLimiter(base_delay=0.005, max_delay=1000.0)`: the n-th call
  (n from 0) for an item returns `base_delay * 2**n`, capped at `max_delay`. Overflow-safe: at
  any failure count (10 000 and beyond) the answer is `max_delay`, never an error or `inf`.
- `ItemFastSlowRateLimiter(fast_delay, slow_delay, max_fast_attempts)`: `fast_delay` for the
  first `max_fast_attempts` calls for an item, `slow_delay` after.
- `BucketRateLimiter(qps=10.0, burst=100, clock=REAL_CLOCK)`: one token bucket shared by all
  items, `golang.org/x/time/rate`'s `Limiter` on the injected clock: it starts full (`burst`
  tokens), refills at `qps` tokens per second up to `burst`, and `when` *reserves* a token,
  returning how long until that token exists (0 while tokens are left). Tokens can go
  negative: a burst of `when` calls books retries `1/qps` apart into the future.
  `num_requeues` is always 0 and `forget` does nothing (the bucket remembers no item).
- `MaxOfRateLimiter(*limiters)`: calls every limiter's `when` (each counts) and returns the
  largest; `num_requeues` is the largest count; `forget` forgets in all.
- `WithMaxWaitRateLimiter(limiter, max_delay)`: another limiter's answer, capped.
- `default_controller_rate_limiter()`: `MaxOf(exponential(5 ms, 1000 s), bucket(10 qps, 100))`,
  client-go's `DefaultControllerRateLimiter`: per-item backoff plus an overall retry budget.

Like the work queues, limiters belong to the event loop: no locks, not for use from threads.
Arguments that would make a limiter never release an item (a bucket with `qps <= 0` or
`burst < 1`, which `x/time/rate` answers with an infinite delay) raise `ValueError` instead.
"""

from __future__ import annotations

import math
from collections.abc import Hashable
from typing import Generic, Protocol, TypeVar

from kinformer.clock import REAL_CLOCK, Clock

T = TypeVar("T", bound=Hashable)
T_contra = TypeVar("T_contra", bound=Hashable, contravariant=True)


class RateLimiter(Protocol[T_contra]):
    """How long an item waits before its retry (client-go's `TypedRateLimiter`)."""

    def when(self, item: T_contra) -> float:
        """Seconds `item` must wait; counts one failure (or takes one token)."""
        ...

    def forget(self, item: T_contra) -> None:
        """Stop tracking `item` (it succeeded, or will not be retried)."""
        ...

    def num_requeues(self, item: T_contra) -> int:
        """Failures remembered for `item`."""
        ...


class ItemExponentialFailureRateLimiter(Generic[T]):
    """`base_delay * 2**failures` per item, capped at `max_delay`; `forget` resets the item."""

    __slots__ = ("_base", "_failures", "_max")

    def __init__(self, base_delay: float = 0.005, max_delay: float = 1000.0) -> None:
        if base_delay < 0 or max_delay < 0:
            raise ValueError(f"delays must be >= 0, got base_delay={base_delay}, max_delay={max_delay}")
        self._base = float(base_delay)
        self._max = float(max_delay)
        self._failures: dict[T, int] = {}

    def when(self, item: T) -> float:
        failures = self._failures.get(item, 0)
        self._failures[item] = failures + 1
        try:
            # ldexp is exact for a power of two; past ~2**1024 it raises instead of giving inf.
            backoff = math.ldexp(self._base, failures)
        except OverflowError:
            return self._max
        return backoff if backoff < self._max else self._max

    def forget(self, item: T) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: T) -> int:
        return self._failures.get(item, 0)


class ItemFastSlowRateLimiter(Generic[T]):
    """`fast_delay` for an item's first `max_fast_attempts` failures, then `slow_delay`."""

    __slots__ = ("_failures", "_fast", "_max_fast", "_slow")

    def __init__(self, fast_delay: float, slow_delay: float, max_fast_attempts: int) -> None:
        self._fast = float(fast_delay)
        self._slow = float(slow_delay)
        self._max_fast = max_fast_attempts
        self._failures: dict[T, int] = {}

    def when(self, item: T) -> float:
        failures = self._failures.get(item, 0) + 1
        self._failures[item] = failures
        return self._fast if failures <= self._max_fast else self._slow

    def forget(self, item: T) -> None:
        self._failures.pop(item, None)

    def num_requeues(self, item: T) -> int:
        return self._failures.get(item, 0)


class BucketRateLimiter(Generic[T]):
    """One token bucket for all items (`x/time/rate.Limiter`'s reservation arithmetic).

    State is `tokens` at time `last`. A `when` at time `now` first refills:
    `tokens = min(burst, tokens + (now - last) * qps)`, then takes one token; if that leaves
    the balance negative, the reserved token exists `-tokens / qps` seconds from now, and that
    is the delay. A clock that steps backwards refills nothing (as in Go).
    """

    __slots__ = ("_burst", "_clock", "_last", "_qps", "_tokens")

    def __init__(self, qps: float = 10.0, burst: int = 100, clock: Clock = REAL_CLOCK) -> None:
        if not qps > 0:
            raise ValueError(f"qps must be > 0 (math.inf for no limit), got {qps}")
        if burst < 1:
            raise ValueError(f"burst must be >= 1, got {burst}")
        self._qps = float(qps)
        self._burst = float(burst)
        self._clock = clock
        self._tokens = float(burst)
        self._last = clock.now()

    @property
    def tokens(self) -> float:
        """Tokens left as of the last `when` (negative: retries booked into the future)."""
        return self._tokens

    def when(self, item: T) -> float:
        if self._qps == math.inf:
            return 0.0
        now = self._clock.now()
        elapsed = now - self._last
        tokens = self._tokens
        if elapsed > 0:
            tokens += elapsed * self._qps
            tokens = min(tokens, self._burst)
        self._last = now
        tokens -= 1.0
        self._tokens = tokens
        return -tokens / self._qps if tokens < 0 else 0.0

    def forget(self, item: T) -> None:
        return None

    def num_requeues(self, item: T) -> int:
        return 0


class MaxOfRateLimiter(Generic[T]):
    """The worst case of several limiters: every `when` is called, the largest delay wins.

    As client-go notes, with a bucket inside, the bucket's burst can seem exceeded when
    particular items were separately delayed longer by another limiter.
    """

    __slots__ = ("_limiters",)

    def __init__(self, *limiters: RateLimiter[T]) -> None:
        if not limiters:
            raise ValueError("MaxOfRateLimiter needs at least one limiter")
        self._limiters = limiters

    def when(self, item: T) -> float:
        delay = 0.0
        for limiter in self._limiters:
            current = limiter.when(item)
            delay = max(delay, current)
        return delay

    def forget(self, item: T) -> None:
        for limiter in self._limiters:
            limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        count = 0
        for limiter in self._limiters:
            current = limiter.num_requeues(item)
            count = max(count, current)
        return count


class WithMaxWaitRateLimiter(Generic[T]):
    """Another limiter, with its delay capped at `max_delay` (client-go's `WithMaxWaitRateLimiter`)."""

    __slots__ = ("_limiter", "_max")

    def __init__(self, limiter: RateLimiter[T], max_delay: float) -> None:
        self._limiter = limiter
        self._max = float(max_delay)

    def when(self, item: T) -> float:
        delay = self._limiter.when(item)
        return delay if delay < self._max else self._max

    def forget(self, item: T) -> None:
        self._limiter.forget(item)

    def num_requeues(self, item: T) -> int:
        return self._limiter.num_requeues(item)


def default_controller_rate_limiter(clock: Clock = REAL_CLOCK) -> MaxOfRateLimiter[Hashable]:
    """client-go's `DefaultControllerRateLimiter`: per-item exponential (5 ms doubling to
    1000 s) and an overall bucket (10 qps, burst 100) that only paces retries, never first adds."""
    return MaxOfRateLimiter(
        ItemExponentialFailureRateLimiter(0.005, 1000.0),
        BucketRateLimiter(10.0, 100, clock=clock),
    )
