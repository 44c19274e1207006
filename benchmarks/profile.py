"""Where the informer's per-event cost goes: the stage-by-stage profile behind PROFILE.md.

    python -m benchmarks.profile --label before [--events 2000]   # measure, save results/profile-before.json
    python -m benchmarks.profile --render                         # PROFILE.md from every results/profile-*.json
    python -m benchmarks.profile --go [--events 20000]            # the client-go peer under pprof

Measuring runs `benchmarks.instructions` for the stage variants (each adds one stage of the
path to the one before it, so the difference is that stage's cost; see that module), then
counts, without valgrind, the Python-level function calls per event of the one-handler
informer (N vs 2N events, `sys.setprofile`): which calls, how many event-loop iterations
(`BaseEventLoop._run_once`) and callbacks (`Handle._run`, mostly task steps) per event.
Every figure in PROFILE.md comes from these files; nothing is typed in.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from benchmarks import instructions

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "results"

STAGES = (
    ("parse", "orjson.loads each line (found with bytes.find), keep the object in a dict by key (the floor)"),
    ("stream", "+ ListWatch.watch: 64 KiB reads, line splitting, decoding and validating each event"),
    ("reflector", "+ Reflector: state machine, _apply builds the change batch, store.apply"),
    ("fifo", "+ DeltaFIFO: lock, key function, Delta/Deltas, a second task pops batches"),
    ("informer-0", "+ SharedIndexInformer without handlers: Indexer (namespace index), Notification"),
    ("informer", "+ one no-op handler: its PendingQueue and listener task"),
)
OTHERS = (
    ("parse-nogc", "parse with the cyclic GC disabled after the initial list"),
    ("informer-nogc", "informer with the cyclic GC disabled after the initial list"),
    ("informer-100", "informer with 100 no-op handlers"),
    ("informer-intern", "informer with string interning (ListWatch(intern_strings=True))"),
    ("informer-compact", "informer, store=\"compact\" (objects kept as bytes)"),
    ("informer-compact-cache", "informer, store=\"compact\", decoded_cache=1024 (all 1,000 pods decoded too)"),
    ("http-limit", "HTTP (aiohttp): read, split, orjson.loads only: `make bench`'s limit"),
    ("http-parse", "HTTP: + keep in a dict (the bench's floor)"),
    ("http-informer", "HTTP: kinformer through a kubernetes_asyncio ApiClient, one handler"),
    ("http-informer-nogc", "HTTP: the same, cyclic GC disabled once synced"),
    ("http-informer-freeze", "HTTP: the same, gc.freeze() once synced"),
    ("http-informer-threshold", "HTTP: the same, gc.set_threshold(50_000, 20, 100) once synced"),
    ("http-informer-compact", "HTTP: the same with store=\"compact\""),
)


# -- Python call counts -----------------------------------------------------------------------


def _calls_child(events: int, pods: int, bodies: str) -> None:
    """Run the one-handler informer with a profile hook; print call counts by function as JSON."""
    from benchmarks.instructions import _informer, read_bodies

    list_body, watch_body = read_bodies(Path(bodies))
    counts: collections.Counter[str] = collections.Counter()

    def hook(frame: Any, event: str, arg: Any) -> None:
        if event == "call":
            code = frame.f_code
            counts[f"{code.co_qualname} ({Path(code.co_filename).name})"] += 1
        elif event == "c_call":
            counts[f"{getattr(arg, '__qualname__', repr(arg))} (C)"] += 1

    sys.setprofile(hook)
    asyncio.run(_informer(list_body, watch_body, events, 1))
    sys.setprofile(None)
    print(json.dumps(counts))


def count_calls(events: int, pods: int) -> dict[str, float]:
    bodies = instructions.bodies_file(pods, 2 * events)

    def run(n: int) -> collections.Counter[str]:
        out = subprocess.run([sys.executable, "-m", "benchmarks.profile", "--calls-child", "--events", str(n),
                              "--pods", str(pods), "--bodies", str(bodies)],
                             capture_output=True, text=True, check=True, cwd=HERE.parent,
                             env={"PYTHONHASHSEED": "0", **dict(__import__("os").environ)})
        return collections.Counter(json.loads(out.stdout.strip().splitlines()[-1]))

    low, high = run(events), run(2 * events)
    per_event = {k: (high[k] - low.get(k, 0)) / events for k in high}
    return {k: round(v, 3) for k, v in sorted(per_event.items(), key=lambda kv: -kv[1]) if v >= 0.01}


# -- the Go peer ------------------------------------------------------------------------------

GO_FUNCTIONS = (
    ("k8s.io/apimachinery/pkg/runtime/serializer/json.(*Serializer).Decode", "JSON decode (serializer)"),
    ("k8s.io/apimachinery/pkg/util/framer.(*jsonFrameReader).Read", "JSON framing (finding each event)"),
    ("k8s.io/apimachinery/pkg/runtime/serializer/protobuf.(*Serializer).Decode", "protobuf decode (object)"),
    ("k8s.io/apimachinery/pkg/runtime/serializer/protobuf.(*RawSerializer).Decode", "protobuf decode (event)"),
    ("k8s.io/client-go/tools/cache.(*DeltaFIFO).Pop", "DeltaFIFO pop + informer processing"),
    ("k8s.io/client-go/tools/cache.(*processorListener).run", "listener (handler calls)"),
    ("runtime.gcBgMarkWorker", "GC background marking"),
    ("runtime.mallocgc", "allocation"),
    ("net/http.(*persistConn).readLoop", "HTTP read loop"),
)


def profile_go(events: int) -> dict[str, Any]:
    """The client-go peer under pprof, on JSON and on protobuf, pinned to one core as in
    `make bench`: its own result line and where its CPU time goes."""
    from benchmarks import run

    run.build_go_peer()
    run.build_go_peer("protoenc", run.GO_PROTOENC_BIN)
    out: dict[str, Any] = {"events": events}
    with run.replay_server(1000, events, protobuf=True) as server:
        for encoding, extra in (("json", []), ("protobuf", ["-protobuf"])):
            prof = RESULTS / f"go-{encoding}.pprof"
            result = run.run_once(run.go(server["url"], "watch", "-events", str(events), "-cpuprofile", str(prof),
                                         *extra))
            top = subprocess.run(["go", "tool", "pprof", "-top", "-nodecount=20", str(run.GO_BIN), str(prof)],
                                 capture_output=True, text=True, check=True, cwd=run.GO_DIR).stdout
            cum = subprocess.run(["go", "tool", "pprof", "-top", "-cum", "-nodecount=400", str(run.GO_BIN),
                                  str(prof)], capture_output=True, text=True, check=True, cwd=run.GO_DIR).stdout
            shares = {}
            for function, what in GO_FUNCTIONS:
                for line in cum.splitlines():
                    parts = line.split()
                    if len(parts) >= 6 and parts[5] == function and what not in shares:
                        shares[what] = parts[4]  # flat flat% sum% cum cum% name
            out[encoding] = {"result": result, "top": top, "cum_shares": shares}
            prof.unlink()
    return out


def render_go(data: dict[str, Any]) -> list[str]:
    lines = ["## The client-go peer under pprof", "",
             f"`python -m benchmarks.profile --go` ({data['events']:,} MODIFIED events, the Go peer pinned to one "
             f"core as in `make bench`; {data['date']}).", "",
             "| | JSON | protobuf |", "|---|---:|---:|"]
    j, p = data["json"], data["protobuf"]
    for label, field in (("events/s", "events_per_s"), ("CPU µs/event", "cpu_us_per_event"),
                         ("GOMAXPROCS", "gomaxprocs")):
        lines.append(f"| {label} | {j['result'][field]:,.1f} | {p['result'][field]:,.1f} |")
    for _, what in GO_FUNCTIONS:
        if what in j["cum_shares"] or what in p["cum_shares"]:
            lines.append(f"| {what} (cum % of CPU samples) | {j['cum_shares'].get(what, '-')} | "
                         f"{p['cum_shares'].get(what, '-')} |")
    for encoding in ("json", "protobuf"):
        lines += ["", f"`go tool pprof -top` ({encoding}):", "", "```", data[encoding]["top"].strip(), "```"]
    return [*lines, ""]


# -- rendering --------------------------------------------------------------------------------


def _fmt(x: float) -> str:
    return f"{x:,.0f}"


def render_one(data: dict[str, Any]) -> list[str]:
    v = data["variants"]
    merged = "".join(f"; {', '.join(m['variants'])} re-measured {m['date']}" for m in data.get("merged", []))
    lines = [f"### {data['label']}: commit {data['commit']}, {data['date']}{merged}", "",
             f"`python -m benchmarks.profile --label {data['label']} --events {data['events']}` "
             f"({data['pods']:,} pods cached, N = {data['events']:,} and 2N MODIFIED events of ~3 KB).", "",
             "| stage | what it adds | instructions/event | stage cost | x parse | of which GC "
             "| of which orjson.loads |",
             "|---|---|---:|---:|---:|---:|---:|"]
    floor = v["parse"]["total"] if "parse" in v else 0.0
    previous = None
    for name, what in STAGES:
        if name not in v:
            continue
        r = v[name]
        stage = r["total"] - previous if previous is not None else r["total"]
        lines.append(f"| `{name}` | {what} | {_fmt(r['total'])} | {_fmt(stage)} | "
                     f"{r['total'] / floor:.2f} | {_fmt(r['gc'])} | {_fmt(r['orjson_loads'])} |")
        previous = r["total"]
    lines += ["", "| variant | what | instructions/event | x parse | of which GC | of which orjson.loads |",
              "|---|---|---:|---:|---:|---:|"]
    for name, what in OTHERS:
        if name in v:
            r = v[name]
            lines.append(f"| `{name}` | {what} | {_fmt(r['total'])} | {r['total'] / floor:.2f} | "
                         f"{_fmt(r['gc'])} | {_fmt(r['orjson_loads'])} |")
    if "informer" in v and "informer-100" in v:
        per = (v["informer-100"]["total"] - v["informer"]["total"]) / 99
        lines += ["", f"Per extra listener: ({_fmt(v['informer-100']['total'])} - {_fmt(v['informer']['total'])}) / 99 "
                  f"= **{_fmt(per)} instructions per event per handler**."]
    if "informer" in v and "informer-nogc" in v:
        gc_cost = v["informer"]["total"] - v["informer-nogc"]["total"]
        floor_gc = v["parse"]["total"] - v["parse-nogc"]["total"] if "parse-nogc" in v else 0.0
        lines += ["", f"GC by experiment (GC on - GC off): informer {_fmt(gc_cost)}, parse {_fmt(floor_gc)} "
                  "instructions/event."]
    derived = []
    for name, label in (("informer-intern", "string interning"), ("informer-compact", 'store="compact"'),
                        ("informer-compact-cache", 'store="compact", decoded_cache=1024')):
        if name in v and "informer" in v:
            derived.append(f"{label}: {_fmt(v[name]['total'] - v['informer']['total'])} instructions/event "
                           "over the default informer")
    if "http-informer" in v:
        for name, label in (("http-informer-nogc", "GC disabled"), ("http-informer-freeze", "gc.freeze()"),
                            ("http-informer-threshold", "gc.set_threshold(50_000, 20, 100)"),
                            ("http-informer-compact", 'store="compact"')):
            if name in v:
                derived.append(f"over HTTP, {label}: {_fmt(v[name]['total'] - v['http-informer']['total'])} "
                               "instructions/event against the default")
        if "http-limit" in v:
            derived.append(f"over HTTP, `http-limit` / `http-informer` = "
                           f"{v['http-limit']['total'] / v['http-informer']['total']:.2f} (the instruction "
                           "counterpart of `make bench`'s \"vs limit\")")
    if derived:
        lines += ["", *(f"- {d}" for d in derived)]
    calls = data.get("calls")
    if calls:
        loop = calls.get("BaseEventLoop._run_once (base_events.py)", 0.0)
        handles = calls.get("Handle._run (events.py)", 0.0)
        total = sum(n for k, n in calls.items() if not k.endswith("(C)"))
        lines += ["", f"Python calls per event in `informer` (sys.setprofile, N vs 2N): {total:.1f} Python-level, "
                  f"{loop:.3f} event-loop iterations, {handles:.3f} callbacks run (task steps). The top 25:", "",
                  "| calls/event | function |", "|---:|---|"]
        for name, n in list(calls.items())[:25]:
            lines.append(f"| {n:.2f} | `{name}` |")
    return [*lines, ""]


def render() -> str:
    files = sorted((p for p in RESULTS.glob("profile-*.json") if p.name != "profile-go.json"),
                   key=lambda p: (p.name != "profile-before.json", json.loads(p.read_text())["timestamp"]))
    runs = [json.loads(p.read_text()) for p in files]
    lines = ["# Where an event's instructions go", "",
             "Produced by `python -m benchmarks.profile --render` from benchmarks/results/profile-*.json "
             "(each written by `python -m benchmarks.profile --label <label>`). Instructions are counted by "
             "valgrind's callgrind (repeatable on this shared machine, unlike time); each variant adds one stage "
             "of the path to the one before it, so \"stage cost\" is what that stage adds per event. \"GC\" and "
             "\"orjson.loads\" are callgrind's inclusive instructions of `gc_collect_main` and orjson's `loads` "
             "per event. Variants are described in benchmarks/instructions.py.", ""]
    if len(runs) > 1:
        names = [name for name, _ in (*STAGES, *OTHERS)]
        lines += ["## Summary", "", "| variant | " + " | ".join(r["label"] for r in runs) + " |",
                  "|---|" + "---:|" * len(runs)]
        for name in names:
            if all(name in r["variants"] for r in runs):
                cells = []
                for r in runs:
                    total, floor = r["variants"][name]["total"], r["variants"]["parse"]["total"]
                    cells.append(f"{_fmt(total)} ({total / floor:.2f}x)")
                lines.append(f"| `{name}` | " + " | ".join(cells) + " |")
        lines += ["", "Each cell: instructions/event (x the `parse` floor of the same run).", ""]
    for run in runs:
        lines += render_one(run)
    go_file = RESULTS / "profile-go.json"
    if go_file.exists():
        lines += render_go(json.loads(go_file.read_text()))
    notes = HERE / "PROFILE_NOTES.md"
    if notes.exists():
        lines += [notes.read_text()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--label", default="")
    parser.add_argument("--events", type=int, default=2000)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--variants", default=",".join(instructions.PROFILE_VARIANTS))
    parser.add_argument("--render", action="store_true")
    parser.add_argument("--merge", action="store_true",
                        help="re-measure only --variants and merge them into the label's existing file")
    parser.add_argument("--go", action="store_true", help="profile the client-go peer (pprof) instead")
    parser.add_argument("--calls-child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--bodies", default="", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.calls_child:
        _calls_child(args.events, args.pods, args.bodies)
        return
    if args.go:
        data = profile_go(args.events if args.events != 2000 else 20_000)
        data["date"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "profile-go.json").write_text(json.dumps(data, indent=1))
    elif not args.render:
        if not args.label:
            raise SystemExit("--label is required to measure")
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=HERE, check=False).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "kinformer"], capture_output=True, text=True,
                               cwd=HERE, check=False).stdout.strip()
        path = RESULTS / f"profile-{args.label}.json"
        variants = instructions.measure(args.variants.split(","), args.events, args.pods)
        if args.merge:
            data = json.loads(path.read_text())
            data["variants"].update(variants)
            data.setdefault("merged", []).append({"date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
                                                  "commit": commit, "variants": sorted(variants)})
        else:
            data = {"label": args.label, "commit": commit + ("+changes" if dirty else ""),
                    "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "timestamp": time.time(),
                    "events": args.events, "pods": args.pods,
                    "calls": count_calls(args.events, args.pods), "variants": variants}
        RESULTS.mkdir(exist_ok=True)
        path.write_text(json.dumps(data, indent=1))
    text = render()
    (HERE / "PROFILE.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
