"""Test support: a protocol-faithful fake API server, pytest fixtures, object generators."""

from kinformer.testing.clock import FakeClock, eventually
from kinformer.testing.generators import make_configmap, make_deployment, make_namespace, make_pod
from kinformer.testing.server import INITIAL_EVENTS_END, FakeApiServer, RecordedRequest

__all__ = [
    "INITIAL_EVENTS_END",
    "FakeApiServer",
    "FakeClock",
    "RecordedRequest",
    "eventually",
    "make_configmap",
    "make_deployment",
    "make_namespace",
    "make_pod",
]
