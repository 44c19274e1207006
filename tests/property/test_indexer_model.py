"""Indexer against brute force: every index query equals a scan, after any operations."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kinformer import NAMESPACE_INDEX, CompactIndexer, Indexer, namespace_index_func
from tests.helpers import obj

NAMES = st.sampled_from(["a", "b", "c", "d"])
NAMESPACES = st.sampled_from(["n1", "n2", None])
LABEL_SETS = st.dictionaries(st.sampled_from(["x", "y", "z"]), st.sampled_from(["1", "2"]), max_size=3)


def by_labels(o: Any) -> list[str]:
    return [f"{k}={v}" for k, v in o["metadata"].get("labels", {}).items()]


def by_first_label(o: Any) -> list[str]:
    values = sorted(o["metadata"].get("labels", {}).values())
    return values[:1]


INDEXERS = {NAMESPACE_INDEX: namespace_index_func, "labels": by_labels, "first": by_first_label}


class IndexerMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.idx = Indexer(indexers={NAMESPACE_INDEX: namespace_index_func, "labels": by_labels})
        self.active = {NAMESPACE_INDEX: namespace_index_func, "labels": by_labels}
        self.model: dict[str, Any] = {}

    @staticmethod
    def key(o: Any) -> str:
        ns = o["metadata"].get("namespace")
        return f"{ns}/{o['metadata']['name']}" if ns else o["metadata"]["name"]

    @rule(name=NAMES, ns=NAMESPACES, labels=LABEL_SETS)
    def upsert(self, name: str, ns: str | None, labels: dict[str, str]) -> None:
        o = obj(name, ns, **labels)
        self.idx.update(o)
        self.model[self.key(o)] = o

    @rule(name=NAMES, ns=NAMESPACES)
    def delete(self, name: str, ns: str | None) -> None:
        o = obj(name, ns)
        self.idx.delete(o)
        self.model.pop(self.key(o), None)

    @rule(ops=st.lists(st.tuples(NAMES, NAMESPACES, LABEL_SETS, st.booleans()), max_size=6))
    def write_batch(self, ops: list[tuple[str, str | None, dict[str, str], bool]]) -> None:
        batch: list[tuple[str, Any]] = []
        expected_olds = []
        for name, ns, labels, delete in ops:
            o = obj(name, ns, **labels)
            key = self.key(o)
            batch.append((key, None if delete else o))
            expected_olds.append(self.model.get(key))
            if delete:
                self.model.pop(key, None)
            else:
                self.model[key] = o
        assert self.idx.write_batch(batch) == expected_olds

    @rule(objs=st.lists(st.tuples(NAMES, NAMESPACES, LABEL_SETS), max_size=6))
    def replace(self, objs: list[tuple[str, str | None, dict[str, str]]]) -> None:
        built = [obj(n, ns, **lbl) for n, ns, lbl in objs]
        self.idx.replace(built, "1")
        self.model = {self.key(o): o for o in built}

    @rule()
    def add_first_indexer(self) -> None:
        if "first" in self.active:
            return
        self.idx.add_indexers({"first": by_first_label})
        self.active["first"] = by_first_label

    @invariant()
    def indices_equal_brute_force(self) -> None:
        assert sorted(self.idx.list_keys()) == sorted(self.model)
        for name, func in self.active.items():
            expected: dict[str, set[str]] = {}
            for key, o in self.model.items():
                for value in func(o):
                    expected.setdefault(value, set()).add(key)
            assert sorted(self.idx.list_index_func_values(name)) == sorted(expected)
            for value, keys in expected.items():
                assert set(self.idx.index_keys(name, value)) == keys
                assert {self.key(o) for o in self.idx.by_index(name, value)} == keys
            for o in list(self.model.values())[:2]:
                want = set().union(*(expected.get(v, set()) for v in func(o))) if func(o) else set()
                assert {self.key(x) for x in self.idx.index(name, o)} == want


IndexerMachine.TestCase.settings = settings(max_examples=200, stateful_step_count=30, deadline=None)
TestIndexerModel = IndexerMachine.TestCase


class NamespaceOnlyMachine(IndexerMachine):
    """The informer's default indexer (namespace only), where `write_batch` skips re-indexing
    updates that keep the namespace; a key function that ignores the namespace lets an
    update move an object between namespaces, so that shortcut is checked too."""

    def __init__(self) -> None:
        super().__init__()
        self.idx = Indexer(key_func=lambda o: o["metadata"]["name"], indexers={NAMESPACE_INDEX: namespace_index_func})
        self.active = {NAMESPACE_INDEX: namespace_index_func}

    @staticmethod
    def key(o: Any) -> str:
        return str(o["metadata"]["name"])


NamespaceOnlyMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestNamespaceOnlyIndexerModel = NamespaceOnlyMachine.TestCase


class CompactMachine(IndexerMachine):
    """The compact store (objects as bytes, a 2-entry decoded cache) against the same model:
    every read equals what was written last for its key."""

    def __init__(self) -> None:
        super().__init__()
        self.idx = CompactIndexer(indexers={NAMESPACE_INDEX: namespace_index_func, "labels": by_labels},
                                  decoded_cache=2)

    @invariant()
    def reads_equal_the_model(self) -> None:
        for key, o in self.model.items():
            assert self.idx.get_by_key(key) == o
            assert self.idx.resource_version_of(key) == o["metadata"]["resourceVersion"]
        assert sorted(map(self.key, self.idx.list()), key=str) == sorted(self.model, key=str)
        assert len(self.idx._decoded) <= 2


CompactMachine.TestCase.settings = settings(max_examples=60, stateful_step_count=30, deadline=None)
TestCompactIndexerModel = CompactMachine.TestCase
