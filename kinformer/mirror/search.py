"""`search`: queries over the mirror's SQL rows, in the `Query` vocabulary, for both dialects.

    q = (SearchQuery(Resource.pods).clusters("a", "b").namespace("default")
         .labels("app in (web,api),tier!=db").fields("spec.nodeName=n1")
         .where('metadata.labels["app.kubernetes.io/name"]', "web").name_contains("web")
         .owned_by(uid).order_by("-metadata.creationTimestamp").limit(50))
    page = await search(storage, q, count=True)     # SearchResult(hits, next_cursor, total)
    more = await search(storage, q.after(page.next_cursor))

Every clause becomes SQL built by SQLAlchemy from bound parameters: no text a user gives
ever becomes SQL (Clusterpedia passes `orderby` through raw). What each clause means
(the same as `kinformer.query.Query` on a cache):

- `clusters(*names)`, `resource(r)`: which rows (no resource: every resource);
  `exclude((group, plural), ...)` leaves resources out (the HTTP layer's deny list).
- `namespace(*ns)`: `metadata.namespace` is one of them ("" = cluster-scoped).
- `labels(sel)`: the full label-selector grammar (selectors.py). PostgreSQL: `=` / `in` as
  JSONB containment (`labels @> {"k": "v"}`, served by the GIN index), `k` / `!k` as `?`;
  SQLite: `json_extract` / `json_type` on quoted JSON paths. `!=` and `notin` match rows
  without the label. `>` / `<` compare digit-only values as integers.
- `fields(sel)`: `path=v` / `path!=v` on dotted paths, a missing field reading as "";
  booleans read true/false, numbers as the database prints them.
- `where(path, v)` / `where_in(path, vs)`: the path (dotted names and `["quoted.keys"]`; no
  `[*]` or list indices in SQL) reaches a scalar whose text form is `v`; `v=None`: it reaches
  nothing (missing or null).
- `name_contains(s)`: case-insensitive substring of `metadata.name` (LIKE, escaped).
- `owned_by(uid)`: some `metadata.ownerReferences[*].uid` is `uid` (PostgreSQL: JSONB
  containment; SQLite: `json_each`).
- `order_by(*fields)`: only fields in `ORDER_FIELDS` (each a column), `-` for descending;
  missing values (a NULL creationTimestamp, an opaque RV) sort last ascending and first
  descending; text compares by code point (`COLLATE "C"` on PostgreSQL). Ties fall back to
  (cluster, group, version, resource, namespace, name) ascending, so the order is total.
- `limit(n)` and `after(cursor)`: keyset pages. A cursor is opaque (base64url JSON of the
  ordering and the last row's sort values and key); the next page is every row after that
  position, so a row that did not change is never repeated or skipped between pages. A
  cursor made under another ordering, or that does not decode, is `InvalidArgumentError`.
- `count=True`: `total` counts every match, ignoring cursor and limit.
- A bad clause or cursor is `InvalidArgumentError`; the database failing is
  `StorageUnavailableError` (cannot connect: retry) or `StorageError`, as for the storage.

Where search and `Query` over caches holding the same objects disagree, by design (the
mirror's property test asserts exactly these differences and agreement everywhere else):
- Ties: search breaks them by (cluster, group, version, resource, namespace, name), the
  table's key columns; `Query` by (cluster, `namespace/name` key), the API server's etcd key
  order. They differ only when one namespace is another's prefix followed by a character
  below `/` (`team` and `team-a`: `-` < `/`, so `team-a/x` sorts before `team/x` by key).
- Text columns order as text: a digit-only name, namespace, uid or cluster sorts by code
  point ("10" < "9" < "a"), where `Query`'s typed order puts numbers first, numerically.
  resourceVersions and creationTimestamps are typed columns and order as `Query` orders them.
- `where`/`fields` read a float as the database prints it (PostgreSQL and SQLite both print
  1.0 as "1.0", as Python does, but exponents differ); `name_contains` folds ASCII case only
  on SQLite (`lower()`), where `Query` uses `str.casefold`. Kubernetes names are ASCII.
"""

from __future__ import annotations

import base64
import datetime
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

from kinformer.errors import InvalidArgumentError, MissingExtraError, SelectorError

try:
    import sqlalchemy as sa
    from sqlalchemy.dialects import postgresql
except ImportError as _missing:  # pragma: no cover - exercised by the packaging test's bare venv
    raise MissingExtraError("kinformer.mirror's search", "sqlalchemy", "sql") from _missing

from kinformer.mirror.storage import MirrorStorage, resources
from kinformer.mirror.storage import _wrap as _storage_error
from kinformer.resources import Resource
from kinformer.selectors import EQUALS, EXISTS, GT, IN, NOT_EQUALS, NOT_EXISTS, NOT_IN, FieldSelector, LabelSelector

ORDER_FIELDS: dict[str, str] = {
    "cluster": "cluster",
    "kind": "kind",
    "metadata.namespace": "namespace",
    "metadata.name": "name",
    "metadata.uid": "uid",
    "metadata.creationTimestamp": "created_at",
    "metadata.resourceVersion": "rv",
}
"""The fields `order_by` accepts, and the column each one sorts by."""

_TIE = ("cluster", "group", "version", "resource", "namespace", "name")
_TEXT_COLUMNS = frozenset(("cluster", "kind", "namespace", "name", "uid", "group", "version", "resource"))
_NAME = re.compile(r"[^.\[\]\"'\s]+")
_QUOTED = re.compile(r"""\[("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')\]""")


def parse_path(path: str) -> tuple[str, ...]:
    """`metadata.labels["app.kubernetes.io/name"]` → ("metadata", "labels", "app.kubernetes.io/name")."""
    parts: list[str] = []
    pos = 0
    while pos < len(path):
        if parts and path[pos] == ".":
            pos += 1
            m = _NAME.match(path, pos)
        elif not parts:
            m = _NAME.match(path, pos) or _QUOTED.match(path, pos)
        else:
            m = _QUOTED.match(path, pos)
        if m is None:
            raise InvalidArgumentError(f"bad path {path!r} at {pos}: SQL search takes dotted names and "
                                       "[\"quoted keys\"] (no [*] or list indices)")
        if m.re is _QUOTED:
            parts.append(re.sub(r"\\(.)", r"\1", m.group(1)[1:-1]))
        else:
            parts.append(m.group(0))
        pos = m.end()
    if not parts:
        raise InvalidArgumentError("empty path")
    return tuple(parts)


def _text_form(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


@dataclass(frozen=True, slots=True, init=False)
class SearchQuery:
    """An immutable query; every method returns a new one (see the module docstring)."""

    resource_: Resource | None
    clusters_: tuple[str, ...] | None
    namespaces: tuple[str, ...] | None
    label_selectors: tuple[LabelSelector, ...]
    field_selectors: tuple[FieldSelector, ...]
    wheres: tuple[tuple[tuple[str, ...], tuple[Any, ...]], ...]
    name_parts: tuple[str, ...]
    owners: tuple[str, ...]
    ordering: tuple[str, ...]
    limit_: int | None
    cursor: str | None
    excluded: tuple[tuple[str, str], ...]

    def __init__(self, resource: Resource | None = None) -> None:
        for name, default in _DEFAULTS.items():
            object.__setattr__(self, name, default)
        object.__setattr__(self, "resource_", resource)

    def _with(self, **changes: Any) -> SearchQuery:
        new = object.__new__(SearchQuery)
        for name in _DEFAULTS:
            object.__setattr__(new, name, changes.get(name, getattr(self, name)))
        return new

    def resource(self, resource: Resource | None) -> SearchQuery:
        return self._with(resource_=resource)

    def clusters(self, *names: str) -> SearchQuery:
        return self._with(clusters_=tuple(names))

    def exclude(self, *group_resources: tuple[str, str]) -> SearchQuery:
        """Leave out the rows of these (group, plural) resources, in every version."""
        return self._with(excluded=self.excluded + tuple(group_resources))

    def namespace(self, *namespaces: str) -> SearchQuery:
        return self._with(namespaces=tuple(namespaces))

    def labels(self, selector: str | LabelSelector) -> SearchQuery:
        try:
            parsed = selector if isinstance(selector, LabelSelector) else LabelSelector.parse(selector)
        except SelectorError as error:
            raise InvalidArgumentError(str(error)) from error
        return self._with(label_selectors=(*self.label_selectors, parsed))

    def fields(self, selector: str | FieldSelector) -> SearchQuery:
        try:
            parsed = selector if isinstance(selector, FieldSelector) else FieldSelector.parse(selector)
        except SelectorError as error:
            raise InvalidArgumentError(str(error)) from error
        for path in parsed.fields():
            parse_path(path)
        return self._with(field_selectors=(*self.field_selectors, parsed))

    def where(self, path: str, value: str | int | float | bool | None) -> SearchQuery:
        return self.where_in(path, [value])

    def where_in(self, path: str, values: Iterable[str | int | float | bool | None]) -> SearchQuery:
        return self._with(wheres=(*self.wheres, (parse_path(path), tuple(values))))

    def name_contains(self, text: str) -> SearchQuery:
        return self._with(name_parts=(*self.name_parts, text))

    def owned_by(self, uid: str) -> SearchQuery:
        return self._with(owners=(*self.owners, uid))

    def order_by(self, *fields: str) -> SearchQuery:
        for f in fields:
            if f.lstrip("-") not in ORDER_FIELDS:
                raise InvalidArgumentError(f"cannot order by {f!r}: allowed are {', '.join(sorted(ORDER_FIELDS))} "
                                           "(prefix - for descending)")
        return self._with(ordering=tuple(fields))

    def limit(self, n: int | None) -> SearchQuery:
        if n is not None and n < 1:
            raise InvalidArgumentError(f"limit must be at least 1, not {n}")
        return self._with(limit_=n)

    def after(self, cursor: str | None) -> SearchQuery:
        return self._with(cursor=cursor)


_DEFAULTS: dict[str, Any] = {"resource_": None, "clusters_": None, "namespaces": None, "label_selectors": (),
                             "field_selectors": (), "wheres": (), "name_parts": (), "owners": (), "ordering": (),
                             "limit_": None, "cursor": None, "excluded": ()}


@dataclass(frozen=True, slots=True)
class Hit:
    cluster: str
    resource: Resource
    object: dict[str, Any]


@dataclass(frozen=True, slots=True)
class SearchResult:
    hits: list[Hit]
    next_cursor: str | None
    total: int | None = None

    @property
    def items(self) -> list[dict[str, Any]]:
        return [h.object for h in self.hits]


# -- SQL ---------------------------------------------------------------------------------------


class _Dialect:
    def __init__(self, name: str) -> None:
        self.pg = name == "postgresql"

    # JSON access ---------------------------------------------------------------------------

    def _sqlite_path(self, parts: tuple[str, ...]) -> str:
        for p in parts:
            if '"' in p:
                raise InvalidArgumentError(f"a key with a double quote ({p!r}) cannot be searched on SQLite")
        return "$" + "".join(f'."{p}"' for p in parts)

    def scalar_text(self, column: Any, parts: tuple[str, ...], missing: Any) -> Any:
        """The text form of the scalar at `parts`; `missing` when absent, null or not a scalar."""
        if self.pg:
            path = sa.bindparam(None, list(parts), type_=postgresql.ARRAY(sa.Text()))
            node = column.op("#>", return_type=postgresql.JSONB())(path)
            text = column.op("#>>", return_type=sa.Text())(path)
            return sa.case((sa.func.jsonb_typeof(node).in_(("string", "number", "boolean")), text), else_=missing)
        p = self._sqlite_path(parts)
        kind = sa.func.json_type(column, p)
        value = sa.func.json_extract(column, p)
        return sa.case((kind == "text", value), (kind.in_(("integer", "real")), sa.cast(value, sa.Text())),
                       (kind == "true", "true"), (kind == "false", "false"), else_=missing)

    def is_absent(self, column: Any, parts: tuple[str, ...]) -> Any:
        if self.pg:
            path = sa.bindparam(None, list(parts), type_=postgresql.ARRAY(sa.Text()))
            node = column.op("#>", return_type=postgresql.JSONB())(path)
            return sa.or_(node.is_(None), sa.func.jsonb_typeof(node) == "null")
        kind = sa.func.json_type(column, self._sqlite_path(parts))
        return sa.or_(kind.is_(None), kind == "null")

    # labels --------------------------------------------------------------------------------

    def label_value(self, key: str) -> Any:
        labels = resources.c.labels
        if self.pg:
            return labels.op("->>", return_type=sa.Text())(sa.bindparam(None, key, type_=sa.Text()))
        return sa.func.json_extract(labels, self._sqlite_path((key,)))

    def label_exists(self, key: str) -> Any:
        if self.pg:
            return resources.c.labels.op("?", return_type=sa.Boolean())(sa.bindparam(None, key, type_=sa.Text()))
        return sa.func.json_type(resources.c.labels, self._sqlite_path((key,))).is_not(None)

    def label_equals(self, key: str, values: tuple[str, ...]) -> Any:
        if self.pg:  # containment: the GIN index serves it
            return sa.or_(*(resources.c.labels.op("@>", return_type=sa.Boolean())(
                sa.bindparam(None, {key: v}, type_=postgresql.JSONB())) for v in values))
        return self.label_value(key).in_(values)

    def label_number(self, key: str) -> Any:
        value = self.label_value(key)
        if self.pg:
            return sa.case((value.op("~")("^[0-9]+$"), sa.cast(value, sa.Numeric())), else_=None)
        digits = sa.and_(value.op("GLOB")("[0-9]*"), sa.not_(value.op("GLOB")("*[^0-9]*")))
        return sa.case((digits, sa.cast(value, sa.Integer())), else_=None)

    def requirement(self, req: Any) -> Any:
        op, key, values = req.operator, req.key, req.values
        if op == EXISTS:
            return self.label_exists(key)
        if op == NOT_EXISTS:
            return sa.not_(self.label_exists(key))
        if op in (EQUALS, IN):
            return self.label_equals(key, values)
        if op in (NOT_EQUALS, NOT_IN):
            return sa.or_(sa.not_(self.label_exists(key)), sa.not_(self.label_value(key).in_(values)))
        bound = int(values[0])
        number = self.label_number(key)
        return number > bound if op == GT else number < bound

    def owned_by(self, uid: str) -> Any:
        obj = resources.c.object
        if self.pg:
            refs = obj.op("#>", return_type=postgresql.JSONB())(
                sa.bindparam(None, ["metadata", "ownerReferences"], type_=postgresql.ARRAY(sa.Text())))
            return refs.op("@>", return_type=sa.Boolean())(sa.bindparam(None, [{"uid": uid}],
                                                                        type_=postgresql.JSONB()))
        each = sa.func.json_each(obj, "$.metadata.ownerReferences").table_valued("value").alias("owner_refs")
        return sa.exists().where(sa.func.json_extract(each.c.value, "$.uid") == uid)

    def order_column(self, name: str) -> Any:
        column = resources.c[name]
        if self.pg and name in _TEXT_COLUMNS:
            return column.collate("C")
        return column


def _like_pattern(text: str) -> str:
    escaped = text.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def _filters(q: SearchQuery, d: _Dialect) -> list[Any]:
    c = resources.c
    out: list[Any] = []
    if q.resource_ is not None:
        r = q.resource_
        out += [c.group == r.group, c.version == r.version, c.resource == r.plural]
    for group, plural in q.excluded:
        out.append(sa.not_(sa.and_(c.group == group, c.resource == plural)))
    if q.clusters_ is not None:
        out.append(c.cluster.in_(q.clusters_))
    if q.namespaces is not None:
        out.append(c.namespace.in_(q.namespaces))
    for labels in q.label_selectors:
        out.extend(d.requirement(req) for req in labels.requirements)
    for fields in q.field_selectors:
        for freq in fields.requirements:
            if freq.path == "metadata.name":
                value: Any = c.name
            elif freq.path == "metadata.namespace":
                value = c.namespace
            else:
                value = d.scalar_text(c.object, parse_path(freq.path), "")
            out.append(value == freq.value if freq.operator == EQUALS else value != freq.value)
    for parts, values in q.wheres:
        options = []
        texts = tuple(_text_form(v) for v in values if v is not None)
        if texts:
            options.append(d.scalar_text(c.object, parts, None).in_(texts))
        if any(v is None for v in values):
            options.append(d.is_absent(c.object, parts))
        out.append(sa.or_(*options))
    for part in q.name_parts:
        out.append(sa.func.lower(c.name).like(_like_pattern(part), escape="\\"))
    for uid in q.owners:
        out.append(d.owned_by(uid))
    return out


def _sort_keys(q: SearchQuery) -> list[tuple[str, bool]]:
    """(column, descending) for the ordering, then the key columns ascending."""
    keys = [(ORDER_FIELDS[f.lstrip("-")], f.startswith("-")) for f in q.ordering]
    seen = {name for name, _ in keys}
    keys += [(name, False) for name in _TIE if name not in seen]
    return keys


def _encode_cursor(ordering: tuple[str, ...], values: list[Any]) -> str:
    def plain(v: Any) -> Any:
        if isinstance(v, datetime.datetime):
            return {"t": v.isoformat()}
        return v

    raw = orjson.dumps({"o": list(ordering), "v": [plain(v) for v in values]})
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _decode_cursor(cursor: str, ordering: tuple[str, ...], width: int) -> list[Any]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if data["o"] != list(ordering) or len(data["v"]) != width:
            raise InvalidArgumentError("the cursor was made for another ordering")
        values = [datetime.datetime.fromisoformat(v["t"]) if isinstance(v, dict) else v for v in data["v"]]
    except InvalidArgumentError:
        raise
    except Exception as error:
        raise InvalidArgumentError("the cursor does not decode") from error
    return values


def _after(keys: list[tuple[str, bool]], values: list[Any], d: _Dialect) -> Any:
    """Rows strictly after `values` in the order `keys` (NULLs last ascending, first descending)."""
    options = []
    equal: list[Any] = []
    for (name, descending), value in zip(keys, values, strict=True):
        column = d.order_column(name)
        if value is None:
            later = column.is_not(None) if descending else sa.false()
            same = resources.c[name].is_(None)
        else:
            later = (column < value) if descending else sa.or_(column > value, resources.c[name].is_(None))
            same = resources.c[name] == value
        options.append(sa.and_(*equal, later))
        equal.append(same)
    return sa.or_(*options)


async def search(storage: MirrorStorage, query: SearchQuery, *, count: bool = False) -> SearchResult:
    """Run `query` against the mirror's rows (see the module docstring)."""
    d = _Dialect(storage.dialect)
    c = resources.c
    filters = _filters(query, d)
    keys = _sort_keys(query)
    stmt = sa.select(c.cluster, c.group, c.version, c.resource, c.kind, c.object,
                     *(c[name].label(f"_k{i}") for i, (name, _) in enumerate(keys)))
    where = list(filters)
    if query.cursor:
        where.append(_after(keys, _decode_cursor(query.cursor, query.ordering, len(keys)), d))
    if where:
        stmt = stmt.where(*where)
    order = []
    for name, descending in keys:
        column = d.order_column(name)
        order.append(column.desc().nulls_first() if descending else column.asc().nulls_last())
    stmt = stmt.order_by(*order)
    if query.limit_ is not None:
        stmt = stmt.limit(query.limit_ + 1)
    try:
        async with storage.engine.connect() as conn:
            rows = (await conn.execute(stmt)).all()
            total = None
            if count:
                counted = sa.select(sa.func.count()).select_from(resources)
                if filters:
                    counted = counted.where(*filters)
                total = int((await conn.execute(counted)).scalar() or 0)
    except Exception as error:
        # The driver's message can quote bound parameters: only its type and first line go on.
        raise _storage_error(error) from error
    more = query.limit_ is not None and len(rows) > query.limit_
    if more:
        rows = rows[: query.limit_]
    hits = [Hit(row.cluster, Resource(row.group, row.version, row.resource, bool(row.object["metadata"].get(
        "namespace")), row.kind), row.object) for row in rows]
    next_cursor = None
    if more and rows:
        last = rows[-1]
        next_cursor = _encode_cursor(query.ordering, [last._mapping[f"_k{i}"] for i in range(len(keys))])
    return SearchResult(hits, next_cursor, total)
