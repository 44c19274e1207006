"""Shared pieces of the leader election tests: an in-memory Lease API, per-replica
partitions, and a harness that steps a FakeClock and waits until every elector is idle.

"Idle" is exact, not a guess: each elector gets its own view of the shared FakeClock that
knows which of its sleeps are still waiting; an elector is idle when it waits in as many
places as its state implies (a candidate in its retry sleep; a leader in its renew sleep and
its deadline watchdog; one stepping down in its release deadline and a held request; a
request held by a "hang" partition counts as a wait).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import anyio
import anyio.lowlevel
import orjson

from kinformer.errors import LeadershipLostError
from kinformer.leaderelection import ElectionState, LeaderElector
from kinformer.testing import FakeClock, eventually

EPOCH = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
LEASES = "/apis/coordination.k8s.io/v1/namespaces/{ns}/leases"


def wall_clock_of(clock: FakeClock, skew: float = 0.0) -> Callable[[], datetime]:
    """A wall clock that follows the fake clock (plus `skew` seconds), so written times are exact."""
    return lambda: EPOCH + timedelta(seconds=clock.now() + skew)


def fake_time_of(micro_time: str, skew: float = 0.0) -> float:
    """The fake-clock time a MicroTime written by `wall_clock_of(clock, skew)` stands for."""
    moment = datetime.strptime(micro_time, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC)
    return (moment - EPOCH).total_seconds() - skew


class TrackedClock:
    """One elector's view of a shared FakeClock: the same time, and the deadlines of its
    own sleeps that have not returned yet."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.deadlines: list[float] = []

    def now(self) -> float:
        return self.clock.now()

    async def sleep(self, seconds: float) -> None:
        deadline = self.clock.now() + seconds
        self.deadlines.append(deadline)
        try:
            await self.clock.sleep(seconds)
        finally:
            self.deadlines.remove(deadline)

    def idle_waits(self) -> int | None:
        """How many sleeps wait for a future time; None while one is due but has not returned."""
        now = self.clock.now()
        if any(d <= now for d in self.deadlines):
            return None
        return len(self.deadlines)


# -- an in-memory Lease API (what `_LeaseClient` calls: `call_api`) ---------------------------


class _Response:
    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.reason = "OK" if status < 300 else "Error"
        self.headers: dict[str, str] = {}
        self._data = orjson.dumps(body)

    async def read(self) -> bytes:
        return self._data

    def release(self) -> None:
        pass


def _status(code: int, reason: str, message: str) -> dict[str, Any]:
    return {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code, "reason": reason,
            "message": message}


@dataclass
class LeaseStore:
    """The Leases of an API server, in memory: 404 / 409 AlreadyExists / 409 Conflict on a
    stale resourceVersion, as kube-apiserver answers."""

    leases: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    rv: int = 100
    requests: list[tuple[str, str, str]] = field(default_factory=list)  # (who, method, name)
    failures: list[tuple[str, int]] = field(default_factory=list)  # (method, code) for the next such requests

    def put(self, namespace: str, name: str, spec: dict[str, Any]) -> dict[str, Any]:
        """Write a Lease as another process would (creating it if needed)."""
        self.rv += 1
        lease = {"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                 "metadata": {"name": name, "namespace": namespace, "resourceVersion": str(self.rv)},
                 "spec": copy.deepcopy(spec)}
        self.leases[(namespace, name)] = lease
        return lease

    def spec(self, namespace: str, name: str) -> dict[str, Any]:
        return copy.deepcopy(self.leases[(namespace, name)]["spec"])

    def count(self, method: str, who: str | None = None) -> int:
        return sum(1 for w, m, _ in self.requests if m == method and (who is None or w == who))

    def handle(self, who: str, path: str, method: str, body: Any) -> _Response:
        parts = path.strip("/").split("/")  # apis coordination.k8s.io v1 namespaces NS leases [NAME]
        ns = parts[4]
        name = parts[6] if len(parts) > 6 else (body or {}).get("metadata", {}).get("name", "")
        self.requests.append((who, method, name))
        for i, (m, code) in enumerate(self.failures):
            if m == method:
                del self.failures[i]
                return _Response(code, _status(code, "Conflict" if code == 409 else "InternalError", "injected"))
        key = (ns, name)
        current = self.leases.get(key)
        if method == "GET":
            if current is None:
                return _Response(404, _status(404, "NotFound", f'leases.coordination.k8s.io "{name}" not found'))
            return _Response(200, current)
        if method == "POST":
            if current is not None:
                return _Response(409, _status(409, "AlreadyExists", f'leases.coordination.k8s.io "{name}" '
                                                                    "already exists"))
            return _Response(201, self.put(ns, name, body["spec"]))
        if method == "PUT":
            if current is None:
                return _Response(404, _status(404, "NotFound", "not found"))
            if body["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
                return _Response(409, _status(409, "Conflict", "the object has been modified"))
            return _Response(200, self.put(ns, name, body["spec"]))
        return _Response(405, _status(405, "MethodNotAllowed", method))


class StoreApi:
    """One replica's connection to a LeaseStore, shaped like `ApiClient.call_api`."""

    def __init__(self, store: LeaseStore, who: str) -> None:
        self.store, self.who = store, who

    async def call_api(self, path: str, method: str, body: Any = None, **_: Any) -> _Response:
        await anyio.lowlevel.checkpoint()
        return self.store.handle(self.who, path, method, copy.deepcopy(body))


class Partitionable:
    """Wraps a replica's API client: `partition("fail")` refuses its requests at once,
    `partition("hang")` holds them until healed (or cancelled); `heal()` ends it."""

    def __init__(self, api: Any) -> None:
        self.api = api
        self.mode: str | None = None
        self.hanging = 0
        self._healed = anyio.Event()

    def partition(self, mode: str) -> None:
        self.mode = mode
        self._healed = anyio.Event()

    def heal(self) -> None:
        self.mode = None
        self._healed.set()

    async def call_api(self, *args: Any, **kwargs: Any) -> Any:
        if self.mode == "fail":
            raise aiohttp.ClientConnectionError("network partition (injected)")
        if self.mode == "hang":
            self.hanging += 1
            try:
                await self._healed.wait()
            finally:
                self.hanging -= 1
        return await self.api.call_api(*args, **kwargs)


# -- replicas on one timeline -----------------------------------------------------------------


@dataclass
class Replica:
    identity: str
    elector: LeaderElector
    clock: TrackedClock
    api: Partitionable
    started: bool = False
    done: anyio.Event = field(default_factory=anyio.Event)
    scope: anyio.CancelScope | None = None
    outcome: str | None = None  # "lost", "cancelled", "returned" or the exception's repr

    def idle(self) -> bool:
        if not self.started or self.done.is_set():
            return True
        state = self.elector.state
        if state is ElectionState.CANDIDATE:
            expected = 1  # the retry sleep
        elif state is ElectionState.LEADING:
            expected = 2  # the renew sleep (or a held request) and the watchdog
        elif state is ElectionState.STEPPING_DOWN:
            expected = 2  # the release's deadline and its held request; anything less is in motion
        else:  # about to campaign, or done
            return False
        waits = self.clock.idle_waits()
        return waits is not None and waits + self.api.hanging == expected


class Timeline:
    """Replicas of one lease on one FakeClock; `events` is (time, identity, what) in order."""

    def __init__(self, clock: FakeClock, tg: Any, make_api: Callable[[str], Any], namespace: str = "default",
                 lease_name: str = "lock", **defaults: Any) -> None:
        self.clock, self.tg, self.make_api = clock, tg, make_api
        self.namespace, self.lease_name = namespace, lease_name
        self.defaults = {"rand": lambda: 0.0, **defaults}
        self.replicas: dict[str, Replica] = {}
        self.events: list[tuple[float, str, str]] = []

    def add(self, identity: str, **overrides: Any) -> Replica:
        tracked = TrackedClock(self.clock)
        api = Partitionable(self.make_api(identity))
        settings = {**self.defaults, **overrides}
        settings.setdefault("wall_clock", wall_clock_of(self.clock))

        def record(what: str) -> Callable[..., None]:
            def callback(*args: Any) -> None:
                self.events.append((self.clock.now(), identity, what if not args else f"{what}:{args[0]}"))
            return callback

        elector = LeaderElector(api, self.lease_name, self.namespace, identity, clock=tracked,
                                on_started_leading=record("started"), on_stopped_leading=record("stopped"),
                                on_new_leader=record("new-leader"), **settings)
        replica = Replica(identity, elector, tracked, api)
        self.replicas[identity] = replica
        return replica

    async def start(self, identity: str, **overrides: Any) -> Replica:
        """Start a replica (replacing a stopped one of that identity) and wait until all are idle."""
        return (await self.start_together(identity, **overrides))[0]

    async def start_together(self, *identities: str, **overrides: Any) -> list[Replica]:
        replicas = [self.add(identity, **overrides) for identity in identities]
        for replica in replicas:
            replica.started = True
            self.tg.start_soon(self._run, replica)
        await self.settle()
        return replicas

    async def _run(self, replica: Replica) -> None:
        try:
            with anyio.CancelScope() as scope:
                replica.scope = scope
                try:
                    await replica.elector.run(lambda: self._work(replica.identity))
                    replica.outcome = "returned"
                except LeadershipLostError:
                    replica.outcome = "lost"
                except Exception as exc:
                    replica.outcome = repr(exc)
            if scope.cancelled_caught:
                replica.outcome = "cancelled"
        finally:
            replica.done.set()

    async def _work(self, identity: str) -> None:
        """The guarded work: runs until cancelled, and says when it has ended."""
        try:
            await anyio.sleep_forever()
        finally:
            self.events.append((self.clock.now(), identity, "work-ended"))

    async def stop(self, identity: str) -> None:
        replica = self.replicas[identity]
        assert replica.scope is not None
        replica.scope.cancel()
        with anyio.fail_after(10):
            await replica.done.wait()
        await self.settle()

    async def settle(self) -> None:
        await eventually(lambda: all(r.idle() for r in self.replicas.values()), timeout=10)

    async def advance(self, seconds: float, step: float = 0.25) -> None:
        for _ in range(round(seconds / step)):
            self.clock.advance(step)
            await self.settle()

    async def advance_until(self, predicate: Callable[[], bool], limit: float, step: float = 0.25) -> float:
        """Step time until `predicate()`; returns the fake seconds it took. Fails after `limit`."""
        start = self.clock.now()
        while not predicate():
            assert self.clock.now() - start < limit, f"not within {limit} s of fake time"
            self.clock.advance(step)
            await self.settle()
        return self.clock.now() - start

    def leaders(self) -> list[str]:
        return [r.identity for r in self.replicas.values() if r.elector.is_leader()]

    def times(self, identity: str, what: str) -> list[float]:
        return [t for t, who, w in self.events if who == identity and w == what]

    def leading_intervals(self) -> list[tuple[float, float, str]]:
        """(started, work ended, identity) per term; a term still open ends at +inf."""
        open_terms: dict[str, float] = {}
        terms: list[tuple[float, float, str]] = []
        for t, who, what in self.events:
            if what == "started":
                open_terms[who] = t
            elif what == "work-ended":
                terms.append((open_terms.pop(who), t, who))
        terms += [(t, float("inf"), who) for who, t in open_terms.items()]
        return sorted(terms)

    def assert_no_overlap(self) -> None:
        terms = self.leading_intervals()
        for (_, end, who), (start, _, nxt) in itertools.pairwise(terms):
            assert end < start, f"{who} led until {end} but {nxt} started at {start}"


@asynccontextmanager
async def timeline(clock: FakeClock, make_api: Callable[[str], Any], **defaults: Any) -> AsyncIterator[Timeline]:
    try:
        async with anyio.create_task_group() as tg:
            tl = Timeline(clock, tg, make_api, **defaults)
            try:
                yield tl
            finally:
                for replica in tl.replicas.values():  # a held request would keep a shielded release waiting
                    replica.api.heal()
                tg.cancel_scope.cancel()
    except BaseExceptionGroup as group:  # a failed assertion in the test body: show it as itself
        if len(group.exceptions) == 1:
            raise group.exceptions[0] from None
        raise
