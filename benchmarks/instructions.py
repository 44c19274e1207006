"""Instructions per watch event, counted by valgrind (callgrind): repeatable on a busy machine.

Wall and CPU time on a shared 2-core VM swing by ±30 % run to run; instruction counts do not
(the same binary and input give the same count). Each variant runs in its own process under
`valgrind --tool=callgrind` twice, with N and 2N events; the difference divided by N is the
cost of one event with start-up and the initial list cancelled out.

    python -m benchmarks.instructions [--events 4000] [--variants parse,informer,...]

Variants (each minus `generate`, the cost of building the test input, which all of them pay):
- `parse`: orjson.loads of each watch line, kept in a dict by key (the floor: parse + keep).
- `informer`: the whole informer path in process (benchmarks/inprocess.py), one no-op handler.
- `informer-gc-freeze`: the same after `gc.freeze()` once the initial list is cached.
- `informer-100`: the same with 100 no-op handlers (fan-out cost per listener).
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
from typing import Any

import orjson

VARIANTS = ("generate", "parse", "informer", "informer-gc-freeze", "informer-100")


def _child(variant: str, events: int, pods: int) -> None:
    from benchmarks.inprocess import bodies, run

    list_body, watch_body = bodies(pods, events)
    if variant == "generate":
        return
    if variant == "parse":
        keep: dict[str, Any] = {}
        for line in watch_body.split(b"\n")[:-1]:
            obj = orjson.loads(line)["object"]
            meta = obj["metadata"]
            keep[f"{meta['namespace']}/{meta['name']}"] = obj
        return
    handlers = 100 if variant == "informer-100" else 1
    asyncio.run(run(list_body, watch_body, events, handlers=handlers, freeze=variant == "informer-gc-freeze"))


def _count(variant: str, events: int, pods: int) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.run(
            ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}", sys.executable, "-m",
             "benchmarks.instructions", "--child", variant, "--events", str(events), "--pods", str(pods)],
            capture_output=True, text=True, check=True, env={**os.environ, "PYTHONHASHSEED": "0"},
        )
    match = re.search(r"Collected : (\d+)", proc.stderr)
    if match is None:
        raise RuntimeError(f"no instruction count from callgrind:\n{proc.stderr[-2000:]}")
    return int(match.group(1))


def measure(variants: list[str], events: int, pods: int) -> dict[str, float]:
    """Raw instructions per event for each variant (2N-event run minus N-event run, over N)."""
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (Debian package: valgrind)")
    result: dict[str, float] = {}
    for variant in variants:
        low = _count(variant, events, pods)
        high = _count(variant, 2 * events, pods)
        result[variant] = (high - low) / events
        print(f"{variant}: {result[variant]:,.0f} instructions/event", file=sys.stderr, flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--events", type=int, default=4000)
    parser.add_argument("--pods", type=int, default=1000)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        gc.collect()
        _child(args.child, args.events, args.pods)
        return
    variants = args.variants.split(",")
    if "generate" not in variants:
        variants.insert(0, "generate")
    raw = measure(variants, args.events, args.pods)
    base = raw.pop("generate")
    result = {k: v - base for k, v in raw.items()}
    floor = result.get("parse")
    if floor:
        result.update({f"{k} / parse": round(v / floor, 3) for k, v in list(result.items()) if k != "parse"})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
