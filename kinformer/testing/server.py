"""`FakeApiServer`: the Kubernetes list/watch protocol over real HTTP, for tests and demos.

What it serves (each point is what kube-apiserver does; see the README's protocol table):
- Resources at their real paths (`/api/v1/namespaces/{ns}/pods`, `/apis/apps/v1/deployments`,
  cluster-scoped and all-namespaces forms), discovery (`/api`, `/apis`, `/api/v1`,
  `/apis/{g}/{v}`, `/version`), bearer-token auth (401 otherwise), `Status` error bodies.
- LIST: `limit`/`continue` (opaque tokens; all pages at one RV; `remainingItemCount` when
  no selector), `resourceVersion` unset/"0"/N with `resourceVersionMatch` NotOlderThan or
  Exact, label and field selectors, `items` never null, built-in items without TypeMeta.
  Continue token or Exact RV older than history → 410 Expired; RV in the future → 504
  with cause ResourceVersionTooLarge. `limit` is honoured for RV "0" too (the real server
  may ignore it there; clients must handle both).
- WATCH: JSON lines; resume from RV (events after it); RV unset/"0" → synthetic ADDED for
  the current state first; selectors (an object leaving the selection → DELETED, entering →
  ADDED); `allowWatchBookmarks` (a BOOKMARK every `bookmark_interval` and one before the
  `timeoutSeconds` close); `sendInitialEvents=true` (needs `resourceVersionMatch=NotOlderThan`,
  else 422 with a FieldValueForbidden cause) ending, when bookmarks are allowed, with the
  BOOKMARK annotated `k8s.io/initial-events-end: "true"`; an RV older than history → an ERROR event with a
  410 Expired Status, as the watch cache sends it.
- Metadata-only: an `Accept` with `as=PartialObjectMetadata(List)` gets PartialObjectMetadata.
- Faults, all deterministic: `drop_watches()`, `drop_watches_after(k)`, `compact()`,
  `fail_next(n, code, retry_after=, verbs=)`, `malformed_lines(n)`, `stall_watches()`,
  `slow_writes(seconds)`. `requests` records every resource request (verb, path, query).

Not served (deliberately): admission, status subresources, server-side apply, JSON patch,
field managers, protobuf, table output. Strategic merge patch is applied as a merge patch.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from kinformer.errors import SelectorError
from kinformer.resources import Resource
from kinformer.selectors import FieldSelector, LabelSelector
from kinformer.testing._cluster import Cluster, ClusterError, Event, Obj, page_start

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
DEFAULT_TOKEN = "kinformer-fake-token"
_TRUE = ("true", "1")


@dataclass(slots=True)
class RecordedRequest:
    verb: str
    path: str
    query: dict[str, str]


@dataclass(slots=True)
class _Failure:
    remaining: int
    code: int
    retry_after: float | None
    verbs: frozenset[str] | None


@dataclass(eq=False)
class _Watch:
    resource: Resource
    request: web.Request
    dropped: bool = False
    sent: int = 0


@dataclass(slots=True)
class _Faults:
    drop_after: int | None = None
    malformed: int = 0
    stalled: bool = False
    write_delay: float = 0.0
    failures: list[_Failure] = field(default_factory=list)


def _partial(obj: Obj) -> Obj:
    return {"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1", "metadata": obj["metadata"]}


def status_body(code: int, reason: str, message: str, **extra: Any) -> Obj:
    body: Obj = {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                 "message": message, "reason": reason, "code": code}
    body.update(extra)
    return body


def _forbidden(field: str, detail: str) -> _HttpError:
    """A 422 Invalid with the one `FieldValueForbidden` cause the real server sends."""
    return _HttpError(422, "Invalid", f"{field}: Forbidden: {detail}",
                      details={"group": "meta.k8s.io", "kind": "ListOptions",
                               "causes": [{"reason": "FieldValueForbidden", "message": f"Forbidden: {detail}",
                                           "field": field}]})


class _HttpError(Exception):
    def __init__(self, code: int, reason: str, message: str, headers: dict[str, str] | None = None,
                 **extra: Any) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message
        self.headers = headers or {}
        self.extra = extra

    def response(self) -> web.Response:
        body = status_body(self.code, self.reason, self.message, **self.extra)
        return web.Response(status=self.code, body=orjson.dumps(body), headers=self.headers,
                            content_type="application/json")


def _encode_continue(rv: int, start: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except Exception:
        raise _HttpError(400, "BadRequest", "continue key is not valid: incorrect encoded start "
                         "resourceVersion (version meta.k8s.io/v1)") from None


class FakeApiServer:
    """An in-process Kubernetes API server for the list/watch protocol.

    `async with FakeApiServer() as server:` starts it on 127.0.0.1 (ephemeral port);
    `server.api_client()` is a `kubernetes_asyncio` client pointed at it.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        history_size: int = 10_000,
        bookmark_interval: float = 1.0,
        default_watch_timeout: float = 1800.0,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        self.token = token
        self.cluster = Cluster(history_size)
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.host = host
        self.port = port
        self.requests: list[RecordedRequest] = []
        self._faults = _Faults()
        self._watches: set[_Watch] = set()
        self._runner: web.AppRunner | None = None
        self._kubeconfig: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        for w in list(self._watches):
            w.dropped = True
        self._poke()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._kubeconfig:
            with contextlib.suppress(OSError):
                os.unlink(self._kubeconfig)

    async def __aenter__(self) -> FakeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def api_client(self) -> Any:
        """A new `kubernetes_asyncio.client.ApiClient` for this server (close it when done)."""
        from kubernetes_asyncio.client import ApiClient, Configuration

        config = Configuration(host=self.url)
        config.api_key = {"BearerToken": self.token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
        return ApiClient(config)

    def kubeconfig_path(self) -> str:
        """Write (once) and return a kubeconfig file for this server."""
        if self._kubeconfig is None:
            config = {
                "apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "users": [{"name": "fake", "user": {"token": self.token}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            }
            fd, path = tempfile.mkstemp(prefix="kinformer-fake-", suffix=".kubeconfig")
            with os.fdopen(fd, "w") as fh:
                json.dump(config, fh)
            self._kubeconfig = path
        return self._kubeconfig

    # -- the Python write API -------------------------------------------------------------

    def register(self, resource: Resource, *, fields: Iterable[str] = ()) -> None:
        """Serve a custom resource (its `kind` is required)."""
        self.cluster.register(resource, fields=fields)

    def create(self, resource: Resource | str, obj: Obj) -> Obj:
        return self.cluster.create(self._resource(resource), obj)

    def update(self, resource: Resource | str, obj: Obj) -> Obj:
        return self.cluster.update(self._resource(resource), obj)

    def patch(self, resource: Resource | str, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        return self.cluster.patch(self._resource(resource), name, patch, namespace)

    def delete(self, resource: Resource | str, obj_or_name: Obj | str, namespace: str | None = None) -> Obj:
        if isinstance(obj_or_name, dict):
            meta = obj_or_name.get("metadata") or {}
            name, namespace = meta.get("name", ""), meta.get("namespace", namespace)
        else:
            name = obj_or_name
        return self.cluster.delete(self._resource(resource), name, namespace)

    def get(self, resource: Resource | str, name: str, namespace: str | None = None) -> Obj:
        return self.cluster.get(self._resource(resource), name, namespace)

    def objects(self, resource: Resource | str) -> dict[str, Obj]:
        """The current objects of a resource by key (a copy of the mapping)."""
        return dict(self.cluster.info(self._resource(resource)).objects)

    @property
    def resource_version(self) -> str:
        return str(self.cluster.rv)

    def _resource(self, resource: Resource | str) -> Resource:
        if isinstance(resource, str):
            resource = Resource.builtin(resource)
        for known in self.cluster.resources:
            if known == resource:
                return known
        raise ClusterError(404, "NotFound", f"resource {resource} is not registered")

    # -- faults ---------------------------------------------------------------------------

    def drop_watches(self) -> None:
        """Abort every open watch connection now (no clean end: the client sees a drop)."""
        for w in self._watches:
            w.dropped = True
        self._poke()

    def drop_watches_after(self, events: int | None) -> None:
        """Abort each watch after it has sent `events` events (None: never)."""
        self._faults.drop_after = events

    def compact(self) -> None:
        """Forget history: resuming any earlier RV now gets 410 Gone."""
        self.cluster.compact()
        self._poke()

    def fail_next(self, count: int, code: int = 500, *, retry_after: float | None = None,
                  verbs: Iterable[str] | None = None) -> None:
        """Answer the next `count` resource requests (of `verbs`, default any) with `code`."""
        self._faults.failures.append(
            _Failure(count, code, retry_after, frozenset(verbs) if verbs is not None else None))

    def malformed_lines(self, count: int = 1) -> None:
        """Write a malformed JSON line before each of the next `count` watch events."""
        self._faults.malformed += count

    def stall_watches(self, stalled: bool = True) -> None:
        """Keep watch connections open but send nothing (no events, no bookmarks)."""
        self._faults.stalled = stalled
        self._poke()

    def slow_writes(self, seconds: float) -> None:
        """Sleep this long before each watch line."""
        self._faults.write_delay = seconds

    def clear_faults(self) -> None:
        self._faults = _Faults()
        self._poke()

    def count(self, verb: str) -> int:
        return sum(1 for r in self.requests if r.verb == verb)

    @property
    def open_watches(self) -> int:
        return len(self._watches)

    def _poke(self) -> None:
        changed, self.cluster.changed = self.cluster.changed, asyncio.Event()
        changed.set()

    # -- HTTP -----------------------------------------------------------------------------

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return _HttpError(401, "Unauthorized", "Unauthorized").response()
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except _HttpError as err:
            return err.response()
        except ClusterError as err:
            return _HttpError(err.code, err.reason, err.message).response()

    def _check_failure(self, verb: str) -> None:
        for failure in self._faults.failures:
            if failure.remaining > 0 and (failure.verbs is None or verb in failure.verbs):
                failure.remaining -= 1
                self._faults.failures = [f for f in self._faults.failures if f.remaining > 0]
                headers: dict[str, str] = {}
                extra: dict[str, Any] = {}
                if failure.retry_after is not None:
                    headers["Retry-After"] = str(int(failure.retry_after))
                    extra["details"] = {"retryAfterSeconds": int(failure.retry_after)}
                reason = {429: "TooManyRequests", 500: "InternalError", 503: "ServiceUnavailable",
                          504: "Timeout"}.get(failure.code, "InternalError")
                message = ("Too many requests, please try again later." if failure.code == 429
                           else "an error on the server (\"injected fault\") has prevented the request "
                                "from succeeding")
                raise _HttpError(failure.code, reason, message, headers, **extra)

    def _json(self, body: Any, status: int = 200) -> web.Response:
        return web.Response(status=status, body=orjson.dumps(body), content_type="application/json")

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["version"]:
            return self._json({"major": "1", "minor": "33", "gitVersion": "v1.33.0-kinformer-fake",
                               "platform": "linux/amd64"})
        if parts and parts[0] == "api":
            if len(parts) == 1:
                return self._json({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": f"{self.host}:{self.port}"}]})
            group, version, rest = "", parts[1], parts[2:]
        elif parts and parts[0] == "apis":
            if len(parts) == 1:
                return self._json(self._group_list())
            if len(parts) == 2:
                return self._json(self._group(parts[1]))
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise _HttpError(404, "NotFound", "the server could not find the requested resource")
        if not rest:
            return self._json(self._resource_list(group, version))
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = self.cluster.lookup(group, version, rest[0])
        if resource is None or len(rest) > 2 or (namespace is not None and not resource.namespaced):
            raise _HttpError(404, "NotFound", "the server could not find the requested resource")
        name = rest[1] if len(rest) == 2 else None
        return await self._resource_request(request, resource, namespace, name)

    async def _resource_request(self, request: web.Request, resource: Resource, namespace: str | None,
                                name: str | None) -> web.StreamResponse:
        params = dict(request.query)
        method = request.method
        if name is None and method == "GET":
            verb = "watch" if params.get("watch") in _TRUE else "list"
        else:
            verb = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch",
                    "DELETE": "delete"}.get(method, "unknown")
        self.requests.append(RecordedRequest(verb, request.path, params))
        self._check_failure(verb)
        cluster = self.cluster
        metadata_only = "as=PartialObjectMetadata" in request.headers.get("Accept", "")
        if verb == "list":
            return self._json(self._list(resource, namespace, params, metadata_only))
        if verb == "watch":
            return await self._watch(request, resource, namespace, params, metadata_only)
        if verb == "get" and name is not None:
            return self._json(cluster.get(resource, name, namespace))
        if verb == "create" and name is None:
            created = cluster.create(resource, await self._body(request), namespace)
            return self._json(created, 201)
        if verb == "update" and name is not None:
            body = await self._body(request)
            if (body.get("metadata") or {}).get("name") != name:
                raise _HttpError(400, "BadRequest", "the name of the object does not match the name on the URL")
            return self._json(cluster.update(resource, body, namespace))
        if verb == "patch" and name is not None:
            ctype = request.content_type
            if ctype not in ("application/merge-patch+json", "application/strategic-merge-patch+json"):
                raise _HttpError(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                                 f"format - accepted media types include: application/merge-patch+json "
                                 f"(got {ctype})")
            return self._json(cluster.patch(resource, name, await self._body(request), namespace))
        if verb == "delete" and name is not None:
            return self._json(cluster.delete(resource, name, namespace))
        raise _HttpError(405, "MethodNotAllowed", f"{method} is not supported here")

    async def _body(self, request: web.Request) -> Obj:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            raise _HttpError(400, "BadRequest", "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise _HttpError(400, "BadRequest", "the request body must be a JSON object")
        return body

    # -- selectors ------------------------------------------------------------------------

    def _selectors(self, resource: Resource, params: dict[str, str]) -> tuple[LabelSelector, FieldSelector]:
        try:
            labels = LabelSelector.parse(params.get("labelSelector"))
        except SelectorError as err:
            raise _HttpError(400, "BadRequest", f"unable to parse requirement: {err}") from None
        try:
            fields = FieldSelector.parse(params.get("fieldSelector"))
        except SelectorError as err:
            raise _HttpError(400, "BadRequest", str(err)) from None
        allowed = {"metadata.name", "metadata.namespace"} | self.cluster.info(resource).fields
        for path in fields.fields():
            if path not in allowed:
                raise _HttpError(400, "BadRequest", f"field label not supported: {path}")
        return labels, fields

    @staticmethod
    def _matcher(namespace: str | None, labels: LabelSelector, fields: FieldSelector) -> Any:
        check_labels, check_fields = not labels.empty(), not fields.empty()

        def matches(obj: Obj) -> bool:
            if namespace is not None and obj["metadata"].get("namespace") != namespace:
                return False
            if check_labels and not labels.matches_object(obj):
                return False
            return not check_fields or fields.matches(obj)

        return matches

    # -- LIST -----------------------------------------------------------------------------

    def _list(self, resource: Resource, namespace: str | None, params: dict[str, str],
              metadata_only: bool = False) -> Obj:
        cluster = self.cluster
        labels, fields = self._selectors(resource, params)
        rv_param = params.get("resourceVersion")
        match = params.get("resourceVersionMatch")
        token = params.get("continue")
        try:
            limit = int(params.get("limit") or 0)
        except ValueError:
            raise _HttpError(400, "BadRequest", "limit must be an integer") from None
        if match and not rv_param:
            raise _forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion is "
                             "provided")
        if match and match not in ("NotOlderThan", "Exact"):
            raise _HttpError(422, "Invalid", f"resourceVersionMatch: Unsupported value: \"{match}\": supported "
                             "values: \"Exact\", \"NotOlderThan\", \"\"")
        start_after = ""
        if token:
            if rv_param:
                raise _HttpError(400, "BadRequest", "specifying resource version is not allowed when using continue")
            at, start_after = _decode_continue(token)
            if at < cluster.floor:
                raise _HttpError(410, "Expired", "The provided continue parameter is too old to display a "
                                 "consistent list result. You can start a new list without the continue "
                                 "parameter, or use the continue token in this response to retrieve the "
                                 "remainder of the results. Continuing with the provided token results in an "
                                 "inconsistent list - objects that were created, modified, or deleted between "
                                 "the time the first chunk was returned and now may show up in the list.")
        elif rv_param in (None, "", "0"):
            at = cluster.rv
        else:
            try:
                wanted = int(rv_param)
            except ValueError:
                raise _HttpError(400, "BadRequest", f"invalid resource version: {rv_param}") from None
            if wanted > cluster.rv:
                raise _HttpError(504, "Timeout", f"Too large resource version: {wanted}, current: {cluster.rv}",
                                 details={"causes": [{"reason": "ResourceVersionTooLarge",
                                                      "message": "Too large resource version"}],
                                          "retryAfterSeconds": 1})
            if match == "Exact":
                if wanted < cluster.floor:
                    raise _HttpError(410, "Expired", f"too old resource version: {wanted} ({cluster.floor})")
                at = wanted
            else:
                at = cluster.rv
        objects, keys = cluster.snapshot(resource, at)
        matches = self._matcher(namespace, labels, fields)
        selecting = not labels.empty() or not fields.empty()
        builtin = cluster.info(resource).builtin
        items: list[Obj] = []
        index = page_start(keys, start_after) if start_after else 0
        if namespace is not None and not start_after:
            index = page_start(keys, f"{namespace}/")
        next_key = ""
        n = len(keys)
        while index < n:
            key = keys[index]
            if namespace is not None and not key.startswith(f"{namespace}/"):
                break
            obj = objects[key]
            index += 1
            if not matches(obj):
                continue
            if metadata_only:
                items.append(_partial(obj))
            elif builtin:
                items.append({k: v for k, v in obj.items() if k not in ("kind", "apiVersion")})
            else:
                items.append(obj)
            if limit and len(items) >= limit:
                next_key = key
                break
        meta: Obj = {"resourceVersion": str(at)}
        if next_key and index < n and (namespace is None or keys[index].startswith(f"{namespace}/")):
            meta["continue"] = _encode_continue(at, next_key)
            if not selecting:
                end = n if namespace is None else page_start(keys, f"{namespace}/\x7f")
                meta["remainingItemCount"] = end - index
        if metadata_only:
            return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                    "items": items}
        return {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": meta, "items": items}

    # -- WATCH ----------------------------------------------------------------------------

    async def _watch(self, request: web.Request, resource: Resource, namespace: str | None,
                     params: dict[str, str], metadata_only: bool = False) -> web.StreamResponse:
        labels, fields = self._selectors(resource, params)
        rv_param = params.get("resourceVersion")
        bookmarks = params.get("allowWatchBookmarks") in _TRUE
        send_initial = params.get("sendInitialEvents") in _TRUE
        if send_initial and params.get("resourceVersionMatch") != "NotOlderThan":
            raise _forbidden("resourceVersionMatch", "sendInitialEvents requires setting resourceVersionMatch to "
                             "NotOlderThan")
        if params.get("resourceVersionMatch") and not send_initial:
            raise _forbidden("resourceVersionMatch", "resourceVersionMatch is forbidden for watch unless "
                             "sendInitialEvents is provided")
        cursor: int | None = None
        if rv_param not in (None, "", "0"):
            try:
                cursor = int(rv_param)
            except ValueError:
                raise _HttpError(400, "BadRequest", f"invalid resource version: {rv_param}") from None
        try:
            timeout = float(params.get("timeoutSeconds") or self.default_watch_timeout)
        except ValueError:
            raise _HttpError(400, "BadRequest", "timeoutSeconds must be a number") from None

        response = web.StreamResponse(status=200, headers={"Content-Type": "application/json"})
        response.enable_chunked_encoding()
        await response.prepare(request)
        watch = _Watch(resource, request)
        self._watches.add(watch)
        try:
            await self._stream(watch, response, namespace, labels, fields, cursor, bookmarks,
                               send_initial, timeout, metadata_only)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._watches.discard(watch)
        if watch.dropped:
            transport = request.transport
            if transport is not None:
                transport.abort()
        return response

    async def _stream(self, watch: _Watch, response: web.StreamResponse, namespace: str | None,
                      labels: LabelSelector, fields: FieldSelector, cursor: int | None, bookmarks: bool,
                      send_initial: bool, timeout: float, metadata_only: bool) -> None:
        cluster, resource = self.cluster, watch.resource
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        matches = self._matcher(namespace, labels, fields)

        async def send(kind: str, obj: Obj) -> bool:
            """Write one event; False when the watch must end (dropped)."""
            faults = self._faults
            while faults.stalled and not watch.dropped:
                await cluster.changed.wait()
                faults = self._faults
            if watch.dropped:
                return False
            if faults.write_delay:
                await asyncio.sleep(faults.write_delay)
            if faults.malformed and kind != "BOOKMARK":
                faults.malformed -= 1
                await response.write(b'{"type":"MODIFIED","object":{"metadata":\n')
            if metadata_only and kind in ("ADDED", "MODIFIED", "DELETED"):
                obj = _partial(obj)
            await response.write(orjson.dumps({"type": kind, "object": obj}) + b"\n")
            if kind != "BOOKMARK":
                watch.sent += 1
                if faults.drop_after is not None and watch.sent >= faults.drop_after:
                    watch.dropped = True
                    return False
            return True

        def bookmark(rv: int, initial_end: bool = False) -> Obj:
            meta: Obj = {"resourceVersion": str(rv)}
            if initial_end:
                meta["annotations"] = {INITIAL_EVENTS_END: "true"}
            return {"kind": resource.kind, "apiVersion": resource.api_version, "metadata": meta}

        if cursor is None or send_initial:
            at = cluster.rv
            objects, keys = cluster.snapshot(resource, at)
            for key in keys:
                obj = objects[key]
                if matches(obj) and not await send("ADDED", obj):
                    return
            if send_initial and bookmarks and not await send("BOOKMARK", bookmark(at, initial_end=True)):
                return
            cursor = at
        next_bookmark = loop.time() + self.bookmark_interval
        while True:
            while self._faults.stalled and not watch.dropped:
                await cluster.changed.wait()
            if watch.dropped:
                return
            if cursor < cluster.floor:
                await send("ERROR", status_body(410, "Expired",
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
                kind = self._translate(event, matches)
                if kind is not None and not await send(kind, event.obj):
                    return
            cursor = latest
            now = loop.time()
            if now >= deadline:
                if bookmarks:
                    await send("BOOKMARK", bookmark(cursor))
                return
            if bookmarks and now >= next_bookmark:
                if not await send("BOOKMARK", bookmark(cursor)):
                    return
                next_bookmark = now + self.bookmark_interval
            if cluster.rv != latest:
                continue
            wake = min(deadline, next_bookmark) if bookmarks else deadline
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), max(wake - loop.time(), 0))

    @staticmethod
    def _translate(event: Event, matches: Any) -> str | None:
        if event.type == "MODIFIED":
            now, before = matches(event.obj), event.old is not None and matches(event.old)
            if now and before:
                return "MODIFIED"
            if now:
                return "ADDED"
            return "DELETED" if before else None
        return event.type if matches(event.obj) else None

    # -- discovery ------------------------------------------------------------------------

    def _group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for res in self.cluster.resources:
            if res.group and res.version not in groups.setdefault(res.group, []):
                groups[res.group].append(res.version)
        return groups

    def _group(self, name: str) -> Obj:
        versions = self._group_versions().get(name)
        if not versions:
            raise _HttpError(404, "NotFound", "the server could not find the requested resource")
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": gvs, "preferredVersion": gvs[0]}

    def _group_list(self) -> Obj:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self._group(g) for g in sorted(self._group_versions())]}

    def _resource_list(self, group: str, version: str) -> Obj:
        resources = [
            {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced, "kind": r.kind,
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"]}
            for r in self.cluster.resources if r.group == group and r.version == version
        ]
        if not resources:
            raise _HttpError(404, "NotFound", "the server could not find the requested resource")
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}


def main(argv: list[str] | None = None) -> None:
    """`python -m kinformer.testing.server`: serve in this process until killed.

    Prints one JSON line `{"url": ..., "token": ..., "resourceVersion": ...}` once ready.
    """
    from kinformer.testing.generators import make_pod

    parser = argparse.ArgumentParser(description="kinformer's fake Kubernetes API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--seed-pods", type=int, default=0)
    parser.add_argument("--pod-bytes", type=int, default=3000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--bookmark-interval", type=float, default=1.0)
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = FakeApiServer(token=args.token, history_size=args.history,
                               bookmark_interval=args.bookmark_interval, host=args.host, port=args.port)
        for i in range(args.seed_pods):
            server.create("pods", make_pod(i, f"ns-{i % args.namespaces}", size=args.pod_bytes))
        await server.start()
        print(json.dumps({"url": server.url, "token": server.token,
                          "resourceVersion": server.resource_version}), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())


if __name__ == "__main__":
    main()
