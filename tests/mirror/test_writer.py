"""MirrorWriter: retry timing on an outage, one refused object costs only itself."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import anyio
import pytest

from kinformer import Resource
from kinformer.errors import InvalidArgumentError, StorageError, StorageUnavailableError
from kinformer.mirror.storage import StreamBatch
from kinformer.mirror.writer import MirrorWriter
from kinformer.testing import FakeClock, eventually


class Storage:
    def __init__(self) -> None:
        self.rows: dict[str, int] = {}
        self.checkpoint = ""
        self.down = 0
        self.refuse = ""

    async def write(self, batches: Sequence[StreamBatch]) -> None:
        if self.down:
            self.down -= 1
            raise StorageUnavailableError("connection refused")
        for b in batches:
            if any(o["metadata"]["name"] == self.refuse for o in b.upserts):
                raise StorageError("invalid input")
        for b in batches:
            for o in b.upserts:
                self.rows[o["metadata"]["name"]] = int(o["metadata"]["resourceVersion"])
            if b.resource_version:
                self.checkpoint = b.resource_version


def obj(name: str, rv: int) -> dict[str, Any]:
    return {"metadata": {"name": name, "namespace": "", "resourceVersion": str(rv)}}


async def test_an_outage_is_retried_with_backoff_and_loses_nothing() -> None:
    storage, clock = Storage(), FakeClock()
    storage.down = 3
    writer = MirrorWriter(storage, clock=clock, checkpoint_interval=0)  # type: ignore[arg-type]
    stream = writer.stream("a", Resource.nodes, lambda: "9")
    async with anyio.create_task_group() as tg:
        tg.start_soon(writer.run)
        await stream.on_add(obj("n1", 5), True)
        await clock.wait_for_sleepers()
        assert not writer.health().healthy and writer.health().pending == 1
        for _ in range(3):
            await clock.wait_for_sleepers()
            clock.advance(60)
        await eventually(lambda: storage.rows == {"n1": 5})
        assert clock.sleeps == [0.5, 1.0, 2.0] and writer.health().healthy and storage.checkpoint == "9"
        tg.cancel_scope.cancel()


async def test_a_refused_object_is_skipped_and_the_rest_written(caplog: pytest.LogCaptureFixture) -> None:
    storage = Storage()
    storage.refuse = "bad"
    writer = MirrorWriter(storage, checkpoint_interval=0)  # type: ignore[arg-type]
    stream = writer.stream("a", Resource.nodes, lambda: "4")
    for i, name in enumerate(["n1", "bad", "n2"]):
        await stream.on_add(obj(name, i + 1), True)
    await writer._flush()
    assert storage.rows == {"n1": 1, "n2": 3} and storage.checkpoint == "4"
    assert writer.stats.rejected == 1 and writer.pending == 0
    assert "key=bad" in caplog.text and "resourceVersion" not in caplog.text


def test_max_pending_is_validated() -> None:
    with pytest.raises(InvalidArgumentError):
        MirrorWriter(Storage(), max_pending=0)  # type: ignore[arg-type]
