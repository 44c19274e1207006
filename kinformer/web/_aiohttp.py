"""The aiohttp adapter: `aiohttp_app(cache)` (mount with `app.add_subapp(prefix, ...)` or
run it as the application) and `aiohttp_cleanup_ctx(cache, source)` for `app.cleanup_ctx`.

aiohttp is a core dependency, so this adapter needs no extra. A cleanup context is one
async generator with one `yield`: the code after it runs iff startup finished.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

from aiohttp import web

from kinformer.web.core import CacheApi, Source
from kinformer.web.responses import Response


def aiohttp_app(api: CacheApi) -> web.Application:
    """An `aiohttp.web.Application` answering every path through `api.handle`."""

    async def handler(request: web.Request) -> web.StreamResponse:
        result = api.handle(request.method, request.match_info["tail"], request.query.items(), request.headers)
        headers = {**result.headers, "Content-Type": result.content_type}
        if isinstance(result, Response):
            return web.Response(status=result.status, body=result.body, headers=headers)
        response = web.StreamResponse(status=result.status, headers=headers)
        body = result.body
        try:
            await response.prepare(request)
            async for chunk in body:
                await response.write(chunk)
        except ConnectionError:
            # The client went away (aiohttp's ClientConnectionResetError is a ConnectionResetError):
            # nothing left to send.
            pass
        finally:
            await body.aclose()
        return response

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def aiohttp_cleanup_ctx(api: CacheApi, source: Source | None = None, *,
                        start: bool = True) -> Callable[[web.Application], AsyncIterator[None]]:
    """For `app.cleanup_ctx.append(...)`: runs `api.run(source, start=start)` for the app's life."""

    async def ctx(app: web.Application) -> AsyncIterator[None]:
        async with api.run(source, start=start):
            yield

    return ctx


__all__ = ["aiohttp_app", "aiohttp_cleanup_ctx"]

