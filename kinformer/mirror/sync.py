"""`Mirror`: many clusters mirrored into one `MirrorStorage`.

`async with Mirror(storage) as mirror: await mirror.add_cluster("prod", api_client)` runs,
per cluster, one `ResourceVersionInformer` per resource, all writing through one
`MirrorWriter` (one bounded queue, one writer task, one transaction per flush). A row's
key is (cluster, group, version, resource, namespace, name).

- `resources="*"` (the default) follows discovery (`kinformer.discovery`): every preferred,
  listable, watchable resource but events, re-discovered every `discovery_interval` and at
  once when an informer gets a 404 (a CRD deleted). A resource that appears gets an
  informer; one that disappears — its group-version answered without it, or its group is
  gone — has its informer stopped and its rows deleted (the cluster has none of it any
  more). A group-version whose discovery fails (503) keeps its informers. An explicit list
  (`Resource`s, or names that discovery resolves: "pods", "deployments.apps") is fixed.
- Each informer is seeded from the database (keys and RVs of its rows) and resumes its
  watch from the stored checkpoint (see rvinformer.py): a restart relists nothing after a
  short outage and, after a long one, rewrites only what changed and deletes what is gone.
- An unreachable cluster pauses: its reflectors back off (0.8 s doubling to 30 s) and keep
  retrying; its rows stay as they were. `health()` shows, per cluster, whether every
  informer synced and whether it can reach its server, and the writer's state.
- `remove_cluster(name, purge=True)` stops its informers and deletes its rows and
  checkpoints; `purge=False` keeps them (the queued writes get `flush_timeout` to land;
  whatever did not is caught up by the next `add_cluster`, which resumes from the checkpoint).
- At most `max_concurrent_lists` lists (initial lists and relists, all clusters together)
  run at once: the memory and database load of a start is that of k lists, not of every
  cluster at once (kubeadmiral's cap). Watches are not limited.
- A database outage while starting an informer (reading its seed) is retried with backoff.

Deliberately unlike Clusterpedia: an unhealthy cluster's informers are not stopped (their
backoff already paces them, and they resume from their RV without a relist), and a
database outage never drops queued writes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import anyio
import anyio.abc

from kinformer._logging import get_logger
from kinformer.clock import REAL_CLOCK, Clock
from kinformer.discovery import DEFAULT_EXCLUDE, ResourceDiscovery, discover, group_resource
from kinformer.errors import (
    ConnectionFailedError,
    InvalidArgumentError,
    KinformerError,
    LifecycleError,
    NotFoundError,
    StorageError,
)
from kinformer.informer import InformerHealth, exit_unwrapped
from kinformer.listwatch import ListPage, ListWatch
from kinformer.mirror.rvinformer import ResourceVersionInformer
from kinformer.mirror.storage import MirrorStorage
from kinformer.mirror.writer import MirrorWriter, WriterHealth, WriteStream
from kinformer.reflector import Reflector, ReflectorConfig, log_watch_error
from kinformer.resources import Resource

T = TypeVar("T")


class GatedListWatch(ListWatch):
    """A `ListWatch` whose lists each hold a slot of a shared semaphore from the first page
    to the last (watches are not gated)."""

    def __init__(self, *args: Any, gate: anyio.Semaphore, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.gate = gate

    async def list_pages(self, resource_version: str | None = "", *, resource_version_match: str | None = None,
                         limit: int | None = None) -> AsyncIterator[ListPage]:
        async with self.gate:
            async for page in super().list_pages(resource_version, resource_version_match=resource_version_match,
                                                 limit=limit):
                yield page


@dataclass(frozen=True, slots=True)
class ClusterHealth:
    name: str
    synced: bool
    """Every informer listed (or resumed) once and every change it saw is in the database."""
    reachable: bool
    """False while an informer or discovery cannot connect to the server (the cluster pauses)."""
    resources: dict[str, InformerHealth]
    discovery_error: BaseException | None = None
    failed_groups: dict[str, BaseException] = field(default_factory=dict)

    @property
    def healthy(self) -> bool:
        return self.synced and self.reachable and self.discovery_error is None and all(
            h.healthy for h in self.resources.values())

    def __bool__(self) -> bool:
        return self.healthy


@dataclass(frozen=True, slots=True)
class MirrorHealth:
    writer: WriterHealth
    clusters: dict[str, ClusterHealth]

    @property
    def healthy(self) -> bool:
        return self.writer.healthy and all(c.healthy for c in self.clusters.values())

    def __bool__(self) -> bool:
        return self.healthy


class _ResourceSync:
    def __init__(self, resource: Resource) -> None:
        self.resource = resource
        self.informer: ResourceVersionInformer | None = None
        self.stream: WriteStream | None = None
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()


class ClusterSync:
    """One cluster's informers (made by `Mirror.add_cluster`)."""

    def __init__(self, mirror: Mirror, name: str, api_client: Any, resources: str | Iterable[Resource | str],
                 namespace: str | None) -> None:
        self.mirror = mirror
        self.name = name
        self.api_client = api_client
        self.namespace = namespace
        self.dynamic = resources == "*"
        self._requested: list[Resource | str] = [] if isinstance(resources, str) else list(resources)
        self.syncs: dict[Resource, _ResourceSync] = {}
        self.discovery = ResourceDiscovery(api_client, exclude=mirror.exclude, cluster=name)
        self.discovery_error: BaseException | None = None
        self.scope = anyio.CancelScope()
        self.done = anyio.Event()
        self._discovered = anyio.Event()
        self._poke = anyio.Event()
        self._tg: anyio.abc.TaskGroup | None = None
        self.log = get_logger("kinformer.mirror", cluster=name)

    @property
    def resources(self) -> list[Resource]:
        return list(self.syncs)

    def informer(self, resource: Resource) -> ResourceVersionInformer | None:
        rs = self.syncs.get(resource)
        return rs.informer if rs is not None else None

    # -- running ----------------------------------------------------------------------------

    async def run(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        try:
            with self.scope:
                async with anyio.create_task_group() as tg:
                    self._tg = tg
                    task_status.started()
                    if self.dynamic:
                        await self._follow_discovery()
                    else:
                        for resource in await self._resolve():
                            self._start(resource)
                        self._discovered.set()
        finally:
            self._tg = None
            self.done.set()

    async def _resolve(self) -> list[Resource]:
        """The explicit resources, names resolved through discovery (retried until it answers)."""
        names = [r for r in self._requested if isinstance(r, str)]
        out = [r for r in self._requested if isinstance(r, Resource)]
        if not names:
            return out
        delay = 0.5
        while True:
            try:
                result = await discover(self.api_client, exclude=())
                break
            except KinformerError as error:
                self.discovery_error = error
                self.log.warning("discovery failed; retrying", error=str(error))
                await self.mirror.clock.sleep(delay)
                delay = min(delay * 2, 30.0)
        self.discovery_error = None
        by_name: dict[str, Resource] = {}
        for res in result.resources:
            by_name.setdefault(res.plural, res)
            by_name[group_resource(res)] = res
            if res.kind:
                by_name.setdefault(res.kind.lower(), res)
        for name in names:
            found = by_name.get(name.lower())
            if found is None:
                raise InvalidArgumentError(f"cluster {self.name!r} serves no resource {name!r}")
            out.append(found)
        return out

    async def _follow_discovery(self) -> None:
        mirror = self.mirror
        delay = 0.5
        while True:
            poke = self._poke = anyio.Event()
            try:
                change = await self.discovery.refresh()
            except KinformerError as error:
                self.discovery_error = error
                self.log.warning("discovery failed; keeping the current informers", error=str(error))
                await mirror.clock.sleep(delay)
                delay = min(delay * 2, 30.0)
                continue
            delay = 0.5
            self.discovery_error = None
            for resource in sorted(change.removed, key=str):
                await self._stop(resource, purge=True)
            for resource in sorted(change.added, key=str):
                self._start(resource)
            if change.added or change.removed:
                self.log.info("mirrored resources changed", added=sorted(map(str, change.added)),
                              removed=sorted(map(str, change.removed)), total=len(self.syncs))
            self._discovered.set()
            await self._sleep_or_poke(poke)

    async def _sleep_or_poke(self, poke: anyio.Event) -> None:
        async with anyio.create_task_group() as waiter:
            async def interval() -> None:
                await self.mirror.clock.sleep(self.mirror.discovery_interval)
                waiter.cancel_scope.cancel()

            waiter.start_soon(interval)
            await poke.wait()
            waiter.cancel_scope.cancel()

    def rediscover(self) -> None:
        """Run discovery now (an informer got a 404)."""
        self._poke.set()

    def _start(self, resource: Resource) -> None:
        assert self._tg is not None
        rs = _ResourceSync(resource)
        self.syncs[resource] = rs
        self._tg.start_soon(self._run_resource, rs)

    async def _run_resource(self, rs: _ResourceSync) -> None:
        mirror = self.mirror
        try:
            with rs.scope:
                known, checkpoint = await mirror._read_state(self.name, rs.resource)
                list_watch = GatedListWatch(self.api_client, rs.resource, self.namespace, gate=mirror.list_gate)
                informer: ResourceVersionInformer
                stream = mirror.writer.stream(self.name, rs.resource, lambda: informer.last_sync_resource_version,
                                              written_checkpoint=checkpoint)
                informer = ResourceVersionInformer(list_watch, stream, known=known, resume_resource_version=checkpoint,
                                                   config=mirror.reflector_config, clock=mirror.clock,
                                                   watch_error_handler=self._watch_error)
                rs.stream, rs.informer = stream, informer
                await informer.run()
        finally:
            rs.done.set()

    def _watch_error(self, reflector: Reflector, error: BaseException) -> None:
        log_watch_error(reflector, error)
        if self.dynamic and isinstance(error, NotFoundError):
            self.rediscover()

    async def _stop(self, resource: Resource, *, purge: bool) -> None:
        rs = self.syncs.get(resource)
        if rs is None:
            return
        rs.scope.cancel()
        await rs.done.wait()
        if rs.stream is not None:
            self.mirror.writer.discard([rs.stream])
        if purge:
            await self.mirror.writer.idle()
            removed = await self.mirror._retry_storage(lambda: self.mirror.storage.purge(self.name, resource))
            self.log.info("resource no longer served; informer stopped, rows deleted", resource=str(resource),
                          rows=removed)
        del self.syncs[resource]  # last: while it is listed, its rows may still be there

    # -- state ------------------------------------------------------------------------------

    def in_sync(self) -> bool:
        """Discovery answered once, every informer synced, and the database holds what they saw."""
        if not self._discovered.is_set():
            return False
        for rs in self.syncs.values():
            if rs.informer is None or rs.stream is None or not rs.informer.has_synced() or not rs.stream.in_sync():
                return False
        return True

    def health(self) -> ClusterHealth:
        resources = {str(r): rs.informer.health() for r, rs in self.syncs.items() if rs.informer is not None}
        unreachable = isinstance(self.discovery_error, ConnectionFailedError) or any(
            isinstance(h.last_error, ConnectionFailedError) for h in resources.values())
        return ClusterHealth(self.name, self.in_sync(), not unreachable, resources, self.discovery_error,
                             dict(self.discovery.failed))


class Mirror:
    """See the module docstring."""

    def __init__(
        self,
        storage: MirrorStorage,
        *,
        max_concurrent_lists: int = 4,
        max_pending: int = 10_000,
        discovery_interval: float = 60.0,
        exclude: Iterable[str] = DEFAULT_EXCLUDE,
        reflector_config: ReflectorConfig | None = None,
        checkpoint_interval: float = 1.0,
        retry_initial: float = 0.5,
        retry_cap: float = 30.0,
        flush_timeout: float = 10.0,
        clock: Clock = REAL_CLOCK,
    ) -> None:
        if max_concurrent_lists < 1:
            raise InvalidArgumentError(f"max_concurrent_lists must be at least 1, not {max_concurrent_lists}")
        self.storage = storage
        self.clock = clock
        self.discovery_interval = discovery_interval
        self.exclude = frozenset(exclude)
        self.reflector_config = reflector_config
        self.flush_timeout = flush_timeout
        self.retry_initial, self.retry_cap = retry_initial, retry_cap
        self.list_gate = anyio.Semaphore(max_concurrent_lists)
        self.writer = MirrorWriter(storage, max_pending=max_pending, checkpoint_interval=checkpoint_interval,
                                   retry_initial=retry_initial, retry_cap=retry_cap, clock=clock)
        self.clusters: dict[str, ClusterSync] = {}
        self._tg: anyio.abc.TaskGroup | None = None
        self.log = get_logger("kinformer.mirror")

    async def __aenter__(self) -> Mirror:
        if self._tg is not None:
            raise LifecycleError("the mirror is already running")
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        tg.start_soon(self.writer.run)
        return self

    async def __aexit__(self, *exc: Any) -> bool | None:
        tg, self._tg = self._tg, None
        assert tg is not None
        tg.cancel_scope.cancel()
        return await exit_unwrapped(tg, exc)

    async def add_cluster(self, name: str, api_client: Any,
                          resources: Literal["*"] | Iterable[Resource | str] = "*", *,
                          namespace: str | None = None) -> ClusterSync:
        """Start mirroring a cluster (see the module docstring); returns at once."""
        if self._tg is None:
            raise LifecycleError("add_cluster needs a running mirror: `async with Mirror(storage) as mirror:`")
        if name in self.clusters:
            raise InvalidArgumentError(f"cluster {name!r} is already mirrored")
        if not name:
            raise InvalidArgumentError("a cluster needs a name")
        cluster = ClusterSync(self, name, api_client, resources, namespace)
        self.clusters[name] = cluster
        await self._tg.start(cluster.run)
        return cluster

    async def remove_cluster(self, name: str, *, purge: bool = True) -> None:
        cluster = self.clusters.pop(name, None)
        if cluster is None:
            raise InvalidArgumentError(f"cluster {name!r} is not mirrored")
        cluster.scope.cancel()
        await cluster.done.wait()
        streams = [rs.stream for rs in cluster.syncs.values() if rs.stream is not None]
        if purge:
            self.writer.discard(streams)
            await self.writer.idle()
            removed = await self._retry_storage(lambda: self.storage.purge(name))
            self.log.info("cluster removed; rows deleted", cluster=name, rows=removed)
        else:
            with anyio.move_on_after(self.flush_timeout):
                await self.writer.wait_written(streams)
            self.writer.discard(streams)
            self.log.info("cluster removed; rows kept", cluster=name)

    def health(self) -> MirrorHealth:
        return MirrorHealth(self.writer.health(), {n: c.health() for n, c in self.clusters.items()})

    def in_sync(self) -> bool:
        return all(c.in_sync() for c in self.clusters.values())

    async def wait_for_sync(self, timeout: float | None = None) -> bool:
        """Until every cluster is `in_sync()`; False if `timeout` (seconds) ran out first."""
        with anyio.move_on_after(timeout):
            while not self.in_sync():
                await self.writer.wait_written()
                if not self.in_sync():
                    await anyio.sleep(0.01)
            return True
        return False

    # -- storage with retries ---------------------------------------------------------------

    async def _read_state(self, cluster: str, resource: Resource) -> tuple[dict[str, Any], str]:
        return await self._retry_storage(lambda: self.storage.read_state(cluster, resource))

    async def _retry_storage(self, call: Callable[[], Awaitable[T]]) -> T:
        delay = self.retry_initial
        while True:
            try:
                return await call()
            except StorageError as error:
                self.log.warning("database unavailable; retrying", error=str(error))
                await self.clock.sleep(delay)
                delay = min(delay * 2, self.retry_cap)
