"""Query benchmark: selective queries over one cache of N pods, through indexes vs. a full scan.

    python -m benchmarks.query --pods 100000 --runs 5      # prints one JSON line

The pods are built in-process (no server: the cache's contents are what matters, not how
they arrived): 10 namespaces, 200 apps, 3 tiers, 1,000 owning ReplicaSets, 500 nodes, two
containers each, spread so that no two of these attributes determine each other. The same
objects sit in two caches: `indexed` (the informer's namespace index, a `PathIndex` of
`spec.nodeName`, the label index, the owner index) and `plain` (no index at all). Every query
runs through `Query` on each cache, so the ratio is the index's effect alone; a hand-written
list comprehension over `plain.list()` is the floor of any scan in Python, and `Lister.list`
(namespace index, then selector) is what kinformer offered before. Each figure is the median
over `--runs` samples, a sample repeating the query for at least 50 ms; the garbage collector
is frozen after the build, so that it does not walk the cache during a sample.
"""

from __future__ import annotations

import argparse
import gc
import json
import statistics
import time
from collections.abc import Callable
from typing import Any

from kinformer import (
    LABEL_INDEX,
    NAMESPACE_INDEX,
    OWNER_INDEX,
    OWNER_PATH,
    Indexer,
    LabelSelector,
    Lister,
    PathIndex,
    Query,
    label_index_func,
    namespace_index_func,
)

TIERS = ("web", "api", "db")


def make_pod(i: int) -> dict[str, Any]:
    app, rs = f"app-{i % 200}", f"rs-{i % 1000}"
    return {
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": f"{rs}-{i:07d}", "namespace": f"ns-{(i // 7) % 10}", "uid": f"pod-uid-{i}",
            "resourceVersion": str(1000 + i), "creationTimestamp": f"2026-11-{1 + i % 28:02d}T{i % 24:02d}:"
                                                                   f"{i % 60:02d}:{(i // 60) % 60:02d}Z",
            "labels": {"app": app, "tier": TIERS[(i // 3) % 3], "app.kubernetes.io/name": app,
                       "pod-template-hash": f"h{i % 1000}"},
            "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": rs,
                                 "uid": f"rs-uid-{i % 1000}", "controller": True}],
        },
        "spec": {"nodeName": f"node-{(i // 11) % 500}",
                 "containers": [{"name": "app", "image": f"registry.example/{app}:1.{i % 5}"},
                                {"name": "sidecar", "image": "registry.example/proxy:2.1"}]},
        "status": {"phase": "Running" if i % 50 else "Pending", "podIP": f"10.{i // 65536 % 256}.{i // 256 % 256}."
                                                                       f"{i % 256}"},
    }


def per_call_seconds(fn: Callable[[], Any], runs: int, sample_seconds: float = 0.05) -> float:
    """Median over `runs` samples of the time per call; each sample repeats `fn` >= sample_seconds."""
    fn()
    start = time.perf_counter()
    fn()
    once = time.perf_counter() - start
    loops = max(1, int(sample_seconds / max(once, 1e-7)))
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        for _ in range(loops):
            fn()
        samples.append((time.perf_counter() - start) / loops)
    return statistics.median(samples)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--pods", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    start = time.perf_counter()
    pods = [make_pod(i) for i in range(args.pods)]
    plain = Indexer()
    indexed = Indexer(indexers={NAMESPACE_INDEX: namespace_index_func, "node": PathIndex("spec.nodeName")})
    for pod in pods:
        plain.add(pod)
        indexed.add(pod)
    build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    indexed.add_indexers({LABEL_INDEX: label_index_func})
    label_index_seconds = time.perf_counter() - start
    start = time.perf_counter()
    indexed.add_indexers({OWNER_INDEX: PathIndex(OWNER_PATH)})
    owner_index_seconds = time.perf_counter() - start
    gc.collect()
    gc.freeze()

    selector = LabelSelector.parse("app=app-7,tier=web")

    def floor_labels() -> list[Any]:
        return [o for o in plain.list() if o["metadata"].get("namespace") == "ns-3" and selector.matches(
            o["metadata"].get("labels") or {})]

    def floor_owner() -> list[Any]:
        return [o for o in plain.list() if any(r.get("uid") == "rs-uid-17" for r in o["metadata"].get(
            "ownerReferences") or ())]

    def floor_node() -> list[Any]:
        return [o for o in plain.list() if o["spec"].get("nodeName") == "node-17"]

    lister = Lister(indexed)
    cases: dict[str, tuple[Callable[[Query[Any]], Query[Any]], Callable[[], list[Any]] | None,
                           Callable[[], list[Any]] | None]] = {
        "namespace + labels app=X,tier=web": (
            lambda q: q.namespace("ns-3").labels("app=app-7,tier=web"), floor_labels,
            lambda: lister.list("ns-3", selector)),
        "owned_by(ReplicaSet uid)": (lambda q: q.owned_by("rs-uid-17"), floor_owner, None),
        "where spec.nodeName (PathIndex)": (lambda q: q.where("spec.nodeName", "node-17"), floor_node, None),
        "labels app in (3 apps), newest 50 first": (
            lambda q: q.labels("app in (app-1,app-2,app-3)").order_by("-metadata.creationTimestamp").limit(50),
            None, None),
        "label tier=web, newest 50 first (a third of the cache)": (
            lambda q: q.labels("tier=web").order_by("-metadata.creationTimestamp").limit(50), None, None),
    }
    out: dict[str, Any] = {}
    for name, (build, floor, reference) in cases.items():
        via_index = build(Query(indexed, auto_index=False))
        via_scan = build(Query(plain, auto_index=False))
        matches = via_index.count()
        assert via_index.all() == via_scan.all() and via_scan.count() == matches
        if floor is not None:
            assert len(floor()) == matches
        row: dict[str, Any] = {
            "matches": matches, "candidates": via_index.explain().sources[0].candidates,
            "index_s": per_call_seconds(via_index.all, args.runs),
            "scan_s": per_call_seconds(via_scan.all, args.runs),
        }
        if floor is not None:
            row["hand_written_scan_s"] = per_call_seconds(floor, args.runs)
        if reference is not None:
            row["lister_s"] = per_call_seconds(reference, args.runs)
        row["scan_over_index"] = row["scan_s"] / row["index_s"]
        out[name] = row
    print(json.dumps({"pods": args.pods, "runs": args.runs, "build_s": build_seconds,
                      "label_index_build_s": label_index_seconds, "owner_index_build_s": owner_index_seconds,
                      "queries": out}), flush=True)


if __name__ == "__main__":
    main()
