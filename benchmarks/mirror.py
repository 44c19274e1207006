"""The mirror's benchmarks: memory of the resourceVersion-only informer, and write throughput.

    python -m benchmarks.mirror rv-memory --url URL          # one process per measurement
    python -m benchmarks.mirror write --url URL --db DB_URL  # list N pods into the database

`rv-memory` syncs a ResourceVersionInformer (handler discards every object) and reports the
RSS it added per object, next to the exact size of its key → RV map (`map_bytes_per_object`:
the dict, its key strings and RV ints, by `sys.getsizeof`). The full informer's figure is
`contenders.py sync-kinformer` on the same server. `write` runs a `Mirror` for one cluster
and reports objects/s from start to "every object is in the database" (list, decode, queue,
upsert), and `storage.write` alone on the same objects (`raw_objects_per_s`: batches of 1000
upserts, one transaction each, into an empty table). `run.py --only mirror` runs both against
the replay server, SQLite in a temporary file and PostgreSQL in a temporary server.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.contenders import client, peak_rss_bytes, rss_bytes


class _Discard:
    async def on_add(self, obj: Any, initial: bool) -> None:
        pass

    async def on_update(self, old_rv: Any, obj: Any) -> None:
        pass

    async def on_delete(self, key: str, obj: Any) -> None:
        pass


def _map_bytes(known: dict[str, Any]) -> int:
    return sys.getsizeof(known) + sum(sys.getsizeof(k) + sys.getsizeof(v) for k, v in known.items())


async def rv_memory(args: argparse.Namespace) -> dict[str, Any]:
    import anyio

    from kinformer import ListWatch, Resource
    from kinformer.mirror.rvinformer import ResourceVersionInformer

    api = client(args.url)
    gc.collect()
    base = rss_bytes()
    inf = ResourceVersionInformer(ListWatch(api, Resource.pods), _Discard())
    start = time.perf_counter()
    async with anyio.create_task_group() as tg:
        tg.start_soon(inf.run)
        await inf.wait_for_sync()
        elapsed = time.perf_counter() - start
        gc.collect()
        steady = rss_bytes()
        objects = len(inf)
        known = inf._known
        tg.cancel_scope.cancel()
    await api.close()
    return {"objects": objects, "seconds": elapsed, "peak_rss": peak_rss_bytes(), "steady_rss": steady,
            "bytes_per_object": (steady - base) / max(objects, 1),
            "map_bytes_per_object": _map_bytes(known) / max(objects, 1)}


async def write(args: argparse.Namespace) -> dict[str, Any]:
    from kinformer import ListWatch, Resource
    from kinformer.mirror.storage import MirrorStorage, StreamBatch
    from kinformer.mirror.sync import Mirror

    api = client(args.url)
    async with MirrorStorage(args.db, schema=args.schema or None) as storage:
        start = time.perf_counter()
        async with Mirror(storage) as mirror:
            await mirror.add_cluster("bench", api, resources=[Resource.pods])
            assert await mirror.wait_for_sync(600)
        elapsed = time.perf_counter() - start
        objects = await storage.count("bench")
        items, _ = await ListWatch(api, Resource.pods).list()
        start = time.perf_counter()
        for i in range(0, len(items), 1000):
            await storage.write([StreamBatch("raw", Resource.pods, items[i:i + 1000])])
        raw_elapsed = time.perf_counter() - start
    await api.close()
    return {"objects": objects, "seconds": elapsed, "objects_per_s": objects / elapsed,
            "raw_objects_per_s": len(items) / raw_elapsed}


@contextlib.contextmanager
def postgres() -> Any:
    """A throwaway PostgreSQL server (the tests' fixture code), or None if it cannot start."""
    from tests.mirror.conftest import PostgresServer, _pg_bindir

    bindir = _pg_bindir()
    if bindir is None:
        yield None
        return
    root = Path(tempfile.mkdtemp(prefix="kinformer-bench-pg-"))
    server = PostgresServer(bindir, root)
    server.init()
    server.start()
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)


SCENARIOS = {"rv-memory": rv_memory, "write": write}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--url", required=True)
    parser.add_argument("--db", default="")
    parser.add_argument("--schema", default="")
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    print(json.dumps(asyncio.run(SCENARIOS[args.scenario](args))), flush=True)


if __name__ == "__main__":
    main()
