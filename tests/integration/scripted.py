"""A scripted HTTP server: each request gets the next scripted answer, byte for byte.

For wire shapes that FakeApiServer (a faithful server) never produces on its own: a watch
that sends another kind, Status bodies in older servers' formats. Every request is recorded
with its query; when the script runs out, requests get a watch that stays open silently, so
the client under test idles instead of spinning.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web


@dataclass
class Answer:
    status: int = 200
    body: Any = None
    """A JSON value (sent whole), or for a watch a list of lines: JSON values (sent with a
    newline) or raw bytes (sent exactly as given)."""
    watch: bool = False
    hold: bool = False
    """After the watch lines, keep the connection open (until the client closes it)."""
    raw: bytes | None = None
    """Send these bytes as the whole (non-watch) body instead of `body`."""
    headers: dict[str, str] = field(default_factory=dict)
    cut: bool = False
    """After the watch lines, drop the connection without the chunked stream's end."""


def list_body(items: list[dict[str, Any]], rv: str, kind: str = "ConfigMapList") -> dict[str, Any]:
    return {"kind": kind, "apiVersion": "v1", "metadata": {"resourceVersion": rv}, "items": items}


def configmap(name: str, rv: str, kind: str = "ConfigMap", api_version: str = "v1") -> dict[str, Any]:
    return {"kind": kind, "apiVersion": api_version,
            "metadata": {"name": name, "namespace": "default", "resourceVersion": rv, "uid": f"uid-{name}"}}


def status(code: int, reason: str, message: str, causes: list[dict[str, str]] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "code": code,
                            "reason": reason, "message": message}
    if causes is not None:
        body["details"] = {"causes": causes}
    return body


@dataclass
class ScriptedServer:
    answers: deque[Answer] = field(default_factory=deque)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)
    url: str = ""
    released: asyncio.Event = field(default_factory=asyncio.Event)
    """Set at shut-down: ends the held watches."""

    def then(self, *answers: Answer) -> ScriptedServer:
        self.answers.extend(answers)
        return self

    def api_client(self) -> Any:
        from kubernetes_asyncio.client import ApiClient, Configuration

        return ApiClient(Configuration(host=self.url))

    def verbs(self) -> list[str]:
        return ["watch" if q.get("watch") == "true" else "list" for _, q in self.requests]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests.append((request.path, dict(request.query)))
        answer = self.answers.popleft() if self.answers else Answer(watch=True, body=[], hold=True)
        if not answer.watch:
            body = answer.raw if answer.raw is not None else orjson.dumps(answer.body)
            return web.Response(status=answer.status, body=body,
                                headers={"Content-Type": "application/json", **answer.headers})
        response = web.StreamResponse(status=answer.status, headers={"Content-Type": "application/json"})
        await response.prepare(request)
        for line in answer.body:
            await response.write(line if isinstance(line, bytes) else orjson.dumps(line) + b"\n")
        if answer.cut:
            assert request.transport is not None
            request.transport.close()
            return response
        if answer.hold:
            await self.released.wait()
        with contextlib.suppress(ConnectionError):  # the client may have gone already
            await response.write_eof()
        return response


@asynccontextmanager
async def scripted_server() -> AsyncIterator[ScriptedServer]:
    server = ScriptedServer()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server._handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.url = f"http://127.0.0.1:{port}"
    try:
        yield server
    finally:
        server.released.set()
        await runner.cleanup()
