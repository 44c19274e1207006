"""kinformer's HTTP query API: informer caches served the way kube-apiserver serves resources.

```python
cache = CacheApi(["pods", "deployments"])
async with cache.run(factory):              # starts the informers; /readyz is 503 until they synced
    ...
cache.handle("GET", "/api/v1/namespaces/default/pods", [("labelSelector", "app=web")])
```

One framework-neutral core (`CacheApi`, core.py) and two thin adapters, tested against the
same table: `aiohttp_app` / `aiohttp_cleanup_ctx` (aiohttp is a core dependency) and
`fastapi_router` / `fastapi_lifespan` (the `web` extra). Health checks are in health.py,
the shared watch history in history.py, the read-only page in page.py.
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Any

from kinformer.web._aiohttp import aiohttp_app, aiohttp_cleanup_ctx
from kinformer.web.core import CacheApi, Source, resource_name
from kinformer.web.health import HealthCheck, LivenessPolicy
from kinformer.web.history import Change, WatchHistory
from kinformer.web.responses import Response, StreamResponse, status_object

if TYPE_CHECKING:
    from fastapi import APIRouter


def fastapi_router(api: CacheApi) -> APIRouter:
    """An `APIRouter` serving `api` (needs the `web` extra: `MissingExtraError` otherwise)."""
    from kinformer.web._fastapi import fastapi_router as make

    return make(api)


def fastapi_lifespan(api: CacheApi, source: Source | None = None, *,
                     start: bool = True) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """A `FastAPI(lifespan=...)` function running `api.run(source, start=start)`."""
    from kinformer.web._fastapi import fastapi_lifespan as make

    return make(api, source, start=start)


__all__ = [
    "CacheApi",
    "Change",
    "HealthCheck",
    "LivenessPolicy",
    "Response",
    "Source",
    "StreamResponse",
    "WatchHistory",
    "aiohttp_app",
    "aiohttp_cleanup_ctx",
    "fastapi_lifespan",
    "fastapi_router",
    "resource_name",
    "status_object",
]

