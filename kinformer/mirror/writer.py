"""`MirrorWriter`: the bounded, coalescing write queue between informers and the database.

Each (cluster, resource) informer writes through its own `WriteStream` (an `RVEventHandler`):
adds and updates queue the object, deletes queue the key. The queue holds at most one
pending write per key — a newer write replaces the older one (upsert then delete → delete;
delete then upsert → upsert; the RV-guarded upsert makes either safe), so memory is bounded
by keys, not events — and at most `max_pending` keys in all. A write for a new key when the
queue is full *waits*: the informer's handler call blocks, so its reflector stops reading
the watch (back-pressure, not loss; Clusterpedia drops all but 5 queued items instead).

One writer task drains it. A flush takes every pending write of every stream, plus each
stream's checkpoint (its informer's `last_sync_resource_version` read at the same instant),
and hands them to `MirrorStorage.write` as one transaction. Invariant: a checkpoint is
written only together with every change up to it — changes reach the queue before their
reflector advances its RV, and a flush takes the whole queue. Entries leave the queue only
once their transaction committed (an entry replaced meanwhile stays, with its newer write),
so a failed flush loses nothing:

- `StorageUnavailableError` (database down, connection lost): the flush is retried after a
  backoff (`retry_initial` doubling to `retry_cap`, on the injectable clock) until it
  commits; `health()` shows the outage meanwhile; the informers block once the queue is
  full, and after recovery the database equals what they saw.
- Any other `StorageError` (a row the database refuses, e.g. a NUL character in JSONB): the
  flush is retried stream by stream and then object by object, so one bad object costs
  only itself: it is logged by key (never by body), counted in `stats.rejected`, and skipped.

A checkpoint that moved without changes (bookmarks) is written within `checkpoint_interval`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import anyio

from kinformer._logging import get_logger
from kinformer.clock import REAL_CLOCK, Clock
from kinformer.errors import InvalidArgumentError, StorageError, StorageUnavailableError
from kinformer.mirror.rvinformer import RV
from kinformer.mirror.storage import MirrorStorage, StreamBatch
from kinformer.resources import Resource

_MISSING: Any = object()


class WriteStream:
    """One (cluster, resource)'s pending writes; the informer's handler."""

    def __init__(self, writer: MirrorWriter, cluster: str, resource: Resource, checkpoint: Callable[[], str],
                 written_checkpoint: str) -> None:
        self.writer = writer
        self.cluster = cluster
        self.resource = resource
        self.checkpoint = checkpoint
        self.written_checkpoint = written_checkpoint
        """The checkpoint RV last committed (the one read from the database at start)."""
        self.pending: dict[str, dict[str, Any] | None] = {}
        self.closed = False

    def in_sync(self) -> bool:
        """Nothing pending, and the informer's RV is the one stored."""
        return not self.pending and self.checkpoint() in ("", self.written_checkpoint)

    async def on_add(self, obj: dict[str, Any], is_in_initial_list: bool) -> None:
        await self.writer._put(self, _key(obj), obj)

    async def on_update(self, old_rv: RV, obj: dict[str, Any]) -> None:
        await self.writer._put(self, _key(obj), obj)

    async def on_delete(self, key: str, obj: dict[str, Any] | None) -> None:
        await self.writer._put(self, key, None)


def _key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    namespace = meta.get("namespace")
    return f"{namespace}/{meta['name']}" if namespace else str(meta["name"])


@dataclass
class WriterStats:
    flushes: int = 0
    written: int = 0
    """Writes committed (upserts and deletes)."""
    coalesced: int = 0
    """Writes replaced by a newer write of the same key before they were flushed."""
    blocked: int = 0
    """Times a write waited for room in the queue (back-pressure on an informer)."""
    retries: int = 0
    rejected: int = 0
    """Objects the database refused (logged by key); everything else is retried until written."""


@dataclass(frozen=True, slots=True)
class WriterHealth:
    pending: int
    last_error: BaseException | None
    failing_since: float | None
    consecutive_failures: int

    @property
    def healthy(self) -> bool:
        return self.last_error is None

    def __bool__(self) -> bool:
        return self.healthy


class MirrorWriter:
    """See the module docstring. `await writer.run()` until cancelled (the `Mirror` does)."""

    def __init__(self, storage: MirrorStorage, *, max_pending: int = 10_000, checkpoint_interval: float = 1.0,
                 retry_initial: float = 0.5, retry_cap: float = 30.0, clock: Clock = REAL_CLOCK) -> None:
        if max_pending < 1:
            raise InvalidArgumentError(f"max_pending must be at least 1, not {max_pending}")
        self.storage = storage
        self.max_pending = max_pending
        self.checkpoint_interval = checkpoint_interval
        self.retry_initial, self.retry_cap = retry_initial, retry_cap
        self.clock = clock
        self.stats = WriterStats()
        self.streams: list[WriteStream] = []
        self._total = 0
        self._wake = anyio.Event()
        self._room = anyio.Event()
        self._committed = anyio.Event()
        self._flushing = False
        self._last_error: BaseException | None = None
        self._failing_since: float | None = None
        self._failures = 0
        self.log = get_logger("kinformer.mirror.writer")

    # -- streams ----------------------------------------------------------------------------

    def stream(self, cluster: str, resource: Resource, checkpoint: Callable[[], str],
               written_checkpoint: str = "") -> WriteStream:
        s = WriteStream(self, cluster, resource, checkpoint, written_checkpoint)
        self.streams.append(s)
        return s

    def discard(self, streams: Iterable[WriteStream]) -> None:
        """Detach streams and drop what they have pending (their rows are being purged, or
        their informer will resume from the stored checkpoint)."""
        for s in list(streams):
            s.closed = True
            self._total -= len(s.pending)
            s.pending = {}
            if s in self.streams:
                self.streams.remove(s)
        self._signal_room()

    @property
    def pending(self) -> int:
        return self._total

    def health(self) -> WriterHealth:
        return WriterHealth(self._total, self._last_error, self._failing_since, self._failures)

    async def _put(self, stream: WriteStream, key: str, obj: dict[str, Any] | None) -> None:
        if stream.closed:
            return
        pending = stream.pending
        if key in pending:
            self.stats.coalesced += 1
        else:
            while self._total >= self.max_pending and not stream.closed:
                self.stats.blocked += 1
                room = self._room
                await room.wait()
            if stream.closed:
                return
            if key in pending:
                self.stats.coalesced += 1
            else:
                self._total += 1
        pending[key] = obj
        self._wake.set()

    def _signal_room(self) -> None:
        if self._total < self.max_pending:
            room, self._room = self._room, anyio.Event()
            room.set()

    # -- waiting ----------------------------------------------------------------------------

    async def wait_written(self, streams: Iterable[WriteStream] | None = None) -> None:
        """Until the given streams (default: all) are `in_sync()` and no flush is running."""
        while True:
            chosen = list(self.streams if streams is None else streams)
            if not self._flushing and all(s.closed or s.in_sync() for s in chosen):
                return
            committed = self._committed
            self._wake.set()
            await committed.wait()

    async def idle(self) -> None:
        """Until no flush is in flight (the next one starts only when woken)."""
        while self._flushing:
            committed = self._committed
            await committed.wait()

    # -- the writer task --------------------------------------------------------------------

    async def run(self) -> None:
        async with anyio.create_task_group() as tg:
            if self.checkpoint_interval > 0:
                tg.start_soon(self._ticker)
            while True:
                wake = self._wake
                await wake.wait()
                self._wake = anyio.Event()
                await self._flush_until_done()

    async def _ticker(self) -> None:
        while True:
            await self.clock.sleep(self.checkpoint_interval)
            if any(not s.in_sync() for s in self.streams):
                self._wake.set()

    async def _flush_until_done(self) -> None:
        delay = self.retry_initial
        self._flushing = True
        try:
            while True:
                try:
                    await self._flush()
                except StorageError as error:
                    self._failed(error)
                    self.stats.retries += 1
                    await self.clock.sleep(delay)
                    delay = min(delay * 2, self.retry_cap)
                    continue
                self._recovered()
                return
        finally:
            self._flushing = False
            committed, self._committed = self._committed, anyio.Event()
            committed.set()

    def _snapshot(self) -> list[tuple[WriteStream, dict[str, dict[str, Any] | None], str]]:
        """Every stream's pending writes and checkpoint, taken at one instant (no await)."""
        out = []
        for s in self.streams:
            checkpoint = s.checkpoint()
            if s.pending or (checkpoint and checkpoint != s.written_checkpoint):
                out.append((s, dict(s.pending), checkpoint))
        return out

    async def _flush(self) -> None:
        snapshot = self._snapshot()
        if not snapshot:
            return
        batches = [_batch(s, items, checkpoint) for s, items, checkpoint in snapshot]
        try:
            await self.storage.write(batches)
        except StorageUnavailableError:
            raise
        except StorageError as error:
            await self._write_apart(snapshot, error)
        for s, items, checkpoint in snapshot:
            self._committed_items(s, items, checkpoint)
        self.stats.flushes += 1
        self._signal_room()

    def _committed_items(self, s: WriteStream, items: dict[str, dict[str, Any] | None], checkpoint: str) -> None:
        pending = s.pending
        for key, obj in items.items():
            if pending.get(key, _MISSING) is obj:
                del pending[key]
                self._total -= 1
        self.stats.written += len(items)
        if checkpoint:
            s.written_checkpoint = checkpoint

    async def _write_apart(self, snapshot: list[tuple[WriteStream, dict[str, dict[str, Any] | None], str]],
                           error: StorageError) -> None:
        """A batch the database refused: write stream by stream, then object by object."""
        self.log.warning("the database refused a batch; writing it object by object", error=str(error))
        for s, items, checkpoint in snapshot:
            try:
                await self.storage.write([_batch(s, items, checkpoint)])
                continue
            except StorageUnavailableError:
                raise
            except StorageError:
                pass
            for key, obj in items.items():
                single = StreamBatch(s.cluster, s.resource, [obj] if obj is not None else [],
                                     [key] if obj is None else [])
                try:
                    await self.storage.write([single])
                except StorageUnavailableError:
                    raise
                except StorageError as refused:
                    self.stats.rejected += 1
                    self.log.error("the database refused an object; skipped", cluster=s.cluster,
                                   resource=str(s.resource), key=key, error=str(refused))
            if checkpoint:
                await self.storage.write([StreamBatch(s.cluster, s.resource, resource_version=checkpoint)])

    def _failed(self, error: StorageError) -> None:
        if self._last_error is None:
            self._failing_since = self.clock.now()
            self.log.warning("database write failed; retrying (nothing is dropped)", error=str(error),
                             error_type=type(error).__name__, pending=self._total)
        self._last_error = error
        self._failures += 1

    def _recovered(self) -> None:
        if self._last_error is not None:
            self.log.info("database writes recovered", failures=self._failures, pending=self._total)
        self._last_error = None
        self._failing_since = None
        self._failures = 0


def _batch(s: WriteStream, items: dict[str, dict[str, Any] | None], checkpoint: str) -> StreamBatch:
    upserts = [obj for obj in items.values() if obj is not None]
    deletes = [key for key, obj in items.items() if obj is None]
    return StreamBatch(s.cluster, s.resource, upserts, deletes, checkpoint or None)
