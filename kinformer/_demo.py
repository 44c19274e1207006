"""`kinformer demo`: informers against an embedded FakeApiServer under live churn.

Seeds namespaces, deployments and pods; a churn task updates pods at `--rate` writes/s,
creates and deletes some, drops every watch now and then (resumed without relist) and
compacts history less often (a 410, so one relist). Two handlers watch pods: a fast one,
and a slow one (sleeps per event, small queue) whose backlog coalesces instead of growing.
The table refreshes twice a second; logs show under it.
"""

from __future__ import annotations

import argparse
import contextlib
import random
import time
from collections import deque
from collections.abc import MutableMapping
from typing import Any

import anyio
import structlog
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from kinformer.factory import InformerFactory
from kinformer.informer import EventHandlerRegistration, SharedIndexInformer
from kinformer.resources import Resource
from kinformer.testing.clock import eventually
from kinformer.testing.generators import make_deployment, make_namespace, make_pod
from kinformer.testing.server import FakeApiServer

RESOURCES = (Resource.namespaces, Resource.deployments, Resource.pods)


def _capture_logs(lines: deque[str]) -> None:
    def keep(_: Any, level: str, event: MutableMapping[str, Any]) -> Any:
        message = event.pop("event", "")
        fields = " ".join(f"{k}={v}" for k, v in event.items() if k not in ("timestamp",))
        lines.append(f"{time.strftime('%H:%M:%S')} {level:<7} {message} {fields}")
        raise structlog.DropEvent

    structlog.configure(processors=[structlog.processors.add_log_level, keep])


async def _churn(server: FakeApiServer, args: argparse.Namespace, counters: dict[str, int]) -> None:
    rng = random.Random(7)
    n = args.pods
    batch = max(1, int(args.rate / 20))
    while True:
        for _ in range(batch):
            counters["writes"] += 1
            w = counters["writes"]
            if w % args.drop_every == 0:
                server.drop_watches()  # the informers resume from their last resourceVersion
                counters["drops"] += 1
            if w % args.compact_every == 0:
                server.compact()  # resuming now gets 410: each informer relists once
                server.drop_watches()
                counters["compactions"] += 1
            pods = list(server.objects("pods").values())
            if w % 50 == 0:
                victim = rng.choice(pods)
                server.delete("pods", victim["metadata"]["name"], victim["metadata"]["namespace"])
                server.create("pods", make_pod(n, f"team-{n % args.namespaces}"))
                n += 1
            else:
                pod = rng.choice(pods)
                status = {**pod["status"], "phase": rng.choice(["Running", "Running", "Pending", "Succeeded"])}
                server.update("pods", {**pod, "status": status})
        await anyio.sleep(batch / args.rate)


def _tables(informers: dict[Resource, SharedIndexInformer], server: FakeApiServer,
            rates: dict[Resource, float], handlers: dict[str, EventHandlerRegistration],
            counters: dict[str, int], elapsed: float) -> Group:
    title = (f"kinformer demo: {elapsed:.0f}s, {counters['writes']} writes, "
             f"{counters['drops']} watch drops, {counters['compactions']} compactions")
    caches = Table(title=title, title_justify="left")
    for col in ("informer", "cached", "server", "events/s", "watches", "relists", "410s", "synced"):
        caches.add_column(col, justify="left" if col == "informer" else "right")
    for res, inf in informers.items():
        rs = inf.reflector.stats if inf.reflector else None
        caches.add_row(res.plural, str(len(inf.indexer)), str(len(server.objects(res))), f"{rates.get(res, 0):.0f}",
                       str(rs.watches if rs else 0), str(rs.relists if rs else 0), str(rs.expired if rs else 0),
                       "yes" if inf.has_synced() else "no")
    queues = Table(title="pod handlers (bounded queues)", title_justify="left")
    for col in ("handler", "delivered", "backlog", "peak", "merged", "state"):
        queues.add_column(col, justify="left" if col in ("handler", "state") else "right")
    for name, reg in handlers.items():
        st = reg.stats()
        queues.add_row(name, str(st.delivered), str(st.backlog), str(st.peak_backlog), str(st.coalesced),
                       "coalescing" if st.coalescing else "ok")
    return Group(caches, queues)


async def run_demo(args: argparse.Namespace) -> int:
    logs: deque[str] = deque(maxlen=6)
    _capture_logs(logs)
    counters = {"writes": 0, "drops": 0, "compactions": 0}
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
                seen = 0

                def fast(*_: Any) -> None:
                    nonlocal seen
                    seen += 1

                async def slow(*_: Any) -> None:
                    await anyio.sleep(args.slow_ms / 1000)

                pods = informers[Resource.pods]
                handlers = {
                    "fast": pods.add_event_handler(fast, fast, fast, name="fast"),
                    f"slow ({args.slow_ms} ms/event)": pods.add_event_handler(slow, slow, slow, max_pending=64,
                                                                              name="slow"),
                }
                await factory.wait_for_cache_sync(30)
                start = time.monotonic()
                last = {res: inf.deltas_processed for res, inf in informers.items()}
                rates: dict[Resource, float] = {}
                live = Live(auto_refresh=False) if not args.plain else contextlib.nullcontext()
                async with anyio.create_task_group() as tg:
                    tg.start_soon(_churn, server, args, counters)
                    with live:
                        tick = 0.5
                        while args.duration is None or time.monotonic() - start < args.duration:
                            await anyio.sleep(tick)
                            for res, inf in informers.items():
                                rates[res] = (inf.deltas_processed - last[res]) / tick
                                last[res] = inf.deltas_processed
                            view = _tables(informers, server, rates, handlers, counters, time.monotonic() - start)
                            if isinstance(live, Live):
                                live.update(Group(view, Text("\n".join(logs), style="dim")), refresh=True)
                    tg.cancel_scope.cancel()
                # Let the informers catch up with the last writes, then report.
                def consistent() -> bool:
                    return all(
                        {k: o["metadata"]["resourceVersion"] for k, o in inf.indexer.items()}
                        == {k: o["metadata"]["resourceVersion"] for k, o in server.objects(res).items()}
                        for res, inf in informers.items())

                with contextlib.suppress(TimeoutError):
                    await eventually(consistent, 10)
                Console().print(_tables(informers, server, rates, handlers, counters, time.monotonic() - start))
                ok = consistent()
                print(f"caches equal the server: {'yes' if ok else 'NO'}")
                return 0 if ok else 1
        finally:
            await client.close()
