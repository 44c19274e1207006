"""Rate limiters: client-go's exact `when` semantics, and their properties."""

from __future__ import annotations

import itertools
import math
from collections.abc import Hashable

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinformer import (
    BucketRateLimiter,
    ItemExponentialFailureRateLimiter,
    ItemFastSlowRateLimiter,
    MaxOfRateLimiter,
    WithMaxWaitRateLimiter,
    default_controller_rate_limiter,
)
from kinformer.testing import FakeClock

Exp = ItemExponentialFailureRateLimiter


def test_exponential_doubles_from_the_base_per_item() -> None:
    r: Exp[str] = Exp(0.001, 1000.0)
    assert [r.when("a") for _ in range(5)] == [0.001, 0.002, 0.004, 0.008, 0.016]
    assert r.num_requeues("a") == 5
    assert r.when("b") == 0.001, "failures are counted per item"
    r.forget("a")
    assert r.num_requeues("a") == 0
    assert r.when("a") == 0.001


def test_exponential_defaults_are_client_gos() -> None:
    r: Exp[str] = Exp()
    assert r.when("a") == 0.005
    delays = [r.when("a") for _ in range(40)]
    assert delays[-1] == 1000.0
    assert max(delays) == 1000.0


def test_exponential_is_overflow_safe_at_ten_thousand_failures() -> None:
    r: Exp[str] = Exp(0.005, 1000.0)
    delays = [r.when("a") for _ in range(10_000)]
    assert delays[-1] == 1000.0
    assert all(math.isfinite(d) for d in delays)
    assert r.num_requeues("a") == 10_000
    huge: Exp[str] = Exp(1.0, math.inf)  # no cap at all: the float range is the cap
    assert [huge.when("a") for _ in range(1100)][-1] == math.inf
    zero: Exp[str] = Exp(0.0, 10.0)
    assert [zero.when("a") for _ in range(2000)][-1] == 0.0


def test_exponential_rejects_negative_delays() -> None:
    with pytest.raises(ValueError):
        Exp(-1.0, 1.0)


def test_fast_slow_switches_after_max_fast_attempts() -> None:
    r: ItemFastSlowRateLimiter[str] = ItemFastSlowRateLimiter(0.005, 10.0, 3)
    assert [r.when("a") for _ in range(5)] == [0.005, 0.005, 0.005, 10.0, 10.0]
    assert r.num_requeues("a") == 5
    assert r.when("b") == 0.005
    r.forget("a")
    assert r.num_requeues("a") == 0 and r.when("a") == 0.005


def test_bucket_starts_full_and_reservations_stack_at_one_over_qps() -> None:
    clock = FakeClock()
    r: BucketRateLimiter[str] = BucketRateLimiter(qps=10.0, burst=3, clock=clock)
    assert [r.when("x") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert [round(r.when("x"), 9) for _ in range(3)] == [0.1, 0.2, 0.3]
    assert r.num_requeues("x") == 0
    r.forget("x")  # the bucket remembers no item
    assert round(r.when("y"), 9) == 0.4


def test_bucket_refills_at_qps_and_never_above_burst() -> None:
    clock = FakeClock()
    r: BucketRateLimiter[str] = BucketRateLimiter(qps=2.0, burst=2, clock=clock)
    r.when("a")
    r.when("a")
    assert r.when("a") == 0.5  # tokens -1: the next token exists in 0.5 s
    clock.advance(0.5)
    assert r.when("a") == 0.5  # the refilled token paid the reservation; again -1
    clock.advance(3600)
    assert [r.when("a") for _ in range(3)] == [0.0, 0.0, 0.5], "refill capped at burst"


def test_bucket_ignores_a_clock_stepping_back() -> None:
    clock = FakeClock()
    r: BucketRateLimiter[str] = BucketRateLimiter(qps=1.0, burst=1, clock=clock)
    r.when("a")
    clock.advance(-10)
    assert r.when("a") == 1.0


def test_bucket_without_a_limit_never_delays() -> None:
    r: BucketRateLimiter[str] = BucketRateLimiter(qps=math.inf, burst=1, clock=FakeClock())
    assert [r.when("a") for _ in range(1000)][-1] == 0.0


@pytest.mark.parametrize(("qps", "burst"), [(0.0, 1), (-1.0, 1), (1.0, 0)])
def test_bucket_rejects_arguments_that_never_release_an_item(qps: float, burst: int) -> None:
    with pytest.raises(ValueError):
        BucketRateLimiter(qps=qps, burst=burst, clock=FakeClock())


def test_max_of_calls_every_limiter_and_takes_the_largest() -> None:
    exp: Exp[Hashable] = Exp(0.001, 1.0)
    slow: ItemFastSlowRateLimiter[Hashable] = ItemFastSlowRateLimiter(0.0, 5.0, 1)
    r: MaxOfRateLimiter[Hashable] = MaxOfRateLimiter(exp, slow)
    assert r.when("a") == 0.001
    assert r.when("a") == 5.0
    assert exp.num_requeues("a") == slow.num_requeues("a") == 2
    exp.when("a")
    assert r.num_requeues("a") == 3, "the largest count"
    r.forget("a")
    assert exp.num_requeues("a") == slow.num_requeues("a") == 0
    with pytest.raises(ValueError):
        MaxOfRateLimiter()


def test_with_max_wait_caps_the_delay() -> None:
    r: WithMaxWaitRateLimiter[str] = WithMaxWaitRateLimiter(Exp(1.0, 1000.0), 3.0)
    assert [r.when("a") for _ in range(4)] == [1.0, 2.0, 3.0, 3.0]
    assert r.num_requeues("a") == 4
    r.forget("a")
    assert r.num_requeues("a") == 0


def test_default_controller_rate_limiter_is_exponential_and_a_bucket() -> None:
    clock = FakeClock()
    r = default_controller_rate_limiter(clock)
    # 100 distinct first failures fit in the burst: the per-item 5 ms wins...
    assert {r.when(i) for i in range(100)} == {0.005}
    # ...then the overall bucket paces retries at 10 per second.
    assert round(r.when(100), 9) == 0.1
    assert round(r.when(101), 9) == 0.2
    assert [r.when("x") for _ in range(30)][-1] >= 1000.0 - 1e-9


# -- properties ------------------------------------------------------------------------------


delays = st.floats(min_value=0.0, max_value=1e6, allow_nan=False)


@settings(max_examples=200, deadline=None)
@given(base=delays, cap=delays, n=st.integers(1, 3000))
def test_exponential_is_monotone_capped_and_reset_by_forget(base: float, cap: float, n: int) -> None:
    r: Exp[str] = Exp(base, cap)
    seq = [r.when("a") for _ in range(n)]
    assert all(a <= b for a, b in itertools.pairwise(seq)), "monotone"
    assert all(0.0 <= d <= cap for d in seq), "capped"
    assert seq[0] == min(base, cap)
    assert r.num_requeues("a") == n
    r.forget("a")
    assert r.num_requeues("a") == 0 and r.when("a") == seq[0]


@settings(max_examples=200, deadline=None)
@given(fast=delays, slow=delays, attempts=st.integers(0, 20), n=st.integers(1, 60))
def test_fast_slow_counts_every_call(fast: float, slow: float, attempts: int, n: int) -> None:
    r: ItemFastSlowRateLimiter[str] = ItemFastSlowRateLimiter(fast, slow, attempts)
    seq = [r.when("a") for _ in range(n)]
    assert seq == [fast if i < attempts else slow for i in range(n)]
    r.forget("a")
    assert r.num_requeues("a") == 0


@settings(max_examples=200, deadline=None)
@given(qps=st.floats(0.01, 1e4), burst=st.integers(1, 200),
       steps=st.lists(st.tuples(st.floats(0.0, 100.0), st.integers(1, 50)), max_size=20))
def test_bucket_is_a_token_bucket(qps: float, burst: int, steps: list[tuple[float, int]]) -> None:
    """Against a direct model: balance refills at qps up to burst; each `when` takes one
    token and waits until its token exists."""
    clock = FakeClock()
    r: BucketRateLimiter[str] = BucketRateLimiter(qps, burst, clock=clock)
    tokens = float(burst)
    for elapsed, calls in steps:
        clock.advance(elapsed)
        tokens = min(float(burst), tokens + elapsed * qps)
        seq = []
        for _ in range(calls):
            tokens -= 1
            expected = max(0.0, -tokens / qps)
            got = r.when("a")
            assert got == pytest.approx(expected, rel=1e-9, abs=1e-9)
            seq.append(got)
        assert all(a <= b for a, b in itertools.pairwise(seq)), "no time passes: delays grow"
