"""The FastAPI adapter: `fastapi_router(cache)` (an `APIRouter`; include it under a prefix,
or last: its one route matches every path) and `fastapi_lifespan(cache, source)` for
`FastAPI(lifespan=...)`.

A lifespan replaces `on_event` handlers, and the lifespan of a mounted sub-application does
not run: hence a router plus a lifespan, not a sub-app. Needs the `web` extra (fastapi).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from kinformer.errors import MissingExtraError

try:
    from fastapi import APIRouter, Request
    from fastapi.responses import Response as FastAPIResponse
    from fastapi.responses import StreamingResponse
except ImportError as exc:
    raise MissingExtraError("kinformer's FastAPI adapter", "fastapi", "web") from exc

from kinformer.web.core import CacheApi, Source
from kinformer.web.responses import Response

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def fastapi_router(api: CacheApi) -> APIRouter:
    """An `APIRouter` answering every path under its prefix through `api.handle`."""
    router = APIRouter()

    async def serve(request: Request, path: str) -> FastAPIResponse:
        result = api.handle(request.method, path, request.query_params.multi_items(), request.headers)
        if isinstance(result, Response):
            return FastAPIResponse(result.body, result.status, dict(result.headers), result.content_type)
        return StreamingResponse(result.body, result.status, dict(result.headers), result.content_type)

    router.add_api_route("/{path:path}", serve, methods=_METHODS, include_in_schema=False)
    return router


def fastapi_lifespan(api: CacheApi, source: Source | None = None, *,
                     start: bool = True) -> Callable[[Any], AbstractAsyncContextManager[None]]:
    """For `FastAPI(lifespan=...)`: runs `api.run(source, start=start)` for the app's life."""

    @asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        async with api.run(source, start=start):
            yield

    return lifespan
