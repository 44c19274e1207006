import pytest

from kinformer.backoff import Backoff
from kinformer.testing import FakeClock


def test_client_go_sequence_without_jitter() -> None:
    clock = FakeClock()
    b = Backoff(jitter=0.0, clock=clock)
    delays = []
    for _ in range(8):
        delays.append(b.next())
        clock.advance(1)
    assert delays == [0.8, 1.6, 3.2, 6.4, 12.8, 25.6, 30.0, 30.0]


def test_jitter_adds_up_to_factor_times_delay() -> None:
    clock = FakeClock()
    assert Backoff(clock=clock, rand=lambda: 0.0).next() == 0.8
    assert Backoff(clock=clock, rand=lambda: 0.5).next() == pytest.approx(1.2)
    top = Backoff(clock=clock, rand=lambda: 0.999999)
    for _ in range(10):
        d = top.next()
    assert 59.9 < d < 60.0  # "backoff will stop at [30,60) sec interval"


def test_resets_after_two_quiet_minutes() -> None:
    clock = FakeClock()
    b = Backoff(jitter=0.0, clock=clock)
    b.next()
    b.next()
    clock.advance(119)
    assert b.next() == 3.2
    clock.advance(121)
    assert b.next() == 0.8
    b.reset()
    assert b.next() == 0.8
