"""Writes and faults as data: what a property test did to a `FakeApiServer`, printable and replayable.

Each step is a frozen dataclass whose `repr` is the Python that builds it, and whose
`apply(server)` performs it through FakeApiServer's public API, so a failing example that
hypothesis prints (`Create(resource='pods', object={...})`, `FailNext(count=2, code=429,
retry_after=1.0, verbs=('watch',))`) can be pasted into a test and replayed with
`replay(server, steps)`. Needs no hypothesis: `kinformer.testing.strategies` generates these.

Writes (`Create`, `Update`, `Patch`, `Delete`) go through the Python write API, which
writes exactly what an HTTP client's write would (same events, same resourceVersions):
`Update` is unconditional (no resourceVersion precondition), `Patch` is a JSON merge patch.
A write that is not valid for the server's current state (an update of a missing object, a
create of an existing one) raises the server's `StatusError`, as the real server answers.

Faults are FakeApiServer's fault API one to one: `DropWatches`, `DropWatchesAfter`,
`Compact`, `FailNext`, `MalformedLines`, `StallWatches`, `SlowWrites`, `ClearFaults`.
Each is deterministic (server.py); which request or event it lands on depends on what the
clients do next. A schedule is an ordinary list of them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from kinformer.resources import Resource
from kinformer.testing.server import FakeApiServer

__all__ = [
    "FAULTS",
    "ClearFaults",
    "Compact",
    "Create",
    "Delete",
    "DropWatches",
    "DropWatchesAfter",
    "FailNext",
    "Fault",
    "MalformedLines",
    "Patch",
    "SlowWrites",
    "StallWatches",
    "Step",
    "Update",
    "Write",
    "replay",
    "split_key",
]

Obj = dict[str, Any]


def split_key(key: str) -> tuple[str | None, str]:
    """`"ns/name"` → `("ns", "name")`; `"name"` → `(None, "name")` (cluster-scoped)."""
    namespace, slash, name = key.rpartition("/")
    return (namespace if slash else None), name


def _key(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


# -- writes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Create:
    """`server.create(resource, object)`."""

    resource: str | Resource
    object: Obj

    @property
    def key(self) -> str:
        meta = self.object["metadata"]
        return _key(meta.get("namespace"), meta["name"])

    def apply(self, server: FakeApiServer) -> Obj:
        return server.create(self.resource, self.object)


@dataclass(frozen=True, slots=True)
class Update:
    """`server.update(resource, object)`: replaces the object's content (uid, creation time kept)."""

    resource: str | Resource
    object: Obj

    @property
    def key(self) -> str:
        meta = self.object["metadata"]
        return _key(meta.get("namespace"), meta["name"])

    def apply(self, server: FakeApiServer) -> Obj:
        return server.update(self.resource, self.object)


@dataclass(frozen=True, slots=True)
class Patch:
    """`server.patch(resource, name, patch, namespace)`: a JSON merge patch (None deletes a field)."""

    resource: str | Resource
    name: str
    namespace: str | None
    patch: Obj

    @property
    def key(self) -> str:
        return _key(self.namespace, self.name)

    def apply(self, server: FakeApiServer) -> Obj:
        return server.patch(self.resource, self.name, self.patch, self.namespace)


@dataclass(frozen=True, slots=True)
class Delete:
    """`server.delete(resource, name, namespace)` (dependents too when the server's GC is on)."""

    resource: str | Resource
    name: str
    namespace: str | None

    @property
    def key(self) -> str:
        return _key(self.namespace, self.name)

    def apply(self, server: FakeApiServer) -> Obj:
        return server.delete(self.resource, self.name, self.namespace)


Write = Create | Update | Patch | Delete


# -- faults -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DropWatches:
    """Abort every open watch now (the client sees a drop, not a clean end)."""

    def apply(self, server: FakeApiServer) -> None:
        server.drop_watches()


@dataclass(frozen=True, slots=True)
class DropWatchesAfter:
    """Abort each watch after it has sent `events` events, until cleared (None clears)."""

    events: int | None

    def apply(self, server: FakeApiServer) -> None:
        server.drop_watches_after(self.events)


@dataclass(frozen=True, slots=True)
class Compact:
    """Forget history: resuming any earlier resourceVersion gets 410 Gone (a relist)."""

    def apply(self, server: FakeApiServer) -> None:
        server.compact()


@dataclass(frozen=True, slots=True)
class FailNext:
    """Answer the next `count` requests of `verbs` (None: any) with `code` (429 with Retry-After)."""

    count: int
    code: int = 500
    retry_after: float | None = None
    verbs: tuple[str, ...] | None = None

    def apply(self, server: FakeApiServer) -> None:
        server.fail_next(self.count, self.code, retry_after=self.retry_after, verbs=self.verbs)


@dataclass(frozen=True, slots=True)
class MalformedLines:
    """Write a line that is not JSON before each of the next `count` watch events."""

    count: int = 1

    def apply(self, server: FakeApiServer) -> None:
        server.malformed_lines(self.count)


@dataclass(frozen=True, slots=True)
class StallWatches:
    """Hold every watch open but silent (no events, no bookmarks) until released."""

    stalled: bool = True

    def apply(self, server: FakeApiServer) -> None:
        server.stall_watches(self.stalled)


@dataclass(frozen=True, slots=True)
class SlowWrites:
    """Sleep `seconds` (real time) before each watch line the server writes; 0 clears."""

    seconds: float

    def apply(self, server: FakeApiServer) -> None:
        server.slow_writes(self.seconds)


@dataclass(frozen=True, slots=True)
class ClearFaults:
    """Lift every fault in force: stalls, slow writes, drop-after, failures not yet consumed."""

    def apply(self, server: FakeApiServer) -> None:
        server.clear_faults()


Fault = DropWatches | DropWatchesAfter | Compact | FailNext | MalformedLines | StallWatches | SlowWrites | ClearFaults
Step = Write | Fault

FAULTS: tuple[type[Fault], ...] = (DropWatches, DropWatchesAfter, Compact, FailNext, MalformedLines, StallWatches,
                                   SlowWrites, ClearFaults)
"""Every fault kind, in the order `fault_schedules()` shrinks towards (simplest first)."""


def replay(server: FakeApiServer, steps: Iterable[Step]) -> None:
    """Apply `steps` to `server` in order (a printed schedule, pasted back)."""
    for step in steps:
        step.apply(server)
