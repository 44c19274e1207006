"""The convergence machine: a correct handler converges; deliberately wrong handlers are caught
within the default example budget, with a short shrunk example that replays; the machine
itself is deterministic and says what never settled.

Our suite runs the default number of examples with fewer steps and a fixed seed (so each
failure is found the same way on every run); users run `DEFAULT_SETTINGS` or more.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import anyio
import pytest
from hypothesis import settings
from hypothesis import strategies as st

from kinformer import DeletedFinalStateUnknown, meta_namespace_key
from kinformer.errors import InvalidArgumentError, SettleTimeoutError
from kinformer.testing import ConvergenceEnv, ConvergenceMachine, FakeApiServer, check_converges, steps
from kinformer.testing import strategies as ks
from kinformer.testing.convergence import DEFAULT_SETTINGS

ROOT = Path(__file__).resolve().parents[2]
SUITE = settings(DEFAULT_SETTINGS, stateful_step_count=10, derandomize=True, database=None)


def _load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("property_test_pods_per_node",
                                                  ROOT / "examples" / "property_test_pods_per_node.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _load_example()


@pytest.fixture(autouse=True)
def _quiet_reflectors() -> Iterator[None]:
    # Every injected fault is logged once by the reflector; hundreds of runs make that noise.
    logger = logging.getLogger("kinformer")
    level = logger.level
    logger.setLevel(logging.ERROR)
    yield
    logger.setLevel(level)


def test_the_pods_per_node_example_converges() -> None:
    EXAMPLE.test_pods_per_node_index_converges(SUITE)


def test_the_operator_example_converges_under_any_interleaving(monkeypatch: pytest.MonkeyPatch) -> None:
    """The controller issue's example operator, settled on `controller.idle()` (delayed retries
    and requeues run on the machine's FakeClock): copies equal sources after every settle."""
    monkeypatch.syspath_prepend(str(ROOT / "examples"))
    spec = importlib.util.spec_from_file_location("property_test_replicator",
                                                  ROOT / "examples" / "property_test_replicator.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    copies: list[int] = []
    check = module.ReplicatorConverges.check

    def counting(self: Any, env: ConvergenceEnv) -> None:
        copies.append(len(module.actual_copies(env.server.objects("configmaps"))))
        check(self, env)
    monkeypatch.setattr(module.ReplicatorConverges, "check", counting)
    module.test_copies_equal_sources_after_any_interleaving(SUITE)
    assert sum(1 for n in copies if n) >= 10, copies  # not vacuous: the operator made copies


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Property-testing your operator"):]
    return section[section.index("```python\n") + len("```python\n"):section.index("\n```\n")]


def test_the_readme_example_runs_and_converges() -> None:
    namespace: dict[str, Any] = {"__name__": "readme_example"}
    exec(compile(_readme_example(), "README.md", "exec"), namespace)
    namespace["test_the_mirror_converges"]()  # as written: the default budget


# -- deliberately wrong handlers --------------------------------------------------------------


class IgnoresTombstones(EXAMPLE.NodeIndex):  # type: ignore[name-defined,misc]
    def on_delete(self, pod: Any) -> None:
        if isinstance(pod, DeletedFinalStateUnknown):
            return  # the bug: a delete missed during a watch gap is never applied
        super().on_delete(pod)


class MutatesCachedPods(EXAMPLE.NodeIndex):  # type: ignore[name-defined,misc]
    def on_add(self, pod: Any, is_in_initial_list: bool) -> None:
        pod["metadata"].setdefault("labels", {})["indexed"] = "yes"  # the bug: the informer's own object
        super().on_add(pod, is_in_initial_list)


def _failure(index_class: type) -> tuple[AssertionError, str, list[str]]:
    def setup(env: ConvergenceEnv) -> Any:
        index = index_class()
        env.informer("pods").add_event_handler(index.on_add, index.on_update, index.on_delete)
        return index

    with pytest.raises(AssertionError) as info:
        check_converges(setup, EXAMPLE.index_matches_the_server, resources=["pods"], settings=SUITE)
    notes = "\n".join(getattr(info.value, "__notes__", []))
    return info.value, notes, [line for line in notes.splitlines() if line.startswith("state.")]


def _replay_listing(notes: str) -> list[steps.Step]:
    """The listing the machine adds to a failure, evaluated: Python that builds the steps."""
    listing = notes[notes.index("steps = ["):].split("\n]", 1)[0] + "\n]"
    namespace: dict[str, Any] = {name: getattr(steps, name) for name in steps.__all__}
    exec(listing, namespace)
    return list(namespace["steps"])


def test_a_handler_that_ignores_tombstones_is_caught_with_a_short_example() -> None:
    _, notes, printed = _failure(IgnoresTombstones)
    # start (a pod on a node), a watch gap that deletes it, the final settle: nothing more.
    assert printed[0].startswith("state.start(initial=[Create(resource='pods'"), printed
    assert any(line.startswith("state.watch_gap(writes=[Delete(resource='pods'") for line in printed), printed
    assert len(printed) <= 4, printed
    replayed = _replay_listing(notes)
    assert [type(s).__name__ for s in replayed][-4:] == ["StallWatches", "Delete", "Compact", "StallWatches"]
    server = FakeApiServer()
    steps.replay(server, replayed)
    assert server.objects("pods") == {}


def test_a_handler_that_mutates_cached_objects_is_caught() -> None:
    error, _, printed = _failure(MutatesCachedPods)
    assert "differs from the server's object at metadata.labels" in str(error)
    assert "was a cached object mutated?" in str(error)
    assert len(printed) <= 3, printed


# -- the machine itself -------------------------------------------------------------------------


class _Index(ConvergenceMachine):
    resources = ("pods",)

    async def setup(self, env: ConvergenceEnv) -> None:
        self.index = EXAMPLE.NodeIndex()
        self.log: list[tuple[str, str]] = []

        def on_delete(pod: Any) -> None:
            self.log.append(("tombstone" if isinstance(pod, DeletedFinalStateUnknown) else "delete",
                             pod.key if isinstance(pod, DeletedFinalStateUnknown) else meta_namespace_key(pod)))
            self.index.on_delete(pod)

        def on_update(old: Any, new: Any) -> None:
            self.log.append(("update", new["metadata"]["resourceVersion"]))
            self.index.on_update(old, new)
        env.informer("pods").add_event_handler(self.index.on_add, on_update, on_delete)

    def check(self, env: ConvergenceEnv) -> None:
        EXAMPLE.index_matches_the_server(env.server, self.index)


POD_A = ks.pods(name="a", node_names=st.just("node-a")).example()


def _run_fixed(machine: _Index) -> tuple[list[tuple[str, str]], tuple[int, ...]]:
    pod_b = {**POD_A, "metadata": {"name": "b", "namespace": "default"}}
    machine.start(initial=[steps.Create("pods", POD_A)])
    machine.fault(steps.DropWatches())                         # no event yet: backs off on the FakeClock
    machine.write(steps.Create("pods", pod_b))                 # unseen until time passes
    machine.fault(steps.FailNext(count=1, code=429, retry_after=5.0, verbs=("watch",)))
    machine.advance_clock(10.0)                                # the re-watch gets the 429: Retry-After
    machine.advance_clock(10.0)                                # through: b arrives
    machine.fault(steps.MalformedLines(1))
    machine.write(steps.Delete("pods", "a", "default"))        # after a line that is not JSON: re-watch
    machine.write(steps.Patch("pods", "b", "default", {"metadata": {"labels": {"app": "x"}}}))
    machine.settle()
    stats = machine.env.informers[0].reflector.stats  # type: ignore[union-attr]
    log = list(machine.log)
    machine.teardown()
    return log, (stats.lists, stats.watches, stats.backoffs, stats.errors, stats.decode_errors)


def test_the_same_steps_end_the_same_way() -> None:
    first, second = _run_fixed(_Index()), _run_fixed(_Index())
    assert first == second
    log, (_, _, backoffs, errors, decode_errors) = first
    assert ("delete", "default/a") in log and decode_errors == 1 and backoffs >= 2 and errors >= 3, first


class _Blocking(ConvergenceMachine):
    resources = ("configmaps",)
    settle_timeout = 1.0

    async def setup(self, env: ConvergenceEnv) -> None:
        self.release = anyio.Event()

        async def on_add(obj: Any, initial: bool) -> None:
            await self.release.wait()
        env.informer("configmaps").add_event_handler(on_add)


def test_a_handler_that_never_returns_is_named_in_a_settle_timeout() -> None:
    machine = _Blocking()
    machine.start(initial=[])
    machine.write(steps.Create("configmaps", {"metadata": {"name": "a", "namespace": "default"}}))
    with pytest.raises(SettleTimeoutError) as info:
        machine.settle()
    assert "informer configmaps.v1" in str(info.value) and "reflector Watching" in str(info.value)
    machine.release.set()
    machine.teardown()  # released: the final settle succeeds


class ScopedMirrors(ConvergenceMachine):
    """Two resources, a label-selected and a namespace-scoped informer, each mirrored by a handler."""

    resources = ("configmaps", "pods")
    keys = ("default/a", "other/a")

    async def setup(self, env: ConvergenceEnv) -> None:
        self.mirrors: dict[str, dict[str, str]] = {"cm": {}, "pods": {}}
        for name, informer in (("cm", env.informer("configmaps", label_selector="app=a")),
                               ("pods", env.informer("pods", namespace="default"))):
            mirror = self.mirrors[name]

            def put(obj: Any, *_: Any, mirror: dict[str, str] = mirror) -> None:
                mirror[meta_namespace_key(obj)] = obj["metadata"]["resourceVersion"]

            def on_delete(obj: Any, mirror: dict[str, str] = mirror) -> None:
                mirror.pop(obj.key if isinstance(obj, DeletedFinalStateUnknown) else meta_namespace_key(obj))
            informer.add_event_handler(put, lambda old, new, put=put: put(new), on_delete)

    def check(self, env: ConvergenceEnv) -> None:
        cms = {k: o["metadata"]["resourceVersion"] for k, o in env.server.objects("configmaps").items()
               if o["metadata"].get("labels", {}).get("app") == "a"}
        pods = {k: o["metadata"]["resourceVersion"] for k, o in env.server.objects("pods").items()
                if k.startswith("default/")}
        assert self.mirrors == {"cm": cms, "pods": pods}


ScopedMirrors.TestCase.settings = settings(SUITE, max_examples=10)
TestScopedMirrors = ScopedMirrors.TestCase


def test_check_converges_refuses_unknown_options() -> None:
    with pytest.raises(InvalidArgumentError, match="rounds"):
        check_converges(EXAMPLE.index_pods_by_node, EXAMPLE.index_matches_the_server, rounds=3)
