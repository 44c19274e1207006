"""Fuzzing the watch line splitter and decoder: any bytes, any chunking.

Good lines (`strategies.watch_event_streams`: object events, bookmarks, a final ERROR 410)
arrive as exactly the events sent, however the network cuts them; arbitrary
bytes end only in `DecodeError` or `WatchDroppedError` (which the reflector recovers from),
never another exception, and nothing past `max_line_bytes` is buffered.
"""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from kinformer import ListWatch, Resource
from kinformer.errors import DecodeError, WatchDroppedError
from kinformer.listwatch import WatchStream
from kinformer.testing import strategies as ks

MAX_LINE = 2048


class _Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


class _Response:
    def __init__(self, chunks: list[bytes]) -> None:
        self.content = _Content(chunks)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


async def _drain(chunks: list[bytes]) -> tuple[list[Any], BaseException | None, WatchStream]:
    lw = ListWatch(None, Resource.configmaps, max_line_bytes=MAX_LINE)
    stream = WatchStream(lw, _Response(chunks), None)  # type: ignore[arg-type]
    events: list[Any] = []
    try:
        async for batch in stream:
            events.extend(batch)
    except (DecodeError, WatchDroppedError) as exc:
        return events, exc, stream
    return events, None, stream


@settings(max_examples=200, deadline=None)
@given(ks.watch_event_streams(), st.lists(st.integers(0, 10**6), max_size=30))
def test_good_lines_survive_any_chunking(events: list[dict[str, Any]], cuts: list[int]) -> None:
    data = b"".join(orjson.dumps(e) + b"\n" for e in events)
    got, error, _ = asyncio.run(_drain(_cut(data, cuts)))
    assert error is None
    assert [(e.type, e.object) for e in got] == [(e["type"], e["object"]) for e in events]


@settings(max_examples=300, deadline=None)
@given(st.lists(st.one_of(st.binary(max_size=300), st.sampled_from([
    b"\n", b'{"type":"ADDED","object":{"metadata":{"name":"a","resourceVersion":"1"}}}\n', b"{", b"}",
    b'"', b"\xff", b"NaN", b"[" * 50, b"x" * 3000, b'{"type":[1],"object":{}}\n',
    b'{"type":"BOOKMARK","object":{"metadata":[]}}\n', b'{"type":"ERROR","object":{"code":"x"}}\n'])),
    max_size=30),
       st.lists(st.integers(0, 10**6), max_size=30))
def test_any_bytes_end_in_a_recoverable_error(pieces: list[bytes], cuts: list[int]) -> None:
    data = b"".join(pieces)
    chunks = _cut(data, cuts)
    _, error, stream = asyncio.run(_drain(chunks))
    assert error is None or isinstance(error, DecodeError | WatchDroppedError)
    assert stream._partial_size <= MAX_LINE + max((len(c) for c in chunks), default=0)
