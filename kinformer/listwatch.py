"""`ListWatch`: paged LIST and streaming WATCH of one resource, as raw JSON decoded once.

Invariants:
- Requests go through the `kubernetes_asyncio` `ApiClient` (its config, auth and TLS) with
  `_preload_content=False`; kinformer reads the bytes and decodes them with orjson once.
- Every object handed out is complete: list items of built-in kinds, which the server
  sends without kind/apiVersion, get them (`expected_kind`, `expected_api_version`), and so
  does a watch event's object that lacks them; `metadata.managedFields` is
  removed at decode unless `keep_managed_fields=True` (it is often half of an object).
- With `intern_strings=True`, repeated string values (image names, node names, label values,
  `IfNotPresent`, condition types, timestamps) are interned at decode: equal values of
  objects decoded by any ListWatch share one `str` (`StringTable`). For pods that saves a
  large share of their memory, but the walk is Python code visiting every value, which
  costs more than orjson's whole parse (benchmarks/PROFILE.md), so it is opt-in; the
  compact store (`SharedIndexInformer(store="compact")`) saves more for less. Keys are
  shared by orjson already.
- Selectors are parsed at construction: a bad one raises `SelectorError` at once.
- A non-2xx answer becomes the `ApiError` subclass for its Status (errors.py), carrying
  `Retry-After`; an unreachable server becomes `ConnectionFailedError`.
- Watch lines are at most `max_line_bytes` (16 MiB by default); a longer one is a
  `DecodeError`, like any line that is not a watch event.
- A watch is an async context manager: leaving it (normally, by error or cancellation)
  closes the HTTP response. Iterating it yields *batches* of events, one per network read,
  so the consumer can apply a burst under one lock. A malformed line raises `DecodeError`
  after the good events before it were yielded; a dead connection (no byte for
  `idle_timeout`) raises `WatchIdleTimeoutError`; a cut stream raises `WatchDroppedError`.
"""

from __future__ import annotations

import contextlib
import gc
from collections import deque
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import aiohttp
import orjson

from kinformer.errors import (
    ConnectionFailedError,
    DecodeError,
    WatchDroppedError,
    WatchIdleTimeoutError,
    api_error_from_status,
)
from kinformer.resources import Resource
from kinformer.selectors import FieldSelector, LabelSelector

DEFAULT_PAGE_SIZE = 500
DEFAULT_MAX_LINE_BYTES = 16 * 1024 * 1024
"""The longest watch line (one event) accepted. etcd refuses objects over 1.5 MiB by default
(`--max-request-bytes`); 16 MiB leaves room for clusters that raised it, and bounds what one
line can make kinformer buffer. Longer lines raise `DecodeError` and the watch is re-opened."""
ACCEPT_JSON = "application/json"
ACCEPT_METADATA_LIST = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
ACCEPT_METADATA = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1"
_OBJECT_EVENTS = frozenset(("ADDED", "MODIFIED", "DELETED"))
_new_tuple = tuple.__new__  # builds a NamedTuple without its Python-level __new__
_gc_count, _gc_threshold, _gc_enabled = gc.get_count, gc.get_threshold, gc.isenabled


class StringTable:
    """Interns the string values of decoded objects, so equal values share one `str`.

    Bounded: values longer than `max_length` are left alone (they are rarely repeated), and
    when the table holds `capacity` values it is emptied and starts over, so unique values
    (names, uids, IPs) cannot grow it without bound; strings already shared stay shared.
    Only values are replaced (never keys), in place, before the object is handed out.
    """

    __slots__ = ("_table", "capacity", "max_length")

    def __init__(self, capacity: int = 100_000, max_length: int = 128) -> None:
        self._table: dict[str, str] = {}
        self.capacity = capacity
        self.max_length = max_length

    def __len__(self) -> int:
        return len(self._table)

    def intern_values(self, obj: Any) -> None:
        """Replace every short string value in `obj` (nested dicts and lists) by the table's copy."""
        table = self._table
        get = table.get
        max_length = self.max_length
        if len(table) >= self.capacity:
            table.clear()
        stack = [obj]
        pop, push = stack.pop, stack.append
        while stack:
            node = pop()
            if type(node) is dict:
                for k, v in node.items():
                    t = type(v)
                    if t is str:
                        if len(v) <= max_length:
                            shared = get(v)
                            if shared is None:
                                table[v] = v
                            elif shared is not v:
                                node[k] = shared  # the same key: the dict's size does not change
                    elif t is dict or t is list:
                        push(v)
            else:
                for i, v in enumerate(node):
                    t = type(v)
                    if t is str:
                        if len(v) <= max_length:
                            shared = get(v)
                            if shared is None:
                                table[v] = v
                            elif shared is not v:
                                node[i] = shared
                    elif t is dict or t is list:
                        push(v)


STRINGS = StringTable()
"""The table every ListWatch with `intern_strings=True` shares (values repeat across resources)."""


class WatchEvent(NamedTuple):
    type: str  # ADDED / MODIFIED / DELETED / BOOKMARK / ERROR
    object: dict[str, Any]


@dataclass(slots=True)
class ListPage:
    items: list[dict[str, Any]]
    resource_version: str
    continue_token: str
    remaining_item_count: int | None


def _retry_after(headers: Any) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        return None


async def _raise_for_status(response: aiohttp.ClientResponse) -> None:
    if 200 <= response.status < 300:
        return
    try:
        body = await response.read()
        status = orjson.loads(body) if body else None
    except (orjson.JSONDecodeError, aiohttp.ClientError):
        status = None
    finally:
        response.release()
    if not isinstance(status, dict) or status.get("kind") != "Status":
        status = {"message": f"HTTP {response.status} {response.reason or ''}".strip()}
    raise api_error_from_status(response.status, status, _retry_after(response.headers))


class ListWatch:
    """List and watch one resource (optionally one namespace, selectors, metadata only)."""

    def __init__(
        self,
        api_client: Any,
        resource: Resource,
        namespace: str | None = None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        *,
        metadata_only: bool = False,
        keep_managed_fields: bool = False,
        intern_strings: bool = False,
        max_line_bytes: int = DEFAULT_MAX_LINE_BYTES,
        page_size: int = DEFAULT_PAGE_SIZE,
    ) -> None:
        self.api_client = api_client
        self.resource = resource
        self.namespace = namespace if resource.namespaced else None
        # Parsed here so a bad selector fails at construction, not as 400s retried forever.
        LabelSelector.parse(label_selector)
        FieldSelector.parse(field_selector)
        self.label_selector = label_selector or None
        self.field_selector = field_selector or None
        self.metadata_only = metadata_only
        self.keep_managed_fields = keep_managed_fields
        self.strings: StringTable | None = STRINGS if intern_strings else None
        self.max_line_bytes = max_line_bytes
        self.page_size = page_size
        self.path = resource.collection_path(self.namespace)
        if metadata_only:
            self.expected_kind, self.expected_api_version = "PartialObjectMetadata", "meta.k8s.io/v1"
        else:
            self.expected_kind, self.expected_api_version = resource.kind, resource.api_version

    def __repr__(self) -> str:
        return f"ListWatch({self.resource}, namespace={self.namespace!r})"

    def _selector_params(self) -> list[tuple[str, str]]:
        params = []
        if self.label_selector:
            params.append(("labelSelector", self.label_selector))
        if self.field_selector:
            params.append(("fieldSelector", self.field_selector))
        return params

    async def _get(self, params: Sequence[tuple[str, str]], accept: str,
                   timeout: aiohttp.ClientTimeout | None = None) -> aiohttp.ClientResponse:
        try:
            response: aiohttp.ClientResponse = await self.api_client.call_api(
                self.path, "GET", query_params=list(params), header_params={"Accept": accept},
                auth_settings=["BearerToken"], _preload_content=False, _request_timeout=timeout,
            )
        except (aiohttp.ClientConnectionError, OSError) as exc:
            raise ConnectionFailedError(f"cannot reach the API server for {self.resource}: {exc}") from exc
        except TimeoutError as exc:
            raise ConnectionFailedError(f"timed out connecting to the API server for {self.resource}") from exc
        await _raise_for_status(response)
        return response

    # -- LIST -----------------------------------------------------------------------------

    async def list_pages(
        self, resource_version: str | None = "", *, resource_version_match: str | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[ListPage]:
        """Yield the pages of one consistent list (following `continue`).

        Every page shares the first page's resourceVersion. A 410 on a continue token
        raises `ExpiredError`: the caller relists from scratch.
        """
        page_size = self.page_size if limit is None else limit
        params = self._selector_params()
        if page_size:
            params.append(("limit", str(page_size)))
        first = list(params)
        if resource_version is not None:
            first.append(("resourceVersion", resource_version))
            if resource_version_match and resource_version not in ("", "0"):
                first.append(("resourceVersionMatch", resource_version_match))
        accept = ACCEPT_METADATA_LIST if self.metadata_only else ACCEPT_JSON
        request = first
        while True:
            response = await self._get(request, accept)
            try:
                body = await response.read()
            except aiohttp.ClientError as exc:
                raise WatchDroppedError(f"the connection closed before the list of {self.resource} was complete "
                                        f"({type(exc).__name__})") from exc
            finally:
                response.release()
            page = self._decode_list(body)
            yield page
            if not page.continue_token:
                return
            request = [*params, ("continue", page.continue_token)]

    def _decode_list(self, body: bytes) -> ListPage:
        try:
            data = orjson.loads(body)
            meta = data["metadata"]
            items = data.get("items") or []
        except (orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
            raise DecodeError(f"list of {self.resource} is not a valid list body ({len(body)} bytes)") from None
        kind, api_version, keep = self.expected_kind, self.expected_api_version, self.keep_managed_fields
        strings = self.strings
        for item in items:
            if "kind" not in item:
                item["kind"] = kind
                item["apiVersion"] = api_version
            if not keep:
                item_meta = item.get("metadata")
                if item_meta is not None:
                    item_meta.pop("managedFields", None)
            if strings is not None:
                strings.intern_values(item)
        remaining = meta.get("remainingItemCount")
        return ListPage(items, str(meta.get("resourceVersion") or ""), str(meta.get("continue") or ""),
                        int(remaining) if remaining is not None else None)

    async def list(self, resource_version: str | None = "") -> tuple[list[dict[str, Any]], str]:
        """All items (paged) and the list's resourceVersion."""
        items: list[dict[str, Any]] = []
        rv = ""
        async for page in self.list_pages(resource_version):
            items.extend(page.items)
            rv = page.resource_version
        return items, rv

    # -- WATCH ----------------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def watch(
        self,
        resource_version: str | None,
        timeout_seconds: int | None = None,
        *,
        send_initial_events: bool = False,
        allow_bookmarks: bool = True,
        idle_timeout: float | None = None,
    ) -> AsyncIterator[WatchStream]:
        """Open a watch; `async with lw.watch(rv, 300) as stream: async for batch in stream`."""
        params = [("watch", "true"), *self._selector_params()]
        if resource_version is not None:
            params.append(("resourceVersion", resource_version))
        if allow_bookmarks or send_initial_events:
            params.append(("allowWatchBookmarks", "true"))
        if timeout_seconds:
            params.append(("timeoutSeconds", str(int(timeout_seconds))))
        if send_initial_events:
            params.append(("sendInitialEvents", "true"))
            params.append(("resourceVersionMatch", "NotOlderThan"))
        if idle_timeout is None and timeout_seconds:
            idle_timeout = timeout_seconds + 30.0
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30.0, sock_read=idle_timeout)
        accept = ACCEPT_METADATA if self.metadata_only else ACCEPT_JSON
        response = await self._get(params, accept, timeout)
        try:
            yield WatchStream(self, response, idle_timeout)
        finally:
            response.close()

    def decode_event(self, line: bytes | memoryview) -> WatchEvent:
        """One watch line → `WatchEvent`; `DecodeError` (naming what is wrong, never the body) if not one.

        Object events need `metadata.name` and `metadata.resourceVersion` (RVs are opaque
        strings, as the API conventions say: kinformer never compares them, so a non-numeric
        or "backwards" RV is kept as given). A BOOKMARK needs a metadata object; an ERROR's
        object is read as a Status (a missing or odd `code` counts as 500).
        """
        try:
            event = orjson.loads(line)
            kind = event["type"]
            obj = event["object"]
        except orjson.JSONDecodeError as exc:
            raise DecodeError(f"watch line is not JSON ({len(line)} bytes): {exc.msg}") from None
        except (KeyError, TypeError):
            raise DecodeError(f"watch line is not a watch event object ({len(line)} bytes)") from None
        if not isinstance(obj, dict) or not isinstance(kind, str):
            raise DecodeError(f"watch event {_describe(kind)} has no object" if isinstance(kind, str)
                              else f"watch event type is not a string: {_describe(kind)}")
        if kind in _OBJECT_EVENTS:
            meta = obj.get("metadata")
            if not isinstance(meta, dict) or not meta.get("name") or not meta.get("resourceVersion"):
                raise DecodeError(f"watch event {kind} carries an object without metadata.name/resourceVersion")
            if not self.keep_managed_fields:
                meta.pop("managedFields", None)
            if "kind" not in obj:
                obj["kind"] = self.expected_kind
                obj["apiVersion"] = self.expected_api_version
            if self.strings is not None:
                self.strings.intern_values(obj)
        elif kind == "BOOKMARK":
            if not isinstance(obj.get("metadata", {}), dict):
                raise DecodeError("BOOKMARK event whose metadata is not an object")
        elif kind != "ERROR":
            raise DecodeError(f"unknown watch event type {_describe(kind)}")
        return WatchEvent(kind, obj)


def _describe(value: Any) -> str:
    """A short, safe description of a value from the wire (never a long or nested value)."""
    if isinstance(value, str) and len(value) <= 40 and value.isprintable():
        return repr(value)
    return f"<{type(value).__name__}>"


class WatchStream:
    """The events of one open watch, in batches (see the module docstring).

    The hot path of every watch: each network read is scanned for newlines with `bytes.find`
    (memchr; `bytes.split` compares byte by byte and cost more than the JSON parse of small
    objects), each complete line is parsed from a memoryview of the read (no copy), and only
    a line cut by the read boundary is copied, joined with the rest of it from the next read.
    A well-formed object event is validated inline; anything else goes through
    `ListWatch.decode_event`, which raises the precise `DecodeError`. A line longer than
    `max_line_bytes` raises `DecodeError` without being buffered further (the pieces of a
    cut line are joined once, when its end arrives: no quadratic re-joining).

    A large read is decoded a batch at a time, as the consumer asks, and a batch ends once
    CPython's young generation is half full (`gc.get_count()[0]` against the first
    threshold, 700 by default; a pod is about 30 containers) or at `max_batch` events. That
    bounds the decoded objects in flight: the consumer hands the batch on and the objects it
    replaced are freed before the next batch is decoded, so the cyclic collector, which would
    otherwise promote the in-flight objects and sweep the whole cache over and over, rarely
    runs. (Measured in benchmarks/PROFILE.md: without it the collector was about half of an
    event's CPU time.)

    Before yielding so that others run, the consumer calls `prefetch()`: what the connection
    has buffered (while the stream holds less than `prefetch_limit` bytes) moves into the
    stream, because aiohttp discards its buffer when the connection is aborted, and events
    already received should not be lost (and re-sent) because the consumer let others run.
    """

    max_batch = 128
    prefetch_limit = 1 << 20

    def __init__(self, list_watch: ListWatch, response: aiohttp.ClientResponse, idle_timeout: float | None) -> None:
        self._decode = list_watch.decode_event
        self._keep_managed_fields = list_watch.keep_managed_fields
        self._strings = list_watch.strings
        self._kind = list_watch.expected_kind
        self._api_version = list_watch.expected_api_version
        self._content = response.content
        self._idle_timeout = idle_timeout
        self._partial: list[bytes] = []  # the pieces of a line cut by read boundaries
        self._partial_size = 0
        self._max_line = list_watch.max_line_bytes
        self._held: deque[bytes] = deque()  # reads taken by `prefetch`, not yet decoded
        self._held_bytes = 0
        self._chunk = b""  # the read being decoded, from `_start` on
        self._view = memoryview(b"")
        self._start = 0
        self._pending: BaseException | None = None
        self.bytes_read = 0

    def __aiter__(self) -> WatchStream:
        return self

    async def __anext__(self) -> list[WatchEvent]:
        if self._pending is not None:
            error, self._pending = self._pending, None
            raise error
        if self._chunk:
            rest = self._take([])
            if rest:
                return rest
        while True:
            try:
                if self._held:
                    chunk = self._held.popleft()
                    self._held_bytes -= len(chunk)
                else:
                    chunk = await self._content.readany()
                    self.bytes_read += len(chunk)
            except (TimeoutError, aiohttp.ServerTimeoutError):
                raise WatchIdleTimeoutError(
                    f"no data on the watch for {self._idle_timeout} s: treating the connection as dead"
                ) from None
            except (aiohttp.ClientPayloadError, aiohttp.ClientConnectionError, ConnectionError) as exc:
                raise WatchDroppedError("watch connection closed by the server before the end of the stream "
                                        f"({type(exc).__name__})") from exc
            if not chunk:
                if self._partial:
                    raise WatchDroppedError("watch ended in the middle of an event")
                raise StopAsyncIteration
            events: list[WatchEvent] = []
            start = 0
            partial = self._partial
            if partial:
                end = chunk.find(b"\n")
                if end < 0:
                    self._hold(chunk)
                    continue
                partial.append(chunk[:end])
                size = self._partial_size + end
                line = b"".join(partial)
                partial.clear()
                self._partial_size = 0
                start = end + 1
                if size > self._max_line:
                    self._chunk, self._view, self._start = chunk, memoryview(chunk), start
                    raise self._too_long(size)
                if line and not self._decode_into(events, line):
                    return events
            self._chunk, self._view, self._start = chunk, memoryview(chunk), start
            events = self._take(events)
            if events:
                return events

    def _hold(self, piece: bytes) -> None:
        """Keep `piece` of a line cut by a read boundary; `DecodeError` once the line is too long."""
        self._partial.append(piece)
        self._partial_size += len(piece)
        if self._partial_size > self._max_line:
            raise self._too_long(self._partial_size)

    def _too_long(self, size: int) -> DecodeError:
        self._partial.clear()
        self._partial_size = 0
        return DecodeError(f"watch line longer than max_line_bytes ({self._max_line}): {size}+ bytes")

    def prefetch(self) -> None:
        """Take what the connection has already buffered into the stream (see the class docstring)."""
        if self._held_bytes >= self.prefetch_limit:
            return
        read_nowait = getattr(self._content, "read_nowait", None)
        if read_nowait is None:
            return
        try:
            data = read_nowait(-1)
        except (aiohttp.ClientError, ConnectionError, RuntimeError, TimeoutError):
            return  # the connection's error is raised by the next read, after what is held
        if data:
            self._held.append(data)
            self._held_bytes += len(data)
            self.bytes_read += len(data)

    def _take(self, events: list[WatchEvent]) -> list[WatchEvent]:
        """Decode lines of the current read into `events` until it holds `max_batch`; keep
        the unfinished rest of the read for the next read."""
        chunk, view, start = self._chunk, self._view, self._start
        find = chunk.find
        limit = self.max_batch
        young = _gc_count
        budget = _gc_threshold()[0] // 2 if _gc_enabled() else 0
        if not budget:
            budget = 1 << 62
        loads, new_event, object_events = orjson.loads, _new_tuple, _OBJECT_EVENTS
        keep, want_kind, want_api_version = self._keep_managed_fields, self._kind, self._api_version
        intern = self._strings.intern_values if self._strings is not None else None
        max_line = self._max_line
        end = find(b"\n", start)
        while end >= 0:
            if len(events) >= limit or (events and young()[0] >= budget):
                self._start = start
                return events
            if end - start > max_line:
                self._start = end + 1
                error = self._too_long(end - start)
                if not events:
                    raise error
                self._pending = error
                self._chunk = b""
                return events
            if end > start:
                line = view[start:end]
                # The common case inline (one function call saved per event); `_decode_into`
                # handles everything else and raises the precise error.
                try:
                    event = loads(line)
                    kind = event["type"]
                    obj = event["object"]
                    meta = obj["metadata"]
                    fast = (kind in object_events and type(meta) is dict and meta.get("name")
                            and meta.get("resourceVersion"))
                except (orjson.JSONDecodeError, KeyError, TypeError):
                    fast = False
                if fast:
                    if not keep:
                        meta.pop("managedFields", None)
                    if "kind" not in obj:
                        obj["kind"] = want_kind
                        obj["apiVersion"] = want_api_version
                    if intern is not None:
                        intern(obj)
                    events.append(new_event(WatchEvent, (kind, obj)))
                elif not self._decode_into(events, line):
                    self._chunk = b""  # the stream ends with the error: the rest is not needed
                    return events
            start = end + 1
            end = find(b"\n", start)
        self._chunk, self._view = b"", memoryview(b"")
        if start < len(chunk):
            try:
                self._hold(chunk[start:])
            except DecodeError as exc:
                if not events:
                    raise
                self._pending = exc
        return events

    def _decode_into(self, events: list[WatchEvent], line: bytes | memoryview) -> bool:
        """Append `line`'s event; on a malformed line raise (nothing decoded yet) or keep the
        error for the next call (so the good events before it are yielded first)."""
        try:
            events.append(self._decode(line))
        except DecodeError as exc:
            if not events:
                raise
            self._pending = exc
            return False
        return True
