"""kinformer's loggers: stdlib logging by default (caplog sees them), the app's structlog if it has one."""

from __future__ import annotations

import inspect
import logging
import subprocess
import sys
from collections.abc import Iterator

import pytest
import structlog

from kinformer._logging import MAX_VALUE, get_logger
from kinformer.testing import make_pod


@pytest.fixture(autouse=True)
def unconfigured_structlog() -> Iterator[None]:
    """Each test starts with structlog as an application that never configured it leaves it."""
    was_configured, config = structlog.is_configured(), structlog.get_config()
    structlog.reset_defaults()
    yield
    if was_configured:
        structlog.configure(**config)
    else:
        structlog.reset_defaults()


def test_a_record_reaches_stdlib_logging_with_level_and_key_values(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kinformer")
    log = get_logger("kinformer.reflector", resource="pods.v1", namespace="")
    log.info("watch resumed", resource_version="42", note="two words")
    (record,) = caplog.records
    assert (record.name, record.levelno) == ("kinformer.reflector", logging.INFO)
    assert record.getMessage() == 'watch resumed resource=pods.v1 namespace="" resource_version=42 note="two words"'
    assert record.__dict__["kinformer"] == {"event": "watch resumed", "resource": "pods.v1", "namespace": "",
                                            "resource_version": "42", "note": "two words"}


def test_the_record_names_the_callers_line(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="kinformer")
    log = get_logger("kinformer.processor")
    frame = inspect.currentframe()
    assert frame is not None
    line = frame.f_lineno + 1
    log.warning("handler is behind", backlog=64)
    (record,) = caplog.records
    assert (record.filename, record.funcName, record.lineno) == (
        "test_logging.py", "test_the_record_names_the_callers_line", line)


def test_a_disabled_level_formats_nothing(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kinformer")
    rendered: list[str] = []

    class Spy:
        def __str__(self) -> str:
            rendered.append("str")
            return "spy"

    log = get_logger("kinformer.informer")
    log.debug("per-event detail", value=Spy())
    assert caplog.records == [] and rendered == []
    log.info("once", value=Spy())
    assert [r.getMessage() for r in caplog.records] == ["once value=spy"] and rendered == ["str"]


def test_values_are_cut_so_no_object_body_is_ever_printed(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kinformer")
    pod = make_pod(1, "default", size=20_000)
    get_logger("kinformer.informer").info("oops, an object", obj=pod, count=3, blob="x" * 10_000)
    (record,) = caplog.records
    assert len(record.getMessage()) < 3 * MAX_VALUE + 100
    fields = record.__dict__["kinformer"]
    assert fields["count"] == 3
    assert len(fields["obj"]) == len(fields["blob"]) == MAX_VALUE and fields["blob"].endswith("…")


def test_an_exception_has_a_bounded_traceback_and_no_locals(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="kinformer")
    log = get_logger("kinformer.processor", handler="on_update", resource="pods.v1")

    def on_update(old: dict[str, object], new: dict[str, object]) -> None:
        marker = "a-local-variable-" + "v" * 5000
        raise RuntimeError(f"handler bug ({len(marker)})")

    pod = make_pod(7, "default")
    try:
        on_update(pod, pod)
    except RuntimeError:
        log.exception("event handler failed; skipping the event", notification="update", key="default/x")
    (record,) = caplog.records
    assert record.levelno == logging.ERROR and record.exc_info is not None
    text = logging.Formatter().format(record)
    assert text.startswith("event handler failed; skipping the event handler=on_update resource=pods.v1 "
                           "notification=update key=default/x\nTraceback (most recent call last):")
    assert text.endswith("RuntimeError: handler bug (5017)")
    assert "a-local-variable" not in text and "restartedAt" not in text  # neither the local nor the pod
    assert len(text.splitlines()) <= 10


SCRIPT = """
from kinformer._logging import get_logger
log = get_logger("kinformer.reflector", resource="pods.v1")
log.info("quiet")
log.warning("list/watch failed", code=401)
try:
    raise ValueError("boom")
except ValueError:
    log.exception("event handler failed")
"""


def test_without_any_logging_configuration_nothing_goes_to_stdout() -> None:
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60, check=True)
    assert result.stdout == ""
    # Python's last-resort handler: WARNING and above, message only, to stderr.
    assert result.stderr.startswith("list/watch failed resource=pods.v1 code=401\n"
                                    "event handler failed resource=pods.v1\nTraceback (most recent call last):")
    assert "quiet" not in result.stderr and "ValueError: boom" in result.stderr


def test_an_application_that_configured_structlog_gets_kinformers_events_through_it(
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    with structlog.testing.capture_logs() as events:
        get_logger("kinformer.reflector", resource="pods.v1").warning("list/watch failed", code=403)
    assert events == [{"resource": "pods.v1", "code": 403, "event": "list/watch failed", "log_level": "warning"}]
    assert caplog.records == []
