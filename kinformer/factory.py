"""`InformerFactory`: one shared informer per (resource, namespace, selectors, view).

Two requests for the same key get the same informer, so one watch serves every consumer.
`async with factory:` starts every informer in one task group; informers requested after
start are started at once; leaving the block stops them all, and an exception raised in the
block comes out as itself (not in an ExceptionGroup). `wait_for_cache_sync` returns a
result that is falsy unless everything synced; `health()` says why not.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import anyio

from kinformer.clock import REAL_CLOCK, Clock
from kinformer.errors import CacheSyncTimeoutError
from kinformer.fifo import Transform
from kinformer.informer import InformerHealth, SharedIndexInformer, exit_unwrapped
from kinformer.lister import Lister
from kinformer.listwatch import ListWatch
from kinformer.objects import KubeObject
from kinformer.reflector import ReflectorConfig, WatchErrorHandler
from kinformer.resources import Resource
from kinformer.store import IndexFunc

_UNSET: Any = object()
InformerKey = tuple[Resource, str | None, str | None, str | None, bool]


class SyncResult(dict[Resource, bool]):
    """Per resource, whether its informers synced; falsy unless all did."""

    def __bool__(self) -> bool:
        return all(self.values())


class InformerFactory:
    def __init__(
        self,
        api_client: Any,
        namespace: str | None = None,
        resync_period: float = 0.0,
        label_selector: str | None = None,
        field_selector: str | None = None,
        transform: Transform | None = None,
        *,
        metadata_only: bool = False,
        reflector_config: ReflectorConfig | None = None,
        clock: Clock = REAL_CLOCK,
        watch_error_handler: WatchErrorHandler | None = None,
    ) -> None:
        self.api_client = api_client
        self.namespace = namespace
        self.resync_period = resync_period
        self.label_selector = label_selector
        self.field_selector = field_selector
        self.transform = transform
        self.metadata_only = metadata_only
        self.reflector_config = reflector_config
        self.clock = clock
        self.watch_error_handler = watch_error_handler
        self._informers: dict[InformerKey, SharedIndexInformer[KubeObject]] = {}
        self._tg: anyio.abc.TaskGroup | None = None

    def informer(
        self,
        resource: Resource | str,
        *,
        namespace: str | None = _UNSET,
        label_selector: str | None = _UNSET,
        field_selector: str | None = _UNSET,
        metadata_only: bool | None = None,
        indexers: Mapping[str, IndexFunc] | None = None,
    ) -> SharedIndexInformer[KubeObject]:
        """The shared informer for this key, created (and started, if running) on first use."""
        if isinstance(resource, str):
            resource = Resource.builtin(resource)
        ns = self.namespace if namespace is _UNSET else namespace
        if not resource.namespaced:
            ns = None
        key: InformerKey = (
            resource, ns,
            self.label_selector if label_selector is _UNSET else label_selector,
            self.field_selector if field_selector is _UNSET else field_selector,
            self.metadata_only if metadata_only is None else metadata_only,
        )
        informer = self._informers.get(key)
        if informer is None:
            list_watch = ListWatch(self.api_client, resource, key[1], key[2], key[3], metadata_only=key[4])
            informer = SharedIndexInformer(list_watch, self.resync_period, indexers, self.transform,
                                           reflector_config=self.reflector_config, clock=self.clock,
                                           watch_error_handler=self.watch_error_handler)
            self._informers[key] = informer
            if self._tg is not None:
                self._tg.start_soon(informer.run)
        elif indexers:
            missing = {k: v for k, v in indexers.items() if k not in informer.indexer.get_indexers()}
            if missing:
                informer.add_indexers(missing)
        return informer

    def lister(self, resource: Resource | str, **kwargs: Any) -> Lister[KubeObject]:
        return Lister(self.informer(resource, **kwargs))

    @property
    def informers(self) -> dict[InformerKey, SharedIndexInformer[KubeObject]]:
        return dict(self._informers)

    def health(self) -> dict[InformerKey, InformerHealth]:
        """Each informer's `health()` (never blocks)."""
        return {key: informer.health() for key, informer in self._informers.items()}

    async def wait_for_cache_sync(self, timeout: float | None = None, *,
                                  raise_on_timeout: bool = False) -> SyncResult:
        """Wait for every informer; per resource, whether all its informers synced in time.

        The result is a dict that is falsy unless every informer synced, so
        `if not await factory.wait_for_cache_sync(10): ...` reads as it should. With
        `raise_on_timeout=True`, a timeout raises `CacheSyncTimeoutError` naming each resource
        that did not sync and its informer's last list/watch error.
        """
        results = SyncResult()
        with anyio.move_on_after(timeout):
            for informer in list(self._informers.values()):
                await informer.wait_for_sync()
        for key, informer in self._informers.items():
            results[key[0]] = results.get(key[0], True) and informer.has_synced()
        if raise_on_timeout and not results:
            failed = [(k[0], i.last_error) for k, i in self._informers.items() if not i.has_synced()]
            detail = "; ".join(f"{r}: {type(e).__name__}: {e}" if e is not None else f"{r}: no error yet"
                               for r, e in failed)
            raise CacheSyncTimeoutError(f"caches not synced after {timeout} s: {detail}")
        return results

    async def __aenter__(self) -> InformerFactory:
        self._tg = anyio.create_task_group()
        await self._tg.__aenter__()
        for informer in self._informers.values():
            self._tg.start_soon(informer.run)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        tg, self._tg = self._tg, None
        assert tg is not None
        tg.cancel_scope.cancel()
        return await exit_unwrapped(tg, exc)
