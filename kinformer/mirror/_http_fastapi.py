"""The FastAPI adapter of the mirror's `SearchApi` (kinformer/mirror/http.py): an `APIRouter`
whose one route answers every path under its prefix. Needs the `web` extra (fastapi).

A module of its own because FastAPI reads the handler's annotations from its module's
globals (this package uses `from __future__ import annotations`): `Request` must be imported
at module level.
"""

from __future__ import annotations

from kinformer.errors import MissingExtraError

try:
    from fastapi import APIRouter, Request
    from fastapi.responses import Response as FastAPIResponse
except ImportError as exc:
    raise MissingExtraError("kinformer's FastAPI adapter", "fastapi", "web") from exc

from kinformer.mirror.http import SearchApi

_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"]


def search_fastapi_router(api: SearchApi) -> APIRouter:
    router = APIRouter()

    async def serve(request: Request, path: str) -> FastAPIResponse:
        result = await api.handle(request.method, path, request.query_params.multi_items(), request.headers)
        return FastAPIResponse(result.body, result.status, dict(result.headers), result.content_type)

    router.add_api_route("/{path:path}", serve, methods=_METHODS, include_in_schema=False)
    return router
