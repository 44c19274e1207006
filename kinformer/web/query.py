"""The query endpoint: `kinformer.query.Query` over a served cache, as one HTTP GET.

    GET /query/{group}/{version}/{resource}       group `core` for the core ("") group
        ?namespace=default,team-a                   repeated or comma-separated: any of them
        &labelSelector=app in (web,api)             the full grammar; repeated: all of them
        &fieldSelector=status.phase=Running         any field path; repeated: all of them
        &where=spec.containers[*].image=nginx       path=value, repeated: all of them
        &whereIn=spec.nodeName=n1,n2                path=v1,v2,...: any of the values
        &nameContains=web  &ownedBy=<uid>           repeated: all of them
        &orderBy=-metadata.creationTimestamp,metadata.name   repeated or comma; `-` descends
        &limit=50  &cursor=<nextCursor>  &count=true  &explain=true

    200 {"resourceVersion": "...", "items": [...], "nextCursor": "..." | null,
         "total": n, "remaining": n,              (count=true)
         "explain": {...}}                        (explain=true: `Plan.as_dict()`)

Why `/query`: kube-apiserver serves only `/api`, `/apis`, `/version`, `/openapi/*`,
`/readyz` `/livez` `/healthz`, `/metrics`, `/logs` and `/.well-known/*`; `/query` is none of
them and no API group can move it, since every group lives under `/apis/`. `core` names the
core group because a path segment cannot be empty; no group is called `core` (groups other
than the legacy built-ins are DNS subdomains with a dot).

Semantics are `Query`'s (kinformer/query.py): typed ordering (resourceVersions and numbers
numerically, RFC 3339 timestamps as instants), ties by key, keyset cursors that never repeat
or skip an object that did not change between pages, `total` ignoring cursor and limit.
Where the API has to choose:
- A `where` value is compared by text form (`Query.where`): `where=spec.priority=10` matches
  the number 10, `where=spec.hostNetwork=true` the boolean. The path ends at the first `=`
  outside a bracket (`metadata.labels["a=b"]=x` works); `whereIn` values cannot hold commas.
  "Reaches nothing" has no spelling here; `fieldSelector=spec.nodeName=` (missing reads as
  "", the API server's rule) finds unscheduled pods.
- Lists in `orderBy` and `whereIn` split at commas outside brackets and quotes.
- An unknown parameter is a 400, not ignored: a misspelt `labelselector` would otherwise
  return every object, which looks like an answer.
- No `limit`: every match (as a Kubernetes list without `limit`).
- Items are the cached objects with `kind`/`apiVersion` set (an informer's cache holds listed
  objects without them and watched ones with them; a query result should not depend on that).
- `resourceVersion` is the list endpoint's (`WatchHistory.list_rv`, read in the same
  synchronous step as the cache).
- Errors are `Status` objects, as for the Kubernetes paths: 400 a selector, path, parameter
  or cursor that does not parse (a cursor issued under another `orderBy` included); 403 a
  namespace-scoped cache asked for other namespaces; 404 a resource not served; 503 (with
  Retry-After) a cache not running or not synced.

`QueryParams` (the parsed vocabulary) is shared with the mirror's search endpoint
(kinformer/mirror/http.py), which adds `clusters=`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, Self, TypeVar

from kinformer.errors import InvalidArgumentError, InvalidError, NotFoundError, SelectorError
from kinformer.query import Query
from kinformer.selectors import FieldSelector
from kinformer.web import exposure
from kinformer.web.responses import Response, json_response

if TYPE_CHECKING:
    from kinformer.web.core import CacheApi, Served

QUERY_PATH = "query"
CORE_GROUP = "core"
"""The path segment standing for the core ("") API group."""

_TRUE = ("1", "t", "true")
_NOT_FOUND = "the server could not find the requested resource"

QUERY_PARAMETERS = frozenset((
    "namespace", "labelSelector", "fieldSelector", "where", "whereIn", "nameContains", "ownedBy", "orderBy",
    "limit", "cursor", "count", "explain",
))


def split_top_level(text: str, sep: str) -> list[str]:
    """Split at `sep` outside brackets (and the quotes inside them): paths may hold `"a,b"` keys."""
    parts: list[str] = []
    depth, quote, start, i = 0, "", 0, 0
    while i < len(text):
        c = text[i]
        if quote:
            if c == "\\":
                i += 1
            elif c == quote:
                quote = ""
        elif c in "\"'" and depth:
            quote = c
        elif c == "[":
            depth += 1
        elif c == "]":
            depth = max(depth - 1, 0)
        elif c == sep and not depth:
            parts.append(text[start:i])
            start = i + 1
        i += 1
    parts.append(text[start:])
    return parts


def _path_value(param: str, text: str) -> tuple[str, str]:
    """`path=value` → (path, value), splitting at the first `=` outside brackets."""
    path, *rest = split_top_level(text, "=")
    if not rest or not path.strip():
        raise InvalidError(400, "BadRequest", f"{param}: invalid value {text!r}: expected path=value")
    return path.strip(), "=".join(rest)


def _bad(message: str) -> InvalidError:
    return InvalidError(400, "BadRequest", message)


class _Builder(Protocol):
    """What `QueryParams.apply` needs: `Query` and `SearchQuery` both are one."""

    def namespace(self, *namespaces: str) -> Self: ...
    def labels(self, selector: str) -> Self: ...
    def fields(self, selector: str) -> Self: ...
    def where_in(self, path: str, values: Iterable[Any]) -> Self: ...
    def name_contains(self, text: str) -> Self: ...
    def owned_by(self, uid: str) -> Self: ...
    def order_by(self, *fields: str) -> Self: ...
    def limit(self, n: int | None) -> Self: ...
    def after(self, cursor: str | None) -> Self: ...


B = TypeVar("B", bound=_Builder)


@dataclass(frozen=True, slots=True)
class QueryParams:
    """The parsed parameters (module docstring); `parse` raises a 400 `InvalidError`."""

    namespaces: tuple[str, ...] = ()
    label_selectors: tuple[str, ...] = ()
    field_selectors: tuple[str, ...] = ()
    wheres: tuple[tuple[str, tuple[str, ...]], ...] = ()
    name_contains: tuple[str, ...] = ()
    owners: tuple[str, ...] = ()
    order_by: tuple[str, ...] = ()
    limit: int | None = None
    cursor: str | None = None
    count: bool = False
    explain: bool = False
    clusters: tuple[str, ...] | None = None

    @classmethod
    def parse(cls, params: Mapping[str, Sequence[str]], allowed: frozenset[str] = QUERY_PARAMETERS) -> QueryParams:
        unknown = sorted(set(params) - allowed)
        if unknown:
            raise _bad(f"unknown parameter {unknown[0]!r}; this endpoint takes {', '.join(sorted(allowed))}")

        def every(name: str) -> list[str]:
            return list(params.get(name, ()))

        def last(name: str) -> str | None:
            values = params.get(name)
            return values[-1] if values else None

        def listed(name: str) -> tuple[str, ...]:
            return tuple(p.strip() for v in every(name) for p in split_top_level(v, ",") if p.strip())

        wheres: list[tuple[str, tuple[str, ...]]] = []
        for text in every("where"):
            path, value = _path_value("where", text)
            wheres.append((path, (value,)))
        for text in every("whereIn"):
            path, values = _path_value("whereIn", text)
            wheres.append((path, tuple(values.split(","))))
        limit_text = last("limit")
        limit: int | None = None
        if limit_text:
            try:
                limit = int(limit_text)
            except ValueError:
                raise _bad(f"limit: invalid value {limit_text!r}: must be a positive integer") from None
            if limit < 1:
                raise _bad(f"limit: invalid value {limit_text!r}: must be a positive integer")
        for name in ("nameContains", "ownedBy"):
            if any(not v for v in every(name)):
                raise _bad(f"{name}: needs a value")
        clusters = listed("clusters") if "clusters" in params else None
        return cls(
            namespaces=listed("namespace"),
            label_selectors=tuple(v for v in every("labelSelector") if v.strip()),
            field_selectors=tuple(v for v in every("fieldSelector") if v.strip()),
            wheres=tuple(wheres),
            name_contains=tuple(every("nameContains")),
            owners=tuple(every("ownedBy")),
            order_by=tuple(f[1:] if f.startswith("+") else f for f in listed("orderBy")),
            limit=limit,
            cursor=last("cursor") or None,
            count=(last("count") or "").lower() in _TRUE,
            explain=(last("explain") or "").lower() in _TRUE,
            clusters=clusters,
        )

    def apply(self, q: B) -> B:
        """`q` with every clause, the ordering, limit and cursor; a bad one is a 400 `InvalidError`."""
        try:
            if self.namespaces:
                q = q.namespace(*self.namespaces)
            for selector in self.label_selectors:
                try:
                    q = q.labels(selector)
                except (SelectorError, InvalidArgumentError) as err:
                    raise _bad(f"labelSelector: unable to parse requirement: {err}") from None
            for selector in self.field_selectors:
                try:
                    q = q.fields(selector)
                except SelectorError as err:
                    raise _bad(f"fieldSelector: {err}") from None
            for path, values in self.wheres:
                q = q.where_in(path, values)
            for text in self.name_contains:
                q = q.name_contains(text)
            for uid in self.owners:
                q = q.owned_by(uid)
            if self.order_by:
                q = q.order_by(*self.order_by)
            return q.limit(self.limit).after(self.cursor)
        except (InvalidArgumentError, SelectorError) as err:
            raise _bad(str(err)) from None


def served_resource(api: CacheApi, parts: Sequence[str]) -> Served:
    """The served resource `{group|core}/{version}/{resource}` names; 404 otherwise."""
    if len(parts) != 3:
        raise NotFoundError(404, "NotFound", _NOT_FOUND)
    group, version, plural = parts
    group = group if group != CORE_GROUP else ""
    if (group, plural) in api.denied:  # the same 403 as the Kubernetes-style paths give
        api._check_exposed(group, [plural], {})
    served = api._served.get((group, version, plural))
    if served is None:
        raise NotFoundError(404, "NotFound", _NOT_FOUND)
    return served


def _check_secret_query(query: QueryParams) -> None:
    """400 for a filter or ordering that could probe a redacted Secret's data (exposure.py)."""
    paths = [path for path, _ in query.wheres]
    paths += [o.lstrip("+-") for o in query.order_by]
    for text in query.field_selectors:
        try:
            paths += FieldSelector.parse(text).fields()
        except SelectorError as err:
            raise _bad(str(err)) from None
    bad = exposure.check_secret_query_paths(paths)
    if bad is not None:
        raise _bad(f"{bad!r} cannot be used on redacted secrets: only metadata (not annotations), "
                   "type and immutable")


def serve_query(api: CacheApi, parts: Sequence[str], params: Mapping[str, Sequence[str]]) -> Response:
    """Answer `GET /query/...` (`parts` is the path after `query`)."""
    served = served_resource(api, parts)
    query = QueryParams.parse(params)
    scope = set(query.namespaces)
    # The cache must hold every namespace asked for: a namespace-scoped one answers for its own only.
    informer = api._ready_informer(served, next(iter(scope)) if len(scope) == 1 else None)
    redact = api._redactor(served)
    if redact is not None:
        _check_secret_query(query)
    q = query.apply(Query(informer.indexer))
    assert served.history is not None
    rv = served.history.list_rv()  # the cache is read in the same synchronous step
    plan = q.explain().as_dict() if query.explain else None  # first: it notes an index added on demand
    try:
        page = q.page(count=query.count)
    except InvalidArgumentError as err:  # a cursor issued under another ordering
        raise _bad(str(err)) from None
    kind, api_version = served.list_kind()
    type_meta = {"kind": kind.removesuffix("List"), "apiVersion": api_version}
    items = page.items if redact is None else [redact(o) for o in page.items]
    body: dict[str, Any] = {"resourceVersion": rv, "items": [{**type_meta, **o} for o in items],
                            "nextCursor": page.next_cursor}
    if query.count:
        body["total"], body["remaining"] = page.total, page.remaining
    if plan is not None:
        body["explain"] = plan
    return json_response(body)


__all__ = ["CORE_GROUP", "QUERY_PARAMETERS", "QUERY_PATH", "QueryParams", "serve_query", "served_resource",
           "split_top_level"]
