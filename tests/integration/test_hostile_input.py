"""Hostile input through the real ListWatch over HTTP: every row ends in a correct cache.

Each row scripts what the server sends: a good list, then something bad, then good data
again. For each: the reflector reports an error that names what was wrong (and never the
bytes it got: every bad payload carries SECRET, which must appear in no error and no log
record), it recovers by re-watch or relist with a bounded number of requests, and the cache
converges to the good state.
"""

from __future__ import annotations

import gzip
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson
import pytest

from kinformer.errors import DecodeError, ServerError, WatchDroppedError
from kinformer.testing import eventually
from tests.integration.harness import Pipeline
from tests.integration.scripted import Answer, configmap, list_body, scripted_server

SECRET = "s3cr3t-Zm9vYmFy"


def event(kind: str, obj: Any) -> dict[str, Any]:
    return {"type": kind, "object": obj}


def secret_cm(name: str, rv: str) -> dict[str, Any]:
    return {**configmap(name, rv), "data": {"password": SECRET}}


GOOD_LIST = Answer(body=list_body([configmap("a", "5")], "5"))
AFTER = [event("ADDED", configmap("b", "7"))]  # what a healthy watch then sends
WANT = {"default/a", "default/b"}


@dataclass
class Row:
    name: str
    answers: list[Answer]
    error: type[BaseException] | None
    says: str = ""
    want: set[str] = field(default_factory=lambda: set(WANT))
    config: dict[str, Any] = field(default_factory=dict)


def bad_line(line: bytes, name: str, error: type[BaseException] | None = DecodeError, says: str = "",
             **config: Any) -> Row:
    """A watch whose first line is `line`, then a watch with the good events."""
    return Row(name, [GOOD_LIST, Answer(watch=True, body=[line + b"\n"]),
                      Answer(watch=True, hold=True, body=AFTER)], error, says, config=config)


S = SECRET.encode()
ROWS = [
    bad_line(b'{"type":"ADDED","object":{"metadata":{"name":"' + S, "truncated JSON", says="is not JSON"),
    bad_line(b'["' + S + b'"]', "JSON that is not an object", says="not a watch event object"),
    bad_line(b'"' + S + b'"', "a JSON string", says="not a watch event object"),
    bad_line(b'{"type":"ADDED","object":{"metadata":{"name":"\xff\xfe' + S + b'"}}}', "invalid UTF-8",
             says="is not JSON"),
    bad_line(b'{"type":"ADDED","object":{"v":NaN,"s":"' + S + b'"}}', "NaN", says="is not JSON"),
    bad_line(b'{"type":"ADDED","object":{"v":Infinity,"s":"' + S + b'"}}', "Infinity", says="is not JSON"),
    bad_line(b'{"type":"ADDED","object":{"s":"' + S + b'","v":' + b"[" * 2000 + b"]" * 2000 + b"}}",
             "nesting deeper than the decoder allows", says="is not JSON"),
    bad_line(orjson.dumps(event("ADDED", {**secret_cm("big", "6"), "pad": "x" * 5000})),
             "a line over max_line_bytes", says="longer than max_line_bytes",
             list_watch={"max_line_bytes": 4096}),
    bad_line(orjson.dumps(event("ADDED", {"kind": "ConfigMap", "apiVersion": "v1", "data": {"p": SECRET}})),
             "an object without metadata", says="without metadata.name/resourceVersion"),
    bad_line(orjson.dumps(event("ADDED", {**secret_cm("x", "6"), "metadata": {"resourceVersion": "6"}})),
             "an object without a name", says="without metadata.name/resourceVersion"),
    bad_line(orjson.dumps(event("ADDED", {**secret_cm("x", "6"), "metadata": {"name": "x"}})),
             "an object without a resourceVersion", says="without metadata.name/resourceVersion"),
    bad_line(orjson.dumps(event("SMUGGLED", secret_cm("x", "6"))), "an unknown event type",
             says="unknown watch event type 'SMUGGLED'"),
    bad_line(orjson.dumps(event(SECRET * 3, secret_cm("x", "6"))), "an unknown, long event type",
             says="unknown watch event type <str>"),
    bad_line(orjson.dumps(event("BOOKMARK", {"kind": "ConfigMap", "metadata": SECRET})),
             "a BOOKMARK whose metadata is not an object", says="BOOKMARK"),
    Row("an ERROR that is not a Status (relists)", [
        GOOD_LIST, Answer(watch=True, body=[event("ERROR", {"reason": SECRET, "code": "x"})]),
        GOOD_LIST, Answer(watch=True, hold=True, body=AFTER),
    ], ServerError, "not a Status"),
    Row("a non-numeric and a backwards resourceVersion are kept as given", [
        GOOD_LIST,
        Answer(watch=True, hold=True, body=[event("ADDED", configmap("b", "abc")),
                                            event("ADDED", configmap("c", "3"))]),
    ], None, want={"default/a", "default/b", "default/c"}),
    Row("a BOOKMARK without a resourceVersion is ignored", [
        GOOD_LIST,
        Answer(watch=True, hold=True, body=[event("BOOKMARK", {"kind": "ConfigMap", "metadata": {}}), *AFTER]),
    ], None),
    Row("a 200 LIST with an HTML body", [
        Answer(raw=b"<html><body>" + S + b"</body></html>", headers={"Content-Type": "text/html"}),
        GOOD_LIST, Answer(watch=True, hold=True, body=AFTER),
    ], DecodeError, "not a valid list body"),
    Row("a gzip-encoded LIST body", [
        Answer(raw=gzip.compress(orjson.dumps(list_body([configmap("a", "5")], "5"))),
               headers={"Content-Encoding": "gzip"}),
        Answer(watch=True, hold=True, body=AFTER),
    ], None),
    Row("a chunked stream cut mid-line", [
        GOOD_LIST,
        Answer(watch=True, cut=True, body=[orjson.dumps(event("ADDED", secret_cm("b", "7")))[:40]]),
        Answer(watch=True, hold=True, body=AFTER),
    ], WatchDroppedError, "closed by the server before the end of the stream"),
]


@pytest.mark.parametrize("row", ROWS, ids=[r.name for r in ROWS])
async def test_hostile_input(row: Row, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="kinformer")
    async with scripted_server() as server:
        server.then(*row.answers)
        client = server.api_client()
        try:
            p = Pipeline(server, client, **row.config)  # type: ignore[arg-type]
            async with p.running():
                await eventually(lambda: set(p.indexer.list_keys()) == row.want)
        finally:
            await client.close()
    if row.error is None:
        assert p.errors == []
    else:
        assert p.errors and isinstance(p.errors[0], row.error), p.errors
        assert row.says in str(p.errors[0])
    assert len(server.requests) <= len(row.answers) + 1  # recovered at once: no spinning
    for error in p.errors:
        assert SECRET not in str(error) and SECRET not in repr(error)
    for record in caplog.records:
        assert SECRET not in record.getMessage()
