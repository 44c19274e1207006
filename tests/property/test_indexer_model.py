"""Indexer against brute force: every index query equals a scan, after any operations."""

from __future__ import annotations

from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from kinformer import NAMESPACE_INDEX, Indexer, namespace_index_func
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
