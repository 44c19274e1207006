"""A reflector → DeltaFIFO → Indexer pipeline (the informer loop in miniature) for tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio

from kinformer import Delta, DeltaFIFO, DeltaType, Indexer, ListWatch, Reflector, ReflectorConfig, Resource
from kinformer.backoff import Backoff
from kinformer.clock import Clock
from kinformer.reflector import log_watch_error
from kinformer.testing import FakeApiServer, eventually


def fast_backoff(clock: Clock) -> Backoff:
    return Backoff(initial=0.001, cap=0.01, clock=clock)


class Pipeline:
    def __init__(self, server: FakeApiServer, client: Any, resource: Resource = Resource.configmaps,
                 namespace: str | None = None, clock: Clock | None = None, **config: Any) -> None:
        self.server = server
        self.resource = resource
        self.indexer = Indexer()
        self.fifo = DeltaFIFO(known_objects=self.indexer)
        self.list_watch = ListWatch(client, resource, namespace, **config.pop("list_watch", {}))
        config.setdefault("backoff", fast_backoff)
        kwargs: dict[str, Any] = {"clock": clock} if clock is not None else {}
        self.errors: list[BaseException] = []
        self.reflector = Reflector(self.list_watch, self.fifo, config=ReflectorConfig(**config),
                                   watch_error_handler=self._error, **kwargs)
        self.deltas: list[Delta] = []

    def _error(self, reflector: Reflector, error: BaseException) -> None:
        self.errors.append(error)
        log_watch_error(reflector, error)  # the default handler's log line, for caplog

    def _process(self, deltas: list[Delta], initial: bool) -> None:
        for d in deltas:
            self.deltas.append(d)
            if d.type is DeltaType.DELETED:
                self.indexer.delete(d.object)
            else:
                self.indexer.update(d.object)

    async def _consume(self) -> None:
        while True:
            await self.fifo.pop_batch(self._process)

    def state(self) -> dict[str, str]:
        return {k: o["metadata"]["resourceVersion"] for k, o in self.indexer.items()}

    def server_state(self) -> dict[str, str]:
        return {k: o["metadata"]["resourceVersion"] for k, o in self.server.objects(self.resource).items()}

    def in_sync(self) -> bool:
        return len(self.fifo) == 0 and self.state() == self.server_state()

    async def converge(self, timeout: float = 10.0) -> None:
        await eventually(self.in_sync, timeout)

    @asynccontextmanager
    async def running(self) -> AsyncIterator[Pipeline]:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self.reflector.run)
            tg.start_soon(self._consume)
            try:
                yield self
            finally:
                tg.cancel_scope.cancel()
