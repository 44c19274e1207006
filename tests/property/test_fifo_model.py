"""DeltaFIFO against a plain reference model of client-go's semantics.

The model is written the obvious way (a list of keys, a dict of delta lists, client-go's
Replace loop verbatim); the real FIFO must agree with it after any interleaving of
add/update/delete/replace/resync/pop, with pops applied to a known-objects store the way
the informer applies them.
"""

from __future__ import annotations

import asyncio
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from kinformer import DeletedFinalStateUnknown, DeltaFIFO, DeltaType
from tests.helpers import obj

A, U, D, R, S = (DeltaType.ADDED, DeltaType.UPDATED, DeltaType.DELETED, DeltaType.REPLACED,
                 DeltaType.SYNC)
NAMES = st.sampled_from(["a", "b", "c", "d", "e"])


class DictStore:
    def __init__(self) -> None:
        self.items: dict[str, Any] = {}

    def list_keys(self) -> list[str]:
        return list(self.items)

    def get_by_key(self, key: str) -> Any:
        return self.items.get(key)


class Model:
    def __init__(self, known: DictStore) -> None:
        self.known = known
        self.queue: list[str] = []
        self.items: dict[str, list[tuple[DeltaType, Any]]] = {}
        self.populated = False
        self.count = 0

    def act(self, kind: DeltaType, o: Any, key: str) -> None:
        deltas = [*self.items.get(key, []), (kind, o)]
        if len(deltas) >= 2 and deltas[-1][0] is D and deltas[-2][0] is D:
            keep = deltas[-1] if isinstance(deltas[-2][1], DeletedFinalStateUnknown) else deltas[-2]
            deltas = [*deltas[:-2], keep]
        if key not in self.items:
            self.queue.append(key)
        self.items[key] = deltas

    def delete(self, o: Any, key: str) -> None:
        self.populated = True
        if key not in self.items and self.known.get_by_key(key) is None:
            return
        self.act(D, o, key)

    def replace(self, objs: list[Any]) -> None:
        keys: set[str] = set()
        for o in objs:
            key = f"default/{o['metadata']['name']}"
            keys.add(key)
            self.act(R, o, key)
        deletions = 0
        for key in list(self.items):
            if key in keys:
                continue
            newest = self.items[key][-1][1]
            if isinstance(newest, DeletedFinalStateUnknown):
                newest = newest.obj
            deletions += 1
            self.act(D, DeletedFinalStateUnknown(key, newest), key)
        for key in self.known.list_keys():
            if key in keys or key in self.items:
                continue
            deletions += 1
            self.act(D, DeletedFinalStateUnknown(key, self.known.get_by_key(key)), key)
        if not self.populated:
            self.populated = True
            self.count = len(keys) + deletions

    def resync(self) -> None:
        for key in self.known.list_keys():
            if key not in self.items:
                self.act(S, self.known.get_by_key(key), key)

    def pop(self) -> tuple[list[tuple[DeltaType, Any]], bool]:
        key = self.queue.pop(0)
        initial = not (self.populated and self.count == 0)
        if self.count > 0:
            self.count -= 1
        return self.items.pop(key), initial


def apply(store: DictStore, deltas: list[Any]) -> None:
    for kind, o in deltas:
        key = o.key if isinstance(o, DeletedFinalStateUnknown) else f"default/{o['metadata']['name']}"
        if kind is D:
            store.items.pop(key, None)
        else:
            store.items[key] = o


class FIFOMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.store = DictStore()
        self.model_store = DictStore()
        self.fifo = DeltaFIFO(known_objects=self.store)
        self.model = Model(self.model_store)
        self.rv = 0
        self.inline: Any = None
        self.inline_got: list[tuple[list[Any], int]] = []

    def teardown(self) -> None:
        self.loop.close()

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def next_obj(self, name: str) -> dict[str, Any]:
        self.rv += 1
        return obj(name, rv=self.rv)

    @rule(name=NAMES)
    def add(self, name: str) -> None:
        o = self.next_obj(name)
        self.run(self.fifo.add(o))
        self.model.populated = True
        self.model.act(A, o, f"default/{name}")

    @rule(name=NAMES)
    def update(self, name: str) -> None:
        o = self.next_obj(name)
        self.run(self.fifo.update(o))
        self.model.populated = True
        self.model.act(U, o, f"default/{name}")

    @rule(name=NAMES, tombstone=st.booleans())
    def delete(self, name: str, tombstone: bool) -> None:
        key = f"default/{name}"
        o: Any = DeletedFinalStateUnknown(key, None) if tombstone else self.next_obj(name)
        self.run(self.fifo.delete(o))
        self.model.delete(o, key)

    @rule(changes=st.lists(st.tuples(st.sampled_from([A, U, D]), NAMES), min_size=1, max_size=6))
    def apply(self, changes: list[tuple[DeltaType, str]]) -> None:
        batch = [(kind, self.next_obj(name)) for kind, name in changes]
        self.inline_got = []
        self.run(self.fifo.apply(batch))
        self.model.populated = True
        for kind, o in batch:
            key = f"default/{o['metadata']['name']}"
            if kind is D:
                self.model.delete(o, key)
            else:
                self.model.act(kind, o, key)
        if self.inline is not None:  # everything queued was consumed, in pop_many batches
            flags = []
            popped = [deltas for batch_, initial in self.inline_got for deltas in batch_]
            for batch_, initial in self.inline_got:
                flags += [i < initial for i in range(len(batch_))]
            want_flags = []
            for deltas in popped:
                want, want_initial = self.model.pop()
                apply(self.model_store, want)
                assert deltas == want
                want_flags.append(want_initial)
            assert flags == want_flags
            assert not self.model.queue

    @rule(on=st.booleans(), batch=st.integers(1, 3))
    def consume_inline(self, on: bool, batch: int) -> None:
        def process(popped: list[Any], initial: int) -> None:
            self.inline_got.append((popped, initial))
            for deltas in popped:
                apply(self.store, deltas)

        self.inline = process if on else None
        self.fifo.consume_inline(self.inline, batch)

    @rule(names=st.lists(NAMES, unique=True, max_size=5))
    def replace(self, names: list[str]) -> None:
        objs = [self.next_obj(n) for n in names]
        self.run(self.fifo.replace(objs, str(self.rv)))
        self.model.replace(objs)

    @rule()
    def resync(self) -> None:
        self.run(self.fifo.resync())
        self.model.resync()

    @precondition(lambda self: bool(self.model.queue))
    @rule(batch=st.integers(1, 3))
    def pop(self, batch: int) -> None:
        got: list[tuple[list[Any], bool]] = []

        def process(deltas: list[Any], initial: bool) -> None:
            got.append((deltas, initial))
            apply(self.store, deltas)

        self.run(self.fifo.pop_batch(process, batch))
        for deltas, initial in got:
            want, want_initial = self.model.pop()
            apply(self.model_store, want)
            assert deltas == want
            assert initial == want_initial

    @precondition(lambda self: bool(self.model.queue))
    @rule(batch=st.integers(1, 3))
    def pop_many(self, batch: int) -> None:
        got: list[tuple[list[Any], int]] = []

        def process(popped: list[Any], initial: int) -> None:
            got.append((popped, initial))
            for deltas in popped:
                apply(self.store, deltas)

        assert self.run(self.fifo.pop_many(process, batch)) == min(batch, len(self.model.queue))
        ((popped, initial),) = got
        flags = []
        for deltas in popped:
            want, want_initial = self.model.pop()
            apply(self.model_store, want)
            assert deltas == want
            flags.append(want_initial)
        assert flags == [i < initial for i in range(len(popped))]

    @invariant()
    def same_queue(self) -> None:
        assert self.fifo.list_keys() == self.model.queue
        for key in self.model.queue:
            assert self.fifo.get_by_key(key) == self.model.items[key]
        assert self.fifo.has_synced() == (self.model.populated and self.model.count == 0)
        assert self.store.items == self.model_store.items


FIFOMachine.TestCase.settings = settings(max_examples=300, stateful_step_count=40, deadline=None)
TestFIFOModel = FIFOMachine.TestCase
