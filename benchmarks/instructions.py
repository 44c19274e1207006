"""Instructions per watch event, counted by valgrind (callgrind): repeatable on a busy machine.

Wall and CPU time on a shared 2-core VM swing by ±30 % run to run; instruction counts do not
(the same binary and input give the same count). Each variant runs in its own process under
`valgrind --tool=callgrind` twice, with N and 2N events; the difference divided by N is the
cost of one event with start-up and the initial list cancelled out.

    python -m benchmarks.instructions [--events 2000] [--variants parse,informer,...] [--out file.json]

The variants build the informer's path up one stage at a time, so the difference between
two neighbours is what that stage costs (`python -m benchmarks.profile` runs them all and
writes benchmarks/PROFILE.md). Every figure has `generate` (reading the prepared input)
subtracted. In process (benchmarks/inprocess.py's stubbed HTTP response, 64 KiB reads):

- `parse`: orjson.loads of each watch line (found with `bytes.find`, parsed from a memoryview),
  the object kept in a dict by key (the floor).
- `stream`: `ListWatch.watch` over the stub: reads, line splitting, `decode_event`, kept in a dict.
- `reflector`: a `Reflector` feeding a store that keeps objects in a dict (its state machine,
  `_apply`, one task).
- `fifo`: a `Reflector` feeding a `DeltaFIFO`; a second task pops batches into a dict.
- `informer-0`: a `SharedIndexInformer` without handlers (adds the indexer and notifications).
- `informer`: the same with one no-op handler (adds a listener task).
- `informer-100`: 100 no-op handlers (the per-listener cost x100).
- `informer-compact`: one handler, `store="compact"` (objects cached as bytes);
  `informer-compact-cache` with `decoded_cache=1024` (every pod's decoded form cached).
- `informer-intern`: one handler, `ListWatch(intern_strings=True)`.
- `*-nogc` (`parse-nogc`, `informer-nogc`): the same with the cyclic GC disabled once the
  initial list is cached, which isolates what CPython's collector costs.
- `informer-gc-freeze`: `gc.freeze()` once the initial list is cached.

Over HTTP (a replay server per run in its own process, not under valgrind, streaming exactly
the run's events; aiohttp's read path):
`http-limit` (read + split + orjson.loads, the `make bench` limit), `http-parse` (+ keep in a
dict), `http-informer` (kinformer through a kubernetes_asyncio ApiClient, one handler), and
GC experiments on it once synced: `-nogc` (collector disabled), `-freeze` (`gc.freeze()`),
`-threshold` (`gc.set_threshold(50_000, 20, 100)`); `http-informer-compact` (store="compact").

For each variant the instructions spent inside CPython's collector (`gc_collect_main`) and
inside orjson's `loads` are reported per event too, read from callgrind's inclusive costs.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any

import orjson

HERE = Path(__file__).resolve().parent
FUNCTIONS = {"gc": "gc_collect_main", "orjson_loads": "loads"}
"""callgrind function names whose inclusive cost is reported per event."""

IN_PROCESS = ("parse", "parse-nogc", "stream", "reflector", "fifo", "informer-0", "informer", "informer-nogc",
              "informer-intern", "informer-gc-freeze", "informer-100", "informer-compact", "informer-compact-cache")
OVER_HTTP = ("http-limit", "http-parse", "http-informer", "http-informer-nogc", "http-informer-freeze",
             "http-informer-threshold", "http-informer-compact")
VARIANTS = ("generate", *IN_PROCESS, *OVER_HTTP)
PROFILE_VARIANTS = ("parse", "parse-nogc", "stream", "reflector", "fifo", "informer-0", "informer",
                    "informer-nogc", "informer-100", "http-limit", "http-parse", "http-informer")
"""What `benchmarks.profile` measures by default (variants that exist at every commit profiled)."""


def bodies_file(pods: int, events: int) -> Path:
    """The prepared list and watch bodies (made once; their generators' mtime is in the name)."""
    from benchmarks import inprocess
    from kinformer.testing import generators

    stamp = int(max(os.path.getmtime(generators.__file__), os.path.getmtime(inprocess.__file__)))
    path = Path(tempfile.gettempdir()) / f"kinformer-bench-bodies-{pods}-{events}-{stamp}.bin"
    if not path.exists():
        list_body, watch_body = inprocess.bodies(pods, events)
        tmp = path.with_suffix(".tmp")
        tmp.write_bytes(len(list_body).to_bytes(8, "little") + list_body + watch_body)
        tmp.replace(path)
    return path


def read_bodies(path: Path) -> tuple[bytes, bytes]:
    data = path.read_bytes()
    n = int.from_bytes(data[:8], "little")
    return data[8:8 + n], data[8 + n:]


def _key(obj: dict[str, Any]) -> str:
    meta = obj["metadata"]
    return f"{meta['namespace']}/{meta['name']}"


def _after_sync(nogc: bool, freeze: bool) -> None:
    if nogc:
        gc.disable()
    if freeze:
        gc.collect()
        gc.freeze()


# -- in-process variants ----------------------------------------------------------------------


def _parse(list_body: bytes, watch_body: bytes, events: int, nogc: bool) -> None:
    keep = {_key(obj): obj for obj in orjson.loads(list_body)["items"]}
    _after_sync(nogc, False)
    view, find, start = memoryview(watch_body), watch_body.find, 0
    end = find(b"\n")
    while end >= 0:  # lines found with memchr, parsed in place: the cheapest split there is
        obj = orjson.loads(view[start:end])["object"]
        keep[_key(obj)] = obj
        start = end + 1
        end = find(b"\n", start)


async def _stream(list_body: bytes, watch_body: bytes, events: int) -> None:
    from benchmarks.inprocess import StubListWatch

    lw = StubListWatch(list_body, watch_body)
    items, _ = await lw.list()
    keep = {_key(obj): obj for obj in items}
    count = 0
    async with lw.watch("1000") as stream:
        async for batch in stream:
            for event in batch:
                obj = event.object
                keep[_key(obj)] = obj
            count += len(batch)
            if count >= events:
                return


class _KeepStore:
    """A reflector store that keeps the newest object per key in a dict, nothing else."""

    def __init__(self, events: int) -> None:
        self.items: dict[str, Any] = {}
        self.events = events
        self.count = 0
        self.done = asyncio.Event()

    def start_replace(self, *, skip_unchanged: bool = True) -> Any:
        store = self

        class Session:
            async def add_page(self, objs: Iterable[Any]) -> None:
                for obj in objs:
                    store.items[_key(obj)] = obj

            async def finish(self) -> None:
                pass

        return Session()

    async def apply(self, changes: Iterable[tuple[Any, Any]]) -> None:
        items = self.items
        n = 0
        for _, obj in changes:
            items[_key(obj)] = obj
            n += 1
        self.count += n
        if self.count >= self.events:
            self.done.set()

    async def resync(self) -> None:
        pass


async def _reflector(list_body: bytes, watch_body: bytes, events: int) -> None:
    import anyio

    from benchmarks.inprocess import StubListWatch
    from kinformer import Reflector

    store = _KeepStore(events)
    reflector = Reflector(StubListWatch(list_body, watch_body), store)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reflector.run)
        await store.done.wait()
        tg.cancel_scope.cancel()


async def _fifo(list_body: bytes, watch_body: bytes, events: int) -> None:
    import anyio

    from benchmarks.inprocess import StubListWatch
    from kinformer import DeltaFIFO, Reflector
    from kinformer.fifo import DELETED

    items: dict[str, Any] = {}

    class Known:
        def list_keys(self) -> list[str]:
            return list(items)

        def get_by_key(self, key: str) -> Any:
            return items.get(key)

    fifo = DeltaFIFO(known_objects=Known())
    done = asyncio.Event()
    total = 1000 + events  # the list's pods, then the events (each a distinct key in a batch or not)
    seen = 0

    def process(deltas: Any, is_initial: bool) -> None:
        nonlocal seen
        for delta in deltas:
            if delta.type is DELETED:
                items.pop(deltas.key, None)
            else:
                items[deltas.key] = delta.object
            seen += 1
        if seen >= total:
            done.set()

    async def consume() -> None:
        while True:
            await fifo.pop_batch(process, 256)

    reflector = Reflector(StubListWatch(list_body, watch_body), fifo)
    async with anyio.create_task_group() as tg:
        tg.start_soon(reflector.run)
        tg.start_soon(consume)
        await done.wait()
        tg.cancel_scope.cancel()


async def _informer(list_body: bytes, watch_body: bytes, events: int, handlers: int, nogc: bool = False,
                    freeze: bool = False, intern: bool = False, **kw: Any) -> None:
    from benchmarks.inprocess import StubListWatch
    from kinformer import SharedIndexInformer

    informer: Any = SharedIndexInformer(StubListWatch(list_body, watch_body, intern_strings=intern), **kw)
    done = asyncio.Event()
    count = 0

    def on_update(old: Any, new: Any) -> None:
        nonlocal count
        count += 1
        if count == events:
            done.set()

    for _ in range(handlers - 1):
        informer.add_event_handler(on_update=lambda old, new: None)
    if handlers:
        informer.add_event_handler(on_update=on_update)
    async with informer:
        await informer.wait_for_sync()
        _after_sync(nogc, freeze)
        if handlers:
            await done.wait()
        else:  # no handler to count with: poll rarely (a poll costs a few thousand instructions)
            while informer.deltas_processed < 1000 + events:  # noqa: ASYNC110 - a rare poll, measured
                await asyncio.sleep(0.2)


# -- over HTTP --------------------------------------------------------------------------------


async def _http_raw(url: str, events: int, keep: bool) -> None:
    import aiohttp

    cache: dict[str, Any] = {}
    async with aiohttp.ClientSession() as session:
        async with session.get(f"{url}/api/v1/pods", params={"limit": "500"}) as resp:
            rv = orjson.loads(await resp.read())["metadata"]["resourceVersion"]
        async with session.post(f"{url}/admin/go") as resp:  # the replay server's gate
            assert resp.status == 200
        count = 0
        loads = orjson.loads
        async with session.get(f"{url}/api/v1/pods", params={"watch": "1", "resourceVersion": rv}) as resp:
            buffer = b""
            while count < events:
                chunk = await resp.content.readany()
                if not chunk:
                    break
                lines = (buffer + chunk).split(b"\n")
                buffer = lines.pop()
                for line in lines:
                    if keep:
                        obj = loads(line)["object"]
                        cache[_key(obj)] = obj
                    else:
                        loads(line)
                count += len(lines)


async def _http_informer(url: str, events: int, pods: int, gc_mode: str = "", **kw: Any) -> None:
    """The server streams exactly `events` events: done when all are cached and handled.

    (Counting handler calls would not do: a listener that falls behind coalesces, and under
    valgrind the network is fast next to the client, so bursts are large.)
    """
    import aiohttp
    from kubernetes_asyncio.client import ApiClient, Configuration

    from kinformer import ListWatch, Resource, SharedIndexInformer

    api = ApiClient(Configuration(host=url))
    informer = SharedIndexInformer(ListWatch(api, Resource.pods), **kw)
    registration = informer.add_event_handler(on_update=lambda old, new: None)
    async with informer:
        await informer.wait_for_sync()
        if gc_mode == "nogc":
            gc.disable()
        elif gc_mode == "freeze":
            gc.collect()
            gc.freeze()
        elif gc_mode == "threshold":
            gc.set_threshold(50_000, 20, 100)
        async with aiohttp.ClientSession() as session, session.post(f"{url}/admin/go") as resp:
            assert resp.status == 200
        while informer.deltas_processed < pods + events or registration.stats().backlog:  # noqa: ASYNC110
            await asyncio.sleep(0.2)  # a rare poll (a poll costs a few thousand instructions)
    await api.close()


def _child(variant: str, events: int, pods: int, bodies: str, url: str) -> None:
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(40))
    list_body, watch_body = read_bodies(Path(bodies))
    # Exactly `events` events in the stream, so no variant can read ahead of what it counts
    # (the 2N-event run would otherwise process a different surplus than the N-event run).
    end = -1
    for _ in range(events):
        end = watch_body.index(b"\n", end + 1)
    watch_body = watch_body[:end + 1]
    if variant == "generate":
        return
    runners: dict[str, Callable[[], Awaitable[None] | None]] = {
        "parse": lambda: _parse(list_body, watch_body, events, False),
        "parse-nogc": lambda: _parse(list_body, watch_body, events, True),
        "stream": lambda: _stream(list_body, watch_body, events),
        "reflector": lambda: _reflector(list_body, watch_body, events),
        "fifo": lambda: _fifo(list_body, watch_body, events),
        "informer-0": lambda: _informer(list_body, watch_body, events, 0),
        "informer": lambda: _informer(list_body, watch_body, events, 1),
        "informer-nogc": lambda: _informer(list_body, watch_body, events, 1, nogc=True),
        "informer-gc-freeze": lambda: _informer(list_body, watch_body, events, 1, freeze=True),
        "informer-100": lambda: _informer(list_body, watch_body, events, 100),
        "informer-compact": lambda: _informer(list_body, watch_body, events, 1, store="compact"),
        "informer-compact-cache": lambda: _informer(list_body, watch_body, events, 1, store="compact",
                                                    decoded_cache=1024),
        "informer-intern": lambda: _informer(list_body, watch_body, events, 1, intern=True),
        "http-limit": lambda: _http_raw(url, events, keep=False),
        "http-parse": lambda: _http_raw(url, events, keep=True),
        "http-informer": lambda: _http_informer(url, events, pods),
        "http-informer-nogc": lambda: _http_informer(url, events, pods, "nogc"),
        "http-informer-freeze": lambda: _http_informer(url, events, pods, "freeze"),
        "http-informer-threshold": lambda: _http_informer(url, events, pods, "threshold"),
        "http-informer-compact": lambda: _http_informer(url, events, pods, store="compact"),
    }
    result = runners[variant]()
    if result is not None:
        asyncio.run(result)  # type: ignore[arg-type]


# -- the parent -------------------------------------------------------------------------------


def _inclusive(out_file: str) -> dict[str, int]:
    """Inclusive instructions of each of FUNCTIONS in one callgrind output file."""
    text = subprocess.run(["callgrind_annotate", "--inclusive=yes", "--threshold=100", out_file],
                          capture_output=True, text=True, check=True).stdout
    found = dict.fromkeys(FUNCTIONS, 0)
    for label, function in FUNCTIONS.items():
        pattern = re.compile(rf"^\s*([\d,]+) .*:{re.escape(function)}( \[|$)", re.MULTILINE)
        values = [int(m.group(1).replace(",", "")) for m in pattern.finditer(text)]
        found[label] = max(values, default=0)
    return found


def _count(variant: str, events: int, pods: int, bodies: Path) -> dict[str, int]:
    if variant in OVER_HTTP:
        from benchmarks.run import replay_server

        # A server per run, streaming exactly `events` events: the client cannot read ahead.
        with replay_server(pods, events) as server:
            return _count_with(variant, events, pods, bodies, server["url"])
    return _count_with(variant, events, pods, bodies, "")


def _count_with(variant: str, events: int, pods: int, bodies: Path, url: str) -> dict[str, int]:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
             "benchmarks.instructions", "--child", variant, "--events", str(events), "--pods", str(pods),
             "--bodies", str(bodies), "--url", url],
            capture_output=True, text=True, check=False, env={**os.environ, "PYTHONHASHSEED": "0"},
            cwd=HERE.parent,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"variant {variant} failed:\n{proc.stderr[-3000:]}")
        match = re.search(r"Collected : (\d+)", proc.stderr)
        if match is None:
            raise RuntimeError(f"no instruction count from callgrind:\n{proc.stderr[-2000:]}")
        return {"total": int(match.group(1)), **_inclusive(out)}


def measure(variants: list[str], events: int, pods: int) -> dict[str, dict[str, float]]:
    """Per-event instructions of each variant (2N-event run minus N-event run, over N), with
    `generate` subtracted from the totals; FUNCTIONS' inclusive costs per event beside them."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian package: valgrind)")
    bodies = bodies_file(pods, 2 * events)
    raw: dict[str, dict[str, float]] = {}
    for variant in ["generate", *[v for v in variants if v != "generate"]]:
        low = _count(variant, events, pods, bodies)
        high = _count(variant, 2 * events, pods, bodies)
        raw[variant] = {k: (high[k] - low[k]) / events for k in low}
        print(f"{variant}: {raw[variant]['total']:,.0f} instructions/event", file=sys.stderr, flush=True)
    base = raw.pop("generate")["total"]
    for value in raw.values():
        value["total"] -= base
    return raw


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--variants", default="parse,informer,informer-gc-freeze,informer-100")
    parser.add_argument("--out", default=None, help="also write the result as JSON here")
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--bodies", default="", help=argparse.SUPPRESS)
    parser.add_argument("--url", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        gc.collect()
        _child(args.child, args.events, args.pods, args.bodies, args.url)
        return
    result = measure(args.variants.split(","), args.events, args.pods)
    floor = result.get("parse", {}).get("total")
    summary: dict[str, Any] = {k: round(v["total"]) for k, v in result.items()}
    if floor:
        summary.update({f"{k} / parse": round(v["total"] / floor, 3) for k, v in result.items() if k != "parse"})
    print(json.dumps(summary, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps({"events": args.events, "pods": args.pods, "variants": result},
                                             indent=1))


if __name__ == "__main__":
    main()
