"""What the web core answers: `Response` (a whole body) or `StreamResponse` (chunks).

Framework-neutral: the adapters (`kinformer.web.fastapi_router`, `kinformer.web.aiohttp_app`)
copy status, headers and body into their own response types and nothing else. Errors are
Kubernetes `Status` objects (`status_response`), so a Kubernetes client reads them as it
reads the API server's.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Mapping
from dataclasses import dataclass, field
from typing import Any

import orjson

from kinformer.errors import ApiError

JSON = "application/json"
TEXT = "text/plain; charset=utf-8"


@dataclass(frozen=True, slots=True)
class Response:
    status: int
    body: bytes
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class StreamResponse:
    """A body sent as it is produced (a watch, server-sent events). The adapter iterates
    `body` and closes it (`aclose`) when the client goes away."""

    status: int
    body: AsyncGenerator[bytes, None]
    content_type: str = JSON
    headers: Mapping[str, str] = field(default_factory=dict)


def json_response(obj: Any, status: int = 200, headers: Mapping[str, str] | None = None) -> Response:
    return Response(status, orjson.dumps(obj), JSON, headers or {})


def text_response(text: str, status: int = 200) -> Response:
    return Response(status, text.encode(), TEXT, {"X-Content-Type-Options": "nosniff"})


def status_object(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A `metav1.Status` failure, as kube-apiserver writes it."""
    body: dict[str, Any] = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                            "message": message, "reason": reason, "code": code}
    if details:
        body["details"] = dict(details)
    return body


def error_response(err: ApiError) -> Response:
    """The Status response for `err` (its details, and Retry-After when it has one)."""
    details = err.status.get("details") if err.status else None
    headers = {"Retry-After": str(int(err.retry_after))} if err.retry_after is not None else None
    return status_response(err.code, err.reason, err.message, details, headers)


def status_response(code: int, reason: str, message: str, details: Mapping[str, Any] | None = None,
                    headers: Mapping[str, str] | None = None) -> Response:
    return json_response(status_object(code, reason, message, details), code, headers)
