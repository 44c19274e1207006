"""The chaos soak: many writes with faults on a seeded schedule, and what must hold throughout.

    python -m tests.soak --events 1000000 [--seed 1] [--objects 20000]   # make soak
    (tests/integration/test_soak.py runs a CI-sized one, ≈50k events)

Against a FakeApiServer: creates, updates and deletes over `objects` keys in several
namespaces and two resources (configmaps, secrets), and on a seeded schedule: watch drops,
410 storms (compaction several times in a row), 429 with Retry-After, 500s on list and
watch, malformed lines, stalled watches (caught by the idle timeout), a full server restart
(same state, same port: connections refused meanwhile), and a slow handler. Informers: full
(configmaps and secrets), metadata-only (configmaps), and namespace-scoped with a label
selector (configmaps in ns-0 with tier=a).

At each checkpoint (writes paused) and at the end:
- every informer's cache equals the server's state for its scope, exactly (key → RV);
- each informer's handler-maintained mirror equals it too: so every object deleted at the
  server that a handler had seen was delivered to it as a delete or a tombstone (missed
  deletes = 0), and no update or add was lost;
- after the run, no task and no socket is left behind (counted before and after).
RSS is sampled every second; the report gives its max and its slope after warm-up.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

import anyio
import anyio.lowlevel

from kinformer import DeletedFinalStateUnknown, ListWatch, Resource, SharedIndexInformer
from kinformer.backoff import Backoff
from kinformer.clock import Clock
from kinformer.reflector import ReflectorConfig
from kinformer.selectors import LabelSelector
from kinformer.testing import FakeApiServer, eventually

NAMESPACES = 4
FAULTS = ("drop", "compact-storm", "429", "500-list", "500-watch", "malformed", "stall", "restart")


@dataclass
class SoakReport:
    events: int = 0
    seconds: float = 0.0
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULTS, 0))
    checkpoints: int = 0
    missed_deletes: int = 0
    deletes_delivered: int = 0
    tombstones_delivered: int = 0
    relists: int = 0
    rss_max_mib: float = 0.0
    rss_slope_mib_per_min: float = 0.0
    tasks_leaked: int = 0
    sockets_leaked: int = 0


class Mirror:
    """A handler-maintained copy of what an informer was told: key → resourceVersion."""

    def __init__(self, slow: bool = False) -> None:
        self.view: dict[str, str] = {}
        self.deletes = 0
        self.tombstones = 0
        self.slow = slow
        self.calls = 0

    @staticmethod
    def _key(obj: Any) -> str:
        meta = obj["metadata"]
        return f"{meta['namespace']}/{meta['name']}" if meta.get("namespace") else meta["name"]

    async def on_add(self, obj: Any, initial: bool) -> None:
        self.view[self._key(obj)] = obj["metadata"]["resourceVersion"]
        await self._maybe_slow()

    async def on_update(self, old: Any, new: Any) -> None:
        self.view[self._key(new)] = new["metadata"]["resourceVersion"]
        await self._maybe_slow()

    async def on_delete(self, obj: Any) -> None:
        if isinstance(obj, DeletedFinalStateUnknown):
            self.tombstones += 1
            self.view.pop(obj.key, None)
        else:
            self.deletes += 1
            self.view.pop(self._key(obj), None)
        await self._maybe_slow()

    async def _maybe_slow(self) -> None:
        self.calls += 1
        if self.slow and self.calls % 50 == 0:
            await asyncio.sleep(0.002)  # a slow handler: its queue backs up and coalesces


def _fast_backoff(clock: Clock) -> Backoff:
    return Backoff(initial=0.01, cap=0.2, clock=clock)


def _sockets() -> int:
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            if os.readlink(f"/proc/self/fd/{fd}").startswith("socket:"):
                count += 1
        except OSError:
            continue
    return count


def _rss_mib() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() / 2**20


class Scope:
    """One informer, its mirror, and which server objects it should hold."""

    def __init__(self, name: str, informer: SharedIndexInformer, resource: Resource, namespace: str | None,
                 selector: str | None, mirror: Mirror) -> None:
        self.name, self.informer, self.resource, self.mirror = name, informer, resource, mirror
        self.namespace = namespace
        self.selector = LabelSelector.parse(selector)

    def expected(self, server: FakeApiServer) -> dict[str, str]:
        return {k: o["metadata"]["resourceVersion"] for k, o in server.objects(self.resource).items()
                if (self.namespace is None or o["metadata"].get("namespace") == self.namespace)
                and self.selector.matches_object(o)}

    def cached(self) -> dict[str, str]:
        return {k: o["metadata"]["resourceVersion"] for k, o in self.informer.indexer.items()}

    def in_sync(self, server: FakeApiServer) -> bool:
        want = self.expected(server)
        return self.cached() == want and self.mirror.view == want


def _object(kind: Resource, i: int, rng: random.Random, value: int) -> dict[str, Any]:
    meta = {"name": f"o-{i:06d}", "namespace": f"ns-{i % NAMESPACES}",
            "labels": {"tier": rng.choice("abc"), "app": f"app-{i % 7}"}}
    data = {"v": str(value), "pad": "x" * rng.randrange(50, 400)}
    return {"metadata": meta, "data": data} if kind == Resource.configmaps else \
        {"metadata": meta, "type": "Opaque", "data": {"v": str(value)}}


async def run_soak(events: int, seed: int = 1, objects: int = 2000, fault_every: int = 2000,
                   checkpoint_every: int = 10_000, log: Callable[[str], None] = lambda s: None) -> SoakReport:
    report = SoakReport()
    rng = random.Random(seed)
    gc.collect()
    tasks_before, sockets_before = len(asyncio.all_tasks()), _sockets()
    started = time.monotonic()
    rss: list[tuple[float, float]] = []
    config = ReflectorConfig(backoff=_fast_backoff, idle_timeout=1.0, min_watch_timeout=30.0)

    server = FakeApiServer(bookmark_interval=0.2, history_size=5000)
    await server.start()
    client = server.api_client()
    try:
        def make(resource: Resource, namespace: str | None = None, selector: str | None = None,
                 metadata_only: bool = False) -> SharedIndexInformer:
            return SharedIndexInformer(ListWatch(client, resource, namespace, selector, metadata_only=metadata_only),
                                       reflector_config=config)

        scopes = [
            Scope("full configmaps", make(Resource.configmaps), Resource.configmaps, None, None, Mirror(slow=True)),
            Scope("full secrets", make(Resource.secrets), Resource.secrets, None, None, Mirror()),
            Scope("metadata-only configmaps", make(Resource.configmaps, metadata_only=True), Resource.configmaps,
                  None, None, Mirror()),
            Scope("ns-0 tier=a configmaps", make(Resource.configmaps, "ns-0", "tier=a"), Resource.configmaps,
                  "ns-0", "tier=a", Mirror()),
        ]
        for scope in scopes:
            m = scope.mirror
            scope.informer.add_event_handler(m.on_add, m.on_update, m.on_delete, max_pending=256)

        async def checkpoint(timeout: float = 60.0) -> None:
            await eventually(lambda: all(s.in_sync(server) for s in scopes), timeout)
            report.checkpoints += 1

        async def fault(kind: str) -> None:
            report.faults[kind] += 1
            if kind == "drop":
                server.drop_watches()
            elif kind == "compact-storm":
                for _ in range(3):
                    server.compact()
                    server.drop_watches()
                    await anyio.sleep(0.05)
            elif kind == "429":
                server.fail_next(2, 429, retry_after=1, verbs=["watch"])
                server.drop_watches()
            elif kind == "500-list":
                server.fail_next(2, 500, verbs=["list"])
                server.compact()
                server.drop_watches()
            elif kind == "500-watch":
                server.fail_next(2, 500, verbs=["watch"])
                server.drop_watches()
            elif kind == "malformed":
                server.malformed_lines(3)
            elif kind == "stall":
                server.stall_watches()
                await anyio.sleep(1.5)  # past the idle timeout: the watches are declared dead
                server.stall_watches(False)
            elif kind == "restart":
                await server.stop()
                await anyio.sleep(0.3)  # connections refused meanwhile
                await server.start()

        async def sample_rss() -> None:
            while True:
                rss.append((time.monotonic() - started, _rss_mib()))
                await anyio.sleep(1.0)

        async with anyio.create_task_group() as tg:
            for scope in scopes:
                tg.start_soon(scope.informer.run)
            tg.start_soon(sample_rss)
            live: dict[tuple[Resource, int], bool] = {}
            resources = (Resource.configmaps, Resource.secrets)
            for n in range(events):
                kind = resources[rng.random() < 0.3]
                i = rng.randrange(objects)
                name, ns = f"o-{i:06d}", f"ns-{i % NAMESPACES}"
                if live.get((kind, i)):
                    if rng.random() < 0.2:
                        server.delete(kind, name, ns)
                        live[(kind, i)] = False
                    else:
                        server.update(kind, {**server.get(kind, name, ns), **_object(kind, i, rng, n)})
                else:
                    server.create(kind, _object(kind, i, rng, n))
                    live[(kind, i)] = True
                report.events += 1
                if n % 64 == 0:
                    await anyio.lowlevel.checkpoint()  # let the informers run while the writes go on
                if n and n % fault_every == 0:
                    await fault(FAULTS[(n // fault_every) % len(FAULTS)] if rng.random() < 0.7
                                else rng.choice(FAULTS))
                if n and n % checkpoint_every == 0:
                    await checkpoint()
                    log(f"{n} events, checkpoint {report.checkpoints} ok, rss {_rss_mib():.0f} MiB")
            await checkpoint()
            tg.cancel_scope.cancel()
        for scope in scopes:
            report.deletes_delivered += scope.mirror.deletes
            report.tombstones_delivered += scope.mirror.tombstones
            report.missed_deletes += len(set(scope.mirror.view) - set(scope.expected(server)))
            stats = scope.informer.reflector.stats if scope.informer.reflector else None
            report.relists += stats.relists if stats else 0
    finally:
        await client.close()
        await server.stop()
    await anyio.sleep(0.1)  # let closed transports finish closing
    gc.collect()
    report.tasks_leaked = len(asyncio.all_tasks()) - tasks_before
    report.sockets_leaked = max(0, _sockets() - sockets_before)
    report.seconds = round(time.monotonic() - started, 1)
    report.rss_max_mib = round(max(r for _, r in rss), 1) if rss else 0.0
    warm = [(t, r) for t, r in rss if t >= report.seconds * 0.3]
    if len(warm) >= 2:
        mean_t = sum(t for t, _ in warm) / len(warm)
        mean_r = sum(r for _, r in warm) / len(warm)
        var = sum((t - mean_t) ** 2 for t, _ in warm)
        slope = sum((t - mean_t) * (r - mean_r) for t, r in warm) / var if var else 0.0
        report.rss_slope_mib_per_min = round(slope * 60, 2)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--fault-every", type=int, default=2000)
    parser.add_argument("--checkpoint-every", type=int, default=50_000)
    args = parser.parse_args()
    report = asyncio.run(run_soak(args.events, args.seed, args.objects, args.fault_every, args.checkpoint_every,
                                  log=lambda s: print(s, file=sys.stderr, flush=True)))
    print(json.dumps(asdict(report), indent=1))
    ok = report.missed_deletes == 0 and report.tasks_leaked == 0 and report.sockets_leaked == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
