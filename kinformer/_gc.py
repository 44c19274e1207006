"""Deferring CPython's full (oldest-generation) collections while a list is applied.

Why: a list of n objects promotes them all into the oldest generation, and CPython runs a
full collection each time that generation grew by a quarter since the last one, traversing
everything alive each time. For 100k pods that was 17 full collections and two thirds of
the initial sync's time (9.85 s against 3.6 s with them deferred, `make bench`'s sync
scenario; benchmarks/PROFILE.md). Decoded Kubernetes objects hold no reference cycles, so
those collections find nothing.

What: while at least one list is in progress in the process, the third collection
threshold is raised to `DEFERRED` (young collections still run, so young cyclic garbage is
still collected); when the last list ends, the threshold it found is put back, unless
someone changed it meanwhile. Nothing is changed when the collector is disabled or the
first threshold is 0 (the process manages its collector itself), or when the reflector was
configured with `ReflectorConfig(defer_full_gc=False)`. Concurrent lists (several informers,
threads) share one deferral, counted under a lock.

The cost: cyclic garbage that reaches the oldest generation during a list waits for the
next full collection after it.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Callable

DEFERRED = 1 << 30
"""The third threshold while a list is in progress: in effect, no full collection."""

_lock = threading.Lock()
_depth = 0
_saved: int | None = None  # the third threshold found when the first deferral began


def defer_full_collections() -> Callable[[], None]:
    """Begin a deferral; returns the function that ends it (idempotent)."""
    global _depth, _saved
    with _lock:
        if _depth == 0:
            first, second, third = gc.get_threshold()
            if gc.isenabled() and first > 0 and third != DEFERRED:
                _saved = third
                gc.set_threshold(first, second, DEFERRED)
            else:
                _saved = None
        _depth += 1
    ended = False

    def end() -> None:
        global _depth, _saved
        nonlocal ended
        if ended:
            return
        ended = True
        with _lock:
            _depth -= 1
            if _depth == 0 and _saved is not None:
                first, second, third = gc.get_threshold()
                if third == DEFERRED:
                    gc.set_threshold(first, second, _saved)
                _saved = None

    return end
