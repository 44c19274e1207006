"""WATCH streaming of the fake API server: initial events, resume, bookmarks, selector moves.

Invariants (each is what kube-apiserver's watch cache does):
- A watch is JSON lines, one `{"type", "object"}` per line, on a chunked 200 response.
- Start: RV unset/""/"0" → a synthetic ADDED for every selected object at the latest RV,
  then the events after it; RV N → exactly the events with RV > N, in RV order.
  `sendInitialEvents=true` (requires `resourceVersionMatch=NotOlderThan`, else 422
  `FieldValueForbidden`; `resourceVersionMatch` without it is also 422) sends the current
  state first even with an RV, and, when bookmarks are allowed, ends it with a BOOKMARK
  annotated `k8s.io/initial-events-end: "true"` at the RV of that state.
- An RV below `floor` (history trimmed or compacted, also while watching) → one ERROR event
  carrying a 410 Expired Status, then a clean end.
- Selectors are applied per event against the new and the old object: in both → MODIFIED;
  entering the selection → ADDED; leaving it → DELETED (with the new object); in neither →
  nothing. ADDED/DELETED are sent only when the object is selected.
- `allowWatchBookmarks=true`: a BOOKMARK (kind/apiVersion of the resource, metadata with only
  `resourceVersion`) every `bookmark_interval` seconds, and one just before the
  `timeoutSeconds` close. Without `timeoutSeconds` the server's default applies.
- Metadata-only watches send PartialObjectMetadata objects (bookmarks and errors unchanged).
- A stream ends cleanly at its timeout, at an ERROR, or when the client goes away; it ends
  by aborting the connection when a fault drops it (see `_faults`). Every write passes the
  faults' gate first.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Protocol

import orjson
from aiohttp import web

from kinformer.resources import Resource
from kinformer.testing._cluster import Cluster, Event
from kinformer.testing._faults import Faults, OpenWatch
from kinformer.testing._list import Matcher, selection
from kinformer.testing._wire import Obj, StatusError, forbidden_field, partial_metadata, status_body

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
TRUE_VALUES = ("true", "1")


class WatchSettings(Protocol):
    """The server settings a watch reads (live: a change applies to the next bookmark)."""

    @property
    def bookmark_interval(self) -> float: ...

    @property
    def default_watch_timeout(self) -> float: ...


def translate(event: Event, matches: Matcher) -> str | None:
    """The event type a selecting watch sends for `event`, or None to skip it."""
    if event.type == "MODIFIED":
        now, before = matches(event.obj), event.old is not None and matches(event.old)
        if now and before:
            return "MODIFIED"
        if now:
            return "ADDED"
        return "DELETED" if before else None
    return event.type if matches(event.obj) else None


async def serve_watch(request: web.Request, cluster: Cluster, faults: Faults, settings: WatchSettings,
                      resource: Resource, namespace: str | None, params: dict[str, str],
                      metadata_only: bool = False) -> web.StreamResponse:
    matches, _ = selection(cluster, resource, namespace, params)
    rv_param = params.get("resourceVersion")
    bookmarks = params.get("allowWatchBookmarks") in TRUE_VALUES
    send_initial = params.get("sendInitialEvents") in TRUE_VALUES
    if send_initial and params.get("resourceVersionMatch") != "NotOlderThan":
        raise forbidden_field("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to "
                              "NotOlderThan")
    if params.get("resourceVersionMatch") and not send_initial:
        raise forbidden_field("resourceVersionMatch", "resourceVersionMatch is forbidden for watch unless "
                              "sendInitialEvents is provided")
    cursor: int | None = None
    if rv_param not in (None, "", "0"):
        try:
            cursor = int(rv_param)
        except ValueError:
            raise StatusError(400, "BadRequest", f"invalid resource version: {rv_param}") from None
    try:
        timeout = float(params.get("timeoutSeconds") or settings.default_watch_timeout)
    except ValueError:
        raise StatusError(400, "BadRequest", "timeoutSeconds must be a number") from None

    response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
    response.enable_chunked_encoding()
    await response.prepare(request)
    watch = OpenWatch()
    faults.watches.add(watch)
    stream = _Stream(cluster, faults, settings, resource, watch, response, matches, metadata_only)
    try:
        await stream.run(cursor, bookmarks, send_initial, timeout)
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        faults.watches.discard(watch)
    if watch.dropped:
        transport = request.transport
        if transport is not None:
            transport.abort()
    return response


class _Stream:
    """One watch connection's writer: what to send, in order, until it ends."""

    def __init__(self, cluster: Cluster, faults: Faults, settings: WatchSettings, resource: Resource,
                 watch: OpenWatch, response: web.StreamResponse, matches: Matcher, metadata_only: bool) -> None:
        self.cluster, self.faults, self.settings, self.resource = cluster, faults, settings, resource
        self.watch, self.response, self.matches, self.metadata_only = watch, response, matches, metadata_only

    async def send(self, kind: str, obj: Obj) -> bool:
        """Write one event; False when the watch must end (dropped)."""
        if not await self.faults.before_event(self.watch, self.response, kind):
            return False
        if self.metadata_only and kind in ("ADDED", "MODIFIED", "DELETED"):
            obj = partial_metadata(obj)
        await self.response.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")
        return self.faults.after_event(self.watch, kind)

    def bookmark(self, rv: int, initial_end: bool = False) -> Obj:
        meta: Obj = {"resourceVersion": str(rv)}
        if initial_end:
            meta["annotations"] = {INITIAL_EVENTS_END: "true"}
        return {"kind": self.resource.kind, "apiVersion": self.resource.api_version, "metadata": meta}

    async def run(self, cursor: int | None, bookmarks: bool, send_initial: bool, timeout: float) -> None:
        cluster, resource, watch = self.cluster, self.resource, self.watch
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if cursor is None or send_initial:
            at = cluster.rv
            objects, keys = cluster.snapshot(resource, at)
            for key in keys:
                obj = objects[key]
                if self.matches(obj) and not await self.send("ADDED", obj):
                    return
            if send_initial and bookmarks and not await self.send("BOOKMARK", self.bookmark(at, initial_end=True)):
                return
            cursor = at
        next_bookmark = loop.time() + self.settings.bookmark_interval
        while True:
            await self.faults.wait_while_stalled(watch)
            if watch.dropped:
                return
            if cursor < cluster.floor:
                await self.send("ERROR", status_body(410, "Expired",
                                                     f"too old resource version: {cursor} ({cluster.floor})"))
                return
            changed = cluster.changed
            latest = cluster.rv
            for event in cluster.events_after(cursor):
                if event.rv > latest:
                    break
                cursor = event.rv
                if event.resource != resource:
                    continue
                kind = translate(event, self.matches)
                if kind is not None and not await self.send(kind, event.obj):
                    return
            cursor = latest
            now = loop.time()
            if now >= deadline:
                if bookmarks:
                    await self.send("BOOKMARK", self.bookmark(cursor))
                return
            if bookmarks and now >= next_bookmark:
                if not await self.send("BOOKMARK", self.bookmark(cursor)):
                    return
                next_bookmark = now + self.settings.bookmark_interval
            if cluster.rv != latest:
                continue
            wake = min(deadline, next_bookmark) if bookmarks else deadline
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(wake - loop.time(), 0))
