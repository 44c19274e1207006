"""`WatchHistory`: one informer's recent changes, so that many watchers share one upstream watch.

What it is: a ring buffer of the last `capacity` notifications of one informer, fed by one
`informer.events()` stream, and a map from resourceVersion to a position in that buffer.
Every watch and server-sent-events connection of the web API reads from it; none opens a
watch of its own upstream (kube-apiserver's watch cache, in miniature).

Invariants:
- Positions (`seq`) count the notifications taken from the stream, in the order the
  informer wrote them into its cache: per object, the order of its changes; across objects,
  the DeltaFIFO's queue order (the key queued first is popped first, with all its deltas),
  which can differ from resourceVersion order, as for any client-go informer's handlers.
  `sync()` takes every pending notification synchronously; reading the cache right after
  `sync()`, in the same synchronous step, sees exactly the state the first `seq`
  notifications left: the informer writes its cache and queues a notification in one step
  (informer.py). This is what makes a list and a
  later watch from its resourceVersion meet with nothing lost.
- Notifications of the initial list (`is_in_initial_list`) are state, not changes: they are
  taken but not recorded (no list is served before the informer synced).
- `position(rv)` maps a resourceVersion this history handed out to the position after
  which a watch from it must resume. The map holds (a) the RV of every recorded object (a
  watch event's object carries the RV of its change, unique per write) and (b) the RV of
  each list and bookmark served, mapped to the position at that moment (the earliest, if
  one RV was handed out at several positions: a resumed watch may repeat an event, never
  miss one). No comparison of RVs is ever made, so the order of relisted objects or a
  coalesced notification cannot make a watch skip a change.
- The RV of a position (`list_rv()`): the informer's `last_sync_resource_version` when its
  DeltaFIFO is empty (then the cache holds exactly everything up to it), else the RV of
  the newest recorded object, else the informer's RV unmapped.
- A watch from an RV not in the map, or whose position has been evicted from the buffer,
  gets `ExpiredError` (HTTP 410 / an ERROR event with a 410 Status): the client relists,
  as with kube-apiserver after compaction. A watcher that falls more than `capacity`
  notifications behind is ended the same way.

`start()` registers the stream (the cache API does so when it starts running) and `run()`
consumes it, waking waiting watchers, until the informer stops; `sync()` also drains it, so
a list never waits for the consumer task.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from typing import Any

import anyio

from kinformer.errors import ExpiredError, InvalidArgumentError
from kinformer.informer import Event, EventStream, SharedIndexInformer
from kinformer.objects import DeletedFinalStateUnknown


@dataclass(frozen=True, slots=True)
class Change:
    """One recorded notification: `type` is ADDED, MODIFIED or DELETED; `old` is the previous
    object of a MODIFIED; `object` of a DELETED is the last known state."""

    seq: int
    type: str
    object: Any
    old: Any


def _rv(obj: Any) -> str:
    try:
        rv = obj["metadata"]["resourceVersion"]
    except (KeyError, TypeError):
        return ""
    return rv if isinstance(rv, str) else ""


class WatchHistory:
    def __init__(self, informer: SharedIndexInformer[Any], capacity: int = 1000) -> None:
        if capacity < 1:
            raise InvalidArgumentError(f"capacity must be at least 1, not {capacity}")
        self.informer = informer
        self.capacity = capacity
        self._stream: EventStream[Any] | None = None
        self._changes: deque[Change] = deque()
        self._seq = 0
        self._newest_rv = ""
        self._positions: dict[str, int] = {}
        self._changed = anyio.Event()
        self.running = False

    # -- feeding --------------------------------------------------------------------------

    def start(self) -> None:
        """Register the history's event stream with the informer (what `run()` consumes).

        Until then the history holds nothing and asks nothing of the informer, so an
        informer's `idle()` is not held up by a cache API that is not running.
        """
        if self._stream is None:
            self._stream = self.informer.events(max_pending=max(1024, self.capacity))
        self.running = True

    async def run(self) -> None:
        """Take notifications as they come and wake watchers, until the informer stops."""
        self.start()
        stream = self._stream
        assert stream is not None
        try:
            async for event in stream:
                before = self._seq
                self._record(event)
                self.sync()
                if self._seq != before:
                    self._wake()
        finally:
            self.running = False
            stream.close()
            self._wake()

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()

    def sync(self) -> int:
        """Take every pending notification now; returns the current position."""
        if self._stream is None:
            return self._seq
        get = self._stream.get_nowait
        before = self._seq
        event = get()
        while event is not None:
            self._record(event)
            event = get()
        if self._seq != before:
            self._wake()
        return self._seq

    def _record(self, event: Event[Any]) -> None:
        if event.is_in_initial_list:
            return
        obj = event.object
        if isinstance(obj, DeletedFinalStateUnknown):
            obj = obj.obj
        self._seq += 1
        change = Change(self._seq, event.type, obj, event.old)
        changes = self._changes
        changes.append(change)
        rv = _rv(obj)
        if rv and not isinstance(event.object, DeletedFinalStateUnknown):
            # A tombstone's object is a state seen before: its RV already names an earlier position.
            self._positions[rv] = self._seq
            self._newest_rv = rv
        if len(changes) > self.capacity:
            changes.popleft()
            if len(self._positions) > 4 * self.capacity:
                self._prune()

    def _prune(self) -> None:
        floor = self._floor()
        self._positions = {rv: pos for rv, pos in self._positions.items() if pos >= floor}

    def _wake(self) -> None:
        changed, self._changed = self._changed, anyio.Event()
        changed.set()

    # -- reading --------------------------------------------------------------------------

    @property
    def seq(self) -> int:
        return self._seq

    def _floor(self) -> int:
        """The smallest position a watch can resume after (everything after it is buffered)."""
        return self._changes[0].seq - 1 if self._changes else self._seq

    def list_rv(self) -> str:
        """`sync()`, then the resourceVersion of the current position (registered, so a watch
        from it resumes here). Read the cache right after, in the same synchronous step."""
        seq = self.sync()
        informer = self.informer
        if informer.queued == 0 and informer.last_sync_resource_version:
            rv = informer.last_sync_resource_version
        elif self._newest_rv:
            rv = self._newest_rv
        else:
            return informer.last_sync_resource_version
        self._positions.setdefault(rv, seq)
        return rv

    def position(self, rv: str) -> int:
        """Where a watch from `rv` resumes; `ExpiredError` if that is not in the buffer."""
        self.sync()
        pos = self._positions.get(rv)
        if pos is None or pos < self._floor():
            raise ExpiredError(410, "Expired", f"too old resource version: {rv}")
        return pos

    def after(self, seq: int) -> list[Change]:
        """The changes after position `seq` (oldest first); `ExpiredError` if some were evicted."""
        if seq < self._floor():
            raise ExpiredError(410, "Expired", "the watcher fell too far behind the cache's history")
        changes = self._changes
        if not changes or seq >= self._seq:
            return []
        start = seq - changes[0].seq + 1
        return [changes[i] for i in range(start, len(changes))]

    async def wait(self, seq: int) -> None:
        """Return once there is a change after position `seq` (or the history stopped)."""
        while self._seq <= seq and self.running:
            await self._changed.wait()
