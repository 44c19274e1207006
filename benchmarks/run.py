"""`make bench`: kinformer against its peers and against the limit, in one run.

Each scenario starts the replay server (its own process, pinned to the last core) and runs
every contender in a fresh process (pinned to the first core): one warm-up run, then
`--runs` measured runs (in the watch and sync scenarios interleaved across contenders,
round by round); the table reports medians and ratios against baselines measured in this
same run. Results go to benchmarks/results/latest.json and benchmarks/RESULTS.md.
The work-queue scenario needs no server: kinformer's WorkQueue and client-go's
util/workqueue (benchmarks/go/workqueue) run the same item pattern, each on the client core.
The watch and sync scenarios run client-go twice: on JSON (the bytes kinformer reads) and on
protobuf (what client-go uses against a real API server for built-in types; the replay
server serves apimachinery's own encoding of the same pods, benchmarks/go/protoenc).
The mirror scenario (benchmarks/mirror.py) measures the resourceVersion-only informer's memory
and the objects/s written into SQLite and into a temporary PostgreSQL server.
The query scenario needs none either: benchmarks/query.py fills a cache of `--query-pods` pods
in one process on the client core and times selective queries through indexes and by scans.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
GO_DIR = HERE / "go"
GO_BIN = HERE / ".build" / "informer-bench"
GO_WORKQUEUE_BIN = HERE / ".build" / "workqueue-bench"
GO_PROTOENC_BIN = HERE / ".build" / "protoenc"
CPUS = sorted(os.sched_getaffinity(0))
CLIENT_CPUS = {CPUS[0]}
SERVER_CPUS = {CPUS[-1]}


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def build_go_peer(package: str = ".", binary: Path = GO_BIN) -> str:
    """Build one main package of the benchmarks/go module (cached while its sources are older)."""
    sources = [*(GO_DIR / package).glob("*.go"), GO_DIR / "go.mod", GO_DIR / "go.sum"]
    if binary.exists() and binary.stat().st_mtime > max(p.stat().st_mtime for p in sources):
        return "cached"
    log(f"building the client-go peer (benchmarks/go/{package})")
    binary.parent.mkdir(exist_ok=True)
    subprocess.run(["go", "build", "-mod=mod", "-trimpath", "-o", str(binary), f"./{package}"], cwd=GO_DIR,
                   check=True)
    return "built"


@contextmanager
def replay_server(pods: int, events: int, pod_bytes: int = 3000, rate: float = 0.0, protobuf: bool = False) -> Any:
    """The replay server in its own process; `protobuf` also serves the protobuf encoding
    (benchmarks/go/protoenc, which must be built) to clients that ask for it."""
    gate = ["--gate"] if events else []  # throughput scenarios start their clocks at the gate
    encoder = ["--protobuf-encoder", str(GO_PROTOENC_BIN)] if protobuf else []
    proc = subprocess.Popen(
        [sys.executable, str(HERE / "replay_server.py"), "--pods", str(pods), "--events", str(events),
         "--pod-bytes", str(pod_bytes), "--rate", str(rate), *gate, *encoder],
        stdout=subprocess.PIPE, text=True,
        preexec_fn=lambda: os.sched_setaffinity(0, SERVER_CPUS),  # noqa: PLW1509 - this process has one thread
    )
    try:
        assert proc.stdout is not None
        info = json.loads(proc.stdout.readline())
        yield info
    finally:
        proc.terminate()
        proc.wait(30)


def run_once(cmd: list[str]) -> dict[str, Any]:
    # client-go 0.36 streams lists (WatchListClient) by default; the replay server serves
    # LIST + WATCH, so the Go peer runs the classic path, the same as kinformer's default.
    env = {**os.environ, "KUBE_FEATURE_WatchListClient": "false"}
    result = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=300, check=False, env=env,
                            preexec_fn=lambda: os.sched_setaffinity(0, CLIENT_CPUS))
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{result.stderr[-3000:]}")
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


def python(scenario: str, url: str, *extra: str) -> list[str]:
    return [sys.executable, "-m", "benchmarks.contenders", scenario, "--url", url, *extra]


def go(url: str, mode: str, *extra: str) -> list[str]:
    return [str(GO_BIN), "-url", url, "-mode", mode, *extra]


def measure(cmd: list[str], runs: int, warmup: bool = True) -> dict[str, Any]:
    """Warm-up run (discarded), then `runs` runs; median of every numeric field."""
    if warmup:
        run_once(cmd)
    return _medians([run_once(cmd) for _ in range(runs)])


def _medians(samples: list[dict[str, Any]]) -> dict[str, Any]:
    """The samples, and the median of every numeric field."""
    out: dict[str, Any] = {"runs": len(samples), "samples": samples}
    for key, value in samples[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            out[key] = statistics.median(s[key] for s in samples)
    return out


def measure_interleaved(cmds: dict[str, list[str]], runs: int, warmup: bool = True) -> dict[str, dict[str, Any]]:
    """`measure` for several contenders at once, their runs interleaved (round r runs every
    contender once, in turn): on a shared machine a slow minute then slows every contender,
    not only the one that happened to run in it, and the ratios of one run stay fair."""
    if warmup:
        for cmd in cmds.values():
            run_once(cmd)
    samples: dict[str, list[dict[str, Any]]] = {name: [] for name in cmds}
    for _ in range(runs):
        for name, cmd in cmds.items():
            samples[name].append(run_once(cmd))
    return {name: _medians(runs_of) for name, runs_of in samples.items()}


def machine() -> dict[str, Any]:
    model = ""
    with open("/proc/cpuinfo") as fh:
        for line in fh:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    go_version = subprocess.run(["go", "version"], capture_output=True, text=True, check=False).stdout.strip()
    return {
        "cpu": model, "cores": os.cpu_count(), "client_cpus": sorted(CLIENT_CPUS), "server_cpus": sorted(SERVER_CPUS),
        "memory_gib": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
        "python": platform.python_version(), "go": go_version,
        "versions": {pkg: metadata.version(pkg) for pkg in ("kinformer", "kubernetes_asyncio", "orjson", "aiohttp")},
        "client_go": "v0.36.3",
    }


def scenario_watch(args: argparse.Namespace, results: dict[str, Any]) -> None:
    events, typed_events = args.events, max(args.events // 10, 500)
    log(f"watch throughput: {events} MODIFIED pod events (~3 KB each)")
    n = ["--events", str(events)]
    with replay_server(1000, events, protobuf=True) as server:
        url = server["url"]
        r = measure_interleaved({
            "limit (orjson parse only)": python("watch-limit", url, *n),
            "floor of any cache (parse, keep in a dict)": python("watch-parse-into-dict", url, *n),
            "kinformer": python("watch-kinformer", url, *n),
            'kinformer, store="compact"': python("watch-kinformer", url, *n, "--store", "compact"),
            'kinformer, store="compact", decoded_cache=1024': python(
                "watch-kinformer", url, *n, "--store", "compact", "--decoded-cache", "1024"),
            "kinformer, intern_strings=True": python("watch-kinformer", url, *n, "--intern-strings"),
            "client-go SharedInformer (JSON)": go(url, "watch", "-events", str(events)),
            "client-go SharedInformer (protobuf)": go(url, "watch", "-events", str(events), "-protobuf"),
        }, args.runs)
    with replay_server(1000, typed_events) as server:
        r["kubernetes_asyncio typed Watch"] = measure(
            python("watch-typed", server["url"], "--events", str(typed_events)), args.runs)
    results["watch_throughput"] = r


def scenario_sync(args: argparse.Namespace, results: dict[str, Any]) -> None:
    out: dict[str, Any] = {}
    for n in args.sync_sizes:
        log(f"initial sync and memory: {n} pods")
        with replay_server(n, 0, protobuf=True) as server:
            url = server["url"]
            out[str(n)] = measure_interleaved({
                "kinformer": python("sync-kinformer", url),
                "kinformer (managedFields kept)": python("sync-kinformer", url, "--keep-managed-fields"),
                "kinformer, intern_strings=True": python("sync-kinformer", url, "--intern-strings"),
                'kinformer, store="compact"': python("sync-kinformer", url, "--store", "compact"),
                "client-go SharedInformer (JSON)": go(url, "sync"),
                "client-go SharedInformer (protobuf)": go(url, "sync", "-protobuf"),
            }, args.runs)
    results["initial_sync"] = out


def scenario_relist(args: argparse.Namespace, results: dict[str, Any]) -> None:
    n = args.sync_sizes[-1]
    log(f"relist peak: forced 410 with {n} cached pods")
    with replay_server(n, 0) as server:
        url = server["url"]
        results["relist_peak"] = {
            "objects": n,
            "kinformer": measure(python("relist-kinformer", url), max(args.runs // 2, 1), warmup=False),
            "client-go SharedInformer": measure(go(url, "relist"), max(args.runs // 2, 1), warmup=False),
        }


def scenario_fanout(args: argparse.Namespace, results: dict[str, Any]) -> None:
    events = args.events // 2
    log(f"fan-out: {events} events to 1, 10, 100 handlers; 9 fast + 1 sleeping 10 ms")
    out: dict[str, Any] = {}
    with replay_server(1000, events) as server:
        url = server["url"]
        for handlers in (1, 10, 100):
            out[f"{handlers} handlers"] = measure(
                python("fanout-kinformer", url, "--events", str(events), "--handlers", str(handlers)), args.runs)
        out["9 fast + 1 slow (10 ms/event)"] = measure(
            python("fanout-kinformer", url, "--events", str(events), "--handlers", "9", "--slow"), args.runs)
    # Isolation is a latency question below saturation: the same comparison at a steady rate.
    paced, rate = 10_000, 2_000
    log(f"fan-out paced: {paced} events at {rate}/s, 10 fast vs 9 fast + 1 slow")
    with replay_server(1000, paced, rate=rate) as server:
        url = server["url"]
        out[f"10 fast, paced {rate}/s"] = measure(
            python("fanout-kinformer", url, "--events", str(paced), "--handlers", "10"), args.runs)
        out[f"9 fast + 1 slow, paced {rate}/s"] = measure(
            python("fanout-kinformer", url, "--events", str(paced), "--handlers", "9", "--slow"), args.runs)
    results["fanout"] = out


def scenario_workqueue(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """client-go's util/workqueue against kinformer's WorkQueue on one core each, same item
    pattern (see benchmarks/go/workqueue): seeded with `keys` distinct keys, `workers`
    workers loop get/done/add until `ops` items are processed; with and without duplicates."""
    build_go_peer("workqueue", GO_WORKQUEUE_BIN)
    pattern = ["--ops", str(args.wq_ops), "--keys", "1000", "--workers", "8"]
    go_pattern = ["-ops", str(args.wq_ops), "-keys", "1000", "-workers", "8"]
    log(f"work queue: {args.wq_ops} items, 1000 keys, 8 workers, without and with duplicates")
    out: dict[str, Any] = {"ops": args.wq_ops, "keys": 1000, "workers": 8}
    for mode, dups in (("distinct", []), ("duplicates", ["--dups"])):
        out[mode] = {
            "client-go workqueue": measure([str(GO_WORKQUEUE_BIN), *go_pattern, *(["-dups"] if dups else [])],
                                           args.runs),
            "kinformer WorkQueue": measure(python("workqueue-kinformer", "", *pattern, *dups), args.runs),
            "kinformer, async for + processing()": measure(
                python("workqueue-kinformer", "", *pattern, *dups, "--idiomatic"), args.runs),
            "kinformer, Prometheus metrics on": measure(
                python("workqueue-kinformer", "", *pattern, *dups, "--metrics"), args.runs),
        }
    out["distinct"]["asyncio.Queue (floor: no dedup, no processing set)"] = measure(
        python("workqueue-asyncio", "", *pattern), args.runs)
    results["workqueue"] = out


def scenario_mirror(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """benchmarks/mirror.py: the RV-only informer's memory against the full informer's on the
    same pods, and objects/s into SQLite and PostgreSQL (a fresh database per run)."""
    import tempfile

    from benchmarks import mirror

    def mirror_cmd(scenario: str, url: str, *extra: str) -> list[str]:
        return [sys.executable, "-m", "benchmarks.mirror", scenario, "--url", url, *extra]

    def fresh(make: Callable[[int], list[str]], runs: int) -> dict[str, Any]:
        samples = [run_once(make(i)) for i in range(runs)]
        out: dict[str, Any] = {"runs": runs, "samples": samples}
        for key, value in samples[0].items():
            if isinstance(value, int | float) and not isinstance(value, bool):
                out[key] = statistics.median(s[key] for s in samples)
        return out

    n, w, runs = args.mirror_pods, args.mirror_write_pods, max(args.runs // 5, 1)
    log(f"mirror memory: {n} pods, ResourceVersionInformer vs SharedIndexInformer")
    out: dict[str, Any] = {"memory_objects": n, "write_objects": w}
    with replay_server(n, 0) as server:
        url = server["url"]
        out["memory"] = {
            "ResourceVersionInformer (key → RV only)": fresh(lambda i: mirror_cmd("rv-memory", url), runs),
            "SharedIndexInformer (whole objects)": fresh(lambda i: python("sync-kinformer", url), runs),
        }
    log(f"mirror write throughput: {w} pods into SQLite and PostgreSQL")
    with replay_server(w, 0) as server, tempfile.TemporaryDirectory() as tmp, mirror.postgres() as pg:
        url = server["url"]
        out["write"] = {"SQLite (WAL)": fresh(
            lambda i: mirror_cmd("write", url, "--db", f"sqlite:///{tmp}/bench-{i}.db"), runs)}
        if pg is not None:
            out["write"]["PostgreSQL"] = fresh(
                lambda i: mirror_cmd("write", url, "--db", pg.url(), "--schema", f"bench_{i}"), runs)
    results["mirror"] = out

def scenario_query(args: argparse.Namespace, results: dict[str, Any]) -> None:
    """Selective queries over one cache, through Query's indexes vs. Query scanning a cache with
    no index vs. a hand-written scan (benchmarks/query.py; it times its own samples, so one run)."""
    log(f"queries: {args.query_pods} pods in one cache, index vs. full scan")
    results["query"] = run_once([sys.executable, "-m", "benchmarks.query", "--pods", str(args.query_pods),
                                 "--runs", str(args.runs)])


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def table(title: str, header: list[str], rows: list[list[str]]) -> list[str]:
    """A markdown section: title, header (first column left-aligned, others right), rows."""
    align = "|---|" + "---:|" * (len(header) - 1)
    return [title, "", "| " + " | ".join(header) + " |", align,
            *("| " + " | ".join(row) + " |" for row in rows), ""]


def markdown(results: dict[str, Any]) -> str:
    m = results["machine"]
    mib = 2**20
    lines = [
        "# kinformer benchmark results", "",
        f"Produced by `make bench` on {results['date']}: {m['cpu']}, {m['cores']} cores "
        f"(client on CPU {m['client_cpus']}, server on CPU {m['server_cpus']}), Python {m['python']}, "
        f"{m['go']}, kinformer {m['versions']['kinformer']}, kubernetes_asyncio "
        f"{m['versions']['kubernetes_asyncio']}, client-go {m['client_go']}. Medians of "
        f"{results['runs']} runs after a warm-up; ratios are against baselines of this same run."
        + (f" Re-run and merged since: {results['merged']}." if results.get("merged") else ""), "",
    ]
    w = results.get("watch_throughput")
    if w:
        limit = w["limit (orjson parse only)"]["events_per_s"]
        typed = w["kubernetes_asyncio typed Watch"]["events_per_s"]
        go_json = w.get("client-go SharedInformer (JSON)", w.get("client-go SharedInformer", {})).get("events_per_s", 0)
        go_proto = w.get("client-go SharedInformer (protobuf)", {}).get("events_per_s", 0)
        lines += table("## 1. Watch throughput (HTTP stream → cache, one no-op handler)",
                       ["contender", "events/s", "vs limit", "vs client-go JSON", "vs client-go protobuf",
                        "vs typed peer", "client CPU µs/event"],
                       [[name, f"{r['events_per_s']:,.0f}", ratio(r["events_per_s"], limit),
                         ratio(r["events_per_s"], go_json), ratio(r["events_per_s"], go_proto),
                         ratio(r["events_per_s"], typed),
                         f"{r['cpu_us_per_event']:.1f}" if "cpu_us_per_event" in r else "n/a"]
                        for name, r in w.items()])
        lines += ["Events/s is wall time on a shared machine; CPU µs/event (the contender process's own CPU "
                  "time, every thread) is the steadier figure.", ""]
    s = results.get("initial_sync")
    if s:
        lines += table("## 2-3. Initial sync (paged 500) and memory per cached pod",
                       ["pods", "contender", "sync s", "peak RSS MiB", "steady bytes/pod"],
                       [[f"{int(n):,}", name, f"{r['seconds']:.2f}", f"{r['peak_rss'] / mib:,.0f}",
                         f"{r['bytes_per_object']:,.0f}"] for n, by in s.items() for name, r in by.items()])
        reads = [[f"{int(n):,}", name, f"{r['get_us']:.2f}", f"{r['by_index_us_per_object']:.2f}",
                  f"{r['list_us_per_object']:.2f}"]
                 for n, by in s.items() for name, r in by.items() if "get_us" in r]
        if reads:
            lines += table("### Reads from the synced cache (CPU µs)",
                           ["pods", "contender", "get_by_key", "by_index (per object)", "list() (per object)"],
                           reads)
    rl = results.get("relist_peak")
    if rl:
        lines += table(f"## 4. Relist peak (forced 410, {rl['objects']:,} cached pods)",
                       ["contender", "steady RSS MiB", "peak during relist MiB", "peak / steady", "relist s"],
                       [[name, f"{rl[name]['steady_rss'] / mib:,.0f}", f"{rl[name]['relist_peak_rss'] / mib:,.0f}",
                         f"{rl[name]['peak_over_steady']:.2f}", f"{rl[name]['relist_seconds']:.2f}"]
                        for name in ("kinformer", "client-go SharedInformer")])
    f = results.get("fanout")
    if f:
        lines += table("## 5. Fan-out (kinformer; latency = object queued → handler called; full speed, then paced)",
                       ["handlers", "events/s (all fast handlers done)", "p50 ms", "p99 ms", "p99 range over runs ms"],
                       [[name, f"{r['events_per_s']:,.0f}", f"{r['p50_ms']:.2f}", f"{r['p99_ms']:.2f}",
                         f"{min(s['p99_ms'] for s in r['samples']):.1f}-{max(s['p99_ms'] for s in r['samples']):.1f}"]
                        for name, r in f.items()])
    wq = results.get("workqueue")
    if wq:
        go_distinct = wq["distinct"]["client-go workqueue"]["items_per_s"]
        go_dups = wq["duplicates"]["client-go workqueue"]["items_per_s"]
        rows = []
        for name, r in wq["distinct"].items():
            d = wq["duplicates"].get(name)
            rows.append([name, f"{r['items_per_s']:,.0f}", ratio(r["items_per_s"], go_distinct),
                         f"{1e9 / r['items_per_s']:,.0f}",
                         f"{d['items_per_s']:,.0f}" if d else "n/a",
                         ratio(d["items_per_s"], go_dups) if d else "n/a"])
        lines += table(f"## 6. Work queue ({wq['keys']:,} keys, {wq['workers']} workers, {wq['ops']:,} items; "
                       "one core each; an item = get + done + add)",
                       ["contender", "items/s", "vs client-go", "ns/item", "items/s with duplicates",
                        "vs client-go"], rows)
    else:
        lines += ["## 6. Work queue", "", "Not measured in this run.", ""]
    mr = results.get("mirror")
    if mr:
        full = mr["memory"]["SharedIndexInformer (whole objects)"]["bytes_per_object"]
        lines += table(f"## 7. Mirror memory ({mr['memory_objects']:,} pods, ~3 KB each, synced)",
                       ["informer", "sync s", "steady RSS MiB", "RSS bytes/object", "map bytes/object",
                        "vs full informer"],
                       [[name, f"{r['seconds']:.2f}", f"{r['steady_rss'] / mib:,.0f}",
                         f"{r['bytes_per_object']:,.0f}",
                         f"{r['map_bytes_per_object']:,.0f}" if "map_bytes_per_object" in r else "n/a",
                         ratio(r["bytes_per_object"], full)] for name, r in mr["memory"].items()])
        lines += table(f"## 8. Mirror write throughput ({mr['write_objects']:,} pods, one cluster)",
                       ["database", "initial sync objects/s (list → rows)", "storage.write alone objects/s"],
                       [[name, f"{r['objects_per_s']:,.0f}", f"{r['raw_objects_per_s']:,.0f}"]
                        for name, r in mr["write"].items()])
    qr = results.get("query")
    if qr:
        ms = 1e3
        rows = [[name, f"{r['matches']:,}", f"{r['candidates']:,}", f"{r['index_s'] * ms:,.3f}",
                 f"{r['scan_s'] * ms:,.1f}", f"{r['scan_over_index']:,.0f}x",
                 f"{r['hand_written_scan_s'] * ms:,.1f}" if "hand_written_scan_s" in r else "n/a",
                 f"{r['lister_s'] * ms:,.2f}" if "lister_s" in r else "n/a"] for name, r in qr["queries"].items()]
        lines += table(f"## 9. Queries ({qr['pods']:,} pods in one cache; Query through indexes vs. Query over a "
                       "cache without indexes; medians)",
                       ["query", "matches", "candidates", "via index ms", "full scan ms", "scan / index",
                        "hand-written scan ms", "Lister.list ms"], rows)
        lines += [f"Building the label index over the whole cache took {qr['label_index_build_s']:.2f} s, the owner "
                  f"index {qr['owner_index_build_s']:.2f} s (once, on first use or at start).", ""]
    lines += soak_section(HERE / "results" / "soak.json")
    return "\n".join(lines)


def soak_section(path: Path) -> list[str]:
    """`make soak`'s last report (tests/soak.py --out), if there is one."""
    if not path.exists():
        return []
    record = json.loads(path.read_text())
    r, a = record["report"], record["arguments"]
    faults = ", ".join(f"{kind} {n}" for kind, n in r["faults"].items())
    rows = [
        ["writes", f"{r['events']:,} over {a['objects']:,} objects (seed {a['seed']}), a fault every "
                   f"{a['fault_every']:,} writes"],
        ["duration", f"{r['seconds']:,.0f} s wall, {r['cpu_seconds']:,.0f} s CPU (informer process)"],
        ["faults injected", faults],
        ["server process restarts", f"{r['server_restarts']}"],
        ["checkpoints (cache, mirrors, controller == server)", f"{r['checkpoints']}, all passed"],
        ["missed deletes", f"{r['missed_deletes']} ({r['deletes_delivered']:,} deletes and "
                           f"{r['tombstones_delivered']:,} tombstones delivered)"],
        ["relists", f"{r['relists']:,}"],
        ["reconciles", f"{r['reconciles']:,} ({r['reconcile_errors']:,} raised and requeued)"],
        ["RSS", f"max {r['rss_max_mib']:.1f} MiB, slope after warm-up {r['rss_slope_mib_per_min']:.2f} MiB/min; "
                f"at the last 5 checkpoints {', '.join(f'{x:.1f}' for x in r['rss_at_checkpoints_mib'][-5:])} MiB"],
        ["leaked tasks / sockets / processes",
         f"{r['tasks_leaked']} / {r['sockets_leaked']} / {r['processes_leaked']}"],
    ]
    return table(f"## 10. Soak (`make soak`, {record['date']})", ["", "value"], rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--events", type=int, default=40_000)
    parser.add_argument("--sync-sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--wq-ops", type=int, default=1_000_000, help="items processed per work-queue run")
    parser.add_argument("--mirror-pods", type=int, default=100_000, help="pods for the mirror's memory scenario")
    parser.add_argument("--mirror-write-pods", type=int, default=20_000, help="pods for the mirror's write scenario")
    parser.add_argument("--query-pods", type=int, default=100_000, help="pods in the query scenario's cache")
    parser.add_argument("--only", nargs="*",
                        default=["watch", "sync", "relist", "fanout", "workqueue", "mirror", "query"])
    parser.add_argument("--out", default=str(HERE / "results" / "latest.json"))
    parser.add_argument("--merge", action="store_true",
                        help="re-run only --only scenarios and merge them into the existing results file")
    parser.add_argument("--render", action="store_true", help="only re-render RESULTS.md from the results file")
    args = parser.parse_args()
    if args.render:
        table_text = markdown(json.loads(Path(args.out).read_text()))
        (HERE / "RESULTS.md").write_text(table_text)
        print(table_text)
        return
    started = time.time()
    # The informer peer takes minutes to build on a fresh machine; only its scenarios need it.
    go_peer = build_go_peer() if {"watch", "sync", "relist"} & set(args.only) else "not needed"
    if {"watch", "sync"} & set(args.only):
        build_go_peer("protoenc", GO_PROTOENC_BIN)  # the replay server's protobuf encoder
    results: dict[str, Any] = {"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "runs": args.runs,
                               "machine": machine(), "parameters": vars(args) | {"go_peer": go_peer}}
    if args.merge and Path(args.out).exists():
        previous = json.loads(Path(args.out).read_text())
        previous.setdefault("merged", []).append({"date": results["date"], "only": args.only, "runs": args.runs})
        results = previous | {"machine": results["machine"]}
    steps: dict[str, Callable[[argparse.Namespace, dict[str, Any]], None]] = {
        "watch": scenario_watch, "sync": scenario_sync, "relist": scenario_relist, "fanout": scenario_fanout,
        "workqueue": scenario_workqueue, "mirror": scenario_mirror, "query": scenario_query}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    partial = Path(args.out).with_suffix(".partial.json")
    for name in args.only:
        steps[name](args, results)
        # Each scenario's figures are kept as soon as they exist: a later scenario that
        # fails does not throw away the minutes of measurement before it.
        partial.write_text(json.dumps(results, indent=1))
    results["wall_seconds"] = round(time.time() - started, 1)
    Path(args.out).write_text(json.dumps(results, indent=1))
    partial.unlink(missing_ok=True)
    table = markdown(results)
    if Path(args.out).name == "latest.json":
        (HERE / "RESULTS.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main()
