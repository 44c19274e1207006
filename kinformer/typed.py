"""Typed views: kubernetes_asyncio models built from cached dicts, on the cold path only.

kinformer keeps plain dicts because building a `V1Pod` costs about 55 times the JSON parse. Where a
typed model helps (a CLI printing one object, a reconcile reading a few fields with an
IDE's completion), `to_model(obj, V1Pod)` builds one from a cached dict with
kubernetes_asyncio's own deserializer, and `lister.typed(V1Pod)` does it per read. Never use
either on the event path. The model is a new object: mutating it does not touch the cache.
"""

from __future__ import annotations

import functools
from typing import Any, TypeVar

M = TypeVar("M")


@functools.cache
def _deserializer() -> Any:
    # An ApiClient without its REST client: deserialising needs only the configuration.
    from kubernetes_asyncio.client import ApiClient, Configuration

    client = ApiClient.__new__(ApiClient)
    client.configuration = Configuration()
    client.client_side_validation = False
    return client


def to_model(obj: dict[str, Any], model: type[M]) -> M:
    """The kubernetes_asyncio model `model` (e.g. `V1Pod`) for the object `obj`."""
    result: M = _deserializer()._ApiClient__deserialize(obj, model)
    return result
