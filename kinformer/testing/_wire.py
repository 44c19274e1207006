"""The fake API server's wire shapes: `Status` refusals, JSON responses, request bodies.

Invariants:
- Every refusal, from any layer (state, LIST, WATCH, routing, faults), is one `StatusError`;
  the middleware turns it into a `Status` body (`kind`, `apiVersion`, `metadata`, `status:
  Failure`, `message`, `reason`, `code`) whose HTTP status is that `code`. A watch that has
  already started sends the same body inside an `ERROR` event instead.
- `StatusError.headers` carries only what the real server would send beside a Status
  (`Retry-After`); `extra` adds top-level Status fields (`details`).
- Bodies are encoded with orjson; a request body that is not a JSON object is a 400.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

Obj = dict[str, Any]


def status_body(code: int, reason: str, message: str, **extra: Any) -> Obj:
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": message, "reason": reason, "code": code}
    body.update(extra)
    return body


class StatusError(Exception):
    """A request the API server refuses: its HTTP code, `Status` reason and message."""

    def __init__(self, code: int, reason: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.headers = headers or {}
        self.extra = extra

    def body(self) -> Obj:
        return status_body(self.code, self.reason, self.message, **self.extra)

    def response(self) -> web.Response:
        return web.Response(status=self.code, body=orjson.dumps(self.body()), headers=self.headers,
                            content_type="application/json")


def not_found() -> StatusError:
    """The 404 the server gives for a path it does not serve."""
    return StatusError(404, "NotFound", "the server could not find the requested resource")


def forbidden_field(field: str, detail: str) -> StatusError:
    """A 422 Invalid with the one `FieldValueForbidden` cause the real server sends."""
    return StatusError(422, "Invalid", f"{field}: Forbidden: {detail}",
                       details={"group": "meta.k8s.io", "kind": "ListOptions",
                                "causes": [{"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}",
                                            "field": field}]})


def json_response(body: Any, status: int = 200) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")


def partial_metadata(obj: Obj) -> Obj:
    """The `PartialObjectMetadata` form of an object (`Accept: ...;as=PartialObjectMetadata`)."""
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


async def read_object(request: web.Request, *, empty_ok: bool = False) -> Obj:
    """The request body as a JSON object; `{}` for an empty or `null` body when `empty_ok`
    (DELETE, whose DeleteOptions body is optional)."""
    raw = await request.read()
    if empty_ok and not raw.strip():
        return {}
    try:
        body = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise StatusError(400, "BadRequest", "the request body is not valid JSON") from None
    if empty_ok and body is None:
        return {}
    if not isinstance(body, dict):
        raise StatusError(400, "BadRequest", "the request body must be a JSON object")
    return body
