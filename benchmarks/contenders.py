"""One benchmark contender per process run; prints one JSON line of measurements.

    python -m benchmarks.contenders <scenario> --url URL [options]

Scenarios: watch-kinformer, watch-typed, watch-limit, sync-kinformer, memory-kinformer,
relist-kinformer, fanout-kinformer, workqueue-kinformer, workqueue-asyncio (these two need no
--url). (client-go's are in benchmarks/go.) Each runs in a fresh process so RSS figures belong
to it alone.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import resource
import statistics
import threading
import time
from typing import Any

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss_bytes() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def peak_rss_bytes() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def client(url: str) -> Any:
    from kubernetes_asyncio.client import ApiClient, Configuration

    return ApiClient(Configuration(host=url))


def informer(api: Any, args: argparse.Namespace | None = None, **kw: Any) -> Any:
    """The kinformer contender: `--store`, `--decoded-cache`, `--keep-managed-fields`, `--intern-strings`."""
    from kinformer import ListWatch, Resource, SharedIndexInformer

    keep = bool(args and args.keep_managed_fields)
    intern = bool(args and args.intern_strings)
    if args is not None and args.store != "default":
        kw.update(store=args.store, decoded_cache=args.decoded_cache)
    return SharedIndexInformer(ListWatch(api, Resource.pods, keep_managed_fields=keep, intern_strings=intern), **kw)


async def go(url: str) -> float:
    """Release the replay server's watch events; returns the start time of the measurement."""
    import aiohttp

    async with aiohttp.ClientSession() as session, session.post(f"{url}/admin/go") as resp:
        assert resp.status == 200
    return time.perf_counter()


async def wait_until(predicate: Any, poll: float = 0.001) -> None:
    while not predicate():  # noqa: ASYNC110 - a benchmark polls the informer's counters, nothing to await
        await asyncio.sleep(poll)


async def watch_kinformer(args: argparse.Namespace) -> dict[str, Any]:
    api = client(args.url)
    inf = informer(api, args)
    count = 0

    def on_update(old: Any, new: Any) -> None:
        nonlocal count
        count += 1

    inf.add_event_handler(on_update=on_update)
    async with inf:
        await inf.wait_for_sync()
        gc_experiment(args.gc)
        cpu = time.process_time()
        start = await go(args.url)
        await wait_until(lambda: count >= args.events)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    await api.close()
    return {"events": count, "seconds": elapsed, "events_per_s": count / elapsed,
            "cpu_us_per_event": cpu / count * 1e6}


def gc_experiment(mode: str) -> None:
    """`--gc`: what the process does to CPython's collector once the cache has synced."""
    if mode == "off":
        gc.disable()
    elif mode == "freeze":
        gc.collect()
        gc.freeze()
    elif mode == "threshold":
        gc.set_threshold(50_000, 20, 100)


async def watch_typed(args: argparse.Namespace) -> dict[str, Any]:
    from kubernetes_asyncio import watch
    from kubernetes_asyncio.client import CoreV1Api

    api = client(args.url)
    v1 = CoreV1Api(api)
    cache: dict[tuple[str, str], Any] = {}
    token = None
    while True:  # the typed peer's own paged list (not timed)
        page = await v1.list_pod_for_all_namespaces(limit=500, _continue=token)
        for pod in page.items:
            cache[(pod.metadata.namespace, pod.metadata.name)] = pod
        rv, token = page.metadata.resource_version, page.metadata._continue
        if not token:
            break
    count = 0
    cpu = time.process_time()
    start = await go(args.url)
    w = watch.Watch()
    async with w.stream(v1.list_pod_for_all_namespaces, resource_version=rv) as stream:
        async for event in stream:
            pod = event["object"]
            cache[(pod.metadata.namespace, pod.metadata.name)] = pod
            count += 1
            if count >= args.events:
                break
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    await api.close()
    return {"events": count, "seconds": elapsed, "events_per_s": count / elapsed,
            "cpu_us_per_event": cpu / count * 1e6}


async def _raw_watch(args: argparse.Namespace, per_line: Any) -> dict[str, Any]:
    """Read the watch stream's bytes with aiohttp and call `per_line` on each line, nothing else."""
    import aiohttp
    import orjson

    async with aiohttp.ClientSession() as session:
        async with session.get(f"{args.url}/api/v1/pods", params={"limit": "500"}) as resp:
            rv = orjson.loads(await resp.read())["metadata"]["resourceVersion"]
        count = 0
        cpu = time.process_time()
        start = await go(args.url)
        async with session.get(f"{args.url}/api/v1/pods", params={"watch": "1", "resourceVersion": rv}) as resp:
            buffer = b""
            while count < args.events:
                chunk = await resp.content.readany()
                lines = (buffer + chunk).split(b"\n")
                buffer = lines.pop()
                for line in lines:
                    per_line(line)
                count += len(lines)
        elapsed = time.perf_counter() - start
        cpu = time.process_time() - cpu
    return {"events": count, "seconds": elapsed, "events_per_s": count / elapsed,
            "cpu_us_per_event": cpu / count * 1e6}


async def watch_limit(args: argparse.Namespace) -> dict[str, Any]:
    """The limit: orjson-parse each line of the same bytes, keep nothing."""
    import orjson

    return await _raw_watch(args, orjson.loads)


async def watch_parse_into_dict(args: argparse.Namespace) -> dict[str, Any]:
    """An informative floor for any cache: parse each line and keep the object in a dict by
    key (replacing the previous one). Python's GC cost of keeping objects shows up here."""
    import orjson

    cache: dict[str, Any] = {}

    def keep(line: bytes) -> None:
        obj = orjson.loads(line)["object"]
        meta = obj["metadata"]
        cache[f"{meta['namespace']}/{meta['name']}"] = obj

    return await _raw_watch(args, keep)


async def sync_kinformer(args: argparse.Namespace) -> dict[str, Any]:
    api = client(args.url)
    gc.collect()
    base = rss_bytes()
    inf = informer(api, args)
    start = time.perf_counter()
    async with inf:
        await inf.wait_for_sync()
        elapsed = time.perf_counter() - start
        gc.collect()
        steady = rss_bytes()
        objects = len(inf.indexer)
        reads = measure_reads(inf.indexer)
    await api.close()
    return {"objects": objects, "seconds": elapsed, "peak_rss": peak_rss_bytes(), "steady_rss": steady,
            "bytes_per_object": (steady - base) / max(objects, 1), **reads}


def measure_reads(indexer: Any) -> dict[str, float]:
    """CPU cost of the cache's reads: `get_by_key` of random keys (µs each), `by_index` of
    one namespace (µs per object returned) and `list()` of everything (µs per object)."""
    import random

    from kinformer import NAMESPACE_INDEX

    keys = indexer.list_keys()
    picks = [random.Random(1).choice(keys) for _ in range(20_000)]
    get = indexer.get_by_key
    cpu = time.process_time()
    for key in picks:
        get(key)
    get_us = (time.process_time() - cpu) / len(picks) * 1e6
    namespace = keys[0].split("/")[0]
    cpu = time.process_time()
    found = indexer.by_index(NAMESPACE_INDEX, namespace)
    by_index_us = (time.process_time() - cpu) / max(len(found), 1) * 1e6
    cpu = time.process_time()
    everything = indexer.list()
    list_us = (time.process_time() - cpu) / max(len(everything), 1) * 1e6
    return {"get_us": get_us, "by_index_us_per_object": by_index_us, "list_us_per_object": list_us}


async def relist_kinformer(args: argparse.Namespace) -> dict[str, Any]:
    import aiohttp

    from kinformer.reflector import Watching

    api = client(args.url)
    inf = informer(api, args)
    async with inf:
        await inf.wait_for_sync()
        gc.collect()
        steady = rss_bytes()
        peak = steady
        stop = threading.Event()

        def sample() -> None:
            nonlocal peak
            while not stop.is_set():
                peak = max(peak, rss_bytes())
                time.sleep(0.002)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        reflector = inf.reflector
        # A watch that ends within 1 s with no events is retried after backoff (as in
        # client-go): let it live past that, so the relist is timed, not the backoff.
        await asyncio.sleep(1.2)
        start = time.perf_counter()
        async with aiohttp.ClientSession() as session, session.post(f"{args.url}/admin/expire") as resp:
            assert resp.status == 200
        await wait_until(lambda: reflector.stats.lists >= 2 and isinstance(reflector.state, Watching), 0.005)
        elapsed = time.perf_counter() - start
        stop.set()
        sampler.join()
        objects = len(inf.indexer)
    await api.close()
    return {"objects": objects, "relist_seconds": elapsed, "steady_rss": steady, "relist_peak_rss": peak,
            "peak_over_steady": peak / steady, "expired": reflector.stats.expired}


async def fanout_kinformer(args: argparse.Namespace) -> dict[str, Any]:
    api = client(args.url)
    arrived: dict[str, float] = {}

    def stamp(obj: Any) -> Any:  # the transform runs as each object enters the queue
        arrived[obj["metadata"]["resourceVersion"]] = time.perf_counter()
        return obj

    inf = informer(api, args, transform=stamp)
    counts = [0] * args.handlers
    latencies: list[float] = []

    def make(i: int) -> Any:
        def on_update(old: Any, new: Any) -> None:
            counts[i] += 1
            if i == 0 or i == args.handlers - 1:
                latencies.append(time.perf_counter() - arrived[new["metadata"]["resourceVersion"]])
        return on_update

    for i in range(args.handlers):
        inf.add_event_handler(on_update=make(i))
    if args.slow:
        async def slow(old: Any, new: Any) -> None:
            await asyncio.sleep(0.010)
        slow_reg = inf.add_event_handler(on_update=slow)
    async with inf:
        await inf.wait_for_sync()
        start = await go(args.url)
        await wait_until(lambda: min(counts) >= args.events)
        elapsed = time.perf_counter() - start
        slow_stats = slow_reg.stats() if args.slow else None
    await api.close()
    return {"handlers": args.handlers, "slow": args.slow, "events": args.events, "seconds": elapsed,
            "events_per_s": args.events / elapsed,
            "p50_ms": statistics.median(latencies) * 1000,
            "p99_ms": statistics.quantiles(latencies, n=100)[98] * 1000,
            "slow_peak_backlog": slow_stats.peak_backlog if slow_stats else None}


def _workqueue_keys(n: int) -> tuple[list[str], dict[str, str]]:
    names = [f"default/pod-{i}" for i in range(n)]
    return names, {name: names[(i + n // 2) % n] for i, name in enumerate(names)}


async def workqueue_kinformer(args: argparse.Namespace) -> dict[str, Any]:
    """The item pattern of benchmarks/go/workqueue: the queue seeded with `keys` distinct keys,
    `workers` tasks each looping get → done → add(key) (no duplicates), or get → add(key) →
    add(other key) → done (--dups: a re-add while processing, and an add that collapses),
    until `ops` items were processed; then shut_down() and the workers drain the queue."""
    from kinformer import ShutDownError, WorkQueue

    provider = None
    if args.metrics:
        from prometheus_client import CollectorRegistry

        from kinformer import PrometheusMetricsProvider

        provider = PrometheusMetricsProvider(CollectorRegistry())
    names, other = _workqueue_keys(args.keys)
    q: WorkQueue[str] = WorkQueue("bench" if args.metrics else "", metrics_provider=provider)
    for name in names:
        q.add(name)
    processed = 0
    ops, dups = args.ops, args.dups

    async def worker() -> None:
        nonlocal processed
        get, add, done = q.get, q.add, q.done
        while True:
            try:
                key = await get()
            except ShutDownError:
                return
            processed += 1
            if dups:
                add(key)
                add(other[key])
                done(key)
            else:
                done(key)
                add(key)
            if processed == ops:
                q.shut_down()

    async def idiomatic_worker() -> None:
        nonlocal processed
        add = q.add
        async for key in q:
            with q.processing(key):
                processed += 1
                if dups:
                    add(key)
                    add(other[key])
                if processed == ops:
                    q.shut_down()
            if not dups:
                add(key)

    body = idiomatic_worker if args.idiomatic else worker
    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(body() for _ in range(args.workers)))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return {"items": processed, "seconds": elapsed, "items_per_s": processed / elapsed,
            "cpu_ns_per_item": cpu / processed * 1e9}


async def workqueue_asyncio(args: argparse.Namespace) -> dict[str, Any]:
    """The floor: asyncio.Queue under the same loop (get, then put the key back), with none of
    a work queue's semantics (no dedup, no processing set)."""
    names, _ = _workqueue_keys(args.keys)
    q: asyncio.Queue[str] = asyncio.Queue()
    for name in names:
        q.put_nowait(name)
    processed = 0
    ops = args.ops
    stop = False

    async def worker() -> None:
        nonlocal processed, stop
        get, put = q.get, q.put_nowait
        while not stop:
            key = await get()
            processed += 1
            put(key)
            if processed >= ops:
                stop = True

    gc.collect()
    cpu = time.process_time()
    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(args.workers)))
    elapsed = time.perf_counter() - start
    cpu = time.process_time() - cpu
    return {"items": processed, "seconds": elapsed, "items_per_s": processed / elapsed,
            "cpu_ns_per_item": cpu / processed * 1e9}


SCENARIOS = {
    "watch-kinformer": watch_kinformer, "watch-typed": watch_typed, "watch-limit": watch_limit,
    "watch-parse-into-dict": watch_parse_into_dict,
    "sync-kinformer": sync_kinformer, "relist-kinformer": relist_kinformer, "fanout-kinformer": fanout_kinformer,
    "workqueue-kinformer": workqueue_kinformer, "workqueue-asyncio": workqueue_asyncio,
}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("scenario", choices=sorted(SCENARIOS))
    parser.add_argument("--url", default="")
    parser.add_argument("--events", type=int, default=0)
    parser.add_argument("--handlers", type=int, default=1)
    parser.add_argument("--slow", action="store_true")
    parser.add_argument("--keep-managed-fields", action="store_true")
    parser.add_argument("--store", default="default", choices=["default", "compact"])
    parser.add_argument("--gc", default="", choices=["", "off", "freeze", "threshold"],
                        help="a GC experiment once synced (watch-kinformer)")
    parser.add_argument("--intern-strings", action="store_true", help="ListWatch(intern_strings=True)")
    parser.add_argument("--decoded-cache", type=int, default=0, help="compact store: decoded LRU size")
    parser.add_argument("--ops", type=int, default=1_000_000)
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--dups", action="store_true")
    parser.add_argument("--idiomatic", action="store_true", help="workers use async for + processing()")
    parser.add_argument("--metrics", action="store_true", help="a named queue with Prometheus metrics")
    args = parser.parse_args()
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))  # errors only
    print(json.dumps(asyncio.run(SCENARIOS[args.scenario](args))), flush=True)


if __name__ == "__main__":
    main()
