"""WatchStream: lines split anywhere by network reads decode to the same events, in order."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from kinformer import ListWatch, Resource
from kinformer.errors import DecodeError, WatchDroppedError
from kinformer.listwatch import WatchEvent, WatchStream


class _Content:
    def __init__(self, chunks: list[bytes]) -> None:
        self._chunks = list(chunks)

    async def readany(self) -> bytes:
        return self._chunks.pop(0) if self._chunks else b""


class _Response:
    def __init__(self, chunks: list[bytes]) -> None:
        self.content = _Content(chunks)


def _stream(chunks: list[bytes], **kw: Any) -> WatchStream:
    return WatchStream(ListWatch(None, Resource.pods, **kw), _Response(chunks), None)  # type: ignore[arg-type]


async def _collect(stream: WatchStream) -> list[WatchEvent]:
    out: list[WatchEvent] = []
    async for batch in stream:
        assert batch, "a batch is never empty"
        out.extend(batch)
    return out


def _pod(i: int) -> dict[str, Any]:
    return {"kind": "Pod", "apiVersion": "v1",
            "metadata": {"name": f"p{i}", "namespace": "ns", "resourceVersion": str(i),
                         "managedFields": [{"manager": "m"}]}}


EVENTS = st.lists(st.one_of(
    st.integers(1, 99).map(lambda i: {"type": "MODIFIED", "object": _pod(i)}),
    st.integers(1, 99).map(lambda i: {"type": "BOOKMARK", "object": {"kind": "Pod", "apiVersion": "v1",
                                                                      "metadata": {"resourceVersion": str(i)}}}),
    st.integers(1, 99).map(lambda i: {"type": "ADDED", "object": {"metadata": {"name": f"c{i}",
                                                                                "resourceVersion": str(i)}}}),
), min_size=1, max_size=12)


def _cut(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points) if b > a]


@settings(max_examples=150, deadline=None)
@given(events=EVENTS, cuts=st.lists(st.integers(0, 10_000), max_size=20), blank=st.booleans(),
       max_batch=st.integers(1, 4))
async def test_any_chunking_gives_the_same_events(events: list[dict[str, Any]], cuts: list[int],
                                                  blank: bool, max_batch: int) -> None:
    sep = b"\n\n" if blank else b"\n"  # empty lines are skipped
    data = sep.join(orjson.dumps(e) for e in events) + b"\n"
    stream = _stream(_cut(data, cuts))
    stream.max_batch = max_batch
    got: list[WatchEvent] = []
    async for batch in stream:
        assert 0 < len(batch) <= max_batch
        got.extend(batch)
    expected = [ListWatch(None, Resource.pods).decode_event(orjson.dumps(e)) for e in events]
    assert got == expected
    for event in got:
        if event.type != "BOOKMARK":
            assert "managedFields" not in event.object["metadata"]
            assert event.object["kind"] == "Pod" and event.object["apiVersion"] == "v1"


async def test_managed_fields_kept_when_asked() -> None:
    data = orjson.dumps({"type": "MODIFIED", "object": _pod(1)}) + b"\n"
    (event,) = await _collect(_stream([data[:7], data[7:]], keep_managed_fields=True))
    assert event.object["metadata"]["managedFields"] == [{"manager": "m"}]


@settings(max_examples=60, deadline=None)
@given(before=st.integers(0, 4), cuts=st.lists(st.integers(0, 5_000), max_size=8), max_batch=st.integers(1, 3))
async def test_malformed_line_after_good_events(before: int, cuts: list[int], max_batch: int) -> None:
    good = [orjson.dumps({"type": "MODIFIED", "object": _pod(i)}) for i in range(before)]
    data = b"\n".join([*good, b"{not json", orjson.dumps({"type": "MODIFIED", "object": _pod(9)})]) + b"\n"
    stream = _stream(_cut(data, cuts))
    stream.max_batch = max_batch
    got: list[WatchEvent] = []
    with pytest.raises(DecodeError):
        async for batch in stream:
            got.extend(batch)
    assert [e.object["metadata"]["name"] for e in got] == [f"p{i}" for i in range(before)]


async def test_stream_cut_inside_an_event() -> None:
    data = orjson.dumps({"type": "MODIFIED", "object": _pod(1)})
    with pytest.raises(WatchDroppedError):
        await _collect(_stream([data[:10], data[10:20]]))


def test_string_values_are_interned_across_objects() -> None:
    from kinformer.listwatch import StringTable

    table = StringTable(capacity=100, max_length=12)
    a = orjson.loads(b'{"s": {"p": "IfNotPresent", "l": ["Ready", "x' + b"y" * 20 + b'"]}, "IfNotPresent": 1}')
    b = orjson.loads(b'{"s": {"p": "IfNotPresent", "l": ["Ready", "x' + b"y" * 20 + b'"]}}')
    before = orjson.dumps(b)
    table.intern_values(a)
    table.intern_values(b)
    assert orjson.dumps(b) == before  # values replaced by equal strings only
    assert b["s"]["p"] is a["s"]["p"] and b["s"]["l"][0] is a["s"]["l"][0]
    assert b["s"]["l"][1] is not a["s"]["l"][1]  # longer than max_length: left alone
    assert len(table) == 2


def test_string_table_starts_over_when_full() -> None:
    from kinformer.listwatch import StringTable

    table = StringTable(capacity=3)
    table.intern_values({"a": "1", "b": "2", "c": "3"})
    assert len(table) == 3
    table.intern_values({"d": "4"})
    assert len(table) == 1


async def test_watch_objects_share_repeated_values() -> None:
    pods = [dict(_pod(i), spec={"nodeName": "node-" + "1" * 3}) for i in range(2)]
    data = b"".join(orjson.dumps({"type": "MODIFIED", "object": p}) + b"\n" for p in pods)
    first, second = await _collect(_stream([data], intern_strings=True))
    assert first.object["spec"]["nodeName"] is second.object["spec"]["nodeName"]
    plain = await _collect(_stream([data]))
    assert plain[0].object["spec"]["nodeName"] is not plain[1].object["spec"]["nodeName"]


class _AbortingContent:
    """aiohttp's behaviour on an aborted connection: buffered data is lost to `readany`."""

    def __init__(self, first: bytes, buffered: bytes) -> None:
        self._reads = [first]
        self._buffered = buffered
        self.aborted = False

    async def readany(self) -> bytes:
        if self._reads:
            return self._reads.pop(0)
        raise ConnectionResetError("aborted")  # what was buffered is gone

    def read_nowait(self, n: int = -1) -> bytes:
        if self.aborted:
            raise ConnectionResetError("aborted")
        data, self._buffered = self._buffered, b""
        return data


async def test_prefetched_events_survive_an_abort() -> None:
    lines = [orjson.dumps({"type": "MODIFIED", "object": _pod(i)}) + b"\n" for i in range(6)]
    content = _AbortingContent(b"".join(lines[:2]), b"".join(lines[2:]))
    response = _Response([])
    response.content = content  # type: ignore[assignment]
    stream = WatchStream(ListWatch(None, Resource.pods), response, None)  # type: ignore[arg-type]
    got = list(await stream.__anext__())
    stream.prefetch()  # as the reflector does before it yields
    content.aborted = True
    with pytest.raises(WatchDroppedError):
        async for batch in stream:
            got.extend(batch)
    assert [e.object["metadata"]["name"] for e in got] == [f"p{i}" for i in range(6)]
