"""The chaos soak: many writes with faults on a seeded schedule, and what must hold throughout.

    python -m tests.soak --events 1000000 [--seed 1] [--objects 20000]   # make soak
    (tests/integration/test_soak.py runs a CI-sized one, ≈50k events)

Two processes. The *server process* (`python -m tests.soak --serve`, started by the soak) is a
FakeApiServer, the write generator and the fault schedule; the *soak process* holds only the
informers and the controller under test, so they have a core of their own and a restart is a
real one. Writes: creates, updates and deletes over `objects` keys in four namespaces and two
resources (configmaps, secrets). Faults, on a schedule drawn from the seed (every
`fault_every` writes): watch drops, 410 storms (compaction three times in a row), 429 with
Retry-After, 500s on list and watch, malformed lines, stalled watches (caught by the idle
timeout), and a full server restart: the server process saves its state (objects, the
resourceVersion counter, and the generator's own position and random state) and exits, the
soak starts a new one on the same port from that file (connections refused meanwhile; the new
server has no history, so every watch gets 410 and relists). The same seed gives the same
writes and the same faults at the same points, however the processes are scheduled. A slow
handler (full configmaps) lets its queue back up. Flow control: the soak asks for `STEP`
writes at a time and asks for the next step only once every informer has taken in the
resourceVersion the step before ended at (its reflector got there, by an event or a bookmark,
and its FIFO holds at most a step), waiting at most `PACE_LIMIT` seconds (a `pace_timeouts` in
the report). So the writer is at most two steps ahead of the slowest informer: without that,
a writer on its own core outruns the informers, the backlog sits unbounded in socket buffers
and FIFOs, and a checkpoint waits for minutes.

Control channel: JSON lines, the soak writes commands to the server process's stdin and reads
exactly one reply line per command, in order, from its stdout:
- `{"op": "run", "until": E}` → writes (and scheduled faults) until E writes were made in
  total, or a restart is due: `{"paused": n, "reason": "until" | "restart", "rv": ...}`.
  Outside a `run` nothing is written: that is "pause writes"; the next `run` resumes.
- `{"op": "state"}` → `{"state": {resource: {key: [rv, labels]}}, "rv": ...}`.
- `{"op": "fault", "kind": K}` → injects K now (counted like a scheduled one): `{"ok": K}`.
  The soak drops every watch this way before each checkpoint, so a checkpoint also checks a
  resume with nothing new to send.
- `{"op": "stats"}` → `{"events": n, "faults": {kind: count}}`.
- `{"op": "stop"}` → saves the state files, replies `{"stopped": n, "log_records": {...}}`
  (this process's aiohttp log records by logger and level: counted, not printed), exits 0.
Ready line at start: `{"url", "token", "events", "rv"}`. EOF on stdin stops it without saving.

Informers: full (configmaps and secrets), metadata-only (configmaps), and namespace-scoped with
a label selector (configmaps in ns-0 with tier=a), each with a handler-maintained mirror. A
`Controller` watches the full configmaps informer: its reconcile reads the object through a
`Lister` and records its resourceVersion (absent: recorded as deleted); every 151st call
raises (requeued with the rate limiter's backoff) and every 37th is slow.

At each checkpoint (writes paused) and at the end, against the server process's state:
- every informer's cache equals the server's state for its scope, exactly (key → RV);
- each mirror equals it too: so every object deleted at the server that a handler had seen
  was delivered to it as a delete or a tombstone (missed deletes = 0), and nothing was lost;
- after `controller.wait_idle(delayed=True)`, the controller's record equals the full
  configmaps state (every deleted key reconciled as absent).
A checkpoint that does not converge within its timeout fails the soak, naming per scope how
many keys are missing, extra or stale. After the run no task, socket or child process of
the soak process is left (counted before and after). RSS (both processes) is sampled every
second; the report gives the maxima and the soak process's slope after warm-up (the first
30% of the run). kinformer's log records are counted by logger and level, not printed.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import logging
import os
import random
import resource
import signal
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import anyio

from kinformer import DeletedFinalStateUnknown, ListWatch, Resource, SharedIndexInformer
from kinformer.backoff import Backoff
from kinformer.clock import Clock
from kinformer.controller import Controller, Request
from kinformer.lister import Lister
from kinformer.ratelimit import ItemExponentialFailureRateLimiter
from kinformer.reflector import ReflectorConfig
from kinformer.selectors import LabelSelector
from kinformer.testing import FakeApiServer, eventually

NAMESPACES = 4
FAULTS = ("drop", "compact-storm", "429", "500-list", "500-watch", "malformed", "stall", "restart")
RESOURCES = {"configmaps": Resource.configmaps, "secrets": Resource.secrets}
IDLE_TIMEOUT = 0.6  # the reflectors' watch idle timeout (bookmarks come every 0.2 s)
STEP = 1000
PACE_LIMIT = 30.0
RECONCILE_FAIL_EVERY = 151
RECONCILE_SLOW_EVERY = 37


def _rss_mib(pid: int | str = "self") -> float:
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * resource.getpagesize() / 2**20
    except OSError:
        return 0.0


class _CountingHandler(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        self.counts[f"{record.name} {record.levelname}"] += 1


# -- the server process ----------------------------------------------------------------------


def _object(kind: str, i: int, rng: random.Random, value: int) -> dict[str, Any]:
    meta = {"name": f"o-{i:06d}", "namespace": f"ns-{i % NAMESPACES}",
            "labels": {"tier": rng.choice("abc"), "app": f"app-{i % 7}"}}
    data = {"v": str(value), "pad": "x" * rng.randrange(50, 400)}
    return {"metadata": meta, "data": data} if kind == "configmaps" else \
        {"metadata": meta, "type": "Opaque", "data": {"v": str(value)}}


class Writer:
    """The seeded write generator and fault schedule; its whole position survives a restart."""

    def __init__(self, server: FakeApiServer, seed: int, objects: int, fault_every: int) -> None:
        self.server, self.objects, self.fault_every = server, objects, fault_every
        self.rng = random.Random(seed)
        self.events = 0
        self.live: set[tuple[str, int]] = set()
        self.faults: dict[str, int] = dict.fromkeys(FAULTS, 0)

    def dump(self) -> dict[str, Any]:
        version, internal, gauss = self.rng.getstate()
        return {"events": self.events, "live": sorted(self.live), "faults": self.faults,
                "rng": [version, list(internal), gauss]}

    def load(self, state: dict[str, Any]) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.events = state["events"]
        self.live = {(kind, i) for kind, i in state["live"]}
        self.faults = state["faults"]

    def write_one(self) -> None:
        rng, server = self.rng, self.server
        kind = "secrets" if rng.random() < 0.3 else "configmaps"
        i = rng.randrange(self.objects)
        if (kind, i) in self.live:
            if rng.random() < 0.2:
                server.delete(kind, f"o-{i:06d}", f"ns-{i % NAMESPACES}")
                self.live.discard((kind, i))
            else:
                current = server.get(kind, f"o-{i:06d}", f"ns-{i % NAMESPACES}")
                server.update(kind, {**current, **_object(kind, i, rng, self.events)})
        else:
            server.create(kind, _object(kind, i, rng, self.events))
            self.live.add((kind, i))
        self.events += 1

    async def run(self, until: int) -> str:
        """Write until `until` writes in all, or until a restart is due ("until" / "restart")."""
        while self.events < until:
            self.write_one()
            n = self.events - 1
            if n % 64 == 0:
                await asyncio.sleep(0)  # let the watches stream while the writes go on
            if n and n % self.fault_every == 0:
                kind = FAULTS[(n // self.fault_every) % len(FAULTS)] if self.rng.random() < 0.7 \
                    else self.rng.choice(FAULTS)
                if kind == "restart":
                    self.faults[kind] += 1
                    return "restart"
                await self.fault(kind)
        return "until"

    async def fault(self, kind: str) -> None:
        server = self.server
        self.faults[kind] += 1
        if kind == "drop":
            server.drop_watches()
        elif kind == "compact-storm":
            for _ in range(3):
                server.compact()
                server.drop_watches()
                await asyncio.sleep(0.05)
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
            await asyncio.sleep(IDLE_TIMEOUT * 1.5)  # past the idle timeout: the watches are declared dead
            server.stall_watches(False)
        else:
            raise ValueError(f"no such fault {kind!r} (a restart is the soak's to do)")


def _state_reply(server: FakeApiServer) -> dict[str, Any]:
    return {"state": {name: {k: [o["metadata"]["resourceVersion"], o["metadata"].get("labels") or {}]
                             for k, o in server.objects(res).items()}
                      for name, res in RESOURCES.items()},
            "rv": server.resource_version}


async def _serve(args: argparse.Namespace) -> None:
    # aiohttp logs a traceback when a client goes away while a response starts (the soak's
    # drops and idle timeouts do that all the time): counted and reported, not printed.
    logs = _CountingHandler()
    aiohttp_logger = logging.getLogger("aiohttp")
    aiohttp_logger.addHandler(logs)
    aiohttp_logger.propagate = False
    state_dir = Path(args.state_dir)
    server = FakeApiServer(bookmark_interval=0.2, history_size=5000, port=args.port)
    writer = Writer(server, args.seed, args.objects, args.fault_every)
    if args.resume:
        server.load_state(state_dir / "server.json")
        writer.load(json.loads((state_dir / "writer.json").read_text()))
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGINT, lambda: None)  # the soak's Ctrl-C is the soak's to handle
    reader = asyncio.StreamReader(limit=2**20)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)

    def reply(message: dict[str, Any]) -> None:
        sys.stdout.write(json.dumps(message) + "\n")
        sys.stdout.flush()

    await server.start()
    try:
        reply({"url": server.url, "token": server.token, "events": writer.events, "rv": server.resource_version})
        while line := await reader.readline():
            command = json.loads(line)
            op = command["op"]
            if op == "run":
                reason = await writer.run(int(command["until"]))
                reply({"paused": writer.events, "reason": reason, "rv": server.resource_version})
            elif op == "state":
                reply(_state_reply(server))
            elif op == "fault":
                try:
                    await writer.fault(command["kind"])
                except ValueError as exc:
                    reply({"error": str(exc)})
                else:
                    reply({"ok": command["kind"]})
            elif op == "stats":
                reply({"events": writer.events, "faults": writer.faults})
            elif op == "stop":
                await server.stop()
                server.save_state(state_dir / "server.json")
                (state_dir / "writer.json").write_text(json.dumps(writer.dump()))
                reply({"stopped": writer.events, "log_records": logs.counts})
                return
            else:
                reply({"error": f"unknown op {op!r}"})
    finally:
        await server.stop()


class ServerProcess:
    """The soak's handle on the server process: start, command, restart, stop."""

    def __init__(self, seed: int, objects: int, fault_every: int, state_dir: str) -> None:
        self.argv = [sys.executable, "-m", "tests.soak", "--serve", "--seed", str(seed), "--objects", str(objects),
                     "--fault-every", str(fault_every), "--state-dir", state_dir]
        self.proc: asyncio.subprocess.Process | None = None
        self.port = 0
        self.url = self.token = ""
        self.restarts = 0
        self.log_records: Counter[str] = Counter()
        """The aiohttp log records of every server process so far (each reports them at its stop)."""

    async def start(self, resume: bool = False) -> None:
        argv = [*self.argv, "--port", str(self.port), *(["--resume"] if resume else [])]
        self.proc = await asyncio.create_subprocess_exec(*argv, stdin=asyncio.subprocess.PIPE,
                                                         stdout=asyncio.subprocess.PIPE, limit=2**27)
        ready = await self._read(60.0)
        self.url, self.token = ready["url"], ready["token"]
        self.port = int(self.url.rsplit(":", 1)[1])

    async def _read(self, timeout: float) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        with anyio.fail_after(timeout):
            line = await self.proc.stdout.readline()
        if not line:
            raise SoakFailure(f"the server process exited (status {await self.proc.wait()})")
        message: dict[str, Any] = json.loads(line)
        if "error" in message:
            raise SoakFailure(message["error"])
        return message

    async def request(self, command: dict[str, Any], timeout: float = 600.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(command).encode() + b"\n")
        await self.proc.stdin.drain()
        return await self._read(timeout)

    async def restart(self) -> None:
        """Stop it (state saved), let connections be refused for a moment, start a new one."""
        await self.stop()
        await anyio.sleep(0.2)  # the outage: clients see connection refused meanwhile
        await self.start(resume=True)
        self.restarts += 1

    async def stop(self) -> None:
        self.log_records.update((await self.request({"op": "stop"}))["log_records"])
        assert self.proc is not None
        with anyio.fail_after(30):
            await self.proc.wait()
        self.proc = None

    async def kill(self) -> None:
        """Make sure no process is left (after a failure)."""
        if self.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                self.proc.kill()
            await self.proc.wait()
            self.proc = None

    def api_client(self) -> Any:
        """A `kubernetes_asyncio` client for the server process (the same across restarts)."""
        from kubernetes_asyncio.client import ApiClient, Configuration

        config = Configuration(host=self.url)
        config.api_key = {"BearerToken": self.token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
        return ApiClient(config)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


# -- the soak process ------------------------------------------------------------------------


class SoakFailure(AssertionError):
    """A check of the soak did not hold."""


@dataclass
class SoakReport:
    events: int = 0
    seconds: float = 0.0
    cpu_seconds: float = 0.0
    """CPU time of the soak process (the informers and the controller), not the server's."""
    faults: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FAULTS, 0))
    server_restarts: int = 0
    checkpoints: int = 0
    pace_timeouts: int = 0
    missed_deletes: int = 0
    deletes_delivered: int = 0
    tombstones_delivered: int = 0
    relists: int = 0
    reconciles: int = 0
    reconcile_errors: int = 0
    reconcile_results: dict[str, int] = field(default_factory=dict)
    reconciles_slow: int = 0
    rss_max_mib: float = 0.0
    rss_slope_mib_per_min: float = 0.0
    rss_at_checkpoints_mib: list[float] = field(default_factory=list)
    server_rss_max_mib: float = 0.0
    log_records: dict[str, int] = field(default_factory=dict)
    tasks_leaked: int = 0
    sockets_leaked: int = 0
    processes_leaked: int = 0


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


class Recorder:
    """The controller's reconcile: records what the lister holds for each key it is given."""

    def __init__(self, lister: Lister[Any]) -> None:
        self.lister = lister
        self.record: dict[str, str | None] = {}
        self.calls = self.failed = self.slow = 0

    async def reconcile(self, request: Request) -> None:
        self.calls += 1
        if self.calls % RECONCILE_FAIL_EVERY == 0:
            self.failed += 1
            raise RuntimeError("injected reconcile failure")
        if self.calls % RECONCILE_SLOW_EVERY == 0:
            self.slow += 1
            await asyncio.sleep(0.002)  # a slow reconcile: the queue backs up, keys coalesce
        obj = self.lister.get(request.name, request.namespace)
        self.record[request.key] = obj["metadata"]["resourceVersion"] if obj is not None else None

    def present(self) -> dict[str, str]:
        return {k: rv for k, rv in self.record.items() if rv is not None}


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


def _child_processes() -> int:
    me, count = str(os.getpid()), 0
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat") as fh:
                # The command name (field 2) may hold spaces; the parent pid is the 2nd field after it.
                if fh.read().rsplit(")", 1)[1].split()[1] == me:
                    count += 1
        except (OSError, IndexError):
            continue
    return count


def _diff(want: dict[str, str], have: dict[str, str] | dict[str, str | None]) -> str:
    missing = len(want.keys() - have.keys())
    extra = len(have.keys() - want.keys())
    stale = sum(1 for k, rv in want.items() if k in have and have[k] != rv)
    return f"{missing} missing, {extra} extra, {stale} stale"


class Scope:
    """One informer, its mirror, and which server objects it should hold."""

    def __init__(self, name: str, informer: SharedIndexInformer, resource: str, namespace: str | None,
                 selector: str | None, mirror: Mirror) -> None:
        self.name, self.informer, self.resource, self.mirror = name, informer, resource, mirror
        self.namespace = namespace
        self.selector = LabelSelector.parse(selector)

    def expected(self, state: dict[str, dict[str, list[Any]]]) -> dict[str, str]:
        return {k: rv for k, (rv, labels) in state[self.resource].items()
                if (self.namespace is None or k.startswith(f"{self.namespace}/")) and self.selector.matches(labels)}

    def cached(self) -> dict[str, str]:
        return {k: o["metadata"]["resourceVersion"] for k, o in self.informer.indexer.items()}

    def in_sync(self, want: dict[str, str]) -> bool:
        return self.cached() == want and self.mirror.view == want


def _slope_per_min(samples: list[tuple[float, float]]) -> float:
    if len(samples) < 2:
        return 0.0
    mean_t = sum(t for t, _ in samples) / len(samples)
    mean_r = sum(r for _, r in samples) / len(samples)
    var = sum((t - mean_t) ** 2 for t, _ in samples)
    return sum((t - mean_t) * (r - mean_r) for t, r in samples) / var * 60 if var else 0.0


async def run_soak(events: int, seed: int = 1, objects: int = 2000, fault_every: int = 2000,
                   checkpoint_every: int = 10_000, checkpoint_timeout: float = 60.0,
                   log: Callable[[str], None] = lambda s: None) -> SoakReport:
    report = SoakReport()
    logs = _CountingHandler()
    kinformer_logger = logging.getLogger("kinformer")
    kinformer_logger.addHandler(logs)
    saved_propagate, kinformer_logger.propagate = kinformer_logger.propagate, False
    gc.collect()
    tasks_before, sockets_before, children_before = len(asyncio.all_tasks()), _sockets(), _child_processes()
    started, cpu_started = time.monotonic(), time.process_time()
    rss: list[tuple[float, float]] = []
    server_rss = 0.0
    config = ReflectorConfig(backoff=_fast_backoff, idle_timeout=IDLE_TIMEOUT, min_watch_timeout=30.0)
    with tempfile.TemporaryDirectory(prefix="kinformer-soak-") as state_dir:
        child = ServerProcess(seed, objects, fault_every, state_dir)
        client: Any = None
        try:
            await child.start()
            client = child.api_client()

            def make(resource: str, namespace: str | None = None, selector: str | None = None,
                     metadata_only: bool = False) -> SharedIndexInformer:
                return SharedIndexInformer(ListWatch(client, RESOURCES[resource], namespace, selector,
                                                     metadata_only=metadata_only), reflector_config=config)

            scopes = [
                Scope("full configmaps", make("configmaps"), "configmaps", None, None, Mirror(slow=True)),
                Scope("full secrets", make("secrets"), "secrets", None, None, Mirror()),
                Scope("metadata-only configmaps", make("configmaps", metadata_only=True), "configmaps",
                      None, None, Mirror()),
                Scope("ns-0 tier=a configmaps", make("configmaps", "ns-0", "tier=a"), "configmaps",
                      "ns-0", "tier=a", Mirror()),
            ]
            for scope in scopes:
                m = scope.mirror
                scope.informer.add_event_handler(m.on_add, m.on_update, m.on_delete, max_pending=256)
            recorder = Recorder(Lister(scopes[0].informer))
            controller = Controller("soak-recorder", recorder.reconcile, workers=4,
                                    rate_limiter=ItemExponentialFailureRateLimiter(0.005, 0.2))
            controller.watches(scopes[0].informer)

            async def checkpoint() -> None:
                await child.request({"op": "fault", "kind": "drop"})
                state = (await child.request({"op": "state"}))["state"]
                wants = [scope.expected(state) for scope in scopes]
                try:
                    await eventually(lambda: all(s.in_sync(w) for s, w in zip(scopes, wants, strict=True)),
                                     checkpoint_timeout)
                except TimeoutError:
                    raise SoakFailure("checkpoint did not converge: " + "; ".join(
                        f"{s.name}: cache {_diff(w, s.cached())}, mirror {_diff(w, s.mirror.view)}"
                        for s, w in zip(scopes, wants, strict=True))) from None
                try:
                    await controller.wait_idle(checkpoint_timeout, delayed=True)
                except TimeoutError:
                    raise SoakFailure(f"the controller did not settle: {controller.stats()}") from None
                if recorder.present() != wants[0]:
                    raise SoakFailure(f"controller record: {_diff(wants[0], recorder.record)}")
                report.checkpoints += 1
                report.rss_at_checkpoints_mib.append(round(_rss_mib(), 1))

            def caught_up(rv: int) -> bool:
                for scope in scopes:
                    seen = scope.informer.last_sync_resource_version
                    if not seen or int(seen) < rv or scope.informer.stats().queued > STEP:
                        return False
                return True

            async def pace(rv: int) -> None:
                """Let the writer run at most a step ahead of what every informer has taken in."""
                try:
                    await eventually(lambda: caught_up(rv), PACE_LIMIT, interval=0.005)
                except TimeoutError:
                    report.pace_timeouts += 1

            async def sample_rss() -> None:
                nonlocal server_rss
                while True:
                    rss.append((time.monotonic() - started, _rss_mib()))
                    if child.pid is not None:
                        server_rss = max(server_rss, _rss_mib(child.pid))
                    await anyio.sleep(1.0)

            async with anyio.create_task_group() as tg:
                for scope in scopes:
                    tg.start_soon(scope.informer.run)
                tg.start_soon(controller.run)
                tg.start_soon(sample_rss)
                behind: int | None = None
                for target in [*range(checkpoint_every, events, checkpoint_every), events]:
                    written = (await child.request({"op": "stats"}))["events"]
                    while written < target:
                        step = min(written + STEP, target)
                        while (paused := await child.request({"op": "run", "until": step}))["reason"] == "restart":
                            await child.restart()
                        written = paused["paused"]
                        if behind is not None:
                            await pace(behind)
                        behind = int(paused["rv"])
                    writing = time.monotonic() - started
                    await checkpoint()
                    log(f"{target} events, checkpoint {report.checkpoints} ok at {writing:.1f}+"
                        f"{time.monotonic() - started - writing:.1f} s (cpu {time.process_time() - cpu_started:.1f}), "
                        f"{report.pace_timeouts} pace timeouts, rss {_rss_mib():.0f} MiB, "
                        f"server rss {server_rss:.0f} MiB")
                tg.cancel_scope.cancel()
            stats = await child.request({"op": "stats"})
            report.events, report.faults = stats["events"], stats["faults"]
            report.server_restarts = child.restarts
            final = (await child.request({"op": "state"}))["state"]
            for scope in scopes:
                report.deletes_delivered += scope.mirror.deletes
                report.tombstones_delivered += scope.mirror.tombstones
                report.missed_deletes += len(set(scope.mirror.view) - set(scope.expected(final)))
                reflector_stats = scope.informer.reflector.stats if scope.informer.reflector else None
                report.relists += reflector_stats.relists if reflector_stats else 0
            cstats = controller.stats()
            report.reconciles, report.reconcile_errors = recorder.calls, cstats.errors
            report.reconcile_results, report.reconciles_slow = cstats.results, recorder.slow
            await child.stop()
        finally:
            if client is not None:
                await client.close()
            await child.kill()
    await anyio.sleep(0.1)  # let closed transports finish closing
    gc.collect()
    kinformer_logger.removeHandler(logs)
    kinformer_logger.propagate = saved_propagate
    server_logs = {f"server {k}": n for k, n in child.log_records.items()}
    report.log_records = dict(sorted({**logs.counts, **server_logs}.items()))
    report.tasks_leaked = len(asyncio.all_tasks()) - tasks_before
    report.sockets_leaked = max(0, _sockets() - sockets_before)
    report.processes_leaked = max(0, _child_processes() - children_before)
    report.seconds = round(time.monotonic() - started, 1)
    report.cpu_seconds = round(time.process_time() - cpu_started, 1)
    report.rss_max_mib = round(max([r for _, r in rss] + report.rss_at_checkpoints_mib, default=0.0), 1)
    report.rss_slope_mib_per_min = round(_slope_per_min([(t, r) for t, r in rss if t >= report.seconds * 0.3]), 2)
    report.server_rss_max_mib = round(server_rss, 1)
    return report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--objects", type=int, default=20_000)
    parser.add_argument("--fault-every", type=int, default=2000)
    parser.add_argument("--checkpoint-every", type=int, default=50_000)
    parser.add_argument("--out", help="also write the report (with the date and arguments) as JSON here; "
                        "benchmarks/results/soak.json is rendered into benchmarks/RESULTS.md")
    parser.add_argument("--serve", action="store_true", help="be the server process (started by the soak)")
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--state-dir", help=argparse.SUPPRESS)
    parser.add_argument("--resume", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        asyncio.run(_serve(args))
        return
    report = asyncio.run(run_soak(args.events, args.seed, args.objects, args.fault_every, args.checkpoint_every,
                                  log=lambda s: print(s, file=sys.stderr, flush=True)))
    print(json.dumps(asdict(report), indent=1))
    if args.out:
        record = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                  "arguments": {k: getattr(args, k) for k in ("events", "seed", "objects", "fault_every",
                                                              "checkpoint_every")},
                  "report": asdict(report)}
        with open(args.out, "w") as fh:
            json.dump(record, fh, indent=1)
    ok = report.missed_deletes == 0 and report.tasks_leaked == 0 and report.sockets_leaked == 0 \
        and report.processes_leaked == 0
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
