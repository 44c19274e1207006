"""Fault injection for the fake API server: failed requests, dropped, stalled, slow and corrupt watches.

Invariants:
- Faults are deterministic: each one fires at a point the test chose (the next `count`
  requests, the k-th event of each watch, now), never at random.
- `fail_next` entries are consumed in the order they were added; a request consumes at most
  one entry (the first whose verbs match) and fails with its code before any other work.
  429 carries `Retry-After` and `details.retryAfterSeconds` when asked for.
- A watch stream asks `before_event` before writing each event and `after_event` after it.
  A stalled watch writes nothing (no events, no bookmarks) until released or dropped; a
  dropped watch ends without the chunked stream's clean end (the connection is aborted).
  `drop_after` counts non-BOOKMARK events per connection. A malformed line precedes the next
  non-BOOKMARK events, one per `malformed_lines` count.
- `reset()` clears every fault setting in place; it never forgets the open watches, and the
  caller wakes the streams (`Cluster.wake()`) so a released stall is seen at once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from kinformer.testing._cluster import Cluster
from kinformer.testing._wire import StatusError

_REASONS = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable", 504: "Timeout"}
_MALFORMED_LINE = b'{"type":"MODIFIED","object":{"metadata":\n'


@dataclass(eq=False, slots=True)
class OpenWatch:
    """One open watch connection's fault state."""

    dropped: bool = False
    sent: int = 0


@dataclass(slots=True)
class _Failure:
    remaining: int
    code: int
    retry_after: float | None
    verbs: frozenset[str] | None


class Faults:
    def __init__(self, cluster: Cluster) -> None:
        self._cluster = cluster
        self.watches: set[OpenWatch] = set()
        self.failures: list[_Failure] = []
        self.drop_after: int | None = None
        self.malformed = 0
        self.stalled = False
        self.write_delay = 0.0

    def reset(self) -> None:
        self.failures = []
        self.drop_after = None
        self.malformed = 0
        self.stalled = False
        self.write_delay = 0.0

    # -- requests ---------------------------------------------------------------------------

    def fail_next(self, count: int, code: int, retry_after: float | None, verbs: Iterable[str] | None) -> None:
        self.failures.append(_Failure(count, code, retry_after, frozenset(verbs) if verbs is not None else None))

    def check_request(self, verb: str) -> None:
        """Raise the injected failure due for a request of `verb`, if any."""
        for failure in self.failures:
            if failure.remaining > 0 and (failure.verbs is None or verb in failure.verbs):
                failure.remaining -= 1
                self.failures = [f for f in self.failures if f.remaining > 0]
                headers: dict[str, str] = {}
                extra: dict[str, Any] = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(int(failure.retry_after))
                    extra["details"] = {"retryAfterSeconds": int(failure.retry_after)}
                message = ("Too many requests, please try again later." if failure.code == 429
                           else "an error on the server (\"injected fault\") has prevented the request "
                                "from succeeding")
                raise StatusError(failure.code, _REASONS.get(failure.code, "InternalError"), message, headers,
                                  **extra)

    # -- watch streams ----------------------------------------------------------------------

    def drop_all(self) -> None:
        for watch in self.watches:
            watch.dropped = True

    async def wait_while_stalled(self, watch: OpenWatch) -> None:
        """Return once the watch is not stalled, or is dropped."""
        while self.stalled and not watch.dropped:
            await self._cluster.changed.wait()

    async def before_event(self, watch: OpenWatch, response: web.StreamResponse, kind: str) -> bool:
        """Apply the faults due before writing one event; False when the watch must end."""
        await self.wait_while_stalled(watch)
        if watch.dropped:
            return False
        if self.write_delay:
            await asyncio.sleep(self.write_delay)
        if self.malformed and kind != "BOOKMARK":
            self.malformed -= 1
            await response.write(_MALFORMED_LINE)
        return True

    def after_event(self, watch: OpenWatch, kind: str) -> bool:
        """Count a written event; False when this watch must now be dropped."""
        if kind != "BOOKMARK":
            watch.sent += 1
            if self.drop_after is not None and watch.sent >= self.drop_after:
                watch.dropped = True
                return False
        return True
