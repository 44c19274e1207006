"""Query against brute force, after random writes to two clusters' caches.

Every query equals a filter + sort written out by hand over `indexer.list()`; paging through
its cursors yields exactly that list; every index lookup `explain()` reports has exactly the
size of its clause's brute-force match set, the candidates are exactly the intersection of
the served clauses' sets, and the query evaluates its residual predicates on no more than
those candidates (counted by a filter that runs last). Paging while writes happen never
repeats nor skips an object that no write touched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, rule

from kinformer import (
    NAMESPACE_INDEX,
    CompactIndexer,
    FieldSelector,
    Indexer,
    LabelSelector,
    PathIndex,
    Query,
    meta_namespace_key,
    namespace_index_func,
)

NAMES = [f"p{i}" for i in range(6)]
NAMESPACES = ["n1", "n2", None]
LABEL_KEYS = ["app", "tier", "app.kubernetes.io/name"]
LABEL_VALUES = ["a", "b", "c"]
NODES = [None, "", "n1", "n2"]
IMAGES = ["nginx", "redis", "busybox"]
UIDS = ["u1", "u2", "u3"]
TIMES = [None, "2026-01-01T00:00:00Z", "2026-01-01T00:00:00+00:00", "2026-01-01T00:00:00.5Z",
         "2026-01-01T01:00:00+02:00", "2025-12-31T23:30:00Z", "2026-01-01T00:00:00.000001Z"]


def make_pod(name: str, ns: str | None, labels: dict[str, str], node: str | None, images: list[str],
             owners: list[str], rv: int, created: str | None) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": str(rv), "labels": labels,
                            "ownerReferences": [{"kind": "ReplicaSet", "name": u, "uid": u} for u in owners]}
    if ns:
        meta["namespace"] = ns
    if created:
        meta["creationTimestamp"] = created
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": im} for i, im in enumerate(images)]}
    if node is not None:
        spec["nodeName"] = node
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec}


PODS = st.builds(
    make_pod, st.sampled_from(NAMES), st.sampled_from(NAMESPACES),
    st.dictionaries(st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES), max_size=3),
    st.sampled_from(NODES), st.lists(st.sampled_from(IMAGES), max_size=3),
    st.lists(st.sampled_from(UIDS), max_size=2, unique=True), st.integers(1, 40), st.sampled_from(TIMES))
CLUSTERS = st.sampled_from(["a", "b"])
WRITES = st.one_of(
    st.tuples(st.just("upsert"), CLUSTERS, PODS),
    st.tuples(st.just("delete"), CLUSTERS, st.tuples(st.sampled_from(NAMES), st.sampled_from(NAMESPACES))))


def _labels(o: Any) -> dict[str, str]:
    return dict(o["metadata"].get("labels") or {})


# Hand-written readers of what each generated path reaches (cluster, object) -> values.
REFERENCE_PATHS: dict[str, tuple[Callable[[str, Any], list[Any]], list[Any]]] = {
    "spec.nodeName": (lambda c, o: [o["spec"]["nodeName"]] if o["spec"].get("nodeName") is not None else [],
                      ["", "n1", "n2"]),
    "spec.containers[*].image": (lambda c, o: [x["image"] for x in o["spec"]["containers"]], IMAGES),
    'metadata.labels["app.kubernetes.io/name"]': (
        lambda c, o: [_labels(o)["app.kubernetes.io/name"]] if "app.kubernetes.io/name" in _labels(o) else [],
        LABEL_VALUES),
    "metadata.labels.app": (lambda c, o: [_labels(o)["app"]] if "app" in _labels(o) else [], LABEL_VALUES),
    "metadata.namespace": (lambda c, o: [o["metadata"]["namespace"]] if "namespace" in o["metadata"] else [],
                           ["n1", "n2", ""]),
    "metadata.ownerReferences[*].uid": (lambda c, o: [r["uid"] for r in o["metadata"]["ownerReferences"]], UIDS),
    "cluster": (lambda c, o: [c], ["a", "b", ""]),
}


@dataclass(frozen=True)
class Clause:
    """One generated clause: how to add it to a Query, and the brute-force predicate."""

    kind: str
    args: tuple[Any, ...]

    def apply(self, q: Query[Any]) -> Query[Any]:
        kind, args = self.kind, self.args
        if kind == "where":
            path, values = args
            return q.where(path, values[0]) if len(values) == 1 else q.where_in(path, values)
        method = getattr(q, kind)
        return method(*args)  # type: ignore[no-any-return]

    def matches(self, cluster: str, o: Any) -> bool:
        kind, args = self.kind, self.args
        meta = o["metadata"]
        if kind == "namespace":
            return meta.get("namespace", "") in args
        if kind == "labels":
            return LabelSelector.parse(args[0]).matches(_labels(o))
        if kind == "fields":
            return FieldSelector.parse(args[0]).matches(o)
        if kind == "where":
            path, values = args
            reached = REFERENCE_PATHS[path][0](cluster, o)
            if not reached:
                return None in values
            return any(v in values for v in reached)
        if kind == "name_contains":
            return str(args[0]).lower() in meta["name"].lower()
        assert kind == "owned_by"
        return args[0] in [r["uid"] for r in meta["ownerReferences"]]


LABEL_REQUIREMENTS = st.one_of(
    st.builds(lambda k, v: f"{k}={v}", st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES)),
    st.builds(lambda k, v: f"{k}!={v}", st.sampled_from(LABEL_KEYS), st.sampled_from(LABEL_VALUES)),
    st.builds(lambda k, vs: f"{k} in ({','.join(vs)})", st.sampled_from(LABEL_KEYS),
              st.lists(st.sampled_from(LABEL_VALUES), min_size=1, max_size=2)),
    st.builds(lambda k, vs: f"{k} notin ({','.join(vs)})", st.sampled_from(LABEL_KEYS),
              st.lists(st.sampled_from(LABEL_VALUES), min_size=1, max_size=2)),
    st.sampled_from(LABEL_KEYS),
    st.builds(lambda k: f"!{k}", st.sampled_from(LABEL_KEYS)),
)


@st.composite
def where_clauses(draw: st.DrawFn) -> Clause:
    path = draw(st.sampled_from(sorted(REFERENCE_PATHS)))
    pool = REFERENCE_PATHS[path][1]
    values = draw(st.lists(st.sampled_from([*pool, None]), min_size=1, max_size=3, unique=True))
    return Clause("where", (path, tuple(values)))


CLAUSES = st.one_of(
    st.builds(lambda ns: Clause("namespace", tuple(ns)),
              st.lists(st.sampled_from(["n1", "n2", ""]), min_size=1, max_size=2, unique=True)),
    st.builds(lambda r: Clause("labels", (r,)), LABEL_REQUIREMENTS),
    st.builds(lambda f: Clause("fields", (f,)), st.sampled_from(
        ["spec.nodeName=n1", "spec.nodeName=", "spec.nodeName!=n2", "metadata.namespace=n1", "metadata.namespace=",
         "metadata.namespace!=n2", "metadata.name=p1"])),
    where_clauses(),
    where_clauses(),
    where_clauses(),
    st.builds(lambda s: Clause("name_contains", (s,)), st.sampled_from(["p", "P1", "2", "x"])),
    st.builds(lambda u: Clause("owned_by", (u,)), st.sampled_from(UIDS)),
)
ORDER_FIELD = st.builds(lambda d, f: d + f, st.sampled_from(["", "-"]), st.sampled_from(
    ["metadata.resourceVersion", "metadata.creationTimestamp", "metadata.name", "cluster", "spec.nodeName"]))
ORDER_FIELDS = st.lists(ORDER_FIELD, max_size=2)


@dataclass(frozen=True)
class Spec:
    clauses: tuple[Clause, ...]
    order: tuple[str, ...]
    limit: int | None
    multi: bool  # both clusters by name, or cluster "a" alone (as cluster "")
    auto_index: bool


SPECS = st.builds(Spec, st.lists(CLAUSES, max_size=3).map(tuple), ORDER_FIELDS.map(tuple),
                  st.one_of(st.none(), st.integers(1, 5)), st.booleans(), st.booleans())


def _instant(text: str | None) -> tuple[int, Any]:
    return (0, datetime.fromisoformat(text)) if text else (1, 0)


def reference_sort_key(field: str, cluster: str, o: Any) -> tuple[int, Any]:
    meta = o["metadata"]
    if field == "metadata.resourceVersion":
        return 0, int(meta["resourceVersion"])
    if field == "metadata.creationTimestamp":
        return _instant(meta.get("creationTimestamp"))
    if field == "metadata.name":
        return 0, meta["name"]
    if field == "cluster":
        return 0, cluster
    node = o["spec"].get("nodeName")
    return (0, node) if node is not None else (1, 0)


class QueryMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        # Cluster a has the namespace index and a node PathIndex; b has no index at all and
        # is a compact store (objects kept as bytes, decoded on read, a small decoded cache).
        self.caches = {"a": Indexer(indexers={NAMESPACE_INDEX: namespace_index_func,
                                              "node": PathIndex("spec.nodeName")}),
                       "b": CompactIndexer(decoded_cache=4)}

    def write(self, op: str, cluster: str, what: Any) -> tuple[str, str]:
        if op == "upsert":
            self.caches[cluster].update(what)
            return cluster, meta_namespace_key(what)
        name, ns = what
        key = f"{ns}/{name}" if ns else name
        self.caches[cluster].delete_key(key)
        return cluster, key

    def sources(self, spec: Spec) -> dict[str, Indexer]:
        return self.caches if spec.multi else {"": self.caches["a"]}

    def query(self, spec: Spec) -> Query[Any]:
        source: Any = self.caches if spec.multi else self.caches["a"]
        q = Query(source, auto_index=spec.auto_index)
        # Label and field requirements are joined into one selector string, as a user writes them.
        labels = [c.args[0] for c in spec.clauses if c.kind == "labels"]
        fields = [c.args[0] for c in spec.clauses if c.kind == "fields"]
        for clause in spec.clauses:
            if clause.kind not in ("labels", "fields"):
                q = clause.apply(q)
        if labels:
            q = q.labels(",".join(labels))
        if fields:
            q = q.fields(",".join(fields))
        return q.order_by(*spec.order).limit(spec.limit)

    def brute_force(self, spec: Spec) -> list[tuple[str, str]]:
        rows = [(cluster, meta_namespace_key(o), o) for cluster, idx in self.sources(spec).items()
                for o in idx.list() if all(c.matches(cluster, o) for c in spec.clauses)]
        rows.sort(key=lambda r: (r[0], r[1]))
        for field in reversed(spec.order):
            name = field.lstrip("-")
            rows.sort(key=lambda r, name=name: reference_sort_key(name, r[0], r[2]),  # type: ignore[misc]
                      reverse=field.startswith("-"))
        return [(c, k) for c, k, _ in rows]

    @initialize(writes=st.lists(st.tuples(CLUSTERS, PODS), min_size=4, max_size=30))
    def populate(self, writes: list[tuple[str, dict[str, Any]]]) -> None:
        for cluster, pod in writes:
            self.write("upsert", cluster, pod)

    @rule(cluster=CLUSTERS, pod=PODS)
    def upsert(self, cluster: str, pod: dict[str, Any]) -> None:
        self.write("upsert", cluster, pod)

    @rule(writes=st.lists(WRITES, min_size=1, max_size=8))
    def write_many(self, writes: list[Any]) -> None:
        for op, cluster, what in writes:
            self.write(op, cluster, what)

    @rule(cluster=CLUSTERS, name=st.sampled_from(NAMES), ns=st.sampled_from(NAMESPACES))
    def delete(self, cluster: str, name: str, ns: str | None) -> None:
        self.write("delete", cluster, (name, ns))

    @rule(spec=SPECS)
    def query_equals_brute_force(self, spec: Spec) -> None:
        expected = self.brute_force(spec)
        q = self.query(spec)
        page = q.page(count=True)
        assert [(h.cluster, h.key) for h in page.hits] == expected[:spec.limit]
        assert page.total == len(expected) == q.count()
        assert (page.next_cursor is not None) == (spec.limit is not None and len(expected) > spec.limit)
        seen = [(h.cluster, h.key) for h in page.hits]
        while page.next_cursor is not None:
            page = q.after(page.next_cursor).page()
            seen += [(h.cluster, h.key) for h in page.hits]
        assert seen == expected

    @rule(order=st.lists(ORDER_FIELD, min_size=1, max_size=2), multi=st.booleans(),
          limit=st.one_of(st.none(), st.integers(1, 4)))
    def ordering_equals_brute_force(self, order: list[str], multi: bool, limit: int | None) -> None:
        self.query_equals_brute_force(Spec((), tuple(order), limit, multi, False))

    @rule(spec=SPECS)
    def indexes_are_exact_and_bound_the_work(self, spec: Spec) -> None:
        served_by_cluster: dict[str, list[Clause]] = {}
        for cluster, idx in self.sources(spec).items():
            objs = idx.list()
            served_by_cluster[cluster] = []
            for clause in spec.clauses:
                if clause.kind == "where" and clause.args[0] == "cluster":
                    continue
                (step,) = clause.apply(Query(idx, auto_index=spec.auto_index)).explain().sources[0].steps
                if step.index is not None:
                    assert step.keys == sum(1 for o in objs if clause.matches(cluster, o)), (clause, step)
                    served_by_cluster[cluster].append(clause)
        calls = 0

        def counted(o: Any) -> bool:
            nonlocal calls
            calls += 1
            return True

        q = self.query(spec).filter(counted)
        q.all()
        plan = q.explain()
        for source in plan.sources:
            if source.excluded:
                continue
            served = served_by_cluster[source.cluster]
            assert len([s for s in source.steps if s.index is not None]) == len(served)
            objs = self.sources(spec)[source.cluster].list()
            assert source.candidates == sum(1 for o in objs if all(c.matches(source.cluster, o) for c in served))
        assert calls <= sum(s.candidates for s in plan.sources if not s.excluded)

    @rule(spec=SPECS, batches=st.lists(st.lists(WRITES, max_size=3), min_size=1, max_size=4),
          limit=st.integers(1, 3))
    def paging_is_stable_across_writes(self, spec: Spec, batches: list[list[Any]], limit: int) -> None:
        q = self.query(spec).limit(limit)
        at_start = set(self.brute_force(spec))
        touched: set[tuple[str, str]] = set()
        seen: list[tuple[str, str]] = []
        page = q.page()
        pending = list(batches)
        for _ in range(100):  # more than enough pages for every object the names allow
            now = set(self.brute_force(spec))
            assert all((h.cluster, h.key) in now for h in page.hits)
            seen += [(h.cluster, h.key) for h in page.hits]
            if page.next_cursor is None:
                break
            for op, cluster, what in pending.pop(0) if pending else ():
                written, key = self.write(op, cluster, what)
                touched.add((written if spec.multi else "" if written == "a" else "-", key))
            page = q.after(page.next_cursor).page()
        assert page.next_cursor is None
        untouched = [row for row in seen if row not in touched]
        assert len(untouched) == len(set(untouched))
        assert at_start - touched <= set(seen)


QueryMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=20, deadline=None)
TestQueryModel = QueryMachine.TestCase
