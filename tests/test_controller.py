"""Controller semantics on a scripted informer and a FakeClock: outcomes, backoff, per-key
serialisation, sync gating, priority, owner mapping, shutdown, signals, logging, metrics.

`ScriptedInformer` stands in for a SharedIndexInformer: the test delivers each event and
says when the cache has synced, so every interleaving is chosen, not raced.
(tests/integration/test_controller.py runs the same controller on real informers over HTTP.)
"""

from __future__ import annotations

import asyncio
import copy
import os
import signal
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager, contextmanager
from types import SimpleNamespace
from typing import Any

import anyio
import anyio.lowlevel
import pytest
import structlog
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from prometheus_client import CollectorRegistry

from kinformer import (
    AlreadyStartedError,
    CacheSyncTimeoutError,
    Controller,
    ControllerState,
    DeletedFinalStateUnknown,
    PrometheusMetricsProvider,
    ReconcileTimeoutError,
    Request,
    Resource,
    Result,
    TerminalError,
    owner_requests,
    shutdown_on_signal,
)
from kinformer.errors import InvalidArgumentError
from kinformer.ratelimit import ItemExponentialFailureRateLimiter
from kinformer.testing import FakeClock, eventually
from tests.helpers import obj


class Registration:
    def __init__(self, informer: ScriptedInformer, handlers: tuple[Any, Any, Any], name: str) -> None:
        self.informer, self.name = informer, name
        self.on_add, self.on_update, self.on_delete = handlers

    def has_synced(self) -> bool:
        return self.informer.synced.is_set()

    async def wait_synced(self) -> None:
        await self.informer.synced.wait()

    def remove(self) -> None:
        self.informer.registrations.remove(self)


class ScriptedInformer:
    """The informer surface a Controller uses, driven by the test."""

    def __init__(self, resource: Resource = Resource.configmaps) -> None:
        self.list_watch = SimpleNamespace(resource=resource)
        self.registrations: list[Registration] = []
        self.synced = asyncio.Event()
        self.last_error: BaseException | None = None

    def health(self) -> Any:
        return SimpleNamespace(running=True)

    def add_event_handler(self, on_add: Any, on_update: Any, on_delete: Any, *, name: str = "") -> Registration:
        registration = Registration(self, (on_add, on_update, on_delete), name)
        self.registrations.append(registration)
        return registration

    def add(self, o: Any, initial: bool = False) -> None:
        for r in list(self.registrations):
            r.on_add(o, initial)

    def update(self, old: Any, new: Any) -> None:
        for r in list(self.registrations):
            r.on_update(old, new)

    def delete(self, o: Any) -> None:
        for r in list(self.registrations):
            r.on_delete(o)

    def sync(self) -> None:
        self.synced.set()


class Recorder:
    """A reconcile that records calls and does what the test scripted for each key."""

    def __init__(self) -> None:
        self.calls: list[Request] = []
        self.script: dict[str, Callable[[Request], Any]] = {}

    async def __call__(self, request: Request) -> Result | None:
        self.calls.append(request)
        action = self.script.get(request.name)
        if action is None:
            return None
        out = action(request)
        if asyncio.iscoroutine(out):
            out = await out
        return out  # type: ignore[no-any-return]

    def count(self, name: str) -> int:
        return sum(1 for r in self.calls if r.name == name)


@asynccontextmanager
async def running(controller: Controller) -> AsyncIterator[anyio.abc.TaskGroup]:
    async with anyio.create_task_group() as tg:
        tg.start_soon(controller.run)
        # run() registers its handlers in the step that leaves IDLE (the scripted informer,
        # unlike a real one, does not replay its cache to a late handler).
        await eventually(lambda: controller.state is not ControllerState.IDLE)
        yield tg
        tg.cancel_scope.cancel()


def cm(name: str, rv: int = 1, ns: str = "default", **labels: str) -> dict[str, Any]:
    return obj(name, ns, rv, **labels)


def req(name: str, ns: str = "default") -> Request:
    return Request(ns, name)


async def settle(turns: int = 20) -> None:
    """Let every ready task run a few times: the window in which something that must not
    happen would happen (a negative check has no condition to wait for)."""
    for _ in range(turns):
        await anyio.lowlevel.checkpoint()


def raising(exc: BaseException) -> Callable[[Request], Any]:
    def action(request: Request) -> Any:
        raise exc
    return action


# -- values ------------------------------------------------------------------------------


def test_request_is_a_frozen_hashable_key() -> None:
    r = Request.from_object(cm("a", ns="ns1"))
    assert r == Request("ns1", "a") == Request.from_key("ns1/a")
    assert str(r) == r.key == "ns1/a"
    assert Request.from_key("node-1") == Request("", "node-1") and str(Request("", "node-1")) == "node-1"
    assert len({r, Request("ns1", "a"), Request("ns2", "a")}) == 2
    with pytest.raises(AttributeError):
        r.name = "b"  # type: ignore[misc]


def test_result_rejects_negative_delays_and_two_requests() -> None:
    with pytest.raises(InvalidArgumentError):
        Result(requeue_after=-1)
    with pytest.raises(InvalidArgumentError):
        Result(requeue_after=1, requeue=True)
    assert Result(requeue_after=0).requeue_after == 0


def test_constructor_validates_its_settings() -> None:
    async def noop(r: Request) -> None:
        return None
    for kwargs in ({"workers": 0}, {"cache_sync_timeout": 0}, {"shutdown_grace": -1}, {"reconcile_timeout": 0}):
        with pytest.raises(InvalidArgumentError):
            Controller("c", noop, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        Controller("", noop)


# -- outcomes ----------------------------------------------------------------------------


async def test_a_raising_reconcile_is_retried_with_exponential_backoff() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    rec.script["a"] = raising(RuntimeError("boom"))
    controller = Controller("c", rec, clock=clock).watches(informer)
    async with running(controller):
        informer.add(cm("a"))
        informer.sync()
        delays = []
        for attempt in range(1, 6):
            await eventually(lambda n=attempt: rec.count("a") == n)
            await clock.wait_for_sleepers()
            delays.append(clock.sleeps[-1])
            clock.advance(clock.sleeps[-1])
        await eventually(lambda: rec.count("a") == 6)
    assert delays == pytest.approx([0.005, 0.01, 0.02, 0.04, 0.08])  # client-go's 5 ms · 2^n
    assert controller.stats().errors >= 5


async def test_success_forgets_the_backoff() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    failures = iter([RuntimeError("1"), RuntimeError("2")])

    def flaky(request: Request) -> Any:
        error = next(failures, None)
        if error is not None:
            raise error
        return None

    rec.script["a"] = flaky
    controller = Controller("c", rec, clock=clock).watches(informer)
    async with running(controller):
        informer.add(cm("a"))
        informer.sync()
        await eventually(lambda: rec.count("a") == 1)
        await clock.advance_until(lambda: controller.stats().results.get("success") == 1, step=0.01)
        assert controller.queue is not None and controller.queue.num_requeues(req("a")) == 0
    assert controller.stats().results == {"error": 2, "success": 1}


async def test_terminal_errors_are_not_requeued_but_counted_and_forgotten() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    rec.script["a"] = raising(TerminalError("bad spec"))
    rec.script["b"] = raising(ExceptionGroup("in a task group", [TerminalError("bad"), ValueError()]))
    controller = Controller("c", rec, clock=clock).watches(informer)
    async with running(controller):
        informer.add(cm("a"))
        informer.add(cm("b"))
        informer.sync()
        await eventually(lambda: controller.stats().terminal_errors == 2)
        await settle()
        assert clock.pending == 0  # no retry is waiting
        assert controller.queue is not None and controller.queue.num_requeues(req("a")) == 0
        informer.update(cm("a", 1), cm("a", 2))  # the next change runs it again
        await eventually(lambda: rec.count("a") == 2)
    assert rec.count("b") == 1


async def test_requeue_after_forgets_then_adds_after() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    outcomes = iter([RuntimeError("once"), Result(requeue_after=7.5), None])

    def script(request: Request) -> Any:
        outcome = next(outcomes)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    rec.script["a"] = script
    controller = Controller("c", rec, clock=clock).watches(informer)
    async with running(controller):
        informer.add(cm("a"))
        informer.sync()
        await eventually(lambda: rec.count("a") == 1)
        await clock.wait_for_sleepers()
        clock.advance(0.005)
        await eventually(lambda: controller.stats().results.get("requeue_after") == 1)
        assert controller.queue is not None and controller.queue.num_requeues(req("a")) == 0  # forgotten
        await clock.wait_for_sleepers()
        assert clock.sleeps[-1] == 7.5
        clock.advance(7.4)
        await settle()
        assert rec.count("a") == 2 and clock.pending == 1  # not due yet
        clock.advance(0.1)
        await eventually(lambda: rec.count("a") == 3)
    assert controller.stats().results == {"error": 1, "requeue_after": 1, "success": 1}


async def test_requeue_after_zero_requeues_at_once() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    rec.script["a"] = lambda r: Result(requeue_after=0) if rec.count("a") < 3 else None
    controller = Controller("c", rec, clock=clock).watches(informer)
    informer.sync()
    async with running(controller):
        informer.add(cm("a"))
        await eventually(lambda: controller.stats().results.get("success") == 1)
    assert rec.count("a") == 3 and clock.sleeps == []  # no delay was waited for
    assert controller.stats().results == {"requeue_after": 2, "success": 1}


async def test_requeue_true_is_rate_limited_without_an_error_and_bad_returns_are_errors() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    rec.script["a"] = lambda r: Result(requeue=True) if rec.count("a") < 3 else None
    rec.script["b"] = lambda r: "done" if rec.count("b") == 1 else None
    controller = Controller("c", rec, clock=clock).watches(informer)
    async with running(controller):
        informer.add(cm("a"))
        informer.add(cm("b"))
        informer.sync()
        await clock.advance_until(lambda: rec.count("a") == 3 and rec.count("b") == 2, step=0.005)
        await eventually(lambda: controller.stats().results.get("success") == 2)
    stats = controller.stats()
    assert stats.results == {"requeue": 2, "error": 1, "success": 2} and stats.errors == 1


# -- serialisation ---------------------------------------------------------------------------


async def test_a_key_changed_during_its_reconcile_runs_exactly_once_more() -> None:
    informer, rec = ScriptedInformer(), Recorder()
    release = anyio.Event()
    rec.script["a"] = lambda r: release.wait() if rec.count("a") == 1 else None
    controller = Controller("c", rec, workers=4).watches(informer)
    async with running(controller):
        informer.add(cm("a"))
        informer.sync()
        await eventually(lambda: rec.count("a") == 1)
        for rv in range(2, 6):
            informer.update(cm("a", rv - 1), cm("a", rv))
        await settle()
        queue = controller.queue
        assert queue is not None
        assert rec.count("a") == 1 and len(queue) == 0  # three idle workers, yet nobody took "a"
        release.set()
        await eventually(lambda: rec.count("a") == 2 and controller.stats().active == 0)
        await settle()
    assert rec.count("a") == 2


async def test_eight_workers_never_run_one_key_twice_at_once() -> None:
    informer = ScriptedInformer()
    in_flight: Counter[str] = Counter()
    peak: Counter[str] = Counter()
    runs: Counter[str] = Counter()
    overall = {"now": 0, "peak": 0}

    async def reconcile(request: Request) -> None:
        in_flight[request.name] += 1
        overall["now"] += 1
        peak[request.name] = max(peak[request.name], in_flight[request.name])
        overall["peak"] = max(overall["peak"], overall["now"])
        for _ in range(3):
            await anyio.lowlevel.checkpoint()
        runs[request.name] += 1
        in_flight[request.name] -= 1
        overall["now"] -= 1

    controller = Controller("c", reconcile, workers=8).watches(informer)
    names = [f"k{i}" for i in range(12)]
    async with running(controller):
        informer.sync()
        for round_ in range(200):
            name = names[round_ % len(names)]
            informer.update(cm(name, round_), cm(name, round_ + 1))
            if round_ % 5 == 0:
                await anyio.lowlevel.checkpoint()
        await eventually(lambda: overall["now"] == 0 and controller.queue is not None
                         and len(controller.queue) == 0 and controller.stats().active == 0)
    assert max(peak.values()) == 1
    assert overall["peak"] > 1  # the workers did run concurrently
    assert set(runs) == set(names)


# -- start -------------------------------------------------------------------------------------


async def test_nothing_is_reconciled_before_every_source_synced() -> None:
    primary, children = ScriptedInformer(), ScriptedInformer(Resource.secrets)
    rec = Recorder()
    controller = Controller("c", rec).watches(primary).watches(children, map=lambda o: [req("p")])
    async with running(controller):
        await eventually(lambda: controller.state is ControllerState.SYNCING)
        primary.add(cm("p"), initial=True)
        primary.sync()
        await settle()
        assert rec.calls == [] and controller.state is ControllerState.SYNCING
        children.sync()
        await eventually(lambda: rec.calls == [req("p")])
        assert controller.state is ControllerState.RUNNING


async def test_cache_sync_timeout_fails_loudly_naming_the_source() -> None:
    clock = FakeClock()
    synced, stuck = ScriptedInformer(), ScriptedInformer(Resource.secrets)
    stuck.last_error = RuntimeError("403 Forbidden")
    synced.sync()
    controller = Controller("c", Recorder(), clock=clock).watches(synced).owns(stuck)
    errors: list[BaseException] = []

    async def run() -> None:
        try:
            await controller.run()
        except CacheSyncTimeoutError as error:
            errors.append(error)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await clock.wait_for_sleepers()
        assert clock.sleeps == [120.0]  # controller-runtime's CacheSyncTimeout
        clock.advance(119.9)
        await settle()
        assert errors == [] and controller.state is ControllerState.SYNCING
        clock.advance(0.1)
    [error] = errors
    assert "owns (ConfigMap) secrets" in str(error) and "403 Forbidden" in str(error)
    assert isinstance(error, TimeoutError)
    assert controller.state is ControllerState.IDLE and stuck.registrations == []


async def test_run_is_not_reentrant_but_can_run_again_after_it_ended() -> None:
    informer, rec = ScriptedInformer(), Recorder()
    controller = Controller("c", rec).watches(informer)
    informer.sync()
    async with running(controller):
        await eventually(lambda: controller.state is ControllerState.RUNNING)
        with pytest.raises(AlreadyStartedError):
            await controller.run()
        with pytest.raises(AlreadyStartedError):
            controller.watches(ScriptedInformer())
        informer.add(cm("a"))
        await eventually(lambda: rec.count("a") == 1)
    assert controller.state is ControllerState.IDLE and informer.registrations == []
    async with running(controller):
        await eventually(lambda: controller.state is ControllerState.RUNNING)
        informer.add(cm("a"))
        await eventually(lambda: rec.count("a") == 2)


# -- priority ------------------------------------------------------------------------------


async def test_initial_list_and_resyncs_wait_behind_fresh_changes() -> None:
    informer, rec = ScriptedInformer(), Recorder()
    controller = Controller("c", rec).watches(informer)
    async with running(controller):
        await eventually(lambda: controller.state is ControllerState.SYNCING)
        for i in range(5):
            informer.add(cm(f"init-{i}"), initial=True)
        informer.update(cm("init-3", 1), cm("init-3", 1))  # a resync: still low
        informer.add(cm("fresh"))  # a real change during the initial sync
        informer.update(cm("init-4", 1), cm("init-4", 2))  # a real change of a queued low item
        assert controller.stats().low_priority_queued == 4
        informer.sync()
        await eventually(lambda: len(rec.calls) == 6)
    assert [r.name for r in rec.calls] == ["fresh", "init-4", "init-0", "init-1", "init-2", "init-3"]


async def test_without_priority_the_queue_is_plain_fifo() -> None:
    informer, rec = ScriptedInformer(), Recorder()
    controller = Controller("c", rec, priority_queue=False).watches(informer)
    async with running(controller):
        await eventually(lambda: controller.state is ControllerState.SYNCING)
        for i in range(3):
            informer.add(cm(f"init-{i}"), initial=True)
        informer.add(cm("fresh"))
        informer.sync()
        await eventually(lambda: len(rec.calls) == 4)
    assert [r.name for r in rec.calls] == ["init-0", "init-1", "init-2", "fresh"]


async def test_an_idle_worker_takes_a_low_priority_request_at_once() -> None:
    informer, rec = ScriptedInformer(), Recorder()
    controller = Controller("c", rec).watches(informer)
    informer.sync()
    async with running(controller):
        await eventually(lambda: controller._idle == 1)
        informer.update(cm("a"), cm("a"))  # a resync while the worker waits
        assert controller.stats().low_priority_queued == 0
        await eventually(lambda: rec.count("a") == 1)


class LaneModel:
    """The priority lane in front of client-go's queue, as the module docstring states it."""

    def __init__(self) -> None:
        self.queue: list[str] = []
        self.dirty: set[str] = set()
        self.processing: set[str] = set()
        self.lane: list[str] = []

    def queue_add(self, item: str) -> None:
        if item in self.dirty:
            return
        self.dirty.add(item)
        if item not in self.processing:
            self.queue.append(item)

    def add(self, item: str, low: bool) -> None:
        if low:
            if item not in self.lane:
                self.lane.append(item)
            return
        self.queue_add(item)
        if item in self.lane:
            self.lane.remove(item)

    def take(self) -> str | None:
        while not self.queue and self.lane:
            self.queue_add(self.lane.pop(0))
        if not self.queue:
            return None
        item = self.queue.pop(0)
        self.dirty.discard(item)
        self.processing.add(item)
        if item in self.lane:
            self.lane.remove(item)
        return item

    def done(self, item: str) -> None:
        self.processing.discard(item)
        if item in self.dirty:
            self.queue.append(item)


class PriorityLaneMachine(RuleBasedStateMachine):
    """Random adds (normal / low), takes and dones against `LaneModel`: same hand-outs in the
    same order, never one key held twice, the lane untouched while a normal request is ready."""

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.controller = Controller("m", Recorder())
        self.loop.run_until_complete(self._start())
        self.model = LaneModel()
        self.held: list[str] = []

    async def _start(self) -> None:
        from kinformer.workqueue import RateLimitingQueue

        self.controller._queue = RateLimitingQueue(name="")

    def teardown(self) -> None:
        self.loop.close()

    @rule(name=st.sampled_from("abcde"), low=st.booleans())
    def add(self, name: str, low: bool) -> None:
        self.controller._add(req(name), low)
        self.model.add(name, low)

    @precondition(lambda self: bool(self.model.queue or self.model.lane))
    @rule()
    def take(self) -> None:
        queue = self.controller._queue
        assert queue is not None
        if copy.deepcopy(self.model).take() is None:
            return  # everything in the lane is being processed: a worker would wait
        normal_ready = bool(self.model.queue)
        expected = self.model.take()
        lane_before = [r.name for r in self.controller._low]
        got = self.loop.run_until_complete(asyncio.wait_for(self.controller._next(queue), 1))
        assert got.name == expected
        if normal_ready:  # the lane waited: only the request taken (if it was there) left it
            assert [r.name for r in self.controller._low] == [n for n in lane_before if n != got.name]
        assert got.name not in self.held
        self.held.append(got.name)

    @precondition(lambda self: bool(self.held))
    @rule(index=st.integers(0, 10))
    def done(self, index: int) -> None:
        name = self.held.pop(index % len(self.held))
        assert self.controller._queue is not None
        self.controller._queue.done(req(name))
        self.model.done(name)

    @invariant()
    def lane_agrees(self) -> None:
        assert [r.name for r in self.controller._low] == self.model.lane


TestPriorityLane = PriorityLaneMachine.TestCase
TestPriorityLane.settings = settings(max_examples=80, stateful_step_count=30, deadline=None)


# -- mapping ---------------------------------------------------------------------------------


def owned(name: str, owner: str, *, controller: bool = True, kind: str = "ConfigMap",
          api_version: str = "v1", rv: int = 1) -> dict[str, Any]:
    o = cm(name, rv)
    o["metadata"]["ownerReferences"] = [{"apiVersion": api_version, "kind": kind, "name": owner,
                                         "uid": f"uid-{owner}", "controller": controller}]
    return o


def test_owner_requests_follow_controller_references_of_the_kind_and_group() -> None:
    o = owned("child", "parent")
    o["metadata"]["ownerReferences"] += [
        {"apiVersion": "v1", "kind": "ConfigMap", "name": "other", "uid": "u2"},  # not the controller
        {"apiVersion": "apps/v1", "kind": "Deployment", "name": "d", "uid": "u3", "controller": True}]
    assert owner_requests(o, "ConfigMap", "") == [req("parent")]
    assert owner_requests(o, "ConfigMap", "", only_controller=False) == [req("parent"), req("other")]
    assert owner_requests(o, "Deployment", "apps") == [req("d")]
    assert owner_requests(o, "Deployment", "extensions") == []
    assert owner_requests(o, "Namespace", "", namespaced=False) == []
    node_owned = owned("child", "node-1", kind="Node")
    assert owner_requests(node_owned, "Node", "", namespaced=False) == [Request("", "node-1")]
    assert owner_requests({"metadata": {"name": "x"}}, "ConfigMap", "") == []


async def test_owns_maps_updates_old_and_new_deletes_and_tombstones() -> None:
    parents, children, rec = ScriptedInformer(), ScriptedInformer(Resource.secrets), Recorder()
    controller = Controller("c", rec).watches(parents).owns(children)
    parents.sync()
    children.sync()
    async with running(controller):
        await eventually(lambda: controller.state is ControllerState.RUNNING)
        children.add(owned("s", "p1"))
        await eventually(lambda: rec.calls == [req("p1")])
        children.update(owned("s", "p1"), owned("s", "p2", rv=2))  # re-parented: both owners
        await eventually(lambda: len(rec.calls) == 3)
        assert set(rec.calls[1:]) == {req("p1"), req("p2")}
        children.delete(DeletedFinalStateUnknown("default/s", owned("s", "p3")))
        await eventually(lambda: rec.calls[-1:] == [req("p3")])
        children.delete(DeletedFinalStateUnknown("default/s", None))  # nothing known: nothing mapped
        parents.delete(DeletedFinalStateUnknown("default/p9", None))  # own key from the tombstone
        await eventually(lambda: rec.calls[-1:] == [req("p9")])
        children.add(owned("t", "x", kind="Secret"))
        children.add(owned("u", "p4", controller=False))
        queue = controller.queue
        assert queue is not None and len(queue) == 0 and controller.stats().low_priority_queued == 0
    assert req("x") not in rec.calls and req("p4") not in rec.calls


def test_owns_needs_a_kind_it_can_resolve() -> None:
    async def noop(r: Request) -> None:
        return None
    with pytest.raises(InvalidArgumentError):
        Controller("c", noop).owns(ScriptedInformer())  # no primary to take the kind from
    with pytest.raises(InvalidArgumentError):
        Controller("c", noop).owns(ScriptedInformer(), kind="Widget")  # group unknown
    Controller("c", noop).owns(ScriptedInformer(), kind="Widget", api_version="example.com/v1")
    Controller("c", noop).owns(ScriptedInformer(), kind="Deployment")  # a built-in: apps


async def test_watches_all_collapses_initial_events_and_expands_later_ones() -> None:
    primary, config = ScriptedInformer(), ScriptedInformer(Resource.namespaces)
    rec = Recorder()
    calls = {"n": 0}

    def everything() -> list[Request]:
        calls["n"] += 1
        return [req("a"), req("b")]

    controller = Controller("c", rec).watches(primary).watches_all(config, everything)
    async with running(controller):
        await eventually(lambda: controller.state is ControllerState.SYNCING)
        for i in range(100):
            config.add(cm(f"ns-{i}", ns=""), initial=True)
        primary.sync()
        config.sync()
        await eventually(lambda: len(rec.calls) == 2)
        assert calls["n"] == 1
        config.update(cm("ns-1", 1, ns=""), cm("ns-1", 2, ns=""))
        await eventually(lambda: len(rec.calls) == 4)
    assert calls["n"] == 2 and Counter(rec.calls) == {req("a"): 2, req("b"): 2}


# -- shutdown ------------------------------------------------------------------------------


class Stoppable:
    """Runs `controller.run()` in a task of `tg` that the test can cancel on its own."""

    def __init__(self, controller: Controller, tg: anyio.abc.TaskGroup) -> None:
        self.controller = controller
        self.scope = anyio.CancelScope()
        self.ended = anyio.Event()
        tg.start_soon(self._run)

    async def _run(self) -> None:
        try:
            with self.scope:
                await self.controller.run()
        finally:
            self.ended.set()

    def stop(self) -> None:
        self.scope.cancel()


async def test_graceful_shutdown_finishes_in_flight_work_and_takes_nothing_new() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    release = anyio.Event()
    finished: list[str] = []

    async def slow(request: Request) -> None:
        await release.wait()
        await anyio.lowlevel.checkpoint()  # a checkpoint after the cancellation: it is shielded
        finished.append(request.name)

    rec.script["busy"] = slow
    rec.script["busy2"] = slow
    controller = Controller("c", rec, workers=2, clock=clock).watches(informer)
    informer.sync()
    async with anyio.create_task_group() as tg:
        run = Stoppable(controller, tg)
        await eventually(lambda: controller.state is ControllerState.RUNNING)
        informer.add(cm("busy"))
        informer.add(cm("busy2"))
        await eventually(lambda: controller.stats().active == 2)
        informer.add(cm("queued"))
        run.stop()
        await eventually(lambda: controller.state is ControllerState.STOPPING)
        await clock.wait_for_sleepers()
        assert clock.sleeps[-1] == 30.0  # controller-runtime's graceful-shutdown timeout
        informer.add(cm("late"))
        await settle()
        assert not run.ended.is_set() and controller.stats().active == 2
        release.set()
        await eventually(run.ended.is_set)
    assert sorted(finished) == ["busy", "busy2"]
    assert [r.name for r in rec.calls] == ["busy", "busy2"]  # neither "queued" nor "late"
    assert controller.state is ControllerState.IDLE and informer.registrations == []
    assert clock.pending == 0  # the grace timer ended with the reconciles


async def test_reconciles_outliving_the_grace_period_are_cancelled() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    cancelled = anyio.Event()

    async def stuck(request: Request) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise

    rec.script["stuck"] = stuck
    controller = Controller("c", rec, shutdown_grace=5, clock=clock).watches(informer)
    informer.sync()
    async with anyio.create_task_group() as tg:
        run = Stoppable(controller, tg)
        await eventually(lambda: controller.state is ControllerState.RUNNING)
        informer.add(cm("stuck"))
        await eventually(lambda: controller.stats().active == 1)
        run.stop()
        await clock.wait_for_sleepers()
        assert clock.sleeps[-1] == 5
        clock.advance(4.9)
        await settle()
        assert not cancelled.is_set() and clock.pending == 1
        clock.advance(0.1)
        await eventually(run.ended.is_set)
    assert cancelled.is_set()
    assert controller.state is ControllerState.IDLE and controller.stats().active == 0
    assert controller.stats().results == {}  # a reconcile cancelled at shutdown is not an outcome


async def test_reconcile_timeout_on_the_injected_clock() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    rec.script["slow"] = lambda r: anyio.sleep_forever() if rec.count("slow") == 1 else None
    controller = Controller("c", rec, reconcile_timeout=10, clock=clock).watches(informer)
    informer.sync()
    async with running(controller):
        await eventually(lambda: controller.state is ControllerState.RUNNING)
        informer.add(cm("slow"))
        await eventually(lambda: rec.count("slow") == 1)
        await clock.wait_for_sleepers()
        clock.advance(10)
        await eventually(lambda: controller.stats().timeouts == 1)
        await clock.advance_until(lambda: rec.count("slow") == 2, step=0.005)  # requeued with backoff
        await eventually(lambda: controller.stats().results.get("success") == 1)
    assert controller.stats().results == {"error": 1, "success": 1}


async def test_reconcile_timeout_on_the_real_clock(caplog: pytest.LogCaptureFixture) -> None:
    informer, rec = ScriptedInformer(), Recorder()
    rec.script["slow"] = lambda r: anyio.sleep_forever()
    controller = Controller("c", rec, reconcile_timeout=0.05,
                            rate_limiter=ItemExponentialFailureRateLimiter(10, 10)).watches(informer)
    informer.sync()
    async with running(controller):
        informer.add(cm("slow"))
        await eventually(lambda: controller.stats().timeouts == 1)
    assert any("ReconcileTimeoutError" in r.getMessage() for r in caplog.records)
    assert issubclass(ReconcileTimeoutError, TimeoutError)


# -- signals ---------------------------------------------------------------------------------


class Signals:
    """An injectable signal source: the test sends, `shutdown_on_signal` receives."""

    def __init__(self) -> None:
        self.send, self.receive = anyio.create_memory_object_stream[int](10)
        self.open = False

    @contextmanager
    def __call__(self) -> Iterator[Any]:
        self.open = True
        try:
            yield self.receive
        finally:
            self.open = False


async def test_first_signal_stops_gracefully_and_the_second_forces() -> None:
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    rec.script["stuck"] = lambda r: anyio.sleep_forever()
    controller = Controller("c", rec, clock=clock).watches(informer)
    informer.sync()
    signals = Signals()
    after_block = anyio.Event()

    async def operator() -> None:
        async with shutdown_on_signal(signal_source=signals) as shutdown:
            await controller.run()
        assert shutdown.requested.is_set() and shutdown.forced.is_set()
        assert shutdown.signal == signal.SIGTERM
        after_block.set()

    with anyio.fail_after(10):
        async with anyio.create_task_group() as tg:
            tg.start_soon(operator)
            await eventually(lambda: controller.state is ControllerState.RUNNING)
            informer.add(cm("stuck"))
            await eventually(lambda: controller.stats().active == 1)
            await signals.send.send(signal.SIGTERM)
            await eventually(lambda: controller.state is ControllerState.STOPPING)
            await clock.wait_for_sleepers()  # the 30 s grace has begun; nobody advances it
            assert controller.stats().active == 1
            await signals.send.send(signal.SIGINT)
            await after_block.wait()
    assert controller.state is ControllerState.IDLE and not signals.open


async def test_the_block_ends_normally_without_a_signal_and_raises_its_own_errors() -> None:
    signals = Signals()
    async with shutdown_on_signal(signal_source=signals) as shutdown:
        assert signals.open
    assert not shutdown.requested.is_set() and not signals.open
    with pytest.raises(KeyError):
        async with shutdown_on_signal(signal_source=signals):
            raise KeyError("mine")


async def test_a_real_sigterm_ends_the_block() -> None:
    reached = False
    with anyio.fail_after(5):
        async with shutdown_on_signal(signal.SIGTERM) as shutdown:
            # The handler is installed when the block starts, so this cannot kill the test run.
            os.kill(os.getpid(), signal.SIGTERM)
            await anyio.sleep_forever()
            reached = True
    assert shutdown.signal == signal.SIGTERM and not reached
    assert signal.getsignal(signal.SIGTERM) in (signal.SIG_DFL, None)  # handler removed again


# -- logging and metrics --------------------------------------------------------------------


async def test_key_and_attempt_are_bound_for_every_log_line_inside_reconcile() -> None:
    clock = FakeClock()
    informer = ScriptedInformer()
    captured: list[dict[str, Any]] = []

    def capture(_: Any, __: str, event_dict: dict[str, Any]) -> Any:
        captured.append(dict(event_dict))
        raise structlog.DropEvent

    async def reconcile(request: Request) -> None:
        log = structlog.get_logger("app")
        log.info("reconciling")

        async def child() -> None:
            log.info("in a child task")

        async with anyio.create_task_group() as tg:
            tg.start_soon(child)
        if len([e for e in captured if e["event"] == "reconciling"]) < 2:
            raise RuntimeError("again")

    structlog.configure(processors=[structlog.contextvars.merge_contextvars, capture])
    try:
        controller = Controller("ctl", reconcile, clock=clock).watches(informer)
        informer.sync()
        async with running(controller):
            informer.add(cm("a"))
            await clock.advance_until(lambda: controller.stats().results.get("success") == 1, step=0.005)
    finally:
        structlog.reset_defaults()
    mine = [e for e in captured if e["event"] in ("reconciling", "in a child task")]
    assert [(e["controller"], e["key"], e["attempt"]) for e in mine] == [
        ("ctl", "default/a", 1), ("ctl", "default/a", 1), ("ctl", "default/a", 2), ("ctl", "default/a", 2)]
    failed = [e for e in captured if e["event"].startswith("reconcile failed")]
    assert failed and failed[0]["key"] == "default/a" and failed[0]["attempt"] == 1
    assert structlog.contextvars.get_contextvars() == {}  # nothing leaks out of the reconcile


async def test_controller_runtime_metrics_are_precreated_and_counted() -> None:
    registry = CollectorRegistry()
    provider = PrometheusMetricsProvider(registry)
    clock = FakeClock()
    informer, rec = ScriptedInformer(), Recorder()
    rec.script["bad"] = raising(TerminalError("no"))
    rec.script["later"] = lambda r: Result(requeue_after=60) if rec.count("later") == 1 else None

    def value(series: str, **labels: str) -> float | None:
        return registry.get_sample_value(series, {"controller": "replicator", **labels})

    controller = Controller("replicator", rec, workers=3, clock=clock, metrics_provider=provider).watches(informer)
    for result in ("success", "error", "requeue", "requeue_after"):
        assert value("controller_runtime_reconcile_total", result=result) == 0
    for series in ("controller_runtime_reconcile_errors_total", "controller_runtime_terminal_reconcile_errors_total",
                   "controller_runtime_reconcile_timeouts_total", "controller_runtime_active_workers"):
        assert value(series) == 0
    assert value("controller_runtime_max_concurrent_reconciles") == 3
    release = anyio.Event()
    rec.script["slow"] = lambda r: release.wait()
    informer.sync()
    async with running(controller):
        for name in ("ok", "bad", "later", "slow"):
            informer.add(cm(name))
        await eventually(lambda: value("controller_runtime_active_workers") == 1 and len(rec.calls) == 4)
        clock.advance(0.25)
        release.set()
        await eventually(lambda: value("controller_runtime_active_workers") == 0)
        assert registry.get_sample_value("workqueue_adds_total", {"name": "replicator",
                                                                  "controller": "replicator"}) == 4
    assert value("controller_runtime_reconcile_total", result="success") == 2
    assert value("controller_runtime_reconcile_total", result="error") == 1
    assert value("controller_runtime_reconcile_total", result="requeue_after") == 1
    assert value("controller_runtime_reconcile_errors_total") == 1
    assert value("controller_runtime_terminal_reconcile_errors_total") == 1
    assert value("controller_runtime_reconcile_time_seconds_count") == 4
    assert value("controller_runtime_reconcile_time_seconds_sum") == 0.25
    assert value("controller_runtime_reconcile_time_seconds_bucket", le="0.25") == 4
    assert value("controller_runtime_reconcile_time_seconds_bucket", le="0.2") == 3
    bounds = [s.labels["le"] for m in registry.collect() if m.name == "controller_runtime_reconcile_time_seconds"
              for s in m.samples if s.name.endswith("_bucket")]
    assert bounds[:3] == ["0.005", "0.01", "0.025"] and bounds[17] == "1" and bounds[-2:] == ["60", "+Inf"]
