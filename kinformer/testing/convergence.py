"""`ConvergenceMachine` / `check_converges`: random writes and faults, then "once it settles, it is right".

The property every informer-based program should have: after *any* interleaving of writes
and API-server faults, once the server is healthy and everything has caught up, the
program's state agrees with the server's. A hypothesis state machine drives that against
FakeApiServer over real HTTP and shrinks a failure to a short, readable sequence.

One example, step by step:
1. `start(initial=[Create(...), ...])`, always first: a fresh FakeApiServer, a FakeClock, an
   InformerFactory on both, and a private event loop (`asyncio.Runner`: call the machine
   from a plain `def` test, never from inside a running loop). The initial objects are
   created, the user's `setup(env)` builds informers (`env.informer(...)`), registers
   handlers and adds components (`env.add(component)`); the informers start and sync, so
   the initial objects arrive as the initial list.
2. Steps, in whatever order hypothesis picks: `write` (one write valid for the keys the
   machine has written so far, as `strategies.write_sequences` makes them), `fault` (one
   of `fault_kinds`), `watch_gap` (watches hear nothing while some writes happen, then
   history is compacted: every informer relists and must infer deletes as tombstones),
   `advance_clock` (FakeClock time passes: backoffs end, Retry-After expires, resync and
   requeue timers fire), `settle` (below, then the checks). Steps are drawn against that
   model of the machine's own writes, not against the server, and applied when something
   needs the server (a settle, a check, `self.env` in a rule of yours): a run hypothesis
   abandons while drawing costs no server. A write another writer made invalid (a
   component, the garbage collector) is skipped and listed as skipped.
3. After applying each step the machine waits until the system is *quiescent*: each
   informer is caught up (idle, and its cache holds exactly the server's objects in its
   scope at their resourceVersions) or blocked on something only a later step can release
   (a backoff on the FakeClock, a stalled watch); a watching informer's watch is open
   (response headers in); a watch a `DropWatches` found open has been seen to end; every
   task the FakeClock woke has run; every added component is `idle()`. So an example is
   deterministic — the same steps end the same way, which shrinking and replay need — at
   a price: a fault lands between two of an informer's requests, never inside one
   (tests/soak.py covers those races). For the same reason the server sends no periodic
   bookmarks (they follow the wall clock, and client-go counts one as progress when a
   dropped watch decides whether to back off) and the reflectors' backoff jitter has a
   fixed seed.
4. Settling uses no sleep to decide anything: `server.clear_faults()` lifts every fault
   still in force (the property is about a server that has become healthy), then the
   machine waits until every informer is caught up and every component idle; whenever
   nothing but time can make progress (a backoff, a retry, a `requeue_after`), the FakeClock
   jumps to the next sleeper's deadline, and once all is caught up, timers due within
   `settle_horizon` clock seconds (600) still fire — a periodic requeue or resync due later
   waits for a later step; if a component wrote to the server meanwhile it goes again. Real time only bounds it: past
   `settle_timeout`, `SettleTimeoutError` names what is not done and why.
5. Checks, after every `settle` and at the end of the example: the built-in one
   (`check_caches`) — every factory informer's cache equals the server's objects in its
   scope (namespace, label and field selector) object for object, ignoring only
   kind/apiVersion/managedFields, which catches handlers that mutate cached objects —
   then the user's `check(env)`. A failing check gets a note listing the steps applied so
   far as Python (`replay(server, steps)` replays the writes and faults), next to
   hypothesis's printout of the shrunk steps.

Budgets: `DEFAULT_SETTINGS` (30 examples of up to 15 steps, one failure shrunk, no explain
phase) catches the classic handler bugs (a tombstone ignored, an update that forgets the
old state, a cached object mutated), shrinking included, in seconds to tens of seconds; in
CI run more (`settings(DEFAULT_SETTINGS, max_examples=300, stateful_step_count=40)`).

Deliberate choices: the machine owns the loop, the server and the clock, so examples are
hermetic; faults are lifted before settling rather than drained, since a fault waiting for
a request that never comes (a 500 "for the next list") would hang the settle; only
informers made with `env.informer` are settled and checked (the machine knows their scope).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import inspect
import random
import ssl
import sys
import types
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar, Generic, Protocol, TypeVar, cast, runtime_checkable

import anyio

from kinformer.backoff import Backoff
from kinformer.errors import InvalidArgumentError, LifecycleError, MissingExtraError, SettleTimeoutError
from kinformer.factory import InformerFactory
from kinformer.informer import SharedIndexInformer
from kinformer.objects import KubeObject
from kinformer.reflector import BackingOff, ReflectorConfig, Watching
from kinformer.resources import Resource
from kinformer.selectors import FieldSelector, LabelSelector
from kinformer.testing._wire import StatusError
from kinformer.testing.clock import FakeClock
from kinformer.testing.server import FakeApiServer
from kinformer.testing.steps import (
    FAULTS,
    ClearFaults,
    Compact,
    Create,
    Delete,
    DropWatches,
    Fault,
    StallWatches,
    Step,
    Write,
    split_key,
)

try:
    from hypothesis import HealthCheck, Phase, settings
    from hypothesis import strategies as st
    from hypothesis.stateful import RuleBasedStateMachine, initialize, precondition, rule, run_state_machine_as_test
    from hypothesis.strategies import SearchStrategy
except ImportError as error:  # pragma: no cover - exercised in a subprocess without hypothesis
    raise MissingExtraError("kinformer.testing.convergence", "hypothesis", "testing") from error

from kinformer.testing.strategies import faults, interleavings, objects_for, write_sequences

__all__ = ["DEFAULT_SETTINGS", "ConvergenceEnv", "ConvergenceMachine", "Settleable", "check_converges"]

S = TypeVar("S")
Obj = dict[str, Any]

DEFAULT_SETTINGS = settings(
    max_examples=30, stateful_step_count=15, deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    # One failure, shrunk once: each run starts a server, so shrinking is the expensive part;
    # the explain phase would rerun the failure under a line tracer to annotate it.
    report_multiple_bugs=False,
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.shrink],
)
"""The default budget: small enough for a unit-test suite, big enough for the classic bugs."""


@runtime_checkable
class Settleable(Protocol):
    """What `env.add` takes: something to run for the whole example that can say it is idle.

    A `Controller` is one: `idle()` means nothing ready, handed out or reconciling (requests
    waiting out a delay are work for later). Build it with `clock=env.clock`, so its retries
    and `requeue_after`s wait for the time the machine lets pass; on the real clock they would
    come back behind the settle's back.
    """

    async def run(self) -> None: ...

    def idle(self) -> bool: ...


class ConvergenceEnv:
    """What `setup` gets: the server, a client for it, the FakeClock, the informer factory.

    `informer(resource, ...)` is `factory.informer(...)`: informers made there start after
    `setup` returns, run on the FakeClock and are settled and cache-checked. `add(component)`
    runs `component.run()` for the example and waits for `component.idle()` when settling.
    `start_soon(fn, *args)` runs any other task in the example's task group.
    """

    def __init__(self, server: FakeApiServer, client: Any, clock: FakeClock, factory: InformerFactory,
                 task_group: anyio.abc.TaskGroup) -> None:
        self.server = server
        self.client = client
        self.clock = clock
        self.factory = factory
        self.components: list[Settleable] = []
        self._tg = task_group
        self._watches: dict[int, _WatchCounter] = {}

    def informer(self, resource: Resource | str, **options: Any) -> SharedIndexInformer[KubeObject]:
        informer = self.factory.informer(resource, **options)
        self._count_watches(informer)
        return informer

    def _count_watches(self, informer: SharedIndexInformer[KubeObject]) -> _WatchCounter:
        counter = self._watches.get(id(informer))
        if counter is None:
            counter = self._watches[id(informer)] = _WatchCounter(informer)
        return counter

    def add(self, component: Settleable) -> Settleable:
        self.components.append(component)
        self._tg.start_soon(component.run)
        return component

    def start_soon(self, fn: Callable[..., Coroutine[Any, Any, Any]], *args: Any) -> None:
        self._tg.start_soon(fn, *args)

    @property
    def informers(self) -> list[SharedIndexInformer[KubeObject]]:
        return list(self.factory.informers.values())


class _ExampleClock(FakeClock):
    """The example's FakeClock, which also knows whether a task it woke has run yet.

    After `advance()` a woken sleeper resumes only on a later loop turn; until then the
    system looks as still as before. `sleeping` counts tasks inside `sleep()` (woken or
    not), `pending` those not yet woken: equal means every woken task has moved on.
    """

    def __init__(self) -> None:
        super().__init__()
        self.sleeping = 0
        self._deadlines: Counter[float] = Counter()

    async def sleep(self, seconds: float) -> None:
        self.sleeping += 1
        deadline = self.now() + seconds
        self._deadlines[deadline] += 1
        try:
            await super().sleep(seconds)
        finally:
            self.sleeping -= 1
            self._deadlines[deadline] -= 1
            if not self._deadlines[deadline]:
                del self._deadlines[deadline]

    def next_deadline(self) -> float | None:
        """When the earliest sleeper not yet woken is due (None: nobody sleeps)."""
        now = self.now()
        future = [d for d in self._deadlines if d > now]
        return min(future) if future else None

    @property
    def woken_not_resumed(self) -> int:
        return self.sleeping - self.pending


class _WatchCounter:
    """Counts an informer's open watch connections: from the response's headers (the server
    has registered the watch by then, so a `DropWatches` reaches it) until it is closed.

    It wraps the informer's `ListWatch.watch`: the server's own count cannot tell, since a
    connection the client closed (after a malformed line) stays open there until its next write.
    """

    def __init__(self, informer: SharedIndexInformer[KubeObject]) -> None:
        self.open = 0
        self.serial = 0
        """Connections opened so far: with `open`, which one is open now."""
        self.dropped: int | None = None
        """The connection a `DropWatches` found open, until it has closed."""
        original = informer.list_watch.watch

        @contextlib.asynccontextmanager
        async def watch(*args: Any, **kwargs: Any) -> AsyncIterator[Any]:
            async with original(*args, **kwargs) as stream:
                self.serial += 1
                self.open += 1
                try:
                    yield stream
                finally:
                    self.open -= 1
                    if self.dropped is not None and self.dropped <= self.serial:
                        self.dropped = None
        setattr(informer.list_watch, "watch", watch)  # noqa: B010 - an instance attribute over the method


def _comparable(obj: Any) -> Any:
    if not isinstance(obj, dict):
        return obj
    out = {k: v for k, v in obj.items() if k not in ("kind", "apiVersion")}
    meta = out.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        out["metadata"] = {k: v for k, v in meta.items() if k != "managedFields"}
    return out


def _differences(a: Any, b: Any, path: str = "", limit: int = 3) -> list[str]:
    """Paths where `a` and `b` differ (at most `limit`): names fields, never prints values."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for key in sorted(set(a) | set(b), key=str):
            if a.get(key, ...) != b.get(key, ...):
                out += _differences(a.get(key), b.get(key), f"{path}.{key}" if path else str(key), limit)
            if len(out) >= limit:
                break
        return out[:limit]
    return [path or "(the object)"] if a != b else []


# Named functions, not lambdas: hypothesis describes each precondition on every rule choice,
# and describing a lambda means parsing its source.
def _has_faults(machine: ConvergenceMachine) -> bool:
    return bool(machine.fault_kinds)


def _has_gaps(machine: ConvergenceMachine) -> bool:
    return machine.watch_gaps


@dataclass(frozen=True, slots=True)
class _AdvanceClock:
    seconds: float

    def __repr__(self) -> str:
        return f"# the FakeClock moves {self.seconds} s"


_Pending = Step | _AdvanceClock


class ConvergenceMachine(RuleBasedStateMachine):
    """Base of a convergence state machine: override `setup` and `check` (module docstring).

    ```python
    class PodsPerNode(ConvergenceMachine):
        resources = ("pods",)

        async def setup(self, env: ConvergenceEnv) -> None:
            self.index = NodeIndex()
            env.informer("pods").add_event_handler(self.index.on_add, self.index.on_update, self.index.on_delete)

        def check(self, env: ConvergenceEnv) -> None:
            assert self.index.by_node == by_node(env.server.objects("pods"))

    TestPodsPerNode = PodsPerNode.TestCase   # DEFAULT_SETTINGS unless `.TestCase.settings = ...`
    ```

    Class attributes tune it: `resources` written to, and the `keys` ("ns/name") writes pick
    from (default `default/a`, `default/b`, `other/a`: writes collide); `fault_kinds`
    (`steps.FAULTS`; `()` for none) and `watch_gaps`; `initial_objects` (at most this many
    per resource exist before the informers start); `settle_horizon`, `settle_timeout`,
    `garbage_collector` (FakeApiServer's), `check_caches`. Override
    `objects(resource, namespace, name)` for your own bodies (it must depend on its
    arguments only: the strategies are built once per class). Your own rules see the
    server brought up to date when they read `self.env`.
    """

    resources: ClassVar[Sequence[str | Resource]] = ("configmaps",)
    keys: ClassVar[Sequence[str] | None] = None
    fault_kinds: ClassVar[Sequence[type[Fault]]] = FAULTS
    watch_gaps: ClassVar[bool] = True
    initial_objects: ClassVar[int] = 2
    settle_horizon: ClassVar[float] = 600.0
    settle_timeout: ClassVar[float] = 10.0
    garbage_collector: ClassVar[bool] = False
    check_caches: ClassVar[bool] = True

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # `MyMachine.TestCase` runs with the kit's budget unless you assign other settings.
        cls.TestCase.settings = DEFAULT_SETTINGS

    def __init__(self) -> None:
        super().__init__()
        self._runner: asyncio.Runner | None = None
        self._main: asyncio.Task[None] | None = None
        self._stop: asyncio.Event | None = None
        self._env: ConvergenceEnv | None = None
        self._stalled = False
        self._initial: list[Create] | None = None
        self._pending: list[_Pending] = []
        self._live: dict[Resource, set[str]] = {}
        self.applied: list[str] = []
        """What this example did so far, as Python (writes and faults) and comments."""

    # -- the user's hooks -----------------------------------------------------------------

    async def setup(self, env: ConvergenceEnv) -> None:
        """Build informers (`env.informer`), register handlers, `env.add` components."""

    def check(self, env: ConvergenceEnv) -> None:
        """Assert the invariant over `env.server` and your state; called once settled."""

    def objects(self, resource: str | Resource, namespace: str | None, name: str) -> SearchStrategy[Obj]:
        """The bodies of creates and updates of `resource` (default: `strategies.objects_for`)."""
        return objects_for(resource)(namespace, name)

    @property
    def env(self) -> ConvergenceEnv:
        """The example's server, client, clock and factory, with every step drawn so far applied."""
        self._flush()
        assert self._env is not None
        return self._env

    @property
    def _started_env(self) -> ConvergenceEnv:
        assert self._env is not None, "the example has not started"
        return self._env

    # -- strategies over the keys this machine has written ------------------------------------

    # Steps are drawn against a model of which of `keys` exist (the machine's own writes), not
    # against the server: so a step can be drawn without running anything, and the server
    # starts only when something needs it (a settle, a check, `self.env`). Hypothesis abandons
    # many runs while drawing, above all when shrinking; those then cost no server at all.

    def _keys(self, resource: str | Resource) -> list[str]:
        if self.keys is not None:
            return list(self.keys)
        return ["default/a", "default/b", "other/a"] if _res(resource).namespaced else ["a", "b", "c"]

    def _cached(self, key: tuple[Any, ...], build: Callable[[], Any]) -> Any:
        """Strategies built once per machine class: a strategy built for every draw is
        validated for every draw, which costs more than the draw (and shrinking draws a lot)."""
        cls = type(self)
        cache: dict[tuple[Any, ...], Any] | None = cls.__dict__.get("_kit_strategies")
        if cache is None:  # one per class (not inherited): it lives and goes with the class
            cache = {}
            setattr(cls, "_kit_strategies", cache)  # noqa: B010
        found = cache.get(key)
        if found is None:
            found = cache[key] = build()
        return found

    def _bodies(self, resource: str | Resource) -> Callable[[str | None, str], SearchStrategy[Obj]]:
        def build() -> Callable[[str | None, str], SearchStrategy[Obj]]:
            return functools.cache(lambda namespace, name: self.objects(resource, namespace, name))
        return cast("Callable[[str | None, str], SearchStrategy[Obj]]", self._cached(("bodies", resource), build))

    def _existing(self) -> tuple[tuple[str, ...], ...]:
        return tuple(tuple(sorted(self._live.get(_res(r), ()))) for r in self.resources)

    def _initial_creates(self) -> SearchStrategy[list[Create]]:
        return cast("SearchStrategy[list[Create]]", self._cached(("initial",), self._build_initial_creates))

    def _build_initial_creates(self) -> SearchStrategy[list[Create]]:
        def creates(resource: str | Resource) -> SearchStrategy[list[Create]]:
            def build(keys: list[str]) -> SearchStrategy[list[Create]]:
                return st.tuples(*[self._bodies(resource)(*_namespaced(resource, key)).map(
                    lambda obj: Create(resource, obj)) for key in keys]).map(list)
            return st.lists(st.sampled_from(self._keys(resource)), unique=True,
                            max_size=self.initial_objects).flatmap(build)
        return st.tuples(*[creates(r) for r in self.resources]).map(lambda parts: [c for p in parts for c in p])

    def _writes(self, resource: str | Resource, min_size: int, max_size: int) -> SearchStrategy[list[Write]]:
        existing = sorted(self._live.get(_res(resource), ()))
        return write_sequences(resource, self._keys(resource), objects=self._bodies(resource), existing=existing,
                               min_size=min_size, max_size=max_size)

    def _next_write(self) -> SearchStrategy[Write]:
        return cast("SearchStrategy[Write]", self._cached(("write", self._existing()), lambda: st.one_of(
            [self._writes(r, 1, 1).map(lambda writes: writes[0]) for r in self.resources])))

    def _gap_writes(self) -> SearchStrategy[list[Write]]:
        return cast("SearchStrategy[list[Write]]", self._cached(("gap", self._existing()), lambda: interleavings(
            *[self._writes(r, 1, 3) for r in self.resources])))

    def _faults(self) -> SearchStrategy[Fault]:
        return cast("SearchStrategy[Fault]", self._cached(("fault",), lambda: faults(self.fault_kinds)))

    def _model(self, writes: Sequence[Write]) -> None:
        for w in writes:
            live = self._live.setdefault(_res(w.resource), set())
            if isinstance(w, Delete):
                live.discard(w.key)
            else:
                live.add(w.key)

    # -- rules ------------------------------------------------------------------------------

    @initialize(initial=st.runner().flatmap(lambda m: m._initial_creates()))
    def start(self, initial: list[Create]) -> None:
        self._initial = list(initial)
        self._model(initial)

    @rule(write=st.runner().flatmap(lambda m: m._next_write()))
    def write(self, write: Write) -> None:
        self._pending.append(write)
        self._model([write])

    @precondition(_has_faults)
    @rule(fault=st.runner().flatmap(lambda m: m._faults()))
    def fault(self, fault: Fault) -> None:
        self._pending.append(fault)

    @precondition(_has_gaps)
    @rule(writes=st.runner().flatmap(lambda m: m._gap_writes()))
    def watch_gap(self, writes: list[Write]) -> None:
        """The watches hear nothing while `writes` happen, then history is compacted and they resume.

        `StallWatches()`, the writes, `Compact()`, `StallWatches(False)`: every informer
        gets a 410, relists, and must infer what it missed — deletes arrive as tombstones
        (`DeletedFinalStateUnknown`), the case handlers most often get wrong. Only faults
        and writes, so the steps replay like any others.
        """
        self._pending += [StallWatches(), *writes, Compact(), StallWatches(False)]
        self._model(writes)

    @rule(seconds=st.sampled_from([1.0, 10.0, 60.0]))
    def advance_clock(self, seconds: float) -> None:
        self._pending.append(_AdvanceClock(seconds))

    @rule()
    def settle(self) -> None:
        self._settle_and_check()

    def teardown(self) -> None:
        try:
            # Only when no step failed: a check now would bury the step's own error (and
            # hypothesis abandons runs by raising inside a draw).
            if sys.exc_info()[1] is None and self._initial is not None:
                self._settle_and_check()
        finally:
            if self._runner is not None:
                self._shutdown()

    # -- running on the example's own loop ----------------------------------------------------

    def _flush(self) -> None:
        """Start the example if it has not started, then apply every pending step in order."""
        if self._initial is None:
            raise LifecycleError("the machine has not started: `start` is its first step")
        if self._runner is None:
            self._runner = asyncio.Runner()
            self.applied += [f"{c!r},  # before the informers start" for c in self._initial]
            self._call(self._start(self._initial))
        while self._pending:
            step = self._pending.pop(0)
            self._call(self._apply(step))

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        assert self._runner is not None
        self._runner.run(coro)
        main = self._main
        if main is not None and main.done() and not main.cancelled() and main.exception() is not None:
            raise main.exception()  # type: ignore[misc]  # the example's task group died: say why

    async def _start(self, initial: list[Create]) -> None:
        self._stop = asyncio.Event()
        ready: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._main = asyncio.get_running_loop().create_task(self._serve(initial, ready))
        await asyncio.wait([ready, self._main], return_when=asyncio.FIRST_COMPLETED)
        if not ready.done():
            self._main.result()  # raises what setup or the first sync raised
        await self._until(self._quiescent, "quiescent after the first sync")

    async def _serve(self, initial: list[Create], ready: asyncio.Future[None]) -> None:
        clock = _ExampleClock()
        async with FakeApiServer(bookmark_interval=_NO_BOOKMARKS, garbage_collector=self.garbage_collector) as server:
            for create in initial:
                create.apply(server)
            client = _plain_http_client(server)
            try:
                async with anyio.create_task_group() as tg:
                    factory = InformerFactory(client, clock=clock, reflector_config=ReflectorConfig(
                        backoff=_seeded_backoff))
                    env = self._env = ConvergenceEnv(server, client, clock, factory, tg)
                    result = self.setup(env)
                    if inspect.isawaitable(result):
                        await result
                    for informer in factory.informers.values():
                        env._count_watches(informer)
                    async with factory:
                        await factory.wait_for_cache_sync(self.settle_timeout, raise_on_timeout=True)
                        ready.set_result(None)
                        assert self._stop is not None
                        await self._stop.wait()
                    tg.cancel_scope.cancel()
            finally:
                await client.close()

    async def _apply(self, step: _Pending) -> None:
        env = self._env
        assert env is not None
        if isinstance(step, _AdvanceClock):
            self.applied.append(repr(step))
            env.clock.advance(step.seconds)
        else:
            try:
                step.apply(env.server)
            except StatusError as error:
                # The model said it was valid; another writer (a component, the garbage
                # collector) changed that key. Skipped, and said so in the replay listing.
                self.applied.append(f"# skipped {step!r}: the server answered {error.code} {error.reason}")
            else:
                self.applied.append(f"{step!r},")
            if isinstance(step, StallWatches):
                self._stalled = step.stalled
            elif isinstance(step, ClearFaults):
                self._stalled = False
            elif isinstance(step, DropWatches):
                # Wait for each watch open now to see its end (the client notices a few turns later).
                for counter in env._watches.values():
                    if counter.open:
                        counter.dropped = counter.serial
        await self._until(self._quiescent, "quiescent after a step")

    def _shutdown(self) -> None:
        runner, self._runner = self._runner, None
        assert runner is not None
        try:
            if self._stop is not None and self._main is not None and not self._main.done():
                self._stop.set()
                runner.run(_join(self._main, self._env.clock if self._env is not None else None))
        finally:
            runner.close()

    # -- settling and checking ---------------------------------------------------------------

    def _settle_and_check(self) -> None:
        self._flush()
        self.applied.append("# settle: faults lifted, everything caught up")
        self._call(self._settle())
        env = self._env
        assert env is not None
        try:
            if self.check_caches:
                self._check_caches()
            self.check(env)
        except AssertionError as failure:
            failure.add_note("kinformer: the steps this example applied, as Python "
                             "(kinformer.testing.replay(server, steps) replays the writes and faults):\n"
                             "steps = [\n    " + "\n    ".join(self.applied) + "\n]")
            raise

    # What "done" means. An informer is *caught up* when it is idle (synced, watching, FIFO
    # empty, handlers drained) and its cache holds exactly the server's objects in its scope
    # at their resourceVersions: a watch stream is ordered, so nothing older can still arrive
    # and anything newer would make them differ. (Bookmarks are off, so an RV alone would not
    # say so for an informer whose scope saw no event lately.) Its watch must also be open at
    # the server, so that the next fault finds it there whatever the timing.

    def _scope(self, key: tuple[Any, ...]) -> dict[str, Obj]:
        resource, namespace, label_selector, field_selector, _ = key
        labels, fields = _selectors(label_selector, field_selector)
        return {k: o for k, o in self._started_env.server.objects(resource).items()
                if (namespace is None or o["metadata"].get("namespace") == namespace)
                and labels.matches_object(o) and fields.matches(o)}

    def _caught_up(self, key: tuple[Any, ...], informer: SharedIndexInformer[KubeObject]) -> bool:
        if not informer.idle():
            return False
        expected = self._scope(key)
        cached = informer.indexer.items()
        if len(cached) != len(expected):
            return False
        if self._started_env.factory.transform is not None:
            return all(k in expected for k, _ in cached)
        return all(k in expected and _rv(o) == _rv(expected[k]) for k, o in cached)

    def _informer_waiting(self, key: tuple[Any, ...], informer: SharedIndexInformer[KubeObject]) -> str | None:
        """None when this informer cannot move until a later step; else what it is doing."""
        reflector = informer.reflector
        if reflector is None:
            return "not started"
        if isinstance(reflector.state, BackingOff):
            return None  # only FakeClock time ends a backoff
        watching = isinstance(reflector.state, Watching)
        counter = self._started_env._count_watches(informer)
        if counter.dropped is not None:
            return f"informer {key[0]}: has not seen its watch dropped yet"
        if watching and counter.open != 1:
            return f"informer {key[0]}: its watch is not open yet"
        if self._stalled and watching and not informer.stats().queued \
                and all(h.backlog == 0 for h in informer.stats().handlers.values()):
            return None  # its watch hears nothing until the stall is lifted
        if self._caught_up(key, informer):
            return None
        stats = informer.stats()
        backlog = {name: h.backlog for name, h in stats.handlers.items() if h.backlog}
        return (f"informer {key[0]} (namespace={key[1]!r}, labels={key[2]!r}, fields={key[3]!r}): reflector "
                f"{type(reflector.state).__name__}, {len(informer.indexer)} cached of {len(self._scope(key))} on "
                f"the server, {stats.queued} keys queued, handler backlog {backlog}, last error "
                f"{informer.last_error!r}")

    def _waiting_for(self, settling: bool) -> list[str]:
        env = self._started_env
        out = []
        for key, informer in env.factory.informers.items():
            reason = self._informer_waiting(key, informer)
            if settling and reason is None and not self._caught_up(key, informer):
                state = type(informer.reflector.state).__name__ if informer.reflector else "not started"
                reason = f"informer {key[0]}: not caught up (reflector {state})"
            if reason is not None:
                out.append(reason)
        out += [f"component {c!r}: not idle" for c in env.components if not c.idle()]
        clock = env.clock
        if isinstance(clock, _ExampleClock) and clock.woken_not_resumed:
            out.append(f"{clock.woken_not_resumed} tasks woken by the FakeClock have not run yet")
        return out

    def _quiescent(self) -> bool:
        return not self._waiting_for(settling=False)

    async def _until(self, done: Callable[[], bool], what: str, *, horizon: float | None = None) -> None:
        """Poll `done()` (a few loop turns, then every 2 ms: idleness spans components and has
        no single event). With a `horizon` (a settle), time passes too: whenever nothing but
        time can make progress, the FakeClock jumps to its next sleeper's deadline; once
        `done()`, timers due before `horizon` (clock time) still fire, those due later are
        left for later. How far the clock moves never depends on the wall clock."""
        clock = self._started_env.clock
        spins = 0
        try:
            with anyio.fail_after(self.settle_timeout):
                while True:
                    finished = done()
                    if finished and horizon is None:
                        return
                    if horizon is not None and isinstance(clock, _ExampleClock) and self._quiescent():
                        due = clock.next_deadline()
                        if due is not None and (not finished or due <= horizon):
                            clock.advance(max(due - clock.now(), 0.0))
                            continue
                        if finished:
                            return
                    spins += 1
                    if spins < 50:  # loopback I/O completes within a few loop turns: no timer needed
                        await asyncio.sleep(0)
                    else:
                        await anyio.sleep(0.002)
        except TimeoutError:
            raise SettleTimeoutError(f"not {what} after {self.settle_timeout} s: "
                                     + "; ".join(self._waiting_for(settling=horizon is not None))) from None

    async def _settle(self) -> None:
        env = self._started_env
        env.server.clear_faults()
        self._stalled = False
        horizon = env.clock.now() + self.settle_horizon
        while True:
            target = env.server.resource_version
            await self._until(lambda: not self._waiting_for(settling=True), "settled (faults lifted, FakeClock "
                              "moved as needed)", horizon=horizon)
            if env.server.resource_version == target:  # else a component wrote: catch up with that too
                return

    # -- the built-in check ---------------------------------------------------------------------

    def _check_caches(self) -> None:
        env = self._started_env
        for key, informer in env.factory.informers.items():
            resource, namespace, label_selector, field_selector, metadata_only = key
            expected = self._scope(key)
            cached = dict(informer.indexer.items())
            scope = f"the {resource} informer (namespace={namespace!r}, labels={label_selector!r}, " \
                    f"fields={field_selector!r})"
            missing, extra = sorted(set(expected) - set(cached)), sorted(set(cached) - set(expected))
            # Raised, not asserted: the check is the product, and `python -O` drops asserts.
            if missing or extra:
                raise AssertionError(f"{scope}'s cache is not the server's state once settled: missing {missing}, "
                                     f"not on the server {extra}")
            if metadata_only or env.factory.transform is not None:
                continue
            for name, obj in expected.items():
                want, got = _comparable(obj), _comparable(cached[name])
                if got != want:
                    raise AssertionError(f"{scope}'s cached {name} differs from the server's object at "
                                         f"{', '.join(_differences(got, want))}: was a cached object mutated?")


@functools.cache
def _selectors(label_selector: str | None, field_selector: str | None) -> tuple[LabelSelector, FieldSelector]:
    return LabelSelector.parse(label_selector), FieldSelector.parse(field_selector)


def _res(resource: str | Resource) -> Resource:
    return Resource.builtin(resource) if isinstance(resource, str) else resource


def _namespaced(resource: str | Resource, key: str) -> tuple[str | None, str]:
    namespace, name = split_key(key)
    return (namespace or "default", name) if _res(resource).namespaced else (None, name)


_SSL_CONTEXT: ssl.SSLContext | None = None


def _plain_http_client(server: FakeApiServer) -> Any:
    """`server.api_client()`, without loading the system CA bundle again (~80 ms).

    kubernetes_asyncio builds a default SSL context for every ApiClient; a client of the
    plain-HTTP FakeApiServer never uses it, and the machine makes one client per example. So
    its `ssl` module is shimmed, for this synchronous call only, to hand out one shared
    context (never mutated: the configuration verifies and loads no client certificate).
    """
    from kubernetes_asyncio.client import rest

    global _SSL_CONTEXT
    if _SSL_CONTEXT is None:
        _SSL_CONTEXT = ssl.create_default_context()
    shared = _SSL_CONTEXT
    shim = types.SimpleNamespace(**{k: getattr(ssl, k) for k in dir(ssl) if k.isupper()})
    shim.create_default_context = lambda *args, **kwargs: shared
    original = getattr(rest, "ssl")  # noqa: B009 - kubernetes_asyncio's stubs do not declare it
    setattr(rest, "ssl", shim)  # noqa: B010
    try:
        client = server.api_client()
    finally:
        setattr(rest, "ssl", original)  # noqa: B010
    # kubernetes_asyncio's session trusts the environment: a proxy variable could capture the
    # loopback server, and every request would look up proxies and netrc in a thread.
    session = client.rest_client.pool_manager
    if hasattr(session, "_trust_env"):
        session._trust_env = False
    return client


async def _join(task: asyncio.Task[None], clock: FakeClock | None) -> None:
    """Wait for the example's main task to end, moving the FakeClock meanwhile: a component's
    graceful shutdown (a controller's grace for reconciles in flight) waits on that clock."""
    while not task.done():
        await asyncio.wait([task], timeout=0.01)
        if clock is not None and not task.done():
            clock.advance(3600.0)
    await task


# Bookmarks arrive on the wall clock's schedule, and client-go counts one as progress when it
# decides whether a dropped watch backs off: with them, the same steps could end differently.
_NO_BOOKMARKS = 3600.0


def _seeded_backoff(clock: Any) -> Backoff:
    """The reflector's backoff with its jitter from a fixed seed: the same steps, the same waits."""
    return Backoff(clock=clock, rand=random.Random(0).random)


def _rv(obj: Any) -> Any:
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    return meta.get("resourceVersion") if isinstance(meta, dict) else None


class _FunctionMachine(ConvergenceMachine, Generic[S]):
    state: S
    _setup_fn: ClassVar[Callable[[ConvergenceEnv], Any]]
    _check_fn: ClassVar[Callable[[FakeApiServer, Any], object]]

    async def setup(self, env: ConvergenceEnv) -> None:
        result = type(self)._setup_fn(env)
        self.state = await result if inspect.isawaitable(result) else result

    def check(self, env: ConvergenceEnv) -> None:
        if type(self)._check_fn(env.server, self.state) is False:
            raise AssertionError(f"{type(self)._check_fn.__name__} returned False")


_OPTIONS = ("keys", "watch_gaps", "initial_objects", "settle_horizon", "settle_timeout", "garbage_collector",
            "check_caches")


def check_converges(setup: Callable[[ConvergenceEnv], S | Awaitable[S]], check: Callable[[FakeApiServer, S], object],
                    *, resources: Sequence[str | Resource] = ("configmaps",),
                    fault_kinds: Sequence[type[Fault]] = FAULTS,
                    objects: Callable[[str | Resource, str | None, str], SearchStrategy[Obj]] | None = None,
                    settings: settings | None = None, **options: Any) -> None:
    """Run a `ConvergenceMachine` made of two functions; raise the shrunk failure, if any.

    `setup(env)` (sync or async) builds informers and handlers and returns your state;
    `check(server, state)` asserts the invariant (or returns False) once settled.
    `options` are the machine's class attributes (`keys`, `initial_objects`, `settle_timeout`,
    ...); `settings` defaults to `DEFAULT_SETTINGS`. Call it from a plain `def` test.
    """
    unknown = set(options) - set(_OPTIONS)
    if unknown:
        raise InvalidArgumentError(f"check_converges got unknown options {sorted(unknown)}; known: {list(_OPTIONS)}")
    attrs: dict[str, Any] = {"resources": tuple(resources), "fault_kinds": tuple(fault_kinds), **options,
                             "_setup_fn": staticmethod(setup), "_check_fn": staticmethod(check)}
    if objects is not None:
        attrs["objects"] = lambda self, resource, namespace, name: objects(resource, namespace, name)
    # Named after `check`: hypothesis prints `state = CheckPodsPerNode()` above the steps.
    name = "".join(part.title() for part in getattr(check, "__name__", "check").split("_"))
    if not name.startswith("Check"):
        name = f"Check{name}"
    machine = type(name, (_FunctionMachine,), attrs)
    run_state_machine_as_test(machine, settings=settings or DEFAULT_SETTINGS)
