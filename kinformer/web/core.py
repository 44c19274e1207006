"""`CacheApi`: Kubernetes-shaped reads from informer caches, framework-neutral.

`CacheApi.handle(method, path, query, headers)` answers a `Response` or a `StreamResponse`;
the FastAPI and aiohttp adapters only translate. Paths are those of kube-apiserver, relative
to wherever the adapter is mounted, so an unmodified Kubernetes client pointed at the mount
point works (kubernetes_asyncio's typed `CoreV1Api`, kubectl):

- Discovery: `/api`, `/api/v1`, `/apis`, `/apis/{group}`, `/apis/{group}/{version}` list the
  served resources (verbs get, list, watch).
- Reads: `GET /api/v1/pods`, `/api/v1/namespaces/{ns}/pods`, `/apis/{g}/{v}/...`, and
  `.../{name}`. Lists are `{kind}List` objects with `metadata.resourceVersion`; items of
  built-in kinds come without kind/apiVersion, custom resources' with them (what the API
  server does); a get returns the cached object as it is. `labelSelector` (the full
  grammar), `fieldSelector` (any field path, not only the server's few: the cache can),
  `limit`/`continue`, `watch=true`.
- Errors are `Status` objects: 400 a selector or parameter that does not parse; 401 a
  missing or wrong bearer token (when one is configured); 403 a denied resource (Secrets
  unless `allow_secrets=True`, and `deny=`), or a
  namespace the cache does not hold (an informer restricted to one namespace serves only
  that one: answering for others would present a partial cache as complete), and a
  namespace object (`/api/v1/namespaces/{name}`) when namespaces are not served; 404 an
  unknown path, resource or object; 405 a method other than GET; 410 an expired continue
  token or watch resourceVersion; 503 (with Retry-After) a resource whose informer has not
  synced or is not running — never a partial cache served as if complete.
- `/readyz`, `/livez`, `/healthz` (health.py) and `/metrics` (Prometheus text, with the
  `metrics` extra; 404 without it). `/` serves the read-only page when `page=True`.

Semantics chosen where the API server's cannot be copied:
- `metadata.resourceVersion` of a list is the informer's last synced RV whenever its
  DeltaFIFO is empty; while it is not, the RV of the newest change the cache has applied
  (history.py), so the RV never claims more than the items show.
- `limit`/`continue`: the first page takes a snapshot of the matching items (references to
  the cached objects, sorted by namespace/name), and every page of that list is cut from
  it, so all pages show one state at one RV, as on the server. A snapshot lives
  `continue_ttl` seconds (on the injected clock); at most `max_snapshots` are kept (the
  oldest goes first); a token for one that is gone gets 410 Expired, and the client
  starts a new list, as after an etcd compaction. `remainingItemCount` is always set.
- `watch=true` is served from `WatchHistory` (history.py), shared by every watcher:
  resourceVersion unset or "0" → ADDED for the matching cached objects, then changes;
  an RV this cache handed out (a list, an event object, a bookmark) → the changes after
  it; any other RV → an ERROR event with a 410 Status. Selectors apply per change, as on
  the server: an object that stops matching is DELETED, one that starts matching ADDED.
  `sendInitialEvents=true` (with `resourceVersionMatch=NotOlderThan`) ends the initial
  events with the `k8s.io/initial-events-end` BOOKMARK; `allowWatchBookmarks=true` gets a
  BOOKMARK every `bookmark_interval` seconds when caught up; `timeoutSeconds` ends the
  stream (default 1800). With `Accept: text/event-stream` the same stream comes as
  server-sent events (`data: {event}`), always with the initial-events-end bookmark.

Exposure (exposure.py has the exact rules): Secrets and `deny`-listed resources are not
served, not discovered and not informed; an allowed Secret's `data`/`stringData` values
are `""` in every list, get and watch response unless `reveal_secret_data=True` (the cache
keeps the real object); with `bearer_token=` / `bearer_token_file=` every request but
/livez, /readyz and /healthz needs `Authorization: Bearer <token>`. Authentication comes
first, in `handle`; the resource checks in one call at the top of `_resource_request`.

Reads happen on the event loop (the adapters' handlers are async), in one synchronous
step per request: the history is synced and the cache read with no await between.
"""

from __future__ import annotations

import base64
import contextlib
import itertools
import os
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import anyio
import orjson

from kinformer._logging import get_logger
from kinformer.clock import REAL_CLOCK, Clock
from kinformer.errors import (
    ApiError,
    ExpiredError,
    ForbiddenError,
    InvalidArgumentError,
    InvalidError,
    MissingExtraError,
    NotFoundError,
    SelectorError,
    ServerError,
)
from kinformer.factory import InformerFactory
from kinformer.informer import SharedIndexInformer, exit_unwrapped
from kinformer.objects import namespace as namespace_of
from kinformer.resources import BUILTIN_RESOURCES, Resource
from kinformer.selectors import FieldSelector, LabelSelector
from kinformer.store import NAMESPACE_INDEX
from kinformer.web import exposure, health
from kinformer.web.history import Change, WatchHistory
from kinformer.web.query import QUERY_PATH, serve_query
from kinformer.web.responses import (
    JSON,
    Response,
    StreamResponse,
    error_response,
    json_response,
    status_object,
    status_response,
)

if TYPE_CHECKING:
    from prometheus_client.registry import CollectorRegistry

INITIAL_EVENTS_END = "k8s.io/initial-events-end"
EVENT_STREAM = "text/event-stream"
_TRUE = ("1", "t", "true")  # Go's strconv.ParseBool, case-blind: kubernetes_asyncio sends "True"
_NOT_FOUND = "the server could not find the requested resource"
_BUILTIN = frozenset(BUILTIN_RESOURCES)
_VERBS = ["get", "list", "watch"]
_TYPE_META = frozenset(("kind", "apiVersion"))

Source = InformerFactory | Iterable[SharedIndexInformer[Any]]


def resource_name(resource: Resource) -> str:
    """`pods`, `deployments.apps`: kubectl's resource.group form (the health checks' names)."""
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


@dataclass(slots=True)
class Served:
    resource: Resource
    informer: SharedIndexInformer[Any] | None = None
    history: WatchHistory | None = None
    ready: health.HealthCheck | None = None
    live: health.HealthCheck | None = None

    @property
    def name(self) -> str:
        return resource_name(self.resource)

    def list_kind(self) -> tuple[str, str]:
        """(kind, apiVersion) of this resource's lists."""
        if self.informer is not None and self.informer.list_watch.metadata_only:
            return "PartialObjectMetadataList", "meta.k8s.io/v1"
        return self.resource.list_kind, self.resource.api_version

    def strips_type_meta(self) -> bool:
        """Does the API server send this list's items without kind/apiVersion? (Built-in
        types yes; custom resources and PartialObjectMetadata no.)"""
        return self.resource in _BUILTIN and not (self.informer is not None and self.informer.list_watch.metadata_only)


@dataclass(slots=True)
class _Snapshot:
    items: list[Any]
    resource_version: str
    created: float


@dataclass(frozen=True, slots=True)
class _Request:
    namespace: str | None
    labels: LabelSelector
    fields: FieldSelector


class CacheApi:
    """Serve informer caches the way kube-apiserver serves resources (module docstring).

    `CacheApi(["pods", "deployments"])` says what to serve; `async with cache.run(factory):`
    creates (through `factory.informer`) and, by default, starts the informers, and runs
    the watch histories. `bind(source)` binds without running, for an application that
    runs its factory itself (then `run(start=False)`). A `CacheApi` is bound and run once,
    like the informers it serves.

    Exposure options (exposure.py): `allow_secrets=False` (Secrets are denied: dropped
    from `resources` with a warning, skipped in a bound source, 403 on request),
    `deny=()` (more resources denied the same way: `Resource`s or names such as
    `"configmaps"`, `"deployments.apps"`), `reveal_secret_data=False` (an allowed Secret's
    values are served as `""`; needs `allow_secrets`), `bearer_token=None` /
    `bearer_token_file=None` (one of them: every request but health checks must carry
    it; the file is read once, here). `InvalidArgumentError` for inconsistent options.
    """

    def __init__(
        self,
        resources: Iterable[Resource | str] = (),
        *,
        clock: Clock | None = None,
        liveness: health.LivenessPolicy | None = None,
        watch_history: int = 1000,
        continue_ttl: float = 300.0,
        max_snapshots: int = 64,
        bookmark_interval: float = 60.0,
        default_watch_timeout: float = 1800.0,
        metrics_registry: CollectorRegistry | None = None,
        metrics_name: str = "kinformer",
        page: bool = False,
        allow_secrets: bool = False,
        deny: Iterable[Resource | str] = (),
        reveal_secret_data: bool = False,
        bearer_token: str | None = None,
        bearer_token_file: str | os.PathLike[str] | None = None,
    ) -> None:
        if reveal_secret_data and not allow_secrets:
            raise InvalidArgumentError("reveal_secret_data=True needs allow_secrets=True")
        self._log = get_logger("kinformer.web")
        self.denied = exposure.denied_set(deny, allow_secrets)
        self.reveal_secret_data = reveal_secret_data
        self._auth = exposure.BearerAuth.from_options(bearer_token, bearer_token_file)
        self._served: dict[tuple[str, str, str], Served] = {}
        for r in resources:
            res = Resource.builtin(r) if isinstance(r, str) else r
            if self._is_denied(res):
                self._log.warning("resource denied, not served", resource=resource_name(res))
                continue
            self._add(res)
        self._clock = clock
        self.liveness = liveness or health.LivenessPolicy()
        self.watch_history = watch_history
        self.continue_ttl = continue_ttl
        self.max_snapshots = max_snapshots
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.metrics_registry = metrics_registry
        self.metrics_name = metrics_name
        self.page = page
        self._factory: InformerFactory | None = None
        self._snapshots: OrderedDict[int, _Snapshot] = OrderedDict()
        self._snapshot_ids = itertools.count(1)
        self._metrics_error: str | None = "no informers bound yet"
        self.running = False

    def _add(self, resource: Resource) -> Served:
        if not resource.kind:
            raise InvalidArgumentError(f"{resource}: serving a resource needs its kind (Resource(..., kind=...))")
        key = (resource.group, resource.version, resource.plural)
        served = self._served.get(key)
        if served is None:
            served = self._served[key] = Served(resource)
        return served

    def _is_denied(self, resource: Resource) -> bool:
        return (resource.group, resource.plural) in self.denied

    @property
    def authenticated(self) -> bool:
        """Does every request (but health checks) need the bearer token?"""
        return self._auth is not None

    @property
    def clock(self) -> Clock:
        if self._clock is not None:
            return self._clock
        return self._factory.clock if self._factory is not None else REAL_CLOCK

    @property
    def resources(self) -> list[Resource]:
        return [s.resource for s in self._served.values()]

    def informer(self, resource: Resource | str) -> SharedIndexInformer[Any] | None:
        res = Resource.builtin(resource) if isinstance(resource, str) else resource
        served = self._served.get((res.group, res.version, res.plural))
        return served.informer if served is not None else None

    # -- binding and running --------------------------------------------------------------

    def bind(self, source: Source) -> None:
        """Attach the informers to serve: from a factory (`factory.informer(resource)` for
        each resource given at construction, or every informer it has if none was given),
        or given directly (one per resource; with resources given, only those are served)."""
        if any(s.informer is not None for s in self._served.values()):
            raise InvalidArgumentError("this CacheApi is already bound to informers")
        if isinstance(source, InformerFactory):
            self._factory = source
            if self._served:
                informers = [source.informer(s.resource) for s in self._served.values()]
            else:
                informers = list(source.informers.values())
        else:
            informers = list(source)
        explicit = bool(self._served)
        for informer in informers:
            resource = informer.list_watch.resource
            key = (resource.group, resource.version, resource.plural)
            if explicit and key not in self._served:
                continue
            if self._is_denied(resource):
                self._log.info("resource denied, not served", resource=resource_name(resource))
                continue
            served = self._add(resource)
            if served.informer is not None and served.informer is not informer:
                raise InvalidArgumentError(f"two informers for {resource}: serve one informer per resource")
            served.informer = informer
        for served in self._served.values():
            if served.informer is None:
                raise InvalidArgumentError(f"no informer for {served.resource} in the source")
            served.history = WatchHistory(served.informer, self.watch_history)
            served.ready = health.informer_sync_check(served.name, served.informer)
            served.live = health.informer_watch_check(served.name, served.informer, self.liveness, self.clock)
        self._register_metrics()

    def _register_metrics(self) -> None:
        from kinformer.metrics import informer_metrics

        try:
            metrics = informer_metrics(self.metrics_registry)
        except MissingExtraError as exc:
            self._metrics_error = str(exc)
            return
        self._metrics_error = None
        for served in self._served.values():
            assert served.informer is not None
            metrics.register(served.informer, self.metrics_name)
        if self._factory is not None:
            metrics.register_factory(self._factory, self.metrics_name)

    def run(self, source: Source | None = None, *, start: bool = True) -> _Running:
        """`async with cache.run(factory):` — bind (if `source` is given), start the factory
        or the informers (unless `start=False`: they are run elsewhere), run the watch
        histories; leaving stops what was started here. A user's exception raised in the
        block comes out as itself."""
        if source is not None:
            self.bind(source)
        return _Running(self, start)

    def readiness_checks(self) -> list[health.HealthCheck]:
        """`ping` and one `informer-sync/<resource>` per served resource (failing while unbound)."""
        checks = [health.HealthCheck("ping", health.ping)]
        for served in self._served.values():
            checks.append(served.ready or health.HealthCheck(f"informer-sync/{served.name}", _not_started))
        return checks

    def liveness_checks(self) -> list[health.HealthCheck]:
        """`ping` and one `informer-watch/<resource>` per bound resource."""
        return [health.HealthCheck("ping", health.ping), *(s.live for s in self._served.values() if s.live)]

    # -- requests -------------------------------------------------------------------------

    def handle(self, method: str, path: str, query: Iterable[tuple[str, str]] = (),
               headers: Mapping[str, str] | None = None) -> Response | StreamResponse:
        """Answer one request. `path` is relative to the mount point; `query` holds every
        (name, value) pair (repeated names allowed); header names are matched case-blind."""
        params: dict[str, list[str]] = {}
        for name, value in query:
            params.setdefault(name, []).append(value)
        accept, authorization = exposure.accept_and_authorization(headers)
        parts = [p for p in path.split("/") if p]
        if self._auth is not None and not exposure.exempt(parts):
            challenge = self._auth.challenge(authorization)
            if challenge is not None:
                return status_response(401, "Unauthorized", "Unauthorized", None, {"WWW-Authenticate": challenge})
        try:
            if method not in ("GET", "HEAD"):
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                               f"resource: {method} (this cache is read-only)")
            return self._route(parts, params, accept)
        except ApiError as err:
            return error_response(err)

    def _route(self, parts: list[str], params: dict[str, list[str]], accept: str) -> Response | StreamResponse:
        if not parts:
            if self.page:
                from kinformer.web.page import render_page

                return render_page(self)
            raise NotFoundError(404, "NotFound", _NOT_FOUND)
        head = parts[0]
        if head == "readyz":
            return health.render("readyz", self.readiness_checks(), "/".join(parts[1:]), params)
        if head in ("livez", "healthz"):
            return health.render(head, self.liveness_checks(), "/".join(parts[1:]), params)
        if head == "metrics" and len(parts) == 1:
            return self._metrics()
        if head == QUERY_PATH:
            return serve_query(self, parts[1:], params)
        if head == "api":
            if len(parts) == 1:
                return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
            if len(parts) == 2:
                return json_response(self._resource_list("", parts[1]))
            return self._resource_request("", parts[1], parts[2:], params, accept)
        if head == "apis":
            if len(parts) == 1:
                return json_response({"kind": "APIGroupList", "apiVersion": "v1",
                                      "groups": [self._group(g) for g in self._groups()]})
            if len(parts) == 2:
                if parts[1] not in self._groups():
                    raise NotFoundError(404, "NotFound", _NOT_FOUND)
                return json_response(self._group(parts[1]))
            if len(parts) == 3:
                listing = self._resource_list(parts[1], parts[2])
                if not listing["resources"]:
                    raise NotFoundError(404, "NotFound", _NOT_FOUND)
                return json_response(listing)
            return self._resource_request(parts[1], parts[2], parts[3:], params, accept)
        raise NotFoundError(404, "NotFound", _NOT_FOUND)

    # -- discovery ------------------------------------------------------------------------

    def _groups(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for served in self._served.values():
            r = served.resource
            if r.group and r.version not in groups.setdefault(r.group, []):
                groups[r.group].append(r.version)
        return groups

    def _group(self, name: str) -> dict[str, Any]:
        versions = [{"groupVersion": f"{name}/{v}", "version": v} for v in self._groups()[name]]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": versions,
                "preferredVersion": versions[0]}

    def _resource_list(self, group: str, version: str) -> dict[str, Any]:
        resources = [
            {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced, "kind": r.kind,
             "verbs": _VERBS}
            for r in (s.resource for s in self._served.values()) if r.group == group and r.version == version
        ]
        return {"kind": "APIResourceList", "apiVersion": "v1",
                "groupVersion": f"{group}/{version}" if group else version, "resources": resources}

    # -- metrics --------------------------------------------------------------------------

    def _metrics(self) -> Response:
        if self._metrics_error is not None:
            raise NotFoundError(404, "NotFound", f"/metrics is not served: {self._metrics_error}")
        from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

        registry = self.metrics_registry if self.metrics_registry is not None else REGISTRY
        return Response(200, generate_latest(registry), CONTENT_TYPE_LATEST)

    # -- resources ------------------------------------------------------------------------

    def _resource_request(self, group: str, version: str, rest: list[str], params: dict[str, list[str]],
                          accept: str) -> Response | StreamResponse:
        self._check_exposed(group, rest, params)
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        served = self._served.get((group, version, rest[0]))
        if served is None and not group and rest[0] == "namespaces" and len(rest) == 2:
            # Not 404: kubectl reads a 404 here as "the namespace does not exist" and reports
            # that instead of the object's own NotFound; 403 is what it gets from RBAC.
            raise ForbiddenError(403, "Forbidden", f'namespaces "{rest[1]}" is forbidden: this cache does not '
                                 'serve namespaces', status={"details": {"name": rest[1], "kind": "namespaces"}})
        if served is None or len(rest) > 2 or (namespace is not None and not served.resource.namespaced):
            raise NotFoundError(404, "NotFound", _NOT_FOUND)
        if len(rest) == 2 and served.resource.namespaced and namespace is None:
            raise NotFoundError(404, "NotFound", _NOT_FOUND)
        informer = self._ready_informer(served, namespace)
        if len(rest) == 2:
            return self._get(served, informer, rest[1], namespace)
        request = _Request(namespace, *_selectors(params))
        if _flag(params, "watch"):
            return self._watch(served, request, params, accept)
        return self._list(served, informer, request, params)

    def _check_exposed(self, group: str, rest: list[str], params: dict[str, list[str]]) -> None:
        """403 for a denied resource; 400 for a field selector that could probe a redacted
        Secret's data (exposure.py)."""
        plural = rest[2] if rest[0] == "namespaces" and len(rest) >= 3 else rest[0]
        if (group, plural) in self.denied:
            raise exposure.forbidden(group, plural, "this cache")
        if (group, plural) == exposure.SECRETS and not self.reveal_secret_data:
            bad = exposure.check_secret_fields(_selectors(params)[1].fields())
            if bad is not None:
                raise InvalidError(400, "BadRequest", f'"{bad}" is not a known field selector: only '
                                   '"metadata.name", "metadata.namespace", "type"')

    def _redactor(self, served: Served) -> Callable[[Any], Any] | None:
        """What every object of this resource goes through on the way out (None: nothing)."""
        if self.reveal_secret_data or not exposure.is_secret(served.resource):
            return None
        return exposure.redact_secret

    def _ready_informer(self, served: Served, namespace: str | None) -> SharedIndexInformer[Any]:
        informer = served.informer
        if informer is None or not informer.started:
            raise ServerError(503, "ServiceUnavailable", f"the cache for {served.name} is not running",
                              retry_after=1, status={"details": {"retryAfterSeconds": 1}})
        if not informer.has_synced():
            raise ServerError(503, "ServiceUnavailable", f"the cache for {served.name} has not synced yet",
                              retry_after=1, status={"details": {"retryAfterSeconds": 1}})
        scope = informer.list_watch.namespace
        if scope is not None and namespace != scope:
            where = f'namespace "{namespace}"' if namespace else "all namespaces"
            raise ForbiddenError(403, "Forbidden", f'{served.resource.plural} is forbidden: this cache holds namespace '
                                 f'"{scope}" only, not {where}',
                                 status={"details": {"kind": served.resource.plural}})
        return informer

    def _get(self, served: Served, informer: SharedIndexInformer[Any], name: str, namespace: str | None) -> Response:
        obj = informer.indexer.get_by_key(f"{namespace}/{name}" if namespace else name)
        if obj is None:
            group = served.resource.group
            details: dict[str, Any] = {"name": name, "kind": served.resource.plural}
            if group:
                details["group"] = group
            raise NotFoundError(404, "NotFound", f'{served.name} "{name}" not found', status={"details": details})
        redact = self._redactor(served)
        return json_response(obj if redact is None else redact(obj))

    def _matching(self, informer: SharedIndexInformer[Any], request: _Request) -> list[Any]:
        """The matching cached objects, sorted by key (the API server's etcd key order)."""
        indexer = informer.indexer
        if request.namespace is not None:
            keys = sorted(indexer.index_keys(NAMESPACE_INDEX, request.namespace))
            get = indexer.get_by_key
            objs = [o for o in (get(k) for k in keys) if o is not None]
        else:
            objs = [o for _, o in sorted(indexer.items(), key=lambda kv: kv[0])]
        labels, fields = request.labels, request.fields
        if labels.empty() and fields.empty():
            return objs
        return [o for o in objs if labels.matches_object(o) and fields.matches(o)]

    def _list(self, served: Served, informer: SharedIndexInformer[Any], request: _Request,
              params: dict[str, list[str]]) -> Response:
        limit = _int_param(params, "limit")
        token = _param(params, "continue")
        now = self.clock.now()
        self._expire_snapshots(now)
        if token:
            snap_id, offset = _decode_continue(token)
            snap = self._snapshots.get(snap_id)
            if snap is None:
                raise ExpiredError(410, "Expired", "The provided continue parameter is too old to display a "
                                   "consistent list result. You can start a new list without the continue parameter.")
            items, rv = snap.items, snap.resource_version
        else:
            assert served.history is not None
            rv = served.history.list_rv()  # the cache is read in the same synchronous step
            items, offset = self._matching(informer, request), 0
        end = len(items) if limit <= 0 else min(offset + limit, len(items))
        page = items[offset:end]
        meta: dict[str, Any] = {"resourceVersion": rv}
        if end < len(items):
            if token:
                snap_id = _decode_continue(token)[0]
            else:
                snap_id = next(self._snapshot_ids)
                self._snapshots[snap_id] = _Snapshot(items, rv, now)
                while len(self._snapshots) > self.max_snapshots:
                    self._snapshots.popitem(last=False)
            meta["continue"] = _encode_continue(snap_id, end)
            meta["remainingItemCount"] = len(items) - end
        elif token:
            self._snapshots.pop(_decode_continue(token)[0], None)
        redact = self._redactor(served)
        if redact is not None:
            page = [redact(o) for o in page]
        if served.strips_type_meta():
            page = [{k: v for k, v in o.items() if k not in _TYPE_META} for o in page]
        kind, api_version = served.list_kind()
        return json_response({"kind": kind, "apiVersion": api_version, "metadata": meta, "items": page})

    def _expire_snapshots(self, now: float) -> None:
        snapshots = self._snapshots
        while snapshots:
            oldest = next(iter(snapshots.values()))
            if now - oldest.created < self.continue_ttl:
                break
            snapshots.popitem(last=False)

    # -- watch ----------------------------------------------------------------------------

    def _watch(self, served: Served, request: _Request, params: dict[str, list[str]],
               accept: str) -> StreamResponse:
        history = served.history
        assert history is not None and served.informer is not None
        if not history.running:
            raise ServerError(503, "ServiceUnavailable", f"watching {served.name} needs the cache running "
                              "(CacheApi.run)", retry_after=1)
        sse = EVENT_STREAM in accept
        rv = _param(params, "resourceVersion")
        send_initial = _flag(params, "sendInitialEvents")
        match = _param(params, "resourceVersionMatch")
        if send_initial and match != "NotOlderThan":
            raise InvalidError(422, "Invalid", "resourceVersionMatch: Forbidden: sendInitialEvents requires setting "
                               "resourceVersionMatch to NotOlderThan")
        if match and not send_initial:
            raise InvalidError(422, "Invalid", "resourceVersionMatch: Forbidden: resourceVersionMatch is forbidden "
                               "for watch unless sendInitialEvents is provided")
        timeout_text = _param(params, "timeoutSeconds")
        try:
            timeout = float(timeout_text) if timeout_text else self.default_watch_timeout
        except ValueError:
            raise InvalidError(400, "BadRequest", f"timeoutSeconds: invalid value {timeout_text!r}") from None
        bookmarks = _flag(params, "allowWatchBookmarks")
        initial: list[Any] = []
        end_rv: str | None = None
        error: dict[str, Any] | None = None
        if rv in (None, "", "0") or send_initial or sse:
            end_rv = history.list_rv()  # the cache is read in the same synchronous step
            start = history.seq
            initial = self._matching(served.informer, request)
            if not (send_initial or sse):
                end_rv = None
        else:
            try:
                start = history.position(rv)
            except ExpiredError as exc:
                start, error = history.seq, status_object(410, "Expired", exc.message)
        stream = _watch_stream(self, served, history, request, start, initial, end_rv, error, timeout,
                               bookmarks, sse)
        if sse:
            return StreamResponse(200, stream, EVENT_STREAM, {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        return StreamResponse(200, stream, JSON)


class _Running:
    """`CacheApi.run()`'s context: a task group holding the factory or informers (when
    started here) and the watch histories."""

    def __init__(self, api: CacheApi, start: bool) -> None:
        self._api = api
        self._start = start
        self._tg: anyio.abc.TaskGroup | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> CacheApi:
        api = self._api
        served = list(api._served.values())
        if any(s.history is None for s in served):
            raise InvalidArgumentError("CacheApi.run() needs informers: pass a factory or informers, or bind() first")
        await self._stack.__aenter__()
        if self._start and api._factory is not None:
            await self._stack.enter_async_context(api._factory)
        self._tg = tg = anyio.create_task_group()
        await tg.__aenter__()
        if self._start and api._factory is None:
            for s in served:
                assert s.informer is not None
                tg.start_soon(s.informer.run)
        for s in served:
            assert s.history is not None
            s.history.start()  # before any request: a watch may arrive before the task's first step
            tg.start_soon(s.history.run)
        api.running = True
        return api

    async def __aexit__(self, *exc: Any) -> bool | None:
        api = self._api
        api.running = False
        for s in api._served.values():
            if s.history is not None:
                s.history.close()
        tg, self._tg = self._tg, None
        assert tg is not None
        tg.cancel_scope.cancel()
        try:
            suppressed = await exit_unwrapped(tg, exc)
        finally:
            await self._stack.__aexit__(None, None, None)
        return suppressed


def _not_started() -> str:
    return "informer not started yet"


# -- watch streams ------------------------------------------------------------------------

def _matches(request: _Request, obj: Any) -> bool:
    if request.namespace is not None and namespace_of(obj) != request.namespace:
        return False
    if not request.labels.empty() and not request.labels.matches_object(obj):
        return False
    return request.fields.empty() or request.fields.matches(obj)


def _translate(change: Change, request: _Request) -> str | None:
    """The watch event type this change is for a watcher with `request`'s selection."""
    if change.type == "MODIFIED":
        now = _matches(request, change.object)
        before = change.old is not None and _matches(request, change.old)
        if now:
            return "MODIFIED" if before else "ADDED"
        return "DELETED" if before else None
    return change.type if _matches(request, change.object) else None


def _bookmark(served: Served, rv: str, initial_end: bool = False) -> dict[str, Any]:
    meta: dict[str, Any] = {"resourceVersion": rv}
    if initial_end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    return {"kind": served.resource.kind, "apiVersion": served.resource.api_version, "metadata": meta}


async def _watch_stream(api: CacheApi, served: Served, history: WatchHistory, request: _Request, start: int,
                        initial: list[Any], end_rv: str | None, error: dict[str, Any] | None, timeout: float,
                        bookmarks: bool, sse: bool) -> AsyncGenerator[bytes, None]:
    redact = api._redactor(served)

    def encode(kind: str, obj: Any) -> bytes:
        data = orjson.dumps({"type": kind, "object": obj})
        return b"data: " + data + b"\n\n" if sse else data + b"\n"

    if error is not None:
        yield encode("ERROR", error)
        return
    for obj in initial:
        yield encode("ADDED", obj if redact is None else redact(obj))
    if end_rv is not None:
        yield encode("BOOKMARK", _bookmark(served, end_rv, initial_end=True))
    deadline = anyio.current_time() + timeout
    next_bookmark = anyio.current_time() + api.bookmark_interval
    cursor = start
    while True:
        try:
            changes = history.after(cursor)
        except ExpiredError as exc:
            yield encode("ERROR", status_object(410, "Expired", exc.message))
            return
        for change in changes:
            kind = _translate(change, request)
            if kind is not None:
                yield encode(kind, change.object if redact is None else redact(change.object))
        if changes:
            cursor = changes[-1].seq
        now = anyio.current_time()
        if now >= deadline or not history.running:
            return
        if bookmarks and now >= next_bookmark:
            rv = history.list_rv()
            if history.seq == cursor:
                yield encode("BOOKMARK", _bookmark(served, rv))
                next_bookmark = now + api.bookmark_interval
            continue
        wake = min(deadline, next_bookmark) if bookmarks else deadline
        with anyio.move_on_after(max(wake - now, 0.0)):
            await history.wait(cursor)


# -- parameters ---------------------------------------------------------------------------

def _param(params: Mapping[str, Sequence[str]], name: str) -> str | None:
    values = params.get(name)
    return values[-1] if values else None


def _flag(params: Mapping[str, Sequence[str]], name: str) -> bool:
    value = _param(params, name)
    return value is not None and value.lower() in _TRUE


def _int_param(params: Mapping[str, Sequence[str]], name: str) -> int:
    text = _param(params, name)
    if not text:
        return 0
    try:
        return int(text)
    except ValueError:
        raise InvalidError(400, "BadRequest", f"{name}: invalid value {text!r}: must be an integer") from None


def _selectors(params: Mapping[str, Sequence[str]]) -> tuple[LabelSelector, FieldSelector]:
    try:
        labels = LabelSelector.parse(_param(params, "labelSelector"))
    except SelectorError as err:
        raise InvalidError(400, "BadRequest", f"unable to parse requirement: {err}") from None
    try:
        fields = FieldSelector.parse(_param(params, "fieldSelector"))
    except SelectorError as err:
        raise InvalidError(400, "BadRequest", str(err)) from None
    return labels, fields


def _encode_continue(snapshot: int, offset: int) -> str:
    return base64.urlsafe_b64encode(orjson.dumps({"s": snapshot, "o": offset})).decode()


def _decode_continue(token: str) -> tuple[int, int]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        snapshot, offset = data["s"], data["o"]
        if not isinstance(snapshot, int) or not isinstance(offset, int) or offset < 0:
            raise ValueError(token)
    except (ValueError, KeyError, TypeError):
        raise InvalidError(400, "BadRequest", "continue key is not valid") from None
    return snapshot, offset
