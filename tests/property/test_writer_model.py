"""MirrorWriter against a model: per-key coalescing, a bound that blocks instead of dropping,
outages that lose nothing, checkpoints that never run ahead of their rows.

The storage is an in-memory table that can be "down". Random interleavings of writes (some
of which block on the full queue), successful and failed flushes must keep: at most
`max_pending` keys queued; a write to a new key blocks exactly when the queue is full; after
the storage comes back and the queue drains, every stream's rows are the last write of each
key (a delete leaves no row) and its checkpoint is its informer's RV at the last flush; a
checkpoint never covers a write that is not stored.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kinformer import Resource
from kinformer.errors import StorageUnavailableError
from kinformer.mirror.storage import StreamBatch
from kinformer.mirror.writer import MirrorWriter

KEYS = st.sampled_from([f"d/k{i}" for i in range(6)])
MAX = 3


class FakeStorage:
    def __init__(self) -> None:
        self.rows: dict[tuple[str, str], int] = {}
        self.checkpoints: dict[str, str] = {}
        self.down = False

    async def write(self, batches: Sequence[StreamBatch]) -> None:
        await asyncio.sleep(0)
        if self.down:
            raise StorageUnavailableError("down")
        for b in batches:
            for key in b.deletes:
                self.rows.pop((b.cluster, key), None)
            for obj in b.upserts:
                meta = obj["metadata"]
                self.rows[(b.cluster, f"{meta['namespace']}/{meta['name']}")] = int(meta["resourceVersion"])
            if b.resource_version is not None:
                self.checkpoints[b.cluster] = b.resource_version


class WriterMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.storage = FakeStorage()
        self.writer = MirrorWriter(self.storage, max_pending=MAX, checkpoint_interval=0)  # type: ignore[arg-type]
        self.rv = {"a": 0, "b": 0}  # each stream's informer RV: advanced after its write is queued
        self.streams = {c: self.writer.stream(c, Resource.configmaps, (lambda c=c: str(self.rv[c])))
                        for c in ("a", "b")}
        self.latest: dict[tuple[str, str], int | None] = {}
        self.blocked: list[tuple[asyncio.Task[None], str, str, int | None, int]] = []
        self.counter = 0

    def teardown(self) -> None:
        self.storage.down = False
        for _ in range(50):
            self._settle()
            if not self.blocked and self.writer.pending == 0:
                break
            self.loop.run_until_complete(self.writer._flush())
        self._settle()
        assert not self.blocked and self.writer.pending == 0
        self._stored_rows_are_the_latest()
        for cluster in ("a", "b"):
            if self.rv[cluster]:
                assert self.storage.checkpoints[cluster] == str(self.rv[cluster])
        self.loop.close()

    def _settle(self) -> None:
        for _ in range(4):
            self.loop.run_until_complete(asyncio.sleep(0))
        still = []
        for task, cluster, key, value, n in self.blocked:
            if task.done():
                task.result()
                self.latest[(cluster, key)] = value
                self.rv[cluster] = n  # the reflector moves its RV once the write is queued
            else:
                still.append((task, cluster, key, value, n))
        self.blocked = still

    def _stored_rows_are_the_latest(self) -> None:
        assert self.storage.rows == {k: v for k, v in self.latest.items() if v is not None}

    @rule(cluster=st.sampled_from(["a", "b"]), key=KEYS, delete=st.booleans())
    def write(self, cluster: str, key: str, delete: bool) -> None:
        if any(c == cluster for _, c, *_ in self.blocked):
            return  # an informer's writes are sequential: its next waits for this one
        self.counter += 1
        stream = self.streams[cluster]
        ns, name = key.split("/")
        obj: dict[str, Any] = {"metadata": {"namespace": ns, "name": name, "resourceVersion": str(self.counter)}}
        full = self.writer.pending >= MAX and key not in stream.pending
        coro = stream.on_delete(key, obj) if delete else stream.on_add(obj, False)
        task = self.loop.create_task(coro)
        self.blocked.append((task, cluster, key, None if delete else self.counter, self.counter))
        self._settle()
        assert task.done() != full, "a write to a new key blocks exactly when the queue is full"

    @rule()
    def flush(self) -> None:
        self.storage.down = False
        self.loop.run_until_complete(self.writer._flush())
        # The flush took the whole queue: every queued write is stored, and each checkpoint
        # is its informer's RV (which covers only queued writes).
        self._stored_rows_are_the_latest()
        for cluster, cp in self.storage.checkpoints.items():
            assert cp == str(self.rv[cluster])
        self._settle()

    @rule()
    def failed_flush(self) -> None:
        self.storage.down = True
        before = (dict(self.storage.rows), dict(self.storage.checkpoints), self.writer.pending)
        failed = False
        try:
            self.loop.run_until_complete(self.writer._flush())
        except StorageUnavailableError:
            failed = True
        assert failed or (before[2] == 0 and not any(s.checkpoint() != s.written_checkpoint
                                                    for s in self.streams.values()))
        assert (self.storage.rows, self.storage.checkpoints, self.writer.pending) == before
        self._settle()

    @invariant()
    def bounded(self) -> None:
        assert self.writer.pending <= MAX
        assert self.writer.pending == sum(len(s.pending) for s in self.streams.values())


TestWriterModel = WriterMachine.TestCase
TestWriterModel.settings = settings(max_examples=50, stateful_step_count=30, deadline=None)
