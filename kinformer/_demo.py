"""`kinformer demo`: informers against an embedded FakeApiServer under live churn.

Seeds namespaces, deployments and pods, starts one informer per kind, and churns pods at
`--rate` writes/s (updates, and now and then a delete plus a create). On a clock, so that a
short run shows everything the informers are built for:

- every `--drop-every` seconds (default 3) the server drops every watch: the informers
  resume from their last resourceVersion, with no relist;
- every `--compact-every` seconds (default 8) it compacts its history, after a one-second
  partition (watches stalled while writes go on): the resume is refused with 410 Gone, so each
  informer relists exactly once;
- two handlers watch pods: a fast one, and a slow one (`--slow-ms` per event, a queue of 64)
  that falls behind at once, so its queue coalesces per pod instead of growing.

So `--duration 20` shows five drops, two compactions with their relists, and coalescing. The
screen explains its columns (a legend). Output: on a terminal a live table with the latest
log lines under it; otherwise (or with `--plain`) log lines as they happen, then the final
table, printed once. The run ends by checking that every cache equals the server (exit 1 if
not). The demo is an application: it, not the library, decides where logs go (structlog,
configured here; kinformer's loggers follow an application's structlog configuration).
"""

from __future__ import annotations

import argparse
import contextlib
import random
import sys
import time
from collections import deque
from collections.abc import MutableMapping
from typing import Any

import anyio
import structlog

from kinformer._logging import key_values
from kinformer.errors import MissingExtraError
from kinformer.factory import InformerFactory
from kinformer.resources import Resource
from kinformer.testing.clock import eventually
from kinformer.testing.generators import make_deployment, make_namespace, make_pod
from kinformer.testing.server import FakeApiServer

try:
    from rich.console import Console, Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text
except ImportError as exc:
    raise MissingExtraError("kinformer demo", "rich", "demo") from exc

RESOURCES = (Resource.namespaces, Resource.deployments, Resource.pods)
FAST_MAX_PENDING = 1024  # add_event_handler's default
SLOW_MAX_PENDING = 64

LEGEND = (
    ("watches", "watch requests opened; a dropped watch is resumed from the last resourceVersion, no relist"),
    ("410s", "resumes refused with 410 Gone because the server compacted its history"),
    ("relists", "full LISTs after the first one: one per 410, never one per dropped watch"),
    ("delivered", "notifications the handler has been called with"),
    ("backlog", "notifications waiting in the handler's own queue (one queue per handler, so a slow "
                "handler never delays the others); peak: the largest backlog so far"),
    ("coalescing", "the queue's state once backlog reaches max_pending: it keeps one pending notification "
                   "per pod, with the latest state, so memory is bounded by the number of pods, not of "
                   "events (ok: first in, first out)"),
    ("merged", "notifications folded into one already pending for the same pod while coalescing: the "
               "handler skips intermediate states, never a delete"),
)


def _legend() -> Table:
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold", no_wrap=True)
    grid.add_column()
    for term, text in LEGEND:
        grid.add_row(term, text)
    return grid


class Schedule:
    """The churn's faults on a clock: `due(elapsed)` returns the actions whose time has come.

    - "drop" every `drop_every` seconds: every watch is aborted.
    - "compact" every `compact_every` seconds, preceded by a "stall" `stall` seconds earlier:
      watches stay open but the server sends nothing (a network partition), writes go on,
      then the server forgets its history and drops the watches. Each informer resumes from
      a resourceVersion older than the history now kept: 410 Gone, and it relists once. (An
      informer that is up to date when history is compacted resumes without a 410, as against
      a real API server; the partition is what makes the compaction matter.)
    A drop that falls in a stall is skipped: the compaction that ends the stall drops anyway.
    """

    def __init__(self, drop_every: float, compact_every: float, stall: float = 1.0) -> None:
        self.stall = min(stall, compact_every / 2)
        self._every = {"stall": compact_every, "compact": compact_every, "drop": drop_every}
        self._next = {"stall": compact_every - self.stall, "compact": compact_every, "drop": drop_every}
        self.stalled = False

    def due(self, elapsed: float) -> list[str]:
        actions: list[str] = []
        for action, every in self._every.items():  # stall before compact: both may fall due at once
            if elapsed >= self._next[action]:
                while self._next[action] <= elapsed:
                    self._next[action] += every
                actions.append(action)
        if "stall" in actions:
            self.stalled = True
        if "compact" in actions:
            self.stalled = False
        elif self.stalled and "drop" in actions:
            actions.remove("drop")
        if "compact" in actions and "drop" in actions:
            actions.remove("drop")
        return actions


class LogSink:
    """The demo's log output: one line per event, in a rolling window (live) or printed (plain).

    The last structlog processor; it renders and then drops the event, so nothing else prints.
    """

    def __init__(self, plain: bool, console: Console) -> None:
        self.plain, self.console = plain, console
        self.lines: deque[str] = deque(maxlen=6)

    def __call__(self, _: Any, level: str, event: MutableMapping[str, Any]) -> Any:
        message = str(event.pop("event", ""))
        level = str(event.pop("level", level))
        exc_info = event.pop("exc_info", None)
        if exc_info:
            exc = sys.exc_info()[1] if exc_info is True else exc_info
            event["error"] = f"{type(exc).__name__}: {exc}"
        line = f"{time.strftime('%H:%M:%S')} {level:<7} {message} {key_values(event)}".rstrip()
        if self.plain:
            self.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            self.lines.append(line)
        raise structlog.DropEvent


def _configure_logging(sink: LogSink) -> None:
    structlog.configure(
        processors=[structlog.processors.add_log_level, sink],
        wrapper_class=structlog.make_filtering_bound_logger(20),  # info and above
        cache_logger_on_first_use=True,
    )


async def _churn(server: FakeApiServer, args: argparse.Namespace, counters: dict[str, int],
                 start: float) -> None:
    rng = random.Random(7)
    log = structlog.get_logger("kinformer.demo")
    schedule = Schedule(args.drop_every, args.compact_every)
    n = args.pods
    batch = max(1, int(args.rate / 20))
    try:
        while True:
            for action in schedule.due(time.monotonic() - start):
                if action == "stall":
                    server.stall_watches(True)
                    log.info("demo: partition: watches get nothing for a while, writes go on", seconds=schedule.stall)
                elif action == "compact":
                    server.compact()
                    server.stall_watches(False)
                    server.drop_watches()
                    counters["compactions"] += 1
                    log.info("demo: history compacted, partition over: each informer's resume gets 410 Gone, "
                             "it relists once")
                else:
                    server.drop_watches()
                    counters["drops"] += 1
                    log.info("demo: dropped every watch: each informer resumes from its resourceVersion")
            for _ in range(batch):
                counters["writes"] += 1
                pods = list(server.objects("pods").values())
                if counters["writes"] % 50 == 0:
                    victim = rng.choice(pods)
                    server.delete("pods", victim["metadata"]["name"], victim["metadata"]["namespace"])
                    server.create("pods", make_pod(n, f"team-{n % args.namespaces}"))
                    n += 1
                else:
                    pod = rng.choice(pods)
                    status = {**pod["status"], "phase": rng.choice(["Running", "Running", "Pending", "Succeeded"])}
                    server.update("pods", {**pod, "status": status})
            await anyio.sleep(batch / args.rate)  # pacing the writes, not waiting for anything
    finally:
        server.stall_watches(False)  # a run may end in a partition: let the informers catch up


def _view(informers: dict[Resource, Any], server: FakeApiServer, rates: dict[Resource, float],
          handlers: dict[str, Any], counters: dict[str, int], elapsed: float, slow_ms: float) -> Table:
    title = (f"kinformer demo: {elapsed:.0f} s, {counters['writes']} writes, "
             f"{counters['drops']} watch drops, {counters['compactions']} compactions")
    caches = Table(title=title, title_justify="left")
    for col in ("informer", "cached", "server", "events/s", "watches", "410s", "relists", "synced"):
        caches.add_column(col, justify="left" if col == "informer" else "right")
    for res, inf in informers.items():
        rs = inf.reflector.stats if inf.reflector else None
        caches.add_row(res.plural, str(len(inf.indexer)), str(len(server.objects(res))), f"{rates.get(res, 0):.0f}",
                       str(rs.watches if rs else 0), str(rs.expired if rs else 0), str(rs.relists if rs else 0),
                       "yes" if inf.has_synced() else "no")
    queues = Table(title=f"pod handlers, each with its own bounded queue (slow: {slow_ms:g} ms per event)",
                   title_justify="left")
    for col in ("handler", "max_pending", "delivered", "backlog", "peak", "merged", "state"):
        queues.add_column(col, justify="left" if col in ("handler", "state") else "right")
    for name, (reg, max_pending) in handlers.items():
        st = reg.stats()
        queues.add_row(name, str(max_pending), str(st.delivered), str(st.backlog), str(st.peak_backlog),
                       str(st.coalesced), "coalescing" if st.coalescing else "ok")
    outer = Table.grid()
    outer.add_row(caches)
    outer.add_row(queues)
    return outer


def _totals(informers: dict[Resource, Any], handlers: dict[str, Any], counters: dict[str, int]) -> str:
    stats = [inf.reflector.stats for inf in informers.values() if inf.reflector]
    merged = sum(reg.stats().coalesced for reg, _ in handlers.values())
    pods = informers[Resource.pods].reflector
    return (f"totals: writes={counters['writes']} drops={counters['drops']} compactions={counters['compactions']} "
            f"410s={sum(s.expired for s in stats)} relists={sum(s.relists for s in stats)} "
            f"pod_relists={pods.stats.relists if pods else 0} merged={merged}")


async def run_demo(args: argparse.Namespace) -> int:
    plain = args.plain or not sys.stdout.isatty()
    console = Console(width=None if not plain else 110, highlight=False)
    sink = LogSink(plain, console)
    _configure_logging(sink)
    counters = {"writes": 0, "drops": 0, "compactions": 0}
    schedule = (f"{args.rate:.0f} pod writes/s; every {args.drop_every:g} s the server drops every watch; "
                f"every {args.compact_every:g} s it compacts its history after a short partition "
                f"(410 Gone → one relist per informer); the slow handler takes {args.slow_ms:g} ms per event")
    if plain:
        console.print(f"kinformer demo: {schedule}", markup=False, soft_wrap=True)
    async with FakeApiServer(bookmark_interval=1.0, history_size=20_000) as server:
        for i in range(args.namespaces):
            server.create("namespaces", make_namespace(f"team-{i}"))
            server.create("deployments", make_deployment(f"web-{i}", f"team-{i}"))
        for i in range(args.pods):
            server.create("pods", make_pod(i, f"team-{i % args.namespaces}"))
        client = server.api_client()
        try:
            async with InformerFactory(client) as factory:
                informers = {res: factory.informer(res) for res in RESOURCES}

                def fast_add(obj: Any, is_in_initial_list: bool) -> None:
                    pass

                def fast_update(old: Any, new: Any) -> None:
                    pass

                def fast_delete(obj: Any) -> None:
                    pass

                async def slow_add(obj: Any, is_in_initial_list: bool) -> None:
                    await anyio.sleep(args.slow_ms / 1000)  # the handler's "work"

                async def slow_update(old: Any, new: Any) -> None:
                    await anyio.sleep(args.slow_ms / 1000)

                async def slow_delete(obj: Any) -> None:
                    await anyio.sleep(args.slow_ms / 1000)

                pods = informers[Resource.pods]
                handlers = {
                    "fast": (pods.add_event_handler(fast_add, fast_update, fast_delete, max_pending=FAST_MAX_PENDING,
                                                    name="fast"), FAST_MAX_PENDING),
                    "slow": (pods.add_event_handler(
                        slow_add, slow_update, slow_delete, max_pending=SLOW_MAX_PENDING, name="slow"),
                        SLOW_MAX_PENDING),
                }
                await factory.wait_for_cache_sync(30)
                start = time.monotonic()
                last = {res: inf.deltas_processed for res, inf in informers.items()}
                rates: dict[Resource, float] = {}
                legend = _legend()

                def screen() -> Group:
                    view = _view(informers, server, rates, handlers, counters, time.monotonic() - start, args.slow_ms)
                    logs = [Text(line, style="dim", no_wrap=True, overflow="ellipsis") for line in sink.lines]
                    return Group(Text(schedule, style="bold"), view, legend, *logs)

                live = None if plain else Live(screen(), console=console, auto_refresh=False)
                if live is not None:
                    live.start()
                def consistent() -> bool:
                    return all(
                        {k: o["metadata"]["resourceVersion"] for k, o in inf.indexer.items()}
                        == {k: o["metadata"]["resourceVersion"] for k, o in server.objects(res).items()}
                        for res, inf in informers.items())

                try:
                    async with anyio.create_task_group() as tg:
                        tg.start_soon(_churn, server, args, counters, start)
                        tick = 0.5
                        while args.duration is None or time.monotonic() - start < args.duration:
                            await anyio.sleep(tick)  # the refresh period
                            for res, inf in informers.items():
                                rates[res] = (inf.deltas_processed - last[res]) / tick
                                last[res] = inf.deltas_processed
                            if live is not None:
                                live.update(screen(), refresh=True)
                        tg.cancel_scope.cancel()
                    # Let the informers catch up with the last writes, then report once.
                    with contextlib.suppress(TimeoutError):
                        await eventually(consistent, 10)
                    rates.clear()
                    if live is not None:
                        live.update(screen(), refresh=True)
                finally:
                    if live is not None:
                        live.stop()
                if plain:
                    console.print(_view(informers, server, rates, handlers, counters, time.monotonic() - start,
                                        args.slow_ms))
                    console.print(_legend())
                ok = consistent()
                console.print(_totals(informers, handlers, counters), markup=False, soft_wrap=True)
                console.print(f"caches equal the server: {'yes' if ok else 'NO'}", markup=False, soft_wrap=True)
                return 0 if ok else 1
        finally:
            await client.close()
