"""The error hierarchy and the status-code mapping."""

from __future__ import annotations

from typing import Any

import pytest

from kinformer import errors
from kinformer.errors import api_error_from_status


def _status(code: int, reason: str = "", message: str = "", **extra: Any) -> dict[str, Any]:
    return {"kind": "Status", "code": code, "reason": reason, "message": message, **extra}


@pytest.mark.parametrize(("code", "body", "cls", "permanent"), [
    (400, _status(400, "BadRequest"), errors.InvalidError, True),
    (401, _status(401, "Unauthorized"), errors.UnauthorizedError, True),
    (403, _status(403, "Forbidden"), errors.ForbiddenError, True),
    (404, _status(404, "NotFound"), errors.NotFoundError, True),
    (409, _status(409, "Conflict"), errors.ConflictError, False),
    (410, _status(410, "Expired"), errors.ExpiredError, False),
    (410, None, errors.ExpiredError, False),
    (500, _status(500, "Expired"), errors.ExpiredError, False),  # the reason decides, as in a watch ERROR
    (422, _status(422, "Invalid"), errors.InvalidError, True),
    (429, _status(429, "TooManyRequests"), errors.TooManyRequestsError, False),
    (500, _status(500, "InternalError"), errors.ServerError, False),
    (503, None, errors.ServerError, False),
    (504, _status(504, "Timeout", "Too large resource version: 5, current: 3"),
     errors.TooLargeResourceVersionError, False),
    (504, _status(504, "Timeout", "timeout", details={"causes": [{"message": "Too large resource version"}]}),
     errors.TooLargeResourceVersionError, False),
    (500, _status(500, "InternalError", "x", details={"causes": [{"reason": "ResourceVersionTooLarge"}]}),
     errors.TooLargeResourceVersionError, False),
    # the message forms count only on a timeout, as in client-go
    (500, _status(500, "InternalError", "Too large resource version"), errors.ServerError, False),
    (504, _status(504, "Timeout", "request timed out"), errors.ServerError, False),
    (418, None, errors.ApiError, False),
])
def test_status_mapping(code: int, body: dict[str, Any] | None, cls: type[errors.ApiError], permanent: bool) -> None:
    err = api_error_from_status(code, body, retry_after=3.0)
    assert type(err) is cls
    assert err.code == code and err.retry_after == 3.0 and err.permanent is permanent
    assert isinstance(err, errors.TransportError) and isinstance(err, errors.KinformerError)


def test_message_names_code_reason_and_message() -> None:
    err = api_error_from_status(403, _status(403, "Forbidden", "pods is forbidden"))
    assert str(err) == "403 Forbidden: pods is forbidden"


def test_tree() -> None:
    assert issubclass(errors.StoppedError, errors.LifecycleError)
    assert issubclass(errors.AlreadyStartedError, errors.LifecycleError)
    for cls in (errors.TransformError, errors.KeyFuncError, errors.HandlerError):
        assert issubclass(cls, errors.UserCallbackError)
    for cls in (errors.ConnectionFailedError, errors.WatchDroppedError, errors.WatchIdleTimeoutError,
                errors.DecodeError, errors.UnexpectedObjectError, errors.ApiError):
        assert issubclass(cls, errors.TransportError)
    assert issubclass(errors.SelectorError, ValueError) and issubclass(errors.ShutDownError, errors.KinformerError)
