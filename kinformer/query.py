"""`Query`: chainable, immutable, index-backed queries over one or many informer caches.

    Query(lister).namespace("default").labels("app in (web,api),tier!=db")
        .where("spec.containers[*].image", "nginx:1.27").order_by("-metadata.creationTimestamp")
        .limit(50).page()                       # Page(items, hits, next_cursor, total, remaining)

Sources. `Query(source)` takes a `Lister`, an `Indexer` or a `SharedIndexInformer` (anything
with an `.indexer`), or a mapping of cluster name → one of those. Each object belongs to a
cluster (`""` for a single source); `cluster` is a field: `where("cluster", "a")`,
`where_in("cluster", [...])`, `order_by("cluster")`. Results are the cached objects
themselves (no copies): do not mutate them.

Clauses. Every filtering call adds one clause; an object matches when it satisfies all of
them. Each method returns a new Query; a Query never changes, so one can be shared across
threads and extended per request. `order_by`, `limit`, `after` replace what was set before.
- `namespace(*ns)`: `metadata.namespace` is one of `ns` ("" = cluster-scoped objects).
- `labels(sel)`: the full label-selector grammar of `selectors.py` (set-based included).
- `fields(sel)`: a Kubernetes field selector with the API server's semantics (`selectors.py`:
  dotted paths only, a missing field reads as "").
- `where(path, v)` / `where_in(path, vs)`: some value the path reaches has the text form of
  `v` (of one of `vs`). The text form is the field-selector form: strings as they are,
  booleans `true`/`false`, numbers as `str()` gives them; lists and mappings have none.
  `v = None` matches when the path reaches nothing (missing or null). Unlike `fields()`, a
  missing field is not "": `where("spec.nodeName", None)` finds unscheduled pods.
- `name_contains(s)`: `s` is a substring of `metadata.name`, ignoring case.
- `owned_by(uid)`: some `metadata.ownerReferences[*].uid` is `uid`.
- `filter(fn)`: `fn(obj)` is true; user code, evaluated last, never under the cache's lock;
  what it raises reaches the caller.

Paths. Dotted names with brackets: `name ( "." name | "[" selector "]" )*`, where a bare name
is any run of characters other than `.`, `[`, `]`, quotes and whitespace, and a selector is
`*` (every element of a list, every value of a mapping: the clause holds if ANY matches),
an integer `N` (a list element; negative counts from the end), or a quoted key `"k"` / `'k'`
(`\\` escapes the quote and itself) for keys holding dots or slashes:
`metadata.labels["app.kubernetes.io/name"]`, `spec.containers[*].ports[*].containerPort`,
`status.conditions[0].type`. A digit-only bare name is a mapping key, never a list index. The
bare name `cluster` on its own is the cluster field; `["cluster"]` is an object's own field.
A bad path raises `QueryError` at the call that names it.

Indexes. Each source is planned on its own. A clause is served by an index when one exists
that answers it exactly; the key sets of all served clauses are intersected smallest first
(`Indexer.intersect_indices`, one lock acquisition for the lookups and the objects), and
only the objects left are evaluated against the other clauses. Served clauses are:
- `namespace()`, `fields("metadata.namespace=…")` and `where("metadata.namespace", …)` (for
  non-empty values) by `NAMESPACE_INDEX` when the indexer has it (an informer always does);
- label `k=v`, `k in (…)` and `k` (presence), and `where('metadata.labels["k"]', …)`, by the
  label index `LABEL_INDEX` (`label_index_func`). `!=`, `notin`, `!k`, `>`, `<` are not: the
  complement of a small set is a large one;
- `where`/`where_in`/`owned_by`/`fields(path=v)` with v != "" on a path some index is
  declared to serve: an index whose function is a `PathIndex(path)` (found by its path, under
  any name: `informer.add_indexers({"node": PathIndex("spec.nodeName")})`), or one named by
  `use_index(name, path=...)` for a function the user wrote (whose values must then be exactly
  the text forms of the path's values: the query trusts the declaration).
A `where(path, None)` clause is never served by an index (an index holds values, not absences).
Unless the Query was built with `auto_index=False`, a query that could use the label index or
the owner index (`OWNER_INDEX`, a `PathIndex` of `metadata.ownerReferences[*].uid`) adds it to
the indexer on first use (`Indexer.add_indexers`: it indexes the whole cache once, under the
lock; register it up front to pay that at start instead). An index added on demand stays.
Served clauses are not evaluated again. `explain()` plans exactly as `page()` would
(including adding an index on demand) and reports, per source, which index served which
clause, each lookup's key count, and how many candidates are left to evaluate.

Ordering. `order_by("-metadata.creationTimestamp", "metadata.name")`: `-` descends; each
field is `cluster` or a path reaching at most one value (no `[*]`). Ties always fall back to
(cluster, key) ascending, which is also the order when none is given, so the order is total.
Values order by type, then within the type: booleans (false < true), then numbers (JSON
numbers, and strings that are base-10 integers: resourceVersions, as etcd's are, though the
API calls them opaque), then RFC 3339 timestamps (as instants, to the microsecond), then
other strings (by code point), then missing values (and lists or mappings). Descending
reverses all of it, missing values first (PostgreSQL's NULLS LAST/FIRST). The rule looks at
one value at a time, deliberately: a rule over the whole result ("numeric if all values
parse") would reorder two objects when a third is written, and a cursor could then skip or
repeat objects that never changed.

Pages and cursors. `page()` returns at most `limit` objects after the cursor, in order; its
`next_cursor` is set when more follow. A cursor is opaque (base64url of JSON: the ordering,
the last object's sort values, its cluster and key) and is keyset-based: the next page holds
the objects whose sort position is after that last object's. An object that did not change
between two pages is therefore never repeated nor skipped, whatever else was written; one
that changed appears where its new values put it (possibly again, or not at all). A cursor
that does not decode, or was made under another ordering, raises `QueryError`. `total`
(`page(count=True)`) counts every match ignoring cursor and limit; `remaining` counts the
matches after the page.

Threads. A Query holds no mutable state. Reads take the indexer's lock only inside
`Indexer` calls (one `get_indexers`, one `intersect_indices`, perhaps one `add_indexers` per
source and execution); predicates, user filters and sorting run outside it.
"""

from __future__ import annotations

import base64
import contextlib
import heapq
import re
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final, Generic, NamedTuple, TypeAlias, overload

import orjson

from kinformer.errors import IndexerConflictError, QueryError, SelectorError
from kinformer.lister import Lister
from kinformer.objects import KubeObject, ObjT
from kinformer.objects import labels as labels_of
from kinformer.objects import name as name_of
from kinformer.objects import namespace as namespace_of
from kinformer.selectors import EQUALS, EXISTS, IN, FieldRequirement, FieldSelector, LabelSelector, Requirement
from kinformer.store import NAMESPACE_INDEX, Indexer

if TYPE_CHECKING:
    from kinformer.informer import SharedIndexInformer

__all__ = [
    "LABEL_INDEX",
    "OWNER_INDEX",
    "OWNER_PATH",
    "FieldPath",
    "Hit",
    "Page",
    "PathIndex",
    "Plan",
    "PlanStep",
    "Query",
    "Scalar",
    "SourcePlan",
    "label_index_func",
]

Scalar: TypeAlias = str | int | float | bool | None
"""What `where` compares against (by text form; None = the path reaches nothing)."""

LABEL_INDEX: Final = "kinformer.query/labels"
"""The name under which a Query adds `label_index_func` on demand."""

OWNER_INDEX: Final = "kinformer.query/owner-uid"
"""The name under which a Query adds `PathIndex(OWNER_PATH)` on demand (for `owned_by`)."""

OWNER_PATH: Final = "metadata.ownerReferences[*].uid"

CLUSTER_FIELD: Final = "cluster"


# -- paths ----------------------------------------------------------------------------------


class _Star:
    """The `[*]` path segment (one instance)."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "[*]"


_STAR: Final = _Star()
Segment: TypeAlias = str | int | _Star

_BARE = re.compile(r"[^.\[\]\"'\s]+")
_INTEGER = re.compile(r"-?[0-9]+")


def _render(segments: Sequence[Segment]) -> str:
    out: list[str] = []
    for seg in segments:
        if seg is _STAR:
            out.append("[*]")
        elif isinstance(seg, int):
            out.append(f"[{seg}]")
        elif isinstance(seg, str) and _BARE.fullmatch(seg) and (out or seg != CLUSTER_FIELD or len(segments) > 1):
            out.append(f".{seg}" if out else seg)
        else:
            quoted = str(seg).replace("\\", "\\\\").replace('"', '\\"')
            out.append(f'["{quoted}"]')
    return "".join(out)


def _identity(obj: Any) -> Any:
    return obj


def _compile_get(segments: tuple[Segment, ...]) -> Callable[[Any], Any]:
    """A function returning the value a path without `[*]` reaches, or None (null too)."""
    if not segments:
        return _identity
    if all(type(seg) is str for seg in segments):
        # Subscripting a list, a string or None with a str raises TypeError: not a mapping, no value.
        if len(segments) == 1:
            (a,) = segments

            def get1(obj: Any) -> Any:
                return obj.get(a) if isinstance(obj, dict) else None
            return get1
        if len(segments) == 2:
            a, b = segments

            def get2(obj: Any) -> Any:
                try:
                    return obj[a][b]
                except (KeyError, TypeError, IndexError):
                    return None
            return get2

        def get_n(obj: Any) -> Any:
            try:
                for seg in segments:
                    obj = obj[seg]
            except (KeyError, TypeError, IndexError):
                return None
            return obj
        return get_n

    def get(obj: Any) -> Any:
        for seg in segments:
            if type(seg) is str:
                if not isinstance(obj, dict):
                    return None
                obj = obj.get(seg)
            elif isinstance(seg, int) and isinstance(obj, list) and -len(obj) <= seg < len(obj):
                obj = obj[seg]
            else:
                return None
            if obj is None:
                return None
        return obj
    return get


def _compile_reach(segments: tuple[Segment, ...]) -> Callable[[Any], list[Any]]:
    """A function returning every value a path reaches; `[*]` fans out over lists and mappings."""
    if _STAR not in segments:
        get = _compile_get(segments)

        def reach_one(obj: Any) -> list[Any]:
            value = get(obj)
            return [] if value is None else [value]
        return reach_one
    star = segments.index(_STAR)
    head, rest = _compile_get(segments[:star]), segments[star + 1:]
    tail = _compile_get(rest) if _STAR not in rest else None
    tails = _compile_reach(rest) if tail is None else None

    def reach(obj: Any) -> list[Any]:
        container = head(obj)
        if isinstance(container, list):
            elements: Iterable[Any] = container
        elif isinstance(container, dict):
            elements = container.values()
        else:
            return []
        out: list[Any] = []
        if tail is not None:
            for element in elements:
                value = tail(element)
                if value is not None:
                    out.append(value)
        else:
            assert tails is not None
            for element in elements:
                out.extend(tails(element))
        return out
    return reach


@dataclass(frozen=True, slots=True)
class FieldPath:
    """A parsed path (see the module docstring for the syntax). `FieldPath.parse(text)`.

    `path.values(obj)` is every value it reaches in `obj` (null counts as absent);
    `path.value(obj)` the first of them, or None. Both are compiled once per path.
    """

    segments: tuple[Segment, ...]
    values: Callable[[Any], list[Any]] = field(init=False, repr=False, compare=False)
    value: Callable[[Any], Any] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        reach = _compile_reach(self.segments)
        object.__setattr__(self, "values", reach)
        if _STAR in self.segments:
            def first(obj: Any) -> Any:
                found = reach(obj)
                return found[0] if found else None
            object.__setattr__(self, "value", first)
        else:
            object.__setattr__(self, "value", _compile_get(self.segments))

    @classmethod
    def parse(cls, text: str) -> FieldPath:
        if not isinstance(text, str) or not text:
            raise QueryError(f"invalid path {text!r}: empty")
        segments: list[Segment] = []
        i, n = 0, len(text)
        while i < n:
            c = text[i]
            if c == "[":
                i = cls._bracket(text, i + 1, segments)
            elif c == "." and segments:
                match = _BARE.match(text, i + 1)
                if match is None:
                    raise QueryError(f"invalid path {text!r}: expected a name after '.' at {i}")
                segments.append(match.group())
                i = match.end()
            elif i == 0 and (match := _BARE.match(text)) is not None:
                segments.append(match.group())
                i = match.end()
            else:
                raise QueryError(f"invalid path {text!r}: unexpected {c!r} at {i}")
        return cls(tuple(segments))

    @staticmethod
    def _bracket(text: str, i: int, segments: list[Segment]) -> int:
        n = len(text)
        if i < n and text[i] in "\"'":
            quote, j, chars = text[i], i + 1, []
            while True:
                if j >= n:
                    raise QueryError(f"invalid path {text!r}: unterminated quoted key")
                c = text[j]
                if c == "\\" and j + 1 < n and text[j + 1] in ("\\", quote):
                    chars.append(text[j + 1])
                    j += 2
                elif c == quote:
                    break
                else:
                    chars.append(c)
                    j += 1
            if j + 1 >= n or text[j + 1] != "]":
                raise QueryError(f"invalid path {text!r}: expected ']' after the quoted key at {j + 1}")
            segments.append("".join(chars))
            return j + 2
        end = text.find("]", i)
        if end < 0:
            raise QueryError(f"invalid path {text!r}: '[' without ']'")
        inner = text[i:end]
        if inner == "*":
            segments.append(_STAR)
        elif _INTEGER.fullmatch(inner):
            segments.append(int(inner))
        else:
            raise QueryError(f"invalid path {text!r}: [{inner}] is not [*], [N] or [\"key\"]")
        return end + 1

    @property
    def wildcard(self) -> bool:
        """True when the path can reach several values (it has a `[*]`)."""
        return _STAR in self.segments

    def __str__(self) -> str:
        return _render(self.segments)


def _text(value: Any) -> str | None:
    """The field-selector text form of a scalar; None for null, lists and mappings."""
    if type(value) is str:
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return None


def _scalar_text(value: Any, what: str) -> str | None:
    if value is not None and not isinstance(value, str | int | float | bool):
        raise QueryError(f"{what}: {type(value).__name__} is not a scalar (str, int, float, bool or None)")
    return _text(value)


# -- index functions a Query knows how to use -----------------------------------------------------


class PathIndex:
    """An index function declaring the path it serves: an object is indexed under the text form
    of every scalar value its path reaches. A Query finds it by path, under any index name.
    Two PathIndex of the same path are equal."""

    __slots__ = ("path",)

    def __init__(self, path: str | FieldPath) -> None:
        self.path = path if isinstance(path, FieldPath) else FieldPath.parse(path)

    def __call__(self, obj: Any) -> list[str]:
        out: list[str] = []
        for value in self.path.values(obj):
            text = _text(value)
            if text is not None and text not in out:
                out.append(text)
        return out

    def __eq__(self, other: object) -> bool:
        return isinstance(other, PathIndex) and other.path == self.path

    def __hash__(self) -> int:
        return hash(self.path)

    def __repr__(self) -> str:
        return f"PathIndex({str(self.path)!r})"


def label_index_func(obj: Any) -> list[str]:
    """The label index: `key=value` for every label, and `key` alone (presence)."""
    lbls = labels_of(obj)
    if not lbls:
        return []
    return [*(f"{k}={v}" for k, v in lbls.items()), *lbls]


_OWNER_INDEX_FUNC: Final = PathIndex(OWNER_PATH)
_NO_LABELS: Final[Mapping[str, str]] = {}
_NAMESPACE_SEGMENTS: Final = ("metadata", "namespace")


class _Indices:
    """What one source's indexer offers a query: its index names by the path they serve."""

    def __init__(self, indexer: Indexer, auto_index: bool, hints: Sequence[tuple[str, FieldPath]]) -> None:
        self.indexer = indexer
        self.auto_index = auto_index
        funcs = indexer.get_indexers()
        self.namespace = NAMESPACE_INDEX if NAMESPACE_INDEX in funcs else None
        self.label = next((name for name, func in funcs.items() if func is label_index_func), None)
        self.by_path: dict[tuple[Segment, ...], str] = {}
        for name, func in funcs.items():
            if isinstance(func, PathIndex):
                self.by_path.setdefault(func.path.segments, name)
        self.missing: dict[tuple[Segment, ...], str] = {}
        for name, path in hints:
            if name in funcs:
                self.by_path[path.segments] = name
            else:
                self.missing[path.segments] = name

    def _add(self, name: str, func: Any) -> bool:
        # A conflict: added meanwhile by another query, or the user's own index under our name.
        with contextlib.suppress(IndexerConflictError):
            self.indexer.add_indexers({name: func})
        return bool(self.indexer.get_indexers().get(name) == func)

    def label_index(self) -> tuple[str | None, str]:
        if self.label is None and self.auto_index and self._add(LABEL_INDEX, label_index_func):
            self.label = LABEL_INDEX
            return self.label, "added on demand"
        return self.label, ""

    def path_index(self, segments: tuple[Segment, ...]) -> tuple[str | None, str]:
        name = self.by_path.get(segments)
        if name is not None:
            return name, ""
        if segments == _OWNER_INDEX_FUNC.path.segments and self.auto_index \
                and self._add(OWNER_INDEX, _OWNER_INDEX_FUNC):
            self.by_path[segments] = OWNER_INDEX
            return OWNER_INDEX, "added on demand"
        return None, ""


_Lookup: TypeAlias = tuple[str, frozenset[str], str]
"""(index name, values, note) for a clause an index serves."""


def _equality_lookup(indices: _Indices, segments: tuple[Segment, ...], texts: frozenset[str]) -> _Lookup | None:
    """The index serving "some value at `segments` has a text in `texts`", if any."""
    if segments == _NAMESPACE_SEGMENTS and indices.namespace and "" not in texts:
        return indices.namespace, texts, ""
    if len(segments) == 3 and segments[:2] == ("metadata", "labels") and isinstance(segments[2], str):
        name, note = indices.label_index()
        if name is not None:
            return name, frozenset(f"{segments[2]}={t}" for t in texts), note
    name, note = indices.path_index(segments)
    return (name, texts, note) if name is not None else None


def _missing_note(indices: _Indices, clause: _Clause) -> str:
    """Why a clause on a path declared by `use_index` was not served: the index is absent."""
    segments = clause.path.segments if isinstance(clause, _Where) else getattr(clause, "segments", None)
    name = indices.missing.get(segments) if segments is not None else None
    return f"declared index {name!r} is not registered" if name else ""


# -- clauses -------------------------------------------------------------------------------


class _Clause:
    """One conjunct of a query: a predicate, and perhaps an index that answers it exactly."""

    __slots__ = ()
    cost = 2  # residual clauses are evaluated cheapest first, user code last

    def lookup(self, indices: _Indices) -> _Lookup | None:
        return None

    def matches(self, obj: Any) -> bool:
        raise NotImplementedError


@dataclass(frozen=True, slots=True, eq=False)
class _Namespace(_Clause):
    namespaces: frozenset[str]
    cost = 0

    def lookup(self, indices: _Indices) -> _Lookup | None:
        return (indices.namespace, self.namespaces, "") if indices.namespace else None

    def matches(self, obj: Any) -> bool:
        try:
            ns = obj["metadata"].get("namespace") or ""
        except (KeyError, TypeError, AttributeError):
            ns = namespace_of(obj)
        return ns in self.namespaces

    def __str__(self) -> str:
        return f"namespace in ({','.join(sorted(self.namespaces))})"


@dataclass(frozen=True, slots=True, eq=False)
class _Label(_Clause):
    requirement: Requirement
    cost = 1

    def lookup(self, indices: _Indices) -> _Lookup | None:
        req = self.requirement
        if req.operator in (EQUALS, IN):
            values = frozenset(f"{req.key}={v}" for v in req.values)
        elif req.operator == EXISTS:
            values = frozenset((req.key,))
        else:
            return None
        name, note = indices.label_index()
        return (name, values, note) if name is not None else None

    def matches(self, obj: Any) -> bool:
        try:
            lbls = obj["metadata"].get("labels")
        except (KeyError, TypeError, AttributeError):
            lbls = labels_of(obj)
        return self.requirement.matches(lbls if isinstance(lbls, dict) else _NO_LABELS)

    def __str__(self) -> str:
        return f"label {self.requirement}"


@dataclass(frozen=True, slots=True, eq=False)
class _Field(_Clause):
    requirement: FieldRequirement
    segments: tuple[Segment, ...]

    def lookup(self, indices: _Indices) -> _Lookup | None:
        req = self.requirement
        if req.operator != EQUALS:
            return None
        if self.segments == _NAMESPACE_SEGMENTS and indices.namespace:
            # The namespace index reads a missing namespace as "", exactly as field selectors do.
            return indices.namespace, frozenset((req.value,)), ""
        if not req.value:
            return None  # `path=` also matches a missing field, which no index holds
        return _equality_lookup(indices, self.segments, frozenset((req.value,)))

    def matches(self, obj: Any) -> bool:
        return self.requirement.matches(obj)

    def __str__(self) -> str:
        return f"field {self.requirement}"


@dataclass(frozen=True, slots=True, eq=False)
class _Where(_Clause):
    path: FieldPath
    texts: frozenset[str]
    absent: bool  # None was among the values: the path reaching nothing matches too
    label: str = ""
    wildcard: bool = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "wildcard", self.path.wildcard)

    def lookup(self, indices: _Indices) -> _Lookup | None:
        if self.absent:
            return None
        return _equality_lookup(indices, self.path.segments, self.texts)

    def matches(self, obj: Any) -> bool:
        texts = self.texts
        if not self.wildcard:
            value = self.path.value(obj)
            if value is None:
                return self.absent
            return (value if type(value) is str else _text(value)) in texts
        values = self.path.values(obj)
        if not values:
            return self.absent
        for value in values:
            if (value if type(value) is str else _text(value)) in texts:
                return True
        return False

    def __str__(self) -> str:
        if self.label:
            return self.label
        shown = sorted(repr(t) for t in self.texts) + (["None"] if self.absent else [])
        if len(shown) == 1:
            return f"where {self.path} = {shown[0]}"
        return f"where {self.path} in ({', '.join(shown)})"


@dataclass(frozen=True, slots=True, eq=False)
class _NameContains(_Clause):
    needle: str
    cost = 3

    def matches(self, obj: Any) -> bool:
        return self.needle in name_of(obj).casefold()

    def __str__(self) -> str:
        return f"name contains {self.needle!r}"


@dataclass(frozen=True, slots=True, eq=False)
class _Filter(_Clause):
    predicate: Callable[[Any], bool]
    label: str
    cost = 9

    def matches(self, obj: Any) -> bool:
        return bool(self.predicate(obj))

    def __str__(self) -> str:
        return f"filter {self.label}"


@dataclass(frozen=True, slots=True, eq=False)
class _Cluster(_Clause):
    """Selects sources; never evaluated per object."""

    clusters: frozenset[str]

    def matches(self, obj: Any) -> bool:
        raise AssertionError("cluster clauses select sources")

    def __str__(self) -> str:
        return f"cluster in ({','.join(sorted(self.clusters))})"


# -- ordering and cursors ------------------------------------------------------------------

_BOOL, _NUMBER, _TIME, _STRING, _MISSING = range(5)
_RFC3339 = re.compile(r"(\d{4}-\d{2}-\d{2})[Tt](\d{2}:\d{2}:\d{2})(?:\.(\d+))?([Zz]|[+-]\d{2}:\d{2})")
_SIMPLE_TIME = re.compile(r"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})Z")
_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_ORDINAL: Final = _EPOCH.toordinal()
_MICROSECOND: Final = timedelta(microseconds=1)


def _instant(text: str) -> int | None:
    """Microseconds since the epoch of an RFC 3339 timestamp, or None if `text` is not one."""
    if len(text) == 20:
        # metav1.Time's own form (seconds, UTC), done without building a datetime: the hot case.
        simple = _SIMPLE_TIME.fullmatch(text)
        if simple is not None:
            year, month, day, hour, minute, second = map(int, simple.groups())
            if hour > 23 or minute > 59 or second > 59:
                return None
            try:
                days = date(year, month, day).toordinal() - _EPOCH_ORDINAL
            except ValueError:
                return None
            return ((days * 24 + hour) * 60 + minute) * 60_000_000 + second * 1_000_000
    match = _RFC3339.fullmatch(text)
    if match is None:
        return None
    ymd, clock, fraction, zone = match.groups()
    micros = ((fraction or "") + "000000")[:6]
    offset = "+00:00" if zone in ("Z", "z") else zone
    try:
        moment = datetime.fromisoformat(f"{ymd}T{clock}.{micros}{offset}")
    except ValueError:
        return None
    return (moment - _EPOCH) // _MICROSECOND


class _Descending:
    """A string that sorts backwards (numbers are negated instead)."""

    __slots__ = ("s",)

    def __init__(self, s: str) -> None:
        self.s = s

    def __lt__(self, other: _Descending) -> bool:
        return self.s > other.s

    def __gt__(self, other: _Descending) -> bool:
        return self.s < other.s

    def __le__(self, other: _Descending) -> bool:
        return self.s >= other.s

    def __ge__(self, other: _Descending) -> bool:
        return self.s <= other.s

    def __eq__(self, other: object) -> bool:
        return isinstance(other, _Descending) and other.s == self.s

    def __hash__(self) -> int:
        return hash(self.s)


def _sortable(raw: Any) -> tuple[int, Any]:
    """(type rank, comparable value) of a normalised sort value (see the module docstring)."""
    if type(raw) is str:
        if (raw.isdigit() and raw.isascii()) or (raw[:1] == "-" and _INTEGER.fullmatch(raw)):
            return _NUMBER, int(raw)
        if len(raw) >= 20 and raw[4] == "-":
            instant = _instant(raw)
            if instant is not None:
                return _TIME, instant
        return _STRING, raw
    if raw is None:
        return _MISSING, 0
    if isinstance(raw, bool):
        return _BOOL, int(raw)
    if isinstance(raw, int | float):
        return _NUMBER, raw
    if isinstance(raw, str):  # a str subclass
        return _sortable(str(raw))
    return _MISSING, 0


_INT64: Final = 2**63


def _normalise(value: Any) -> Scalar:
    """A sort value as a cursor can carry it: scalars only; huge ints as their (numeric) text."""
    if value is None or isinstance(value, str | bool | float):
        return value
    if isinstance(value, int):
        return value if -_INT64 <= value < _INT64 else str(value)
    return None


@dataclass(frozen=True, slots=True)
class _OrderField:
    path: FieldPath | None  # None: the cluster
    descending: bool

    @classmethod
    def parse(cls, text: str) -> _OrderField:
        if not isinstance(text, str):
            raise QueryError(f"invalid order field {text!r}: not a string")
        spec = text.strip()
        descending = spec.startswith("-")
        spec = spec[1:] if spec[:1] in ("-", "+") else spec
        if spec == CLUSTER_FIELD:
            return cls(None, descending)
        path = FieldPath.parse(spec)
        if path.wildcard:
            raise QueryError(f"invalid order field {text!r}: [*] reaches several values; order by one")
        return cls(path, descending)

    def raw(self, obj: Any, cluster: str) -> Scalar:
        return cluster if self.path is None else _normalise(self.path.value(obj))

    def component(self, raw: Any) -> tuple[int, Any]:
        rank, value = _sortable(raw)
        if not self.descending:
            return rank, value
        return -rank, (_Descending(value) if isinstance(value, str) else -value)

    def sort_key(self, cluster: str) -> Callable[[Any], tuple[int, Any]]:
        """The component of this field for objects of `cluster` (one call per object, no cursor form)."""
        if self.path is None:
            fixed = self.component(cluster)
            return lambda obj: fixed
        get, component = self.path.value, self.component
        return lambda obj: component(get(obj))

    def __str__(self) -> str:
        return ("-" if self.descending else "") + (CLUSTER_FIELD if self.path is None else str(self.path))


@dataclass(frozen=True, slots=True)
class _Cursor:
    ordering: str
    values: tuple[Scalar, ...]
    cluster: str
    key: str

    _VERSION = 1

    def encode(self) -> str:
        data = orjson.dumps([self._VERSION, self.ordering, list(self.values), self.cluster, self.key])
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")

    @classmethod
    def decode(cls, text: str) -> _Cursor:
        try:
            data = orjson.loads(base64.urlsafe_b64decode(text + "=" * (-len(text) % 4)))
        except (ValueError, TypeError, orjson.JSONDecodeError):
            raise QueryError("invalid cursor: not one this API issued") from None
        if (not isinstance(data, list) or len(data) != 5 or data[0] != cls._VERSION
                or not isinstance(data[1], str) or not isinstance(data[2], list)
                or not isinstance(data[3], str) or not isinstance(data[4], str)
                or not all(v is None or isinstance(v, str | int | float | bool) for v in data[2])):
            raise QueryError("invalid cursor: not one this API issued")
        return cls(data[1], tuple(data[2]), data[3], data[4])


# -- results and plans ---------------------------------------------------------------------------


class Hit(NamedTuple, Generic[ObjT]):
    """One result with where it came from."""

    cluster: str
    key: str
    object: ObjT


@dataclass(frozen=True, slots=True)
class Page(Generic[ObjT]):
    """One page of results, in order. `next_cursor` is None on the last page; `total` (every
    match, ignoring cursor and limit) and `remaining` (matches after this page) are set only
    by `page(count=True)`."""

    items: list[ObjT]
    hits: list[Hit[ObjT]]
    next_cursor: str | None
    total: int | None = None
    remaining: int | None = None


@dataclass(frozen=True, slots=True)
class PlanStep:
    """One clause of a source's plan: the index that served it (None: evaluated per candidate),
    the size of that index lookup's key set, and a note (an index added on demand, a declared
    index that is missing)."""

    clause: str
    index: str | None = None
    keys: int | None = None
    note: str = ""


@dataclass(frozen=True, slots=True)
class SourcePlan:
    """How one source is read: `candidates` is how many objects the unserved clauses are
    evaluated on (all `objects` when no index serves any clause; 0 when a cluster clause
    excludes the source)."""

    cluster: str
    objects: int
    steps: tuple[PlanStep, ...]
    candidates: int
    excluded: bool = False


@dataclass(frozen=True, slots=True)
class Plan:
    """What `Query.explain()` returns; `str(plan)` reads as text, `as_dict()` is JSON-ready."""

    sources: tuple[SourcePlan, ...]
    order: tuple[str, ...]
    limit: int | None
    after: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            "sources": [{"cluster": s.cluster, "objects": s.objects, "candidates": s.candidates,
                         "excluded": s.excluded,
                         "steps": [{"clause": p.clause, "index": p.index, "keys": p.keys, "note": p.note}
                                   for p in s.steps]} for s in self.sources],
            "order": list(self.order), "limit": self.limit, "after": self.after,
        }

    def __str__(self) -> str:
        lines: list[str] = []
        for s in self.sources:
            lines.append(f"cluster {s.cluster!r}: {s.objects} objects" + (", excluded" if s.excluded else ""))
            for p in s.steps:
                how = f"index {p.index!r} -> {p.keys} keys" if p.index else "evaluated per candidate"
                lines.append(f"  {p.clause}: {how}" + (f" ({p.note})" if p.note else ""))
            if not s.excluded:
                lines.append(f"  candidates: {s.candidates}")
        lines.append(f"order: {', '.join(self.order)}; limit: {self.limit}; after cursor: {self.after}")
        return "\n".join(lines)


# -- the query -----------------------------------------------------------------------------

def _indexer_of(source: object) -> Indexer:
    if isinstance(source, Indexer):
        return source
    indexer = getattr(source, "indexer", None)
    if isinstance(indexer, Indexer):
        return indexer
    raise QueryError(f"cannot query a {type(source).__name__}: give a Lister, an Indexer, an informer, "
                     "or a mapping of cluster names to those")


def _sources(source: object) -> tuple[tuple[str, Indexer], ...]:
    if isinstance(source, Mapping):
        out = []
        for cluster, each in source.items():
            if not isinstance(cluster, str):
                raise QueryError(f"cluster names must be strings, not {type(cluster).__name__}")
            out.append((cluster, _indexer_of(each)))
        return tuple(out)
    return (("", _indexer_of(source)),)


_ROW_KEY = itemgetter(0)


class Query(Generic[ObjT]):
    """An immutable query over one or many caches; see the module docstring."""

    __slots__ = ("_auto_index", "_clauses", "_cursor", "_hints", "_limit", "_order", "_sources")

    _sources: tuple[tuple[str, Indexer], ...]
    _clauses: tuple[_Clause, ...]
    _order: tuple[_OrderField, ...]
    _limit: int | None
    _cursor: _Cursor | None
    _hints: tuple[tuple[str, FieldPath], ...]
    _auto_index: bool

    @overload
    def __init__(self: Query[KubeObject], source: Indexer | Mapping[str, Indexer], *,
                 auto_index: bool = True) -> None: ...

    @overload
    def __init__(
        self,
        source: Lister[ObjT] | SharedIndexInformer[ObjT] | Mapping[str, Lister[ObjT] | SharedIndexInformer[ObjT]],
        *, auto_index: bool = True,
    ) -> None: ...

    def __init__(self, source: object, *, auto_index: bool = True) -> None:
        self._sources = _sources(source)
        self._clauses = ()
        self._order = ()
        self._limit = None
        self._cursor = None
        self._hints = ()
        self._auto_index = auto_index

    def _with(self, **changes: Any) -> Query[ObjT]:
        new: Query[ObjT] = object.__new__(Query)
        for slot in Query.__slots__:
            object.__setattr__(new, slot, changes.get(slot, getattr(self, slot)))
        return new

    def _and(self, *clauses: _Clause) -> Query[ObjT]:
        return self._with(_clauses=self._clauses + clauses)

    # -- clauses --------------------------------------------------------------------------------

    def namespace(self, *namespaces: str) -> Query[ObjT]:
        """Objects in one of `namespaces` ("" selects cluster-scoped objects)."""
        if not namespaces or not all(isinstance(ns, str) for ns in namespaces):
            raise QueryError("namespace() needs one or more namespace names")
        return self._and(_Namespace(frozenset(namespaces)))

    def labels(self, selector: str | LabelSelector) -> Query[ObjT]:
        """Objects whose labels match `selector` (raises `SelectorError` if it does not parse)."""
        parsed = LabelSelector.parse(selector) if isinstance(selector, str) else selector
        if not isinstance(parsed, LabelSelector):
            raise SelectorError(f"not a label selector: {selector!r}")
        return self._and(*(_Label(req) for req in parsed.requirements))

    def fields(self, selector: str | FieldSelector) -> Query[ObjT]:
        """Objects matching a Kubernetes field selector (`status.phase=Running,spec.nodeName!=n1`)."""
        parsed = FieldSelector.parse(selector) if isinstance(selector, str) else selector
        if not isinstance(parsed, FieldSelector):
            raise SelectorError(f"not a field selector: {selector!r}")
        return self._and(*(_Field(req, FieldPath.parse(req.path).segments) for req in parsed.requirements))

    def where(self, path: str, value: Scalar) -> Query[ObjT]:
        """Objects where some value `path` reaches has `value`'s text form (None: reaches nothing)."""
        return self.where_in(path, (value,))

    def where_in(self, path: str, values: Iterable[Scalar]) -> Query[ObjT]:
        """Objects where some value `path` reaches has the text form of one of `values`."""
        if isinstance(values, str | bytes) or not isinstance(values, Iterable):
            raise QueryError(f"where_in({path!r}, ...) needs a collection of values, not {type(values).__name__}")
        given = list(values)
        texts = frozenset(t for t in (_scalar_text(v, f"where {path!r}") for v in given) if t is not None)
        absent = any(v is None for v in given)
        if path == CLUSTER_FIELD:
            return self._and(_Cluster(texts))
        return self._and(_Where(FieldPath.parse(path), texts, absent))

    def name_contains(self, text: str) -> Query[ObjT]:
        """Objects whose `metadata.name` contains `text`, ignoring case."""
        if not isinstance(text, str):
            raise QueryError(f"name_contains needs a string, not {type(text).__name__}")
        return self._and(_NameContains(text.casefold()))

    def owned_by(self, uid: str) -> Query[ObjT]:
        """Objects with an owner reference to `uid` (any reference, controller or not)."""
        if not isinstance(uid, str) or not uid:
            raise QueryError("owned_by needs an owner uid")
        return self._and(_Where(_OWNER_INDEX_FUNC.path, frozenset((uid,)), False, label=f"owned_by {uid}"))

    def filter(self, predicate: Callable[[ObjT], bool], *, name: str = "") -> Query[ObjT]:
        """Objects for which `predicate(obj)` is true. Never served by an index; evaluated last."""
        if not callable(predicate):
            raise QueryError("filter needs a callable")
        return self._and(_Filter(predicate, name or getattr(predicate, "__name__", "predicate")))

    def use_index(self, name: str, *, path: str) -> Query[ObjT]:
        """Declare that the index `name` (where a source has it) serves equality on `path`.

        Its function must index each object under exactly the text forms of the scalar values
        `path` reaches; a `PathIndex` needs no declaration.
        """
        return self._with(_hints=(*self._hints, (name, FieldPath.parse(path))))

    # -- ordering and paging ------------------------------------------------------------------------

    def order_by(self, *fields: str) -> Query[ObjT]:
        """Order by these fields (`-` descends), then by (cluster, key); none: (cluster, key)."""
        return self._with(_order=tuple(_OrderField.parse(f) for f in fields))

    def limit(self, n: int | None) -> Query[ObjT]:
        """At most `n` objects per page (None: no limit)."""
        if n is not None and (isinstance(n, bool) or not isinstance(n, int) or n < 1):
            raise QueryError(f"limit must be a positive integer or None, not {n!r}")
        return self._with(_limit=n)

    def after(self, cursor: str | None) -> Query[ObjT]:
        """Continue after a page's `next_cursor` (None: from the start)."""
        if cursor is None:
            return self._with(_cursor=None)
        if not isinstance(cursor, str) or not cursor:
            raise QueryError("invalid cursor: not one this API issued")
        return self._with(_cursor=_Cursor.decode(cursor))

    # -- execution ----------------------------------------------------------------------------------

    def _ordering(self) -> str:
        return ",".join(str(f) for f in self._order)

    def _selected_sources(self) -> list[tuple[str, Indexer, bool]]:
        """(cluster, indexer, selected by every cluster clause)."""
        clusters = [c for c in self._clauses if isinstance(c, _Cluster)]
        return [(name, indexer, all(name in c.clusters for c in clusters)) for name, indexer in self._sources]

    def _read(self, cluster: str, indexer: Indexer) -> tuple[list[PlanStep], list[tuple[str, Any]],
                                                              list[_Clause]]:
        """Plan one source, read its candidates; returns (steps, candidates, residual clauses)."""
        indices = _Indices(indexer, self._auto_index, self._hints)
        lookups: list[tuple[str, Collection[str]]] = []
        served: list[tuple[_Clause, str, str]] = []
        residual: list[_Clause] = []
        for clause in self._clauses:
            if isinstance(clause, _Cluster):
                continue
            found = clause.lookup(indices)
            if found is None:
                residual.append(clause)
            else:
                name, values, note = found
                lookups.append((name, values))
                served.append((clause, name, note))
        sizes, candidates = indexer.intersect_indices(lookups)
        steps = [PlanStep(str(c), name, size, note) for (c, name, note), size in zip(served, sizes, strict=True)]
        steps += [PlanStep(str(c), note=_missing_note(indices, c)) for c in residual]
        residual.sort(key=lambda c: c.cost)
        return steps, candidates, residual

    def _matches(self) -> list[tuple[str, list[tuple[str, Any]]]]:
        """Per selected source: (cluster, [(key, object)]) of every match."""
        out = []
        for cluster, indexer, selected in self._selected_sources():
            if not selected:
                continue
            _, candidates, residual = self._read(cluster, indexer)
            out.append((cluster, _evaluate(candidates, [c.matches for c in residual])))
        return out

    def page(self, *, count: bool = False) -> Page[ObjT]:
        """Run the query: at most `limit` matches after the cursor, in order."""
        order, cursor, limit = self._order, self._cursor, self._limit
        boundary: tuple[Any, ...] | None = None
        if cursor is not None:
            if cursor.ordering != self._ordering() or len(cursor.values) != len(order):
                raise QueryError(f"invalid cursor: it was issued for order_by({cursor.ordering!r}), "
                                 f"not order_by({self._ordering()!r})")
            boundary = (*(f.component(v) for f, v in zip(order, cursor.values, strict=True)),
                        cursor.cluster, cursor.key)
        sources = self._matches()
        # Rows are (sort key, object); the sort key ends with (cluster, key), except for one
        # source in the default order, where it is the key alone and the pairs need no copying.
        key_only = not order and len(sources) == 1
        rows: list[tuple[Any, Any]] = []
        total = 0
        for cluster, matched in sources:
            total += len(matched)
            if key_only:
                if boundary is None or cluster > boundary[0]:
                    rows = matched
                elif cluster == boundary[0]:
                    after = boundary[1]
                    rows = [kv for kv in matched if kv[0] > after]
                continue
            keys = [f.sort_key(cluster) for f in order]
            first = keys[0] if len(keys) == 1 else None
            for key, obj in matched:
                if first is not None:
                    row_key: tuple[Any, ...] = (first(obj), cluster, key)
                elif keys:
                    row_key = (*[k(obj) for k in keys], cluster, key)
                else:
                    row_key = (cluster, key)
                if boundary is None or row_key > boundary:
                    rows.append((row_key, obj))
        after_cursor = len(rows)
        if limit is None:
            rows.sort(key=_ROW_KEY)
            chosen, more = rows, False
        else:
            chosen = heapq.nsmallest(limit + 1, rows, key=_ROW_KEY)
            more = len(chosen) > limit
            del chosen[limit:]
        if key_only:
            only = sources[0][0]
            hits = [Hit(only, key, obj) for key, obj in chosen]
        else:
            hits = [Hit(row_key[-2], row_key[-1], obj) for row_key, obj in chosen]
        next_cursor = None
        if more:
            last = hits[-1]
            next_cursor = _Cursor(self._ordering(), tuple(f.raw(last.object, last.cluster) for f in order),
                                  last.cluster, last.key).encode()
        return Page([h.object for h in hits], hits, next_cursor,
                    total if count else None, after_cursor - len(chosen) if count else None)

    def all(self) -> list[ObjT]:
        """Every match after the cursor, in order (at most `limit` if one is set)."""
        return self.page().items

    def first(self) -> ObjT | None:
        """The first match in order (after the cursor), or None."""
        items = self.limit(1).page().items
        return items[0] if items else None

    def count(self) -> int:
        """How many objects match the clauses (cursor, limit and order play no part)."""
        return sum(len(matched) for _, matched in self._matches())

    def explain(self) -> Plan:
        """The plan `page()` would run, with each index lookup's key count (see the module docstring)."""
        sources = []
        cluster_steps = [PlanStep(str(c), note="selects sources") for c in self._clauses if isinstance(c, _Cluster)]
        for cluster, indexer, selected in self._selected_sources():
            if not selected:
                sources.append(SourcePlan(cluster, len(indexer), tuple(cluster_steps), 0, excluded=True))
                continue
            steps, candidates, _ = self._read(cluster, indexer)
            sources.append(SourcePlan(cluster, len(indexer), (*cluster_steps, *steps), len(candidates)))
        order = (*(str(f) for f in self._order), "cluster", "key")
        return Plan(tuple(sources), order, self._limit, self._cursor is not None)

    def __repr__(self) -> str:
        parts = [str(c) for c in self._clauses]
        if self._order:
            parts.append(f"order_by {self._ordering()}")
        if self._limit is not None:
            parts.append(f"limit {self._limit}")
        if self._cursor is not None:
            parts.append("after cursor")
        clusters = ",".join(name for name, _ in self._sources)
        return f"Query[{clusters}]({'; '.join(parts)})"


def _evaluate(candidates: list[tuple[str, Any]], predicates: list[Callable[[Any], bool]]) -> list[tuple[str, Any]]:
    """The candidates satisfying every predicate, evaluated in order, stopping at the first false."""
    if not predicates:
        return candidates
    if len(predicates) == 1:
        only = predicates[0]
        return [kv for kv in candidates if only(kv[1])]
    out = []
    for kv in candidates:
        obj = kv[1]
        for predicate in predicates:
            if not predicate(obj):
                break
        else:
            out.append(kv)
    return out
