"""`SearchApi`: the mirror's search (search.py) over HTTP, framework-neutral, with thin
aiohttp and FastAPI adapters.

    GET /search                                    every mirrored resource
    GET /search/{group}/{version}/{resource}       one resource; group `core` = the core group
        ?clusters=a,b                               repeated or comma-separated: any of them
        &namespace= &labelSelector= &fieldSelector= &where= &whereIn= &nameContains=
        &ownedBy= &orderBy= &limit= &cursor= &count=true     as on the cache's /query
    GET /readyz[/mirror-sync/<cluster>]            the healthz format (`?verbose`, `?exclude=`)

    200 {"items": [{"cluster": "a", "resource": "pods", "object": {...}}, ...],
         "nextCursor": "..." | null, "total": n (count=true)}

Why a module of its own rather than a route in `CacheApi`: the cache answers in one
synchronous step on the event loop (web/core.py), a search awaits the database; and a mirror
process has no informer caches to serve. Both share the parameter vocabulary
(`kinformer.web.query.QueryParams`, parsed by the same code), `Status` errors and the
`Response` type, so a client written for `/query` reads `/search` too. The differences:

- `clusters=` selects clusters (absent: all); an item says which cluster and resource
  (`pods`, `deployments.apps`) it comes from, and its object carries kind/apiVersion.
- Search's semantics are search.py's: `where` paths are dotted names and `["quoted.keys"]`
  (no `[*]` or list indices), `orderBy` takes only `ORDER_FIELDS`; anything else is a 400.
  There is no `explain` (a 400 like any unknown parameter) and no `resourceVersion`: a
  result spans clusters, whose resourceVersions do not compare.
- With a `Mirror` attached, a search is 503 (Retry-After) until every cluster it selects
  has been in sync once (its first full list is in the database), so a half-written first
  sync is never served as if complete; after that its rows are served through outages and
  write backlogs, the last state the mirror wrote, as an informer's cache keeps serving
  while its watch fails. A cluster name the mirror does not have selects its rows, if any.
  Without a `Mirror` (a reader of a database another process fills) nothing is gated.
- 503 (Retry-After) also when the database cannot be reached; 500 when it fails otherwise.
- 404 a path that is not one of the above; 405 a method other than GET.

Exposure, as `CacheApi`'s (kinformer/web/exposure.py): Secrets and `deny`-listed resources
are not served unless `allow_secrets=True` (a 403 Forbidden Status for their path; left out
of `/search` over every resource, in SQL, so pages and counts stay exact); an allowed
Secret's `data`/`stringData` values are `""` unless `reveal_secret_data=True`, and filtering
or ordering secrets by anything but metadata (not annotations), `type` and `immutable` is a
400 (on `/search` over every resource, such a search leaves secrets out instead);
`bearer_token=` / `bearer_token_file=` guards everything but `/readyz` (401 with
`WWW-Authenticate: Bearer`). A mirror may hold Secrets because its database is its owner's;
serving them is a separate decision.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from kinformer._logging import get_logger
from kinformer.errors import (
    ApiError,
    InvalidArgumentError,
    InvalidError,
    NotFoundError,
    ServerError,
    StorageError,
    StorageUnavailableError,
)
from kinformer.mirror.search import Hit, SearchQuery, search
from kinformer.mirror.storage import MirrorStorage
from kinformer.resources import Resource
from kinformer.web import exposure, health
from kinformer.web.query import CORE_GROUP, QUERY_PARAMETERS, QueryParams, _check_secret_query
from kinformer.web.responses import Response, error_response, json_response, status_response

if TYPE_CHECKING:
    from aiohttp import web
    from fastapi import APIRouter

    from kinformer.mirror.sync import ClusterSync, Mirror

SEARCH_PATH = "search"
SEARCH_PARAMETERS = (QUERY_PARAMETERS - {"explain"}) | {"clusters"}
_NOT_FOUND = "the server could not find the requested resource"

log = get_logger("kinformer.mirror.http")


class SearchApi:
    """Serve `search` over `storage` (module docstring); `mirror`, when given, gates each
    cluster on its first sync and feeds `/readyz`."""

    def __init__(self, storage: MirrorStorage, mirror: Mirror | None = None, *, allow_secrets: bool = False,
                 deny: Iterable[Resource | str] = (), reveal_secret_data: bool = False,
                 bearer_token: str | None = None, bearer_token_file: str | os.PathLike[str] | None = None) -> None:
        if reveal_secret_data and not allow_secrets:
            raise InvalidArgumentError("reveal_secret_data=True needs allow_secrets=True")
        self.storage = storage
        self.mirror = mirror
        self.denied = exposure.denied_set(deny, allow_secrets)
        self.reveal_secret_data = reveal_secret_data
        self._auth = exposure.BearerAuth.from_options(bearer_token, bearer_token_file)
        # Every cluster seen in sync once, by name; a cluster removed and added again is a new
        # ClusterSync and waits for its own first sync.
        self._synced: dict[str, ClusterSync] = {}

    def _synced_once(self, name: str, cluster: ClusterSync) -> bool:
        if self._synced.get(name) is cluster:
            return True
        if cluster.in_sync():
            self._synced[name] = cluster
            return True
        return False

    def readiness_checks(self) -> list[health.HealthCheck]:
        """`ping` and one `mirror-sync/<cluster>` per cluster of the mirror."""
        checks = [health.HealthCheck("ping", health.ping)]
        if self.mirror is not None:
            for name, cluster in self.mirror.clusters.items():
                def check(name: str = name, cluster: ClusterSync = cluster) -> str | None:
                    return None if self._synced_once(name, cluster) else "the cluster's first sync is not written yet"
                checks.append(health.HealthCheck(f"mirror-sync/{name}", check))
        return checks

    async def handle(self, method: str, path: str, query: Iterable[tuple[str, str]] = (),
                     headers: Mapping[str, str] | None = None) -> Response:
        """Answer one request; `path` is relative to the mount point, `query` every (name, value)."""
        params: dict[str, list[str]] = {}
        for name, value in query:
            params.setdefault(name, []).append(value)
        parts = [p for p in path.split("/") if p]
        try:
            if self._auth is not None and not exposure.exempt(parts):
                challenge = self._auth.challenge(exposure.accept_and_authorization(headers)[1])
                if challenge is not None:
                    return status_response(401, "Unauthorized", "Unauthorized", None, {"WWW-Authenticate": challenge})
            if method not in ("GET", "HEAD"):
                raise ApiError(405, "MethodNotAllowed", f"the server does not allow this method on the requested "
                               f"resource: {method} (the mirror is read-only over HTTP)")
            if parts[:1] == ["readyz"]:
                return health.render("readyz", self.readiness_checks(), "/".join(parts[1:]), params)
            if parts[:1] != [SEARCH_PATH] or len(parts) not in (1, 4):
                raise NotFoundError(404, "NotFound", _NOT_FOUND)
            resource = None
            if len(parts) == 4:
                group, version, plural = parts[1:]
                resource = Resource(group if group != CORE_GROUP else "", version, plural)
                if (resource.group, plural) in self.denied:
                    raise exposure.forbidden(resource.group, plural, "this mirror")
            return await self._search(resource, params)
        except ApiError as err:
            return error_response(err)

    def _gate(self, clusters: tuple[str, ...] | None) -> None:
        mirror = self.mirror
        if mirror is None:
            return
        names = mirror.clusters if clusters is None else [c for c in clusters if c in mirror.clusters]
        waiting = sorted(name for name in names if not self._synced_once(name, mirror.clusters[name]))
        if waiting:
            raise ServerError(503, "ServiceUnavailable", f"cluster {', '.join(waiting)} has not synced into the "
                              "mirror yet", retry_after=1, status={"details": {"retryAfterSeconds": 1}})

    async def _search(self, resource: Resource | None, params: Mapping[str, list[str]]) -> Response:
        parsed = QueryParams.parse(params, SEARCH_PARAMETERS)
        excluded = set(self.denied)
        redact = not self.reveal_secret_data and exposure.SECRETS not in excluded and (
            resource is None or (resource.group, resource.plural) == exposure.SECRETS)
        if redact:
            try:
                _check_secret_query(parsed)
            except InvalidError:
                if resource is not None:
                    raise
                # Over every resource, a filter or ordering on other paths is fine for the other
                # resources: it leaves secrets out rather than refusing the search.
                excluded.add(exposure.SECRETS)
                redact = False
        q = parsed.apply(SearchQuery(resource)).exclude(*sorted(excluded))
        if parsed.clusters is not None:
            q = q.clusters(*parsed.clusters)
        self._gate(parsed.clusters)
        try:
            result = await search(self.storage, q, count=parsed.count)
        except InvalidArgumentError as err:  # a cursor that does not decode or is for another ordering
            raise InvalidError(400, "BadRequest", str(err)) from None
        except StorageUnavailableError as err:
            log.warning("search: the database is unreachable", error=str(err))
            raise ServerError(503, "ServiceUnavailable", "the mirror's database is unreachable", retry_after=1,
                              status={"details": {"retryAfterSeconds": 1}}) from None
        except StorageError as err:
            log.error("search: the database failed", error=str(err))
            raise ServerError(500, "InternalError", "the mirror's database failed the search") from None
        items = [_item(h) for h in result.hits]
        if redact:
            for item in items:
                if item["resource"] == "secrets":
                    item["object"] = exposure.redact_secret(item["object"])
        body: dict[str, Any] = {"items": items, "nextCursor": result.next_cursor}
        if parsed.count:
            body["total"] = result.total
        return json_response(body)


def _item(hit: Hit) -> dict[str, Any]:
    r = hit.resource
    obj = hit.object
    if "kind" not in obj or "apiVersion" not in obj:
        obj = {"kind": r.kind, "apiVersion": r.api_version, **obj}
    return {"cluster": hit.cluster, "resource": f"{r.plural}.{r.group}" if r.group else r.plural, "object": obj}


# -- adapters ------------------------------------------------------------------------------


def search_aiohttp_app(api: SearchApi) -> web.Application:
    """An aiohttp application answering every path through `api.handle` (mount it with
    `app.add_subapp(prefix, ...)`, or run it as the application)."""
    from aiohttp import web

    async def handler(request: web.Request) -> web.Response:
        result = await api.handle(request.method, request.match_info["tail"], request.query.items(), request.headers)
        return web.Response(status=result.status, body=result.body,
                            headers={**result.headers, "Content-Type": result.content_type})

    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", handler)
    return app


def search_fastapi_router(api: SearchApi) -> APIRouter:
    """A FastAPI `APIRouter` answering every path under its prefix through `api.handle`
    (needs the `web` extra: `MissingExtraError` otherwise)."""
    from kinformer.mirror._http_fastapi import search_fastapi_router as make

    return make(api)


__all__ = ["SEARCH_PARAMETERS", "SEARCH_PATH", "SearchApi", "search_aiohttp_app", "search_fastapi_router"]
