"""The informer's whole event path in one process, with no network: for profiling and A/B.

A ListWatch whose HTTP responses are stubbed with pre-encoded bytes (the same pods and
MODIFIED events as the replay server, read in 64 KiB chunks as from a socket) feeds a
SharedIndexInformer with one no-op handler. Reports CPU microseconds per event: steadier
than wall time on a shared machine, and exactly the code kinformer runs per event.

    python -m benchmarks.inprocess --events 40000 --runs 5 [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import statistics
import time
from typing import Any

import orjson

from kinformer import ListWatch, Resource, SharedIndexInformer
from kinformer.testing.generators import make_pod

CHUNK = 1 << 16


class _Content:
    def __init__(self, data: bytes) -> None:
        self._data = memoryview(data)
        self._pos = 0
        self._done = asyncio.Event()

    async def readany(self) -> bytes:
        if self._pos >= len(self._data):
            await self._done.wait()  # an open watch with nothing more to say
            return b""
        chunk = bytes(self._data[self._pos:self._pos + CHUNK])
        self._pos += CHUNK
        await asyncio.sleep(0)  # one event-loop turn per network read, as with a socket
        return chunk


class _Response:
    status = 200

    def __init__(self, body: bytes) -> None:
        self.body = body
        self.content = _Content(body)

    async def read(self) -> bytes:
        return self.body

    def release(self) -> None:
        pass

    def close(self) -> None:
        pass


class StubListWatch(ListWatch):
    def __init__(self, list_body: bytes, watch_body: bytes, **kw: Any) -> None:
        super().__init__(None, Resource.pods, **kw)
        self._bodies = {"list": list_body, "watch": watch_body}

    async def _get(self, params: Any, accept: str, timeout: Any = None) -> Any:
        watching = any(k == "watch" for k, _ in params)
        return _Response(self._bodies["watch" if watching else "list"])


def bodies(pods: int, events: int) -> tuple[bytes, bytes]:
    items = []
    for i in range(pods):
        pod = make_pod(i, f"ns-{i % 20}")
        pod.pop("kind")
        pod.pop("apiVersion")
        pod["metadata"]["resourceVersion"] = "1000"
        items.append(pod)
    list_body = orjson.dumps({"kind": "PodList", "apiVersion": "v1", "metadata": {"resourceVersion": "1000"},
                              "items": items})
    lines = []
    for n in range(events):
        pod = make_pod(n % pods, f"ns-{n % pods % 20}")
        pod["metadata"]["resourceVersion"] = str(1001 + n)
        lines.append(orjson.dumps({"type": "MODIFIED", "object": pod}))
    return list_body, b"\n".join(lines) + b"\n"


async def run(list_body: bytes, watch_body: bytes, events: int, *, handlers: int = 1, freeze: bool = False) -> float:
    """CPU µs per event through the informer with `handlers` no-op handlers (the last one counts)."""
    informer = SharedIndexInformer(StubListWatch(list_body, watch_body))
    done = asyncio.Event()
    count = 0

    def on_update(old: Any, new: Any) -> None:
        nonlocal count
        count += 1
        if count == events:
            done.set()

    for _ in range(handlers - 1):
        informer.add_event_handler(on_update=lambda old, new: None)
    informer.add_event_handler(on_update=on_update)
    async with informer:
        await informer.wait_for_sync()
        if freeze:
            gc.collect()
            gc.freeze()
        cpu = time.process_time()
        await done.wait()
        return (time.process_time() - cpu) / events * 1e6


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    list_body, watch_body = bodies(args.pods, args.events)
    lines = watch_body.split(b"\n")[:-1]
    cpu = time.process_time()
    for line in lines:
        orjson.loads(line)
    limit = (time.process_time() - cpu) / len(lines) * 1e6
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        asyncio.run(run(list_body, watch_body, args.events))
        profiler.disable()
        pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
        return
    asyncio.run(run(list_body, watch_body, args.events))  # warm-up
    samples = [asyncio.run(run(list_body, watch_body, args.events)) for _ in range(args.runs)]
    median = statistics.median(samples)
    print(f"kinformer {median:.1f} us/event CPU (runs {[round(s, 1) for s in samples]}); "
          f"orjson.loads alone {limit:.1f} us/event; kinformer / limit = {median / limit:.2f}")


if __name__ == "__main__":
    main()
