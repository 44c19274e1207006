import threading
from typing import Any

import pytest

from kinformer import NAMESPACE_INDEX, Indexer, namespace_index_func
from kinformer.errors import IndexerConflictError
from tests.helpers import obj


def by_app(o: dict) -> list[str]:
    app = o["metadata"].get("labels", {}).get("app")
    return [app] if app else []


def multi(o: dict) -> list[str]:
    return sorted(o["metadata"].get("labels", {}).values())


def make() -> Indexer:
    return Indexer(indexers={NAMESPACE_INDEX: namespace_index_func, "app": by_app})


def test_add_get_update_delete() -> None:
    idx = make()
    a = obj("a", "ns1", app="web")
    idx.add(a)
    assert idx.get_by_key("ns1/a") is a
    assert "ns1/a" in idx and a in idx and len(idx) == 1
    a2 = obj("a", "ns1", rv=2, app="db")
    idx.update(a2)
    assert idx.get(a) is a2
    assert idx.by_index("app", "db") == [a2]
    assert idx.by_index("app", "web") == []
    assert "web" not in idx.list_index_func_values("app")
    idx.delete(a2)
    assert idx.get_by_key("ns1/a") is None and len(idx) == 0
    assert idx.list_index_func_values("app") == []
    assert idx.list_index_func_values(NAMESPACE_INDEX) == []


def test_index_queries() -> None:
    idx = Indexer(indexers={"labels": multi})
    x = obj("x", "ns", a="1", b="2")
    y = obj("y", "ns", a="2")
    z = obj("z", "ns", a="3")
    for o in (x, y, z):
        idx.add(o)
    assert sorted(idx.index_keys("labels", "2")) == ["ns/x", "ns/y"]
    got = idx.index("labels", obj("q", "ns", p="1", q="3"))
    assert sorted(o["metadata"]["name"] for o in got) == ["x", "z"]
    assert sorted(idx.list_index_func_values("labels")) == ["1", "2", "3"]


def test_unknown_index_raises_key_error() -> None:
    idx = make()
    for call in (lambda: idx.by_index("nope", "x"), lambda: idx.index_keys("nope", "x"),
                 lambda: idx.index("nope", obj("a")), lambda: idx.list_index_func_values("nope")):
        with pytest.raises(KeyError):
            call()


def test_add_indexers_indexes_existing_items_and_rejects_duplicates() -> None:
    idx = Indexer()
    idx.add(obj("a", "ns", app="web"))
    idx.add(obj("b", "ns", app="web"))
    idx.add_indexers({"app": by_app})
    assert sorted(idx.index_keys("app", "web")) == ["ns/a", "ns/b"]
    with pytest.raises(IndexerConflictError):
        idx.add_indexers({"app": by_app, "other": by_app})
    assert "other" not in idx.get_indexers()


def test_replace_rebuilds_items_and_indices() -> None:
    idx = make()
    idx.add(obj("a", "ns1", app="web"))
    idx.replace([obj("b", "ns2", app="db")], "42")
    assert idx.list_keys() == ["ns2/b"]
    assert idx.list_index_func_values(NAMESPACE_INDEX) == ["ns2"]
    assert idx.by_index("app", "web") == []
    assert idx.last_resource_version == "42"


def test_cluster_scoped_objects_index_under_empty_namespace() -> None:
    idx = make()
    idx.add(obj("node", None))
    assert idx.index_keys(NAMESPACE_INDEX, "") == ["node"]


def test_reads_from_other_threads_see_consistent_state() -> None:
    idx = make()
    stop = threading.Event()
    errors: list[BaseException] = []

    def reader() -> None:
        try:
            while not stop.is_set():
                for key in idx.index_keys("app", "web"):
                    assert key.startswith("ns/")
                idx.list()
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=reader)
    t.start()
    for i in range(3000):
        idx.add(obj(f"o{i}", "ns", app="web"))
        if i % 3 == 0:
            idx.delete(obj(f"o{i - 1}", "ns"))
    stop.set()
    t.join()
    assert errors == []
    assert len(idx.by_index("app", "web")) == len(idx)


def test_upsert_and_delete_key_return_the_previous_object() -> None:
    idx = make()
    a1, a2 = obj("a", "ns", app="web"), obj("a", "ns", rv=2, app="db")
    assert idx.upsert("ns/a", a1) is None
    assert idx.upsert("ns/a", a2) is a1
    assert idx.by_index("app", "db") == [a2] and idx.by_index("app", "web") == []
    assert idx.delete_key("ns/a") is a2
    assert idx.delete_key("ns/a") is None
    assert idx.list_index_func_values("app") == []


def test_intersect_indices_sizes_intersection_and_no_shared_sets() -> None:
    idx = make()
    web1, web2, db1 = obj("w1", "ns1", app="web"), obj("w2", "ns2", app="web"), obj("d1", "ns1", app="db")
    for o in (web1, web2, db1):
        idx.add(o)
    sizes, pairs = idx.intersect_indices([("app", {"web"}), (NAMESPACE_INDEX, {"ns1", "ns2", "none"})])
    assert sizes == [2, 3]
    assert sorted(pairs) == [("ns1/w1", web1), ("ns2/w2", web2)]
    sizes, pairs = idx.intersect_indices([("app", {"web"}), ("app", {"db"})])
    assert sizes == [2, 1] and pairs == []
    sizes, pairs = idx.intersect_indices([])
    assert sizes == [] and sorted(k for k, _ in pairs) == ["ns1/d1", "ns1/w1", "ns2/w2"]
    # One lookup returns pairs built from the index's own set, which must not be handed out.
    sizes, pairs = idx.intersect_indices([("app", {"db"})])
    assert pairs == [("ns1/d1", db1)]
    idx.delete(db1)
    assert pairs == [("ns1/d1", db1)] and idx.intersect_indices([("app", {"db"})]) == ([0], [])
    with pytest.raises(KeyError):
        idx.intersect_indices([("nope", {"x"})])


def test_compact_store_shares_equal_labels_and_index_values(monkeypatch: pytest.MonkeyPatch) -> None:
    from kinformer import store

    def name_length(o: Any) -> list[Any]:  # a non-string index value: kept as it is, not interned
        return [len(o["metadata"]["name"])]

    idx = store.CompactIndexer(indexers={NAMESPACE_INDEX: namespace_index_func, "n": name_length})
    a, b = obj("a", app="web", tier="x"), obj("b", app="web", tier="x")
    idx.update(a)
    idx.update(b)
    assert idx.labels_of("default/a") == {"app": "web", "tier": "x"}
    assert idx.labels_of("default/a") is idx.labels_of("default/b")  # one shared dict
    assert idx._items["default/a"].values is idx._items["default/b"].values
    a["metadata"]["labels"]["app"] = "changed"  # the caller's object, after the write
    assert idx.labels_of("default/a") == {"app": "web", "tier": "x"}
    assert sorted(o["metadata"]["name"] for o in idx.by_index("n", 1)) == ["a", "b"]  # type: ignore[arg-type]
    monkeypatch.setattr(store, "SHARED_CAPACITY", 1)  # the table starts over: still correct, just not shared
    for i in range(5):
        idx.update(obj(f"c{i}", app=f"a{i}"))
    assert [idx.labels_of(f"default/c{i}") for i in range(5)] == [{"app": f"a{i}"} for i in range(5)]
    assert len(idx._shared) <= 1
