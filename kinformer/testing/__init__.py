"""Test support: a protocol-faithful fake API server, pytest fixtures, object generators, and a
property-testing kit.

Importing this package never imports hypothesis. The hypothesis half of the kit is imported
on first use and needs the `testing` extra (else `MissingExtraError` names it):
`kinformer.testing.strategies` (objects, selectors, write sequences, fault schedules, watch
streams) and `ConvergenceMachine` / `ConvergenceEnv` / `check_converges` (from
`kinformer.testing.convergence`). The steps those generate — writes and faults as data,
`replay(server, steps)` — live in `kinformer.testing.steps` and need nothing extra.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from kinformer.testing.clock import FakeClock, eventually
from kinformer.testing.generators import make_configmap, make_deployment, make_namespace, make_pod
from kinformer.testing.server import INITIAL_EVENTS_END, FakeApiServer, RecordedRequest
from kinformer.testing.steps import (
    ClearFaults,
    Compact,
    Create,
    Delete,
    DropWatches,
    DropWatchesAfter,
    FailNext,
    MalformedLines,
    Patch,
    SlowWrites,
    StallWatches,
    Update,
    replay,
)

if TYPE_CHECKING:
    from kinformer.testing.convergence import ConvergenceEnv as ConvergenceEnv
    from kinformer.testing.convergence import ConvergenceMachine as ConvergenceMachine
    from kinformer.testing.convergence import check_converges as check_converges

# Not in __all__: `from kinformer.testing import *` must work without hypothesis.
_LAZY = {"ConvergenceEnv", "ConvergenceMachine", "check_converges"}

__all__ = [
    "INITIAL_EVENTS_END",
    "ClearFaults",
    "Compact",
    "Create",
    "Delete",
    "DropWatches",
    "DropWatchesAfter",
    "FailNext",
    "FakeApiServer",
    "FakeClock",
    "MalformedLines",
    "Patch",
    "RecordedRequest",
    "SlowWrites",
    "StallWatches",
    "Update",
    "eventually",
    "make_configmap",
    "make_deployment",
    "make_namespace",
    "make_pod",
    "replay",
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        from kinformer.testing import convergence

        return getattr(convergence, name)
    raise AttributeError(f"module 'kinformer.testing' has no attribute {name!r}")
