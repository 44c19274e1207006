"""Routing and discovery of the fake API server: paths → resources and verbs, auth, errors.

Invariants:
- Every request needs `Authorization: Bearer <token>` (else 401 Status), discovery included;
  with `allow_anonymous` a request with no Authorization header at all is served too (the
  real server's anonymous auth), while a wrong token is still 401.
- Paths are the real server's: `/version`; `/api` (APIVersions), `/apis` (APIGroupList),
  `/apis/{g}` (APIGroup), `/api/v1` and `/apis/{g}/{v}` (APIResourceList of the registered
  resources); resources at `{prefix}/{plural}`, `{prefix}/namespaces/{ns}/{plural}` and
  `.../{name}`. Anything else (subresources included) is 404, as is a namespaced path for
  a cluster-scoped resource.
- Verbs as the real server derives them: GET on a collection is `list`, or `watch` with
  `watch=true|1`; GET/PUT/PATCH/DELETE on a name are get/update/patch/delete; POST on a
  collection is create. A method that fits no verb is 405.
- Each resource request is recorded (verb, path, query) in `requests`, then may fail with an
  injected fault (`_faults`), before any other work; discovery is neither recorded nor faulted.
- POST and PUT bodies must be JSON; any other media type is 415 UnsupportedMediaType naming
  `application/json`, as the real server answers a type it cannot decode. (kubectl 1.33
  sends its writes as protobuf and does not retry as JSON, so kubectl writes fail with
  that message; its reads work.)
- PUT: the URL's name must match `metadata.name` (400); see `Cluster.replace` for create-on-
  update and required resourceVersions. PATCH accepts merge and strategic-merge patches
  (both applied as RFC 7386), 415 for others. DELETE reads DeleteOptions (`propagationPolicy`,
  `preconditions`) from the body, or `propagationPolicy` from the query; see `_gc`.
- Every refusal is a `StatusError` rendered as a `Status` body by the middleware.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import web

from kinformer.resources import _BUILTINS, Resource
from kinformer.testing._cluster import Cluster
from kinformer.testing._faults import Faults
from kinformer.testing._gc import GarbageCollector
from kinformer.testing._list import list_objects
from kinformer.testing._watch import TRUE_VALUES, WatchSettings, serve_watch
from kinformer.testing._wire import Obj, StatusError, json_response, not_found, read_object

_VERBS = {"GET": "get", "POST": "create", "PUT": "update", "PATCH": "patch", "DELETE": "delete"}
_PATCH_TYPES = ("application/merge-patch+json", "application/strategic-merge-patch+json")
_BODY_TYPES = ("application/json", "")  # "": no Content-Type header at all
# kubectl resolves `get ns`, `get deploy` through discovery's shortNames. The table is
# resources.py's (the aliases Resource.builtin accepts); it has no public accessor.
_SHORT_NAMES = {(group, version, plural): list(shorts) for plural, (group, version, _, _, shorts) in _BUILTINS.items()}
_VERSION = {"major": "1", "minor": "33", "gitVersion": "v1.33.0-kinformer-fake", "platform": "linux/amd64"}


@dataclass(slots=True)
class RecordedRequest:
    """One resource request as the server saw it."""

    verb: str
    path: str
    query: dict[str, str]


class Backend(WatchSettings, Protocol):
    """The server settings routing reads at each request."""

    @property
    def token(self) -> str: ...

    @property
    def host(self) -> str: ...

    @property
    def port(self) -> int: ...

    @property
    def allow_anonymous(self) -> bool: ...


class Router:
    def __init__(self, backend: Backend, cluster: Cluster, faults: Faults, gc: GarbageCollector,
                 requests: list[RecordedRequest]) -> None:
        self.backend, self.cluster, self.faults, self.gc, self.requests = backend, cluster, faults, gc, requests

    def application(self) -> web.Application:
        app = web.Application(middlewares=[self._middleware])
        app.router.add_route("*", "/{tail:.*}", self._dispatch)
        return app

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Any) -> web.StreamResponse:
        auth = request.headers.get("Authorization")
        if auth != f"Bearer {self.backend.token}" and not (auth is None and self.backend.allow_anonymous):
            return StatusError(401, "Unauthorized", "Unauthorized").response()
        try:
            return await handler(request)  # type: ignore[no-any-return]
        except StatusError as err:
            return err.response()

    async def _dispatch(self, request: web.Request) -> web.StreamResponse:
        parts = [p for p in request.path.split("/") if p]
        if parts == ["version"]:
            return json_response(_VERSION)
        if parts and parts[0] == "api":
            if len(parts) == 1:
                address = f"{self.backend.host}:{self.backend.port}"
                return json_response({"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": [
                    {"clientCIDR": "0.0.0.0/0", "serverAddress": address}]})
            group, version, rest = "", parts[1], parts[2:]
        elif parts and parts[0] == "apis":
            if len(parts) == 1:
                return json_response(self._group_list())
            if len(parts) == 2:
                return json_response(self._group(parts[1]))
            group, version, rest = parts[1], parts[2], parts[3:]
        else:
            raise not_found()
        if not rest:
            return json_response(self._resource_list(group, version))
        namespace: str | None = None
        if rest[0] == "namespaces" and len(rest) >= 3:
            namespace, rest = rest[1], rest[2:]
        resource = self.cluster.lookup(group, version, rest[0])
        if resource is None or len(rest) > 2 or (namespace is not None and not resource.namespaced):
            raise not_found()
        name = rest[1] if len(rest) == 2 else None
        return await self._resource_request(request, resource, namespace, name)

    # -- resource verbs -----------------------------------------------------------------------

    async def _resource_request(self, request: web.Request, resource: Resource, namespace: str | None,
                                name: str | None) -> web.StreamResponse:
        params = dict(request.query)
        method = request.method
        if name is None and method == "GET":
            verb = "watch" if params.get("watch") in TRUE_VALUES else "list"
        else:
            verb = _VERBS.get(method, "unknown")
        self.requests.append(RecordedRequest(verb, request.path, params))
        self.faults.check_request(verb)
        cluster = self.cluster
        metadata_only = "as=PartialObjectMetadata" in request.headers.get("Accept", "")
        if verb == "list":
            return json_response(list_objects(cluster, resource, namespace, params, metadata_only))
        if verb == "watch":
            return await serve_watch(request, cluster, self.faults, self.backend, resource, namespace, params,
                                     metadata_only)
        if verb == "get" and name is not None:
            return json_response(cluster.get(resource, name, namespace))
        if verb == "create" and name is None:
            return json_response(cluster.create(resource, await self._json_body(request), namespace), 201)
        if verb == "update" and name is not None:
            body = await self._json_body(request)
            if (body.get("metadata") or {}).get("name") != name:
                raise StatusError(400, "BadRequest", "the name of the object does not match the name on the URL")
            stored, created = cluster.replace(resource, body, namespace)
            return json_response(stored, 201 if created else 200)
        if verb == "patch" and name is not None:
            ctype = request.content_type
            if ctype not in _PATCH_TYPES:
                raise StatusError(415, "UnsupportedMediaType", f"the body of the request was in an unknown "
                                  f"format - accepted media types include: application/merge-patch+json "
                                  f"(got {ctype})")
            return json_response(cluster.patch(resource, name, await read_object(request), namespace))
        if verb == "delete" and name is not None:
            options = await read_object(request, empty_ok=True)
            policy = options.get("propagationPolicy") or params.get("propagationPolicy")
            preconditions = options.get("preconditions")
            return json_response(self.gc.delete(resource, name, namespace, propagation_policy=policy,
                                                preconditions=preconditions if isinstance(preconditions, dict)
                                                else None))
        raise StatusError(405, "MethodNotAllowed", f"{method} is not supported here")

    @staticmethod
    async def _json_body(request: web.Request) -> Obj:
        if request.headers.get("Content-Type", "").split(";")[0].strip() not in _BODY_TYPES:
            raise StatusError(415, "UnsupportedMediaType", "the body of the request was in an unknown format - "
                              f"accepted media types include: application/json (got {request.content_type})")
        return await read_object(request)

    # -- discovery ----------------------------------------------------------------------------

    def _group_versions(self) -> dict[str, list[str]]:
        groups: dict[str, list[str]] = {}
        for res in self.cluster.resources:
            if res.group and res.version not in groups.setdefault(res.group, []):
                groups[res.group].append(res.version)
        return groups

    def _group(self, name: str) -> Obj:
        versions = self._group_versions().get(name)
        if not versions:
            raise not_found()
        gvs = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": name, "versions": gvs, "preferredVersion": gvs[0]}

    def _group_list(self) -> Obj:
        return {"kind": "APIGroupList", "apiVersion": "v1",
                "groups": [self._group(g) for g in sorted(self._group_versions())]}

    def _resource_list(self, group: str, version: str) -> Obj:
        resources = [
            {"name": r.plural, "singularName": r.kind.lower(), "namespaced": r.namespaced, "kind": r.kind,
             "verbs": ["create", "delete", "get", "list", "patch", "update", "watch"],
             "shortNames": _SHORT_NAMES.get((r.group, r.version, r.plural), [])}
            for r in self.cluster.resources if r.group == group and r.version == version
        ]
        if not resources:
            raise not_found()
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
