"""Query: paths, clauses, index use, typed ordering, keyset cursors, many clusters, threads."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from kinformer import (
    LABEL_INDEX,
    NAMESPACE_INDEX,
    OWNER_INDEX,
    FieldPath,
    Indexer,
    Lister,
    PathIndex,
    Query,
    QueryError,
    SelectorError,
    label_index_func,
    namespace_index_func,
)
from kinformer.errors import InvalidArgumentError


def pod(name: str, ns: str | None = "default", *, rv: int | str = 1, labels: dict[str, str] | None = None,
        node: str | None = None, images: tuple[str, ...] = (), owners: tuple[str, ...] = (),
        created: str | None = None, **extra: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "resourceVersion": str(rv)}
    if ns:
        meta["namespace"] = ns
    if labels:
        meta["labels"] = labels
    if owners:
        meta["ownerReferences"] = [{"kind": "ReplicaSet", "name": f"rs-{u}", "uid": u} for u in owners]
    if created:
        meta["creationTimestamp"] = created
    spec: dict[str, Any] = {"containers": [{"name": f"c{i}", "image": image} for i, image in enumerate(images)]}
    if node is not None:
        spec["nodeName"] = node
    return {"metadata": meta, "spec": spec, **extra}


def names(objs: list[Any]) -> list[str]:
    return [o["metadata"]["name"] for o in objs]


def cache(*objs: dict[str, Any], **indexers: Any) -> Indexer:
    idx = Indexer(indexers={NAMESPACE_INDEX: namespace_index_func, **indexers})
    for o in objs:
        idx.add(o)
    return idx


# -- paths --------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "segments", "canonical"), [
    ("spec.nodeName", ("spec", "nodeName"), "spec.nodeName"),
    ("spec.containers[*].image", ("spec", "containers", "*", "image"), "spec.containers[*].image"),
    ("status.conditions[0].type", ("status", "conditions", 0, "type"), "status.conditions[0].type"),
    ("a[-1]", ("a", -1), "a[-1]"),
    ('metadata.labels["app.kubernetes.io/name"]', ("metadata", "labels", "app.kubernetes.io/name"),
     'metadata.labels["app.kubernetes.io/name"]'),
    ("metadata.labels['team']", ("metadata", "labels", "team"), "metadata.labels.team"),
    ('a["say \\"hi\\""]', ("a", 'say "hi"'), 'a["say \\"hi\\""]'),
    ('["cluster"]', ("cluster",), '["cluster"]'),
    ("metadata.annotations.example.com/x", ("metadata", "annotations", "example", "com/x"),
     "metadata.annotations.example.com/x"),
    ("spec.containers.0", ("spec", "containers", "0"), "spec.containers.0"),
])
def test_path_syntax(text: str, segments: tuple[Any, ...], canonical: str) -> None:
    path = FieldPath.parse(text)
    assert tuple("*" if repr(s) == "[*]" else s for s in path.segments) == segments
    assert str(path) == canonical
    assert FieldPath.parse(str(path)) == path


@pytest.mark.parametrize("text", ["", ".a", "a.", "a..b", "a[", "a[x]", "a[*", 'a["x"', 'a["x"b]', "a b",
                                  "a]", "a.[0]", "a'b"])
def test_bad_paths_raise_query_error(text: str) -> None:
    with pytest.raises(QueryError):
        FieldPath.parse(text)
    with pytest.raises(QueryError):
        Query(Indexer()).where(text, "x")


def test_wildcards_match_any_element_not_just_the_first() -> None:
    idx = cache(pod("a", images=("busybox", "nginx:1.27")), pod("b", images=("nginx:1.27",)), pod("c"))
    q = Query(idx)
    assert names(q.where("spec.containers[*].image", "nginx:1.27").all()) == ["a", "b"]
    assert names(q.where("spec.containers[0].image", "nginx:1.27").all()) == ["b"]
    assert names(q.where("spec.containers[-1].image", "busybox").all()) == []
    assert names(q.where_in("spec.containers[*].image", ["busybox", "x"]).all()) == ["a"]
    assert names(q.where("spec.containers[*].image", None).all()) == ["c"]


def test_quoted_keys_reach_labels_with_dots_and_slashes() -> None:
    idx = cache(pod("a", labels={"app.kubernetes.io/name": "web"}), pod("b", labels={"app": "web"}))
    q = Query(idx).where('metadata.labels["app.kubernetes.io/name"]', "web")
    assert names(q.all()) == ["a"]
    # An equality on one label path is answered by the label index.
    assert q.explain().sources[0].steps[0].index == LABEL_INDEX


def test_cluster_is_reserved_but_an_objects_own_cluster_field_is_quotable() -> None:
    idx = cache(pod("a", cluster="x"), pod("b"))
    assert names(Query(idx).where('["cluster"]', "x").all()) == ["a"]
    assert names(Query(idx).where("cluster", "").all()) == ["a", "b"]  # one source: cluster ""
    assert names(Query(idx).where("cluster", "x").all()) == []


# -- clause semantics ---------------------------------------------------------------------------


def test_where_compares_text_forms_and_none_means_absent() -> None:
    idx = cache(pod("a", node="n1", replicas=3, flag=True), pod("b", node="", replicas="3"), pod("c"))
    q = Query(idx)
    assert names(q.where("replicas", 3).all()) == ["a", "b"]
    assert names(q.where("replicas", "3").all()) == ["a", "b"]
    assert names(q.where("flag", True).all()) == ["a"]
    assert names(q.where("flag", "true").all()) == ["a"]
    assert names(q.where("spec.nodeName", None).all()) == ["c"]
    assert names(q.where("spec.nodeName", "").all()) == ["b"]
    assert names(q.where_in("spec.nodeName", ["n1", None]).all()) == ["a", "c"]
    assert names(q.where("spec", None).all()) == []  # a mapping is present, just not a scalar
    assert names(q.where("spec", "x").all()) == []
    # Field selectors keep the API server's rule: a missing field reads as "".
    assert names(q.fields("spec.nodeName=").all()) == ["b", "c"]
    assert names(q.fields("spec.nodeName!=n1").all()) == ["b", "c"]


def test_label_selectors_use_the_full_grammar() -> None:
    idx = cache(pod("a", labels={"app": "web", "tier": "fe"}), pod("b", labels={"app": "api", "tier": "db"}),
                pod("c", labels={"app": "db"}), pod("d", labels={"n": "7"}))
    q = Query(idx)
    assert names(q.labels("app in (web,api),tier!=db").all()) == ["a"]
    assert names(q.labels("app notin (web)").all()) == ["b", "c", "d"]
    assert names(q.labels("!tier").all()) == ["c", "d"]
    assert names(q.labels("tier").all()) == ["a", "b"]
    assert names(q.labels("n>5").all()) == ["d"]
    assert names(q.labels("app=web").labels("app=api").all()) == []
    with pytest.raises(SelectorError):
        q.labels("app in (web")


def test_namespace_name_contains_owned_by_and_filter() -> None:
    idx = cache(pod("nginx-1", "a", owners=("u1",)), pod("NGINX-2", "b", owners=("u2", "u1")),
                pod("web", "a"), pod("node-1", None))
    q = Query(idx)
    assert names(q.namespace("a").all()) == ["nginx-1", "web"]
    assert names(q.namespace("a", "b").name_contains("Ngin").all()) == ["nginx-1", "NGINX-2"]
    assert names(q.namespace("").all()) == ["node-1"]
    assert names(q.owned_by("u1").all()) == ["nginx-1", "NGINX-2"]
    assert names(q.filter(lambda o: o["metadata"]["name"].endswith("1")).all()) == ["nginx-1", "node-1"]
    assert names(q.fields("metadata.namespace=b").all()) == ["NGINX-2"]
    assert names(q.fields("metadata.namespace=").all()) == ["node-1"]


def test_queries_are_immutable() -> None:
    idx = cache(pod("a", labels={"x": "1"}), pod("b"))
    base = Query(idx)
    narrowed = base.labels("x=1")
    assert names(base.all()) == ["a", "b"]
    assert names(narrowed.all()) == ["a"]
    assert names(narrowed.limit(1).all()) == ["a"]
    assert names(narrowed.all()) == ["a"]


def test_bad_arguments_raise_query_error() -> None:
    q = Query(Indexer())
    calls: list[Any] = [
        lambda: q.where_in("a", "abc"), lambda: q.where("a", {"x": 1}),  # type: ignore[arg-type]
        lambda: q.limit(0), lambda: q.limit(True), q.namespace, lambda: q.owned_by(""),
        lambda: q.order_by("spec.containers[*].image"), lambda: q.after("not a cursor!"), lambda: q.after(""),
        lambda: Query(object()),  # type: ignore[call-overload]
    ]
    for call in calls:
        with pytest.raises(QueryError):
            call()
    assert issubclass(QueryError, InvalidArgumentError) and issubclass(QueryError, ValueError)


# -- indexes -----------------------------------------------------------------------------------


def test_explain_names_the_index_for_each_clause_and_counts_candidates() -> None:
    objs = [pod(f"p{i}", f"ns{i % 4}", labels={"app": f"a{i % 5}", "tier": "db" if i % 2 else "web"},
                node=f"n{i % 3}") for i in range(60)]
    idx = cache(*objs, node=PathIndex("spec.nodeName"))
    q = Query(idx).namespace("ns1").labels("app=a1,tier!=db").where("spec.nodeName", "n1").name_contains("p")
    plan = q.explain()
    (source,) = plan.sources
    steps = {s.clause: s for s in source.steps}
    assert steps["namespace in (ns1)"].index == NAMESPACE_INDEX and steps["namespace in (ns1)"].keys == 15
    assert steps["label app=a1"].index == LABEL_INDEX and steps["label app=a1"].keys == 12
    assert steps["label app=a1"].note == "added on demand"
    assert steps["where spec.nodeName = 'n1'"].index == "node" and steps["where spec.nodeName = 'n1'"].keys == 20
    assert steps["label tier!=db"].index is None and steps["name contains 'p'"].index is None
    expected = [o for o in objs if o["metadata"]["namespace"] == "ns1" and o["metadata"]["labels"]["app"] == "a1"
                and o["spec"]["nodeName"] == "n1"]
    assert source.candidates == len(expected)
    assert "index 'node' -> 20 keys" in str(plan)
    assert plan.as_dict()["sources"][0]["candidates"] == len(expected)
    assert q.all() == sorted((o for o in expected if o["metadata"]["labels"]["tier"] == "web"),
                             key=lambda o: f"{o['metadata']['namespace']}/{o['metadata']['name']}")


def test_indexed_clauses_evaluate_only_their_candidates() -> None:
    objs = [pod(f"p{i}", labels={"app": f"a{i % 10}"}) for i in range(100)]
    calls = 0

    def counted(o: Any) -> bool:
        nonlocal calls
        calls += 1
        return True

    q = Query(cache(*objs)).labels("app=a3").filter(counted)
    assert len(q.all()) == 10 and calls == 10
    calls = 0
    assert len(Query(cache(*objs), auto_index=False).labels("app=a3").filter(counted).all()) == 10
    assert calls == 10  # the label clause runs first, the user's filter last


def test_auto_index_opt_out_scans_and_adds_nothing() -> None:
    idx = cache(pod("a", labels={"x": "1"}, owners=("u",)), pod("b"))
    q = Query(idx, auto_index=False).labels("x").owned_by("u")
    assert names(q.all()) == ["a"]
    assert all(s.index is None for s in q.explain().sources[0].steps)
    assert set(idx.get_indexers()) == {NAMESPACE_INDEX}
    assert names(Query(idx).labels("x").owned_by("u").all()) == ["a"]
    assert {LABEL_INDEX, OWNER_INDEX} <= set(idx.get_indexers())
    # Once added, an index serves queries that would not add one.
    assert q.explain().sources[0].steps[0].index is not None


def test_an_index_added_up_front_is_found_by_its_function() -> None:
    idx = cache(pod("a", labels={"x": "1"}), labels=label_index_func,
                owners=PathIndex("metadata.ownerReferences[*].uid"))
    q = Query(idx).labels("x=1").owned_by("u")
    assert [s.index for s in q.explain().sources[0].steps] == ["labels", "owners"]
    assert LABEL_INDEX not in idx.get_indexers() and OWNER_INDEX not in idx.get_indexers()


def test_a_foreign_function_under_our_index_name_is_not_trusted() -> None:
    idx = cache(pod("a", labels={"x": "1"}), pod("b", labels={"x": "2"}), **{LABEL_INDEX: lambda o: ["junk"]})
    q = Query(idx).labels("x=1")
    assert names(q.all()) == ["a"]
    assert q.explain().sources[0].steps[0].index is None


def test_use_index_declares_a_users_index_for_a_path() -> None:
    def by_node(o: Any) -> list[str]:
        node = o["spec"].get("nodeName")
        return [node] if node is not None else []

    idx = cache(pod("a", node="n1"), pod("b", node="n2"), node=by_node)
    q = Query(idx).use_index("node", path="spec.nodeName").where("spec.nodeName", "n1")
    assert names(q.all()) == ["a"]
    assert q.explain().sources[0].steps[0].index == "node"
    assert Query(idx).where("spec.nodeName", "n1").explain().sources[0].steps[0].index is None
    missing = Query(idx).use_index("nodes", path="spec.nodeName").where("spec.nodeName", "n1")
    assert names(missing.all()) == ["a"]
    assert missing.explain().sources[0].steps[0].note == "declared index 'nodes' is not registered"
    # Field selectors with a value use it too; `path=` (missing or empty) cannot.
    assert Query(idx).use_index("node", path="spec.nodeName").fields("spec.nodeName=n2").explain() \
        .sources[0].steps[0].index == "node"
    assert Query(idx).use_index("node", path="spec.nodeName").fields("spec.nodeName=").explain() \
        .sources[0].steps[0].index is None


def test_a_bare_indexer_without_a_namespace_index_scans() -> None:
    idx = Indexer()
    idx.add(pod("a", "x"))
    idx.add(pod("b", "y"))
    q = Query(idx).namespace("x")
    assert names(q.all()) == ["a"]
    assert q.explain().sources[0].steps[0].index is None


def test_sources_lister_informer_like_and_invalid() -> None:
    idx = cache(pod("a"))

    class InformerLike:
        indexer = idx

    assert names(Query(Lister(idx)).all()) == ["a"]
    assert names(Query(InformerLike()).all()) == ["a"]  # type: ignore[call-overload]
    with pytest.raises(QueryError):
        Query({1: idx})  # type: ignore[dict-item]


# -- ordering -------------------------------------------------------------------------------


def test_resource_versions_order_numerically_and_timestamps_as_instants() -> None:
    idx = cache(pod("a", rv="10", created="2026-01-01T00:00:00Z"),
                pod("b", rv="9", created="2026-01-01T01:30:00+02:00"),
                pod("c", rv="100", created="2025-12-31T23:59:59.5Z"))
    q = Query(idx)
    assert names(q.order_by("metadata.resourceVersion").all()) == ["b", "a", "c"]
    assert names(q.order_by("-metadata.resourceVersion").all()) == ["c", "a", "b"]
    # b is 2025-12-31T23:30Z; c is half a second before a.
    assert names(q.order_by("metadata.creationTimestamp").all()) == ["b", "c", "a"]
    assert names(q.order_by("-metadata.creationTimestamp").all()) == ["a", "c", "b"]


def test_values_order_by_type_then_value_missing_last_and_ties_by_key() -> None:
    idx = cache(pod("s", v="b"), pod("t", v="2026-01-01T00:00:00Z"), pod("n", v=5), pod("i", v="12"),
                pod("f", v=False), pod("m"), pod("l", v=[1]), pod("s2", v="a"), pod("tie", v="a"))
    assert names(Query(idx).order_by("v").all()) == ["f", "n", "i", "t", "s2", "tie", "s", "l", "m"]
    assert names(Query(idx).order_by("-v").all()) == ["l", "m", "s", "s2", "tie", "t", "i", "n", "f"]
    assert names(Query(idx).order_by("-v", "-metadata.name").all())[3:5] == ["tie", "s2"]


def test_order_by_replaces_and_ties_break_by_cluster_then_key() -> None:
    a = cache(pod("x", rv=1), pod("y", rv=1))
    b = cache(pod("x", rv=1))
    q = Query({"b": b, "a": a}).order_by("metadata.name").order_by("metadata.resourceVersion")
    assert [(h.cluster, h.key) for h in q.page().hits] == [("a", "default/x"), ("a", "default/y"), ("b", "default/x")]
    assert [(h.cluster, h.key) for h in q.order_by("-cluster").page().hits] == \
        [("b", "default/x"), ("a", "default/x"), ("a", "default/y")]


# -- pages and cursors ---------------------------------------------------------------------------


def test_pages_through_every_match_exactly_once() -> None:
    idx = cache(*(pod(f"p{i:02d}", rv=100 - i % 7) for i in range(23)))
    q = Query(idx).order_by("-metadata.resourceVersion").limit(5)
    expected = Query(idx).order_by("-metadata.resourceVersion").all()
    seen: list[Any] = []
    page = q.page(count=True)
    assert page.total == 23 and page.remaining == 18
    while True:
        seen += page.items
        if page.next_cursor is None:
            break
        page = q.after(page.next_cursor).page(count=True)
    assert seen == expected and len(seen) == 23
    assert page.remaining == 0 and page.total == 23


def test_a_cursor_neither_repeats_nor_skips_unchanged_objects_across_writes() -> None:
    idx = cache(*(pod(f"p{i}", rv=i) for i in range(10)))
    q = Query(idx).order_by("metadata.resourceVersion").limit(4)
    first = q.page()
    assert names(first.items) == ["p0", "p1", "p2", "p3"]
    idx.add(pod("early", rv=-1))       # before the cursor: not seen, nothing shifts
    idx.delete(pod("p4"))               # the next object: simply gone
    idx.add(pod("p1", rv=50))           # a changed object moves to where its new value puts it
    idx.add(pod("late", rv=5))          # ties p5 by value; the key decides
    rest: list[Any] = []
    page = q.after(first.next_cursor).page()
    while True:
        rest += page.items
        if page.next_cursor is None:
            break
        page = q.after(page.next_cursor).page()
    assert names(rest) == ["late", "p5", "p6", "p7", "p8", "p9", "p1"]


def test_cursors_belong_to_their_ordering() -> None:
    idx = cache(*(pod(f"p{i}", rv=i) for i in range(5)))
    cursor = Query(idx).order_by("metadata.resourceVersion").limit(2).page().next_cursor
    assert cursor is not None
    with pytest.raises(QueryError, match="issued for"):
        Query(idx).order_by("-metadata.resourceVersion").after(cursor).page()
    with pytest.raises(QueryError, match="issued for"):
        Query(idx).after(cursor).page()
    assert names(Query(idx).after(cursor).order_by("metadata.resourceVersion").all()) == ["p2", "p3", "p4"]
    with pytest.raises(QueryError):
        Query(idx).after(cursor[:-3] + "@@@")


def test_first_all_count_and_limits() -> None:
    idx = cache(*(pod(f"p{i}", labels={"even": str(i % 2 == 0).lower()}) for i in range(6)))
    q = Query(idx).labels("even=true")
    assert q.count() == 3
    assert q.limit(2).count() == 3  # counts matches, not a page
    assert names(q.limit(2).all()) == ["p0", "p2"]
    first = q.order_by("-metadata.name").first()
    assert first is not None and first["metadata"]["name"] == "p4"
    assert Query(idx).labels("even=maybe").first() is None
    page = q.limit(3).page()
    assert page.next_cursor is None and page.total is None and page.remaining is None


# -- many clusters -----------------------------------------------------------------------------


def test_many_clusters_cluster_is_a_field() -> None:
    a = cache(pod("web", labels={"app": "web"}))
    b = Indexer()  # no indexes at all: that cluster is scanned
    b.add(pod("web", labels={"app": "web"}))
    b.add(pod("api", labels={"app": "api"}))
    q = Query({"a": a, "b": b}, auto_index=False).labels("app=web")
    assert [(h.cluster, h.key) for h in q.page().hits] == [("a", "default/web"), ("b", "default/web")]
    assert [h.cluster for h in q.where("cluster", "b").page().hits] == ["b"]
    assert Query({"a": a, "b": b}).where_in("cluster", ["a"]).count() == 1
    plan = Query({"a": a, "b": b}).where("cluster", "b").labels("app").explain()
    assert [s.excluded for s in plan.sources] == [True, False]
    assert plan.sources[1].steps[0].note == "selects sources"
    assert plan.sources[1].steps[1].index == LABEL_INDEX  # added on demand to b's indexer
    assert Query({}).all() == []


# -- threads ------------------------------------------------------------------------------------


def test_filters_run_outside_the_indexers_lock_and_their_errors_reach_the_caller() -> None:
    idx = cache(pod("a"))
    held: list[bool] = []

    def probe(o: Any) -> bool:
        free = idx._lock.acquire(blocking=False)
        if free:
            idx._lock.release()
        held.append(not free)
        return True

    assert names(Query(idx).filter(probe).all()) == ["a"]
    assert held == [False]

    def boom(o: Any) -> bool:
        raise KeyError("mine")

    with pytest.raises(KeyError, match="mine"):
        Query(idx).filter(boom).all()


def test_queries_from_a_thread_pool_during_writes_see_only_matching_objects() -> None:
    idx = cache(*(pod(f"p{i}", labels={"app": "web" if i % 2 else "api"}, rv=i) for i in range(200)))
    stop = threading.Event()

    def writer() -> None:
        n = 0
        while not stop.is_set():
            n += 1
            i = n % 200
            idx.add(pod(f"p{i}", labels={"app": "web" if (i + n) % 2 else "api"}, rv=1000 + n))
            if n % 7 == 0:
                idx.delete(pod(f"p{(i * 3) % 200}"))

    def read(_: int) -> list[Any]:
        q = Query(idx).labels("app=web").order_by("-metadata.resourceVersion").limit(25)
        return q.page().items

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        with ThreadPoolExecutor(4) as pool:
            pages = list(pool.map(read, range(200)))
    finally:
        stop.set()
        thread.join()
    assert all(o["metadata"]["labels"]["app"] == "web" for page in pages for o in page)
    assert all(len({o["metadata"]["name"] for o in page}) == len(page) for page in pages)
    assert list(idx.get_indexers()).count(LABEL_INDEX) == 1
