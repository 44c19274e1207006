"""Listener coalescing: any event sequence, any consumer speed, any queue bound → the
handler's view ends equal to the cache; it never gets an update or delete for an object
it was not told exists (and `old` is always what it was told), never an add for one it
knows; its queue never holds more than max(max_pending, 2 x keys)."""

from __future__ import annotations

from typing import Any

import structlog
from hypothesis import given, settings
from hypothesis import strategies as st

from kinformer.processor import ADD, DELETE, UPDATE, Notification, PendingQueue
from tests.helpers import obj

NAMES = [f"o{i}" for i in range(6)]
STEP = st.one_of(st.tuples(st.just("event"), st.sampled_from(NAMES)), st.tuples(st.just("consume"), st.integers(1, 5)))


@given(steps=st.lists(STEP, max_size=200), max_pending=st.integers(1, 6), batched=st.booleans())
@settings(max_examples=500, deadline=None)
def test_handler_view_converges_to_cache(steps: list[tuple[str, Any]], max_pending: int, batched: bool) -> None:
    """`batched`: notifications reach the queue as the informer's batches do (`put_many`
    of everything since the consumer last ran)."""
    q = PendingQueue(max_pending, "coalesce", structlog.get_logger("test"))
    batch: list[Notification] = []
    cache: dict[str, dict[str, Any]] = {}
    view: dict[str, dict[str, Any]] = {}
    rv = 0

    def consume(count: int) -> None:
        if batch:
            q.put_many(batch)
            batch.clear()
            assert len(q) <= max(max_pending, 2 * len(NAMES))
        for _ in range(count):
            x = q.get_nowait()
            if x is None:
                return
            key = x.key
            if x.kind == ADD:
                assert key not in view, f"add for known {key}"
                view[key] = x.new
            elif x.kind == UPDATE:
                assert key in view, f"update for unknown {key}"
                assert view[key] == x.old, "update's old is not what the handler was told"
                view[key] = x.new
            else:
                assert key in view, f"delete for unknown {key}"
                del view[key]

    for action, arg in steps:
        if action == "consume":
            consume(arg)
            continue
        rv += 1
        key = f"default/{arg}"
        new = obj(arg, rv=rv)
        if key not in cache:
            note = Notification(ADD, new, None, False, key)
            cache[key] = new
        elif rv % 3 == 0:
            note = Notification(DELETE, new, None, False, key)
            del cache[key]
        else:
            note = Notification(UPDATE, new, cache[key], False, key)
            cache[key] = new
        if batched:
            batch.append(note)
            continue
        assert q.put_nowait(note)
        assert len(q) <= max(max_pending, 2 * len(NAMES))
    consume(10**6)
    assert view == cache
    assert not q.coalescing
