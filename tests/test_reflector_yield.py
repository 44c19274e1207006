"""A watch whose socket never runs dry still lets the handlers run.

Reading from a full buffer never suspends, so the reflector must yield on its own. It yields
when CPython's young generation is half full, but a collection during a batch resets that
count; the reflector also yields at least every `YIELD_EVERY_EVENTS` events, so a handler
that keeps up is never pushed into coalescing by a fast server.
"""

from __future__ import annotations

import gc
from typing import Any

import anyio
import orjson
import pytest

from kinformer import ListWatch, Resource, SharedIndexInformer
from kinformer.reflector import YIELD_EVERY_EVENTS
from kinformer.testing import eventually

EVENTS = 3000


def _pod(rv: int) -> dict[str, Any]:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": "p", "namespace": "ns", "resourceVersion": str(rv)}}


class _Content:
    """A stream that never waits: every event is already buffered; then it waits forever."""

    def __init__(self, data: bytes) -> None:
        self._data = data

    async def readany(self) -> bytes:
        if self._data:
            data, self._data = self._data, b""
            return data
        await anyio.sleep_forever()
        return b""


class _Response:
    def __init__(self, body: bytes, content: _Content | None = None) -> None:
        self._body = body
        self.content = content

    async def read(self) -> bytes:
        return self._body

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class _BufferedListWatch(ListWatch):
    async def _get(self, params: Any, accept: str, timeout: Any = None) -> Any:
        if ("watch", "true") not in params and ("watch", "1") not in params:
            return _Response(orjson.dumps({"kind": "PodList", "apiVersion": "v1",
                                           "metadata": {"resourceVersion": "1"}, "items": [_pod(1)]}))
        lines = b"".join(orjson.dumps({"type": "MODIFIED", "object": _pod(rv)}) + b"\n"
                         for rv in range(2, EVENTS + 2))
        return _Response(b"", _Content(lines))


async def test_handlers_drain_while_the_socket_stays_full(monkeypatch: pytest.MonkeyPatch) -> None:
    # As if a collection had just reset the young generation at every check.
    monkeypatch.setattr(gc, "get_count", lambda: (0, 0, 0))
    informer: SharedIndexInformer[Any] = SharedIndexInformer(_BufferedListWatch(None, Resource.pods))
    updates = 0

    def on_update(old: Any, new: Any) -> None:
        nonlocal updates
        updates += 1

    max_pending = 2 * YIELD_EVERY_EVENTS
    registration = informer.add_event_handler(on_update=on_update, max_pending=max_pending, name="h")
    async with informer:
        await informer.wait_for_sync()
        await eventually(lambda: updates == EVENTS, timeout=10)
        stats = registration.stats()
    assert stats.coalesced == 0
    assert stats.peak_backlog < max_pending
