"""kinformer's loggers: structlog in the code, stdlib `logging` underneath, the application decides.

A library does not decide where its logs go. Every kinformer module gets its logger from
`get_logger(name, **context)`, which applies one rule when the logger is made (when a reflector,
informer or listener is constructed, the moment structlog's own `get_logger().bind()` resolves
its configuration too):

- The application has configured structlog (`structlog.is_configured()`): the logger is
  `structlog.get_logger(name).bind(**context)`, so kinformer's events go through the
  application's processors and logger factory like its own events do.
- Otherwise: a structlog `BoundLogger` over `logging.getLogger(name)` with kinformer's own
  processor chain, set on that logger only (no global structlog or logging state is touched).
  `logging.basicConfig()`, `dictConfig` or pytest's `caplog` then see kinformer's records:
  - the logger names are `kinformer.<module>` (`kinformer.reflector`, `kinformer.processor`, ...);
  - the message is `event key=value ...`; a value is `str()`-ed, cut to `MAX_VALUE` characters
    and quoted when it holds a space, a quote or `=`, so even a mistaken object in a log call
    cannot print an object body;
  - `record.kinformer` holds the event as a dict, for structured (JSON) handlers: `"event"`
    and the same key/values (numbers and booleans as they are, the rest as the cut strings);
  - `exc_info` is passed through, so the handler's formatter prints the traceback in the
    stdlib's format: frames and source lines, never local variables (a traceback that prints
    locals prints the whole object a handler was given);
  - the level is checked before anything is formatted (structlog's `filter_by_level`), so a
    disabled level costs one `isEnabledFor`;
  - the record's file, line and function are kinformer's call site, not structlog's.

kinformer never calls `structlog.configure`, adds no handler and sets no level. With no logging
configured at all, Python's last-resort handler prints WARNING and above to stderr, as for any
library; nothing goes to stdout.
"""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Mapping
from types import FrameType
from typing import Any, Protocol

import structlog
from structlog.typing import EventDict, Processor

MAX_VALUE = 200

_STRUCTLOG_DIR = os.path.dirname(structlog.__file__) + os.sep
_NEEDS_QUOTES = frozenset(' "=\n\t')


class Logger(Protocol):
    """What kinformer's modules call on a logger (both kinds of logger `get_logger` returns)."""

    def bind(self, **new_values: Any) -> Logger: ...
    def debug(self, event: str, **kw: Any) -> Any: ...
    def info(self, event: str, **kw: Any) -> Any: ...
    def warning(self, event: str, **kw: Any) -> Any: ...
    def error(self, event: str, **kw: Any) -> Any: ...
    def exception(self, event: str, **kw: Any) -> Any: ...


def get_logger(name: str, **context: Any) -> Logger:
    """The logger for kinformer module `name` (e.g. "kinformer.reflector"), bound to `context`."""
    if structlog.is_configured():
        logger: Logger = structlog.get_logger(name).bind(**context)
        return logger
    return structlog.stdlib.BoundLogger(logging.getLogger(name), _PROCESSORS, context)


def _cut(value: Any) -> Any:
    if value is None or isinstance(value, (bool, int, float)):
        return value
    text = value if isinstance(value, str) else str(value)
    return text if len(text) <= MAX_VALUE else text[: MAX_VALUE - 1] + "…"


def _quoted(value: Any) -> str:
    text = str(value)
    if not text or not _NEEDS_QUOTES.isdisjoint(text):
        return json.dumps(text, ensure_ascii=False)
    return text


def key_values(fields: Mapping[str, Any]) -> str:
    """`key=value ...`, each value cut to `MAX_VALUE` characters and quoted where needed."""
    return " ".join(f"{key}={_quoted(_cut(value))}" for key, value in fields.items())


def _stacklevel() -> int:
    """The `stacklevel` that makes the stdlib record kinformer's call site.

    Counted at processing time: the structlog frames between this processor and the caller
    (`_process_event`, the `_proxy_to_logger`s, `warning`) are, `_process_event` aside, the
    frames that will sit between the stdlib logger and the caller when structlog calls it.
    """
    level = 0
    frame: FrameType | None = sys._getframe(2)
    while frame is not None and frame.f_code.co_filename.startswith(_STRUCTLOG_DIR):
        level += 1
        frame = frame.f_back
    return max(level, 1)


def _render(_: Any, __: str, event_dict: EventDict) -> tuple[tuple[Any, ...], dict[str, Any]]:
    """The last processor: structlog's event dict → the stdlib call's (args, kwargs)."""
    event = str(event_dict.pop("event", ""))
    args = event_dict.pop("positional_args", ())
    if args:
        event = event % args
    exc_info = event_dict.pop("exc_info", None)
    stack_info = event_dict.pop("stack_info", False)
    fields = {key: _cut(value) for key, value in event_dict.items()}
    message = f"{event} {key_values(fields)}" if fields else event
    kwargs: dict[str, Any] = {"extra": {"kinformer": {"event": event, **fields}}, "stacklevel": _stacklevel()}
    if exc_info:
        kwargs["exc_info"] = exc_info
    if stack_info:
        kwargs["stack_info"] = True
    return (message,), kwargs


_PROCESSORS: list[Processor] = [structlog.stdlib.filter_by_level, _render]
