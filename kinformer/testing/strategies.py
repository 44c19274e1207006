"""Hypothesis strategies for operator tests: objects, selectors, write sequences, faults, watch streams.

Part of the `testing` extra (`pip install 'kinformer[testing]'`); importing this module
without hypothesis raises `MissingExtraError` naming that extra. `kinformer.testing` itself
never imports hypothesis.

What each strategy promises:
- Objects (`pods`, `config_maps`, `deployments`, `custom_objects`): valid Kubernetes shapes
  as a client creates them — DNS-1123 names, label keys and values the real grammar accepts
  (`label_keys`, `label_values`), owner references with at most one controller. With
  `server_fields=True` they also carry what the server sets (uid, resourceVersion,
  creationTimestamp, generation), for feeding handlers directly. Everything shrinks towards
  the smallest readable object: name `"a"`, no labels, one container.
- `label_selectors()` only generates text that apimachinery's `labels.Parse` accepts (spacing,
  `=`/`==`, empty values, `in ()`, `!k`, `k>n` included); `invalid_label_selectors()` only
  text it refuses; `field_selectors()` only text `fields.ParseSelector` accepts, values
  escaped (`\\,` `\\=` `\\\\`). kinformer's parser is cross-checked against all three and
  against a brute-force matcher (tests/test_strategies.py).
- `write_sequences(resource, keys=...)`: lists of `Create`/`Update`/`Patch`/`Delete`
  (kinformer.testing.steps) that are valid for a server holding `existing` at the start:
  only absent keys are created, only present ones updated, patched or deleted.
- `fault_schedules()`: lists of FakeApiServer faults as data (`FailNext(count=1, code=429,
  retry_after=2.0, verbs=('watch',))`), printable and replayable with `steps.replay`.
- `interleavings(a, b, ...)`: one list holding every element of each drawn list, each list's
  own order kept (so write validity survives merging writes with faults).
- `watch_event_streams()`: raw watch events (`{"type", "object"}` dicts) with strictly
  increasing resourceVersions, ADDED only for absent keys, MODIFIED/DELETED for present ones,
  BOOKMARKs at the current RV, and optionally a final `ERROR` 410 (after which a server
  sends nothing). `b"".join(orjson.dumps(e) + b"\\n" for e in events)` is the wire form.

Parameters that take a value take a strategy too (`namespace="prod"` or
`namespace=st.sampled_from(["a", "b"])`); `namespace=None` means cluster-scoped.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any, TypeVar, cast

from kinformer.errors import InvalidArgumentError, MissingExtraError
from kinformer.resources import Resource
from kinformer.testing.steps import (
    FAULTS,
    ClearFaults,
    Compact,
    Create,
    Delete,
    DropWatches,
    DropWatchesAfter,
    FailNext,
    Fault,
    MalformedLines,
    Patch,
    SlowWrites,
    StallWatches,
    Update,
    Write,
    split_key,
)

try:
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy
except ImportError as error:  # pragma: no cover - exercised in a subprocess without hypothesis
    raise MissingExtraError("kinformer.testing.strategies", "hypothesis", "testing") from error

__all__ = [
    "ObjectsFor",
    "config_maps",
    "custom_objects",
    "deployments",
    "dns_labels",
    "dns_subdomains",
    "fault_schedules",
    "faults",
    "field_selectors",
    "interleavings",
    "invalid_label_selectors",
    "label_keys",
    "label_selectors",
    "label_values",
    "labels",
    "objects_for",
    "owner_references",
    "pods",
    "resource_versions",
    "watch_event_streams",
    "write_sequences",
]

T = TypeVar("T")
Obj = dict[str, Any]
ObjectsFor = Callable[[str | None, str], SearchStrategy[Obj]]
"""(namespace, name) → a strategy of full objects with that name: the bodies of creates and updates."""

_LOWER_ALNUM = "abcdefghijklmnopqrstuvwxyz0123456789"
_ALNUM = _LOWER_ALNUM + "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
_CREATION_TIMESTAMP = "2026-01-01T00:00:00Z"


def _strategy(value: T | SearchStrategy[T] | None, default: SearchStrategy[T]) -> SearchStrategy[T]:
    if value is None:
        return default
    if isinstance(value, SearchStrategy):
        return value
    return st.just(value)


def _pick(draw: st.DrawFn, value: T | SearchStrategy[T] | None, default: SearchStrategy[T]) -> T:
    """Draw `value` if it is a strategy, `default` if it is None, else take it as is.

    Composites draw only strategies built once (module constants, cached builders): a strategy
    built inside a draw is validated on every draw, which costs more than drawing it.
    """
    if value is None:
        return draw(default)
    if isinstance(value, SearchStrategy):
        return cast("T", draw(value))
    return value


# -- names, labels, metadata ----------------------------------------------------------------


@functools.cache
def _bounded_name(ends: str, middle: str, max_size: int) -> SearchStrategy[str]:
    """`ends` at both ends, `middle` between, at most `max_size` characters."""
    end = st.sampled_from(ends)
    between = st.text(middle, max_size=max(max_size - 2, 0))

    @st.composite
    def name(draw: st.DrawFn) -> str:
        first = draw(end)
        rest = draw(between) if max_size > 1 else ""
        return first + rest + draw(end) if rest else first
    return name()


@functools.cache
def dns_labels(max_size: int = 63) -> SearchStrategy[str]:
    """RFC 1123 labels (`[a-z0-9]([-a-z0-9]*[a-z0-9])?`, ≤ 63): names of most objects and namespaces."""
    return _bounded_name(_LOWER_ALNUM, _LOWER_ALNUM + "-", min(max_size, 63))


@functools.cache
def dns_subdomains(max_labels: int = 3) -> SearchStrategy[str]:
    """RFC 1123 subdomains (dot-separated labels, ≤ 253): label key prefixes, most object names."""
    return st.lists(dns_labels(max_size=40), min_size=1, max_size=max_labels).map(".".join)


@functools.cache
def _label_names(max_size: int = 63) -> SearchStrategy[str]:
    return _bounded_name(_ALNUM, _ALNUM + "-_.", max_size)


@functools.cache
def label_keys() -> SearchStrategy[str]:
    """Qualified names: `name` or `prefix/name` (prefix a DNS subdomain, name ≤ 63 of `[-A-Za-z0-9_.]`)."""
    return st.one_of(_label_names(), st.tuples(dns_subdomains(), _label_names()).map("/".join))


@functools.cache
def label_values() -> SearchStrategy[str]:
    """Label values: empty, or ≤ 63 of `[-A-Za-z0-9_.]` beginning and ending alphanumeric."""
    return st.one_of(_label_names(), st.just(""))


@functools.cache
def labels(keys: SearchStrategy[str] | None = None, values: SearchStrategy[str] | None = None, *,
           max_size: int = 3) -> SearchStrategy[dict[str, str]]:
    return st.dictionaries(_strategy(keys, label_keys()), _strategy(values, label_values()), max_size=max_size)


@functools.cache
def resource_versions() -> SearchStrategy[str]:
    """Opaque to clients, but the server's are decimal integers: so are these."""
    return st.integers(1, 10**12).map(str)


@functools.cache
def _uids() -> SearchStrategy[str]:
    return st.uuids().map(str)


@st.composite
def owner_references(draw: st.DrawFn, *, kind: str = "ReplicaSet", api_version: str = "apps/v1",
                     names: SearchStrategy[str] | None = None, max_size: int = 2) -> list[Obj]:
    """ownerReferences with distinct uids; at most one has `controller: true` (the API requires it)."""
    refs = draw(st.lists(st.tuples(_strategy(names, dns_labels()), _uids()), max_size=max_size,
                         unique_by=lambda t: t[1]))  # drawn once per object: built here is fine
    controller = draw(st.sampled_from([None, *range(len(refs))])) if refs else None
    return [{"apiVersion": api_version, "kind": kind, "name": name, "uid": uid, "controller": i == controller,
             "blockOwnerDeletion": i == controller} for i, (name, uid) in enumerate(refs)]


_NO_OWNERS: SearchStrategy[list[Obj]] = st.just([])
_GENERATIONS = st.integers(1, 5)


def _metadata(draw: st.DrawFn, name: str | SearchStrategy[str] | None, namespace: str | SearchStrategy[str] | None,
              lbls: dict[str, str] | SearchStrategy[dict[str, str]] | None,
              owners: list[Obj] | SearchStrategy[list[Obj]] | None, server_fields: bool) -> Obj:
    meta: Obj = {"name": _pick(draw, name, dns_labels())}
    if namespace is not None:
        meta["namespace"] = _pick(draw, namespace, dns_labels())
    drawn = _pick(draw, lbls, labels())
    if drawn:
        meta["labels"] = dict(drawn)
    refs = _pick(draw, owners, _NO_OWNERS)
    if refs:
        meta["ownerReferences"] = list(refs)
    if server_fields:
        meta.update(uid=draw(_uids()), resourceVersion=draw(resource_versions()),
                    creationTimestamp=_CREATION_TIMESTAMP, generation=draw(_GENERATIONS))
    return meta


# -- objects ----------------------------------------------------------------------------------


_PHASES = ("Pending", "Running", "Succeeded", "Failed", "Unknown")
_PHASE = st.sampled_from(_PHASES)
_NODES: SearchStrategy[str | None] = st.sampled_from([None, "node-a", "node-b", "node-c"])
_CONTAINERS = st.lists(dns_labels(max_size=12), min_size=1, max_size=2, unique=True)


@st.composite
def pods(draw: st.DrawFn, *, name: str | SearchStrategy[str] | None = None,
         namespace: str | SearchStrategy[str] | None = "default",
         labels: dict[str, str] | SearchStrategy[dict[str, str]] | None = None,
         node_names: SearchStrategy[str | None] | None = None,
         phases: SearchStrategy[str] | None = None,
         owners: list[Obj] | SearchStrategy[list[Obj]] | None = None,
         containers: list[str] | SearchStrategy[list[str]] | None = None,
         server_fields: bool = False) -> Obj:
    """Pods: `containers` (names; default 1 or 2), `spec.nodeName` from `node_names` (None:
    unscheduled; default a pool of three nodes, so pods collide on nodes), `status.phase`
    from `phases`."""
    meta = _metadata(draw, name, namespace, labels, owners, server_fields)
    containers = _pick(draw, containers, _CONTAINERS)
    spec: Obj = {"containers": [{"name": c, "image": f"registry.example/{c}:1"} for c in containers]}
    node = _pick(draw, node_names, _NODES)
    if node is not None:
        spec["nodeName"] = node
    phase = _pick(draw, phases, _PHASE)
    return {"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": phase}}


# IsConfigMapKey: [-._a-zA-Z0-9]+, not "." or ".."; label names are a subset.
_CONFIG_DATA = st.dictionaries(_label_names(max_size=20), st.text(max_size=12), max_size=3)


@st.composite
def config_maps(draw: st.DrawFn, *, name: str | SearchStrategy[str] | None = None,
                namespace: str | SearchStrategy[str] | None = "default",
                labels: dict[str, str] | SearchStrategy[dict[str, str]] | None = None,
                data: dict[str, str] | SearchStrategy[dict[str, str]] | None = None,
                owners: list[Obj] | SearchStrategy[list[Obj]] | None = None,
                server_fields: bool = False) -> Obj:
    meta = _metadata(draw, name, namespace, labels, owners, server_fields)
    body = dict(_pick(draw, data, _CONFIG_DATA))
    return {"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": body}


_IMAGE_TAGS = st.integers(1, 3)
_REPLICAS = st.integers(0, 5)


@st.composite
def deployments(draw: st.DrawFn, *, name: str | SearchStrategy[str] | None = None,
                namespace: str | SearchStrategy[str] | None = "default",
                labels: dict[str, str] | SearchStrategy[dict[str, str]] | None = None,
                replicas: int | SearchStrategy[int] | None = None,
                owners: list[Obj] | SearchStrategy[list[Obj]] | None = None,
                server_fields: bool = False) -> Obj:
    """apps/v1 Deployments whose `spec.selector.matchLabels` (non-empty, as apps/v1 requires)
    select their own pod template."""
    meta = _metadata(draw, name, namespace, labels, owners, server_fields)
    selector = {"app": meta["name"]}
    template_labels = {**meta.get("labels", {}), **selector}
    image = f"registry.example/{meta['name']}:{draw(_IMAGE_TAGS)}"
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": meta,
        "spec": {"replicas": _pick(draw, replicas, _REPLICAS), "selector": {"matchLabels": selector},
                 "template": {"metadata": {"labels": template_labels},
                              "spec": {"containers": [{"name": "app", "image": image}]}}},
    }


_JSON = st.recursive(st.one_of(st.integers(-1000, 1000), st.booleans(), st.text(max_size=8)), lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(dns_labels(max_size=8), inner, max_size=3)), max_leaves=6)
_SPECS = st.dictionaries(dns_labels(max_size=8), _JSON, max_size=3)


@st.composite
def custom_objects(draw: st.DrawFn, group: str, version: str, kind: str, *,
                   spec: Obj | SearchStrategy[Obj] | None = None,
                   name: str | SearchStrategy[str] | None = None,
                   namespace: str | SearchStrategy[str] | None = "default",
                   labels: dict[str, str] | SearchStrategy[dict[str, str]] | None = None,
                   owners: list[Obj] | SearchStrategy[list[Obj]] | None = None,
                   server_fields: bool = False) -> Obj:
    """Objects of a custom resource (`namespace=None` for a cluster-scoped one); `spec` defaults
    to small JSON objects — pass your CRD's shape to generate meaningful ones."""
    meta = _metadata(draw, name, namespace, labels, owners, server_fields)
    body = _pick(draw, spec, _SPECS)
    return {"apiVersion": f"{group}/{version}", "kind": kind, "metadata": meta, "spec": body}


# -- selectors ----------------------------------------------------------------------------------


_SPACE = st.sampled_from(["", "", " ", "  ", "\t", "\r\n"])
_FORMS = st.sampled_from(["=", "exists", "!", "==", "!=", "in", "notin", ">", "<"])
# A label value that Go's ParseInt reads: digits only (a sign is not a valid label value).
_NUMBERS = st.integers(0, 10**6).map(str) | st.integers(0, 99).map(lambda n: f"00{n}")


@functools.cache
def _value_lists(values: SearchStrategy[str]) -> SearchStrategy[list[str]]:
    return st.lists(values, max_size=3)


@st.composite
def _label_requirement(draw: st.DrawFn, keys: SearchStrategy[str], values: SearchStrategy[str]) -> str:
    key = draw(keys)
    s = _SPACE
    form = draw(_FORMS)
    if form == "exists":
        return key
    if form == "!":
        return f"!{draw(s)}{key}"
    if form in ("in", "notin"):
        items = draw(_value_lists(values))
        inner = ",".join(f"{draw(s)}{v}{draw(s)}" for v in items)
        return f"{key} {form}{draw(s)}({inner})"
    if form in (">", "<"):
        number = draw(_NUMBERS)
        return f"{key}{draw(s)}{form}{draw(s)}{number}"
    return f"{key}{draw(s)}{form}{draw(s)}{draw(values)}"


@st.composite
def label_selectors(draw: st.DrawFn, keys: SearchStrategy[str] | None = None,
                    values: SearchStrategy[str] | None = None, *, min_size: int = 0, max_size: int = 3) -> str:
    """Label selector text the server accepts (`app=web,tier notin (db),!legacy`).

    Pass small `keys`/`values` pools (`st.sampled_from([...])`) to make selectors and the
    objects' labels overlap; the defaults cover the whole grammar."""
    reqs = draw(st.lists(_label_requirement(_strategy(keys, label_keys()), _strategy(values, label_values())),
                         min_size=min_size, max_size=max_size))
    return ",".join(f"{draw(_SPACE)}{r}{draw(_SPACE)}" for r in reqs)


@functools.cache
def _invalid_keys() -> SearchStrategy[str]:
    name = _label_names(max_size=20)
    return st.one_of(
        name.map(lambda n: f"-{n}"), name.map(lambda n: f"{n}_"), st.just("a" * 64),
        name.map(lambda n: f"Example.com/{n}"), name.map(lambda n: f"/{n}"), name.map(lambda n: f"{n}/"),
        name.map(lambda n: f"a/b/{n}"), name.map(lambda n: f"{n}$"), st.just("a" * 254 + "/b"),
    )


@functools.cache
def _invalid_values() -> SearchStrategy[str]:
    name = _label_names(max_size=20)
    return st.one_of(name.map(lambda n: f"-{n}"), name.map(lambda n: f"{n}."), st.just("v" * 64),
                     name.map(lambda n: f"{n}$"))


@st.composite
def _invalid_term(draw: st.DrawFn) -> str:
    key = draw(_label_names(max_size=12))
    value = draw(_label_names(max_size=12))
    bad_key = draw(_invalid_keys())
    bad_value = draw(_invalid_values())
    return draw(st.sampled_from([
        bad_key, f"{bad_key}={value}", f"!{bad_key}", f"{bad_key} in ({value})",
        f"{key}={bad_value}", f"{key}!={bad_value}", f"{key} notin ({value},{bad_value})",
        f"{key} in {value}", f"{key} in ({value}", f"{key} in ({value} {value})", f"{key} notin",
        f"{key} {value}", f"{key}>{value}x", f"{key}<1.5", f"{key}>-1", f"{key}>1_0", f"{key}>",
        f"!{key}={value}", f"={value}", f"{key}={value}={value}", f"{key}({value})", f"{key}>=1",
        f"{key}!", f"{key} in (({value}))", f"!{key} in ({value})", "!", "(", ")",
    ]))


@st.composite
def invalid_label_selectors(draw: st.DrawFn) -> str:
    """Label selector text the server refuses: one bad requirement (a bad key or value, a
    malformed operator or value list, a non-integer for `>`/`<`) or an empty one (`a,,b`,
    `a,`, `,a`) among valid ones."""
    valid = draw(st.lists(_label_requirement(_label_names(max_size=12), _label_names(max_size=12)), max_size=2))
    bad = draw(st.one_of(_invalid_term(), st.just("")))
    at = draw(st.integers(0, len(valid)))
    terms = [*valid[:at], bad, *valid[at:]]
    if bad == "" and len(terms) == 1:
        terms.append(draw(_label_names(max_size=12)))  # a lone "" would be the empty selector
    return ",".join(terms)


_FIELD_PATHS = ("metadata.name", "metadata.namespace")


def _escape_field_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace(",", "\\,").replace("=", "\\=")


@st.composite
def field_selectors(draw: st.DrawFn, fields: Sequence[str] = _FIELD_PATHS,
                    values: SearchStrategy[str] | None = None, *, min_size: int = 0, max_size: int = 3) -> str:
    """Field selector text the server parses (`metadata.name=a,status.phase!=Failed`).

    Values are escaped as `fields.EscapeValue` does; the default values include `,` `=` `\\`
    and `!` so escaping is exercised. Empty terms (`a=b,`) appear too: the server skips them.
    Whether a path is *supported* for a resource is the server's business (FakeApiServer
    knows each built-in's fields): pass the ones your resource has."""
    value_strategy = _strategy(values, st.text(alphabet="ab01-.,=\\!", max_size=6))
    terms = draw(st.lists(st.tuples(st.sampled_from(list(fields)), st.sampled_from(["=", "==", "!="]),
                                    value_strategy), min_size=min_size, max_size=max_size))
    rendered = [f"{path}{op}{_escape_field_value(value)}" for path, op, value in terms]
    empty_term: bool = draw(st.booleans())
    if rendered and empty_term:
        rendered.insert(draw(st.integers(0, len(rendered))), "")
    return ",".join(rendered)


# -- write sequences --------------------------------------------------------------------------


def _resource(resource: str | Resource) -> Resource:
    return Resource.builtin(resource) if isinstance(resource, str) else resource


_POOL_LABELS = labels(st.sampled_from(["app", "tier", "example.com/team"]), st.sampled_from(["a", "b", ""]),
                      max_size=2)
_POOL_DATA = st.dictionaries(st.sampled_from(["k", "v"]), st.sampled_from(["0", "1", "2"]), max_size=2)
_ONE_CONTAINER = st.just(["app"])


def objects_for(resource: str | Resource) -> ObjectsFor:
    """The default bodies of `resource`'s writes: `pods()`, `config_maps()` or `deployments()`
    for those, else a bare object with labels (FakeApiServer takes any shape; pass
    `objects=` for a custom resource whose controller reads its spec).

    They vary what handlers and selectors read — labels from a small pool (`app`, `tier`,
    `example.com/team` = `a`, `b` or empty, so selectors match some), nodes, phases, data,
    replicas — and nothing else: a sequence of writes then has few choices to shrink, which
    keeps a state machine's shrinking to seconds.
    """
    res = _resource(resource)

    def bodies(namespace: str | None, name: str) -> SearchStrategy[Obj]:
        if res == Resource.pods:
            return pods(name=name, namespace=namespace, labels=_POOL_LABELS, containers=_ONE_CONTAINER)
        if res == Resource.configmaps:
            return config_maps(name=name, namespace=namespace, labels=_POOL_LABELS, data=_POOL_DATA)
        if res == Resource.deployments:
            return deployments(name=name, namespace=namespace, labels=_POOL_LABELS)
        return _bare_objects(res.api_version, res.kind, name, namespace)
    return bodies


@st.composite
def _bare_objects(draw: st.DrawFn, api_version: str, kind: str, name: str, namespace: str | None) -> Obj:
    meta = _metadata(draw, name, namespace, _POOL_LABELS, None, False)
    return {"apiVersion": api_version, "kind": kind, "metadata": meta}


@functools.cache
def _label_patches() -> SearchStrategy[Obj]:
    """Merge patches any kind takes: set or remove (None) a few labels."""
    return st.dictionaries(st.sampled_from(["app", "tier", "example.com/team"]),
                           st.one_of(st.sampled_from(["a", "b"]), st.none()), min_size=1, max_size=2).map(
        lambda changes: {"metadata": {"labels": changes}})


def _default_keys(resource: Resource) -> tuple[str, ...]:
    if resource.namespaced:
        return ("default/a", "default/b", "default/c", "other/a")
    return ("a", "b", "c")


@st.composite
def write_sequences(draw: st.DrawFn, resource: str | Resource = "configmaps", keys: Sequence[str] | None = None, *,
                    objects: ObjectsFor | None = None, patches: SearchStrategy[Obj] | None = None,
                    existing: Sequence[str] = (), verbs: Sequence[str] = ("update", "patch", "delete"),
                    min_size: int = 0, max_size: int = 20) -> list[Write]:
    """Writes valid for a server that holds exactly `existing` (keys) of `resource` at the start.

    Each element picks a key from `keys` ("ns/name"; "name" for cluster-scoped; default
    four keys in two namespaces, so writes collide): an absent key is created, a present
    one gets one of `verbs` (update: a new body from `objects`; patch: a merge patch from
    `patches`, default label changes; delete). Shrinks towards fewer, earlier-key writes.
    """
    res = _resource(resource)
    pool = list(keys) if keys is not None else list(_default_keys(res))
    if not pool:
        raise InvalidArgumentError("write_sequences needs at least one key")
    bodies = objects or objects_for(res)
    patch_bodies = patches if patches is not None else _label_patches()
    name_of = {key: split_key(key) for key in pool}
    for key in pool:
        if res.namespaced and name_of[key][0] is None:
            name_of[key] = ("default", key)
    plan = draw(st.lists(st.tuples(st.sampled_from(pool), st.sampled_from(list(verbs))),
                         min_size=min_size, max_size=max_size))
    live = set(existing)
    label = resource  # as the caller named it: `'pods'` prints shorter than a Resource
    out: list[Write] = []
    for key, verb in plan:
        namespace, name = name_of[key]
        if key not in live:
            out.append(Create(label, draw(bodies(namespace, name))))
            live.add(key)
        elif verb == "update":
            out.append(Update(label, draw(bodies(namespace, name))))
        elif verb == "patch":
            out.append(Patch(label, name, namespace, draw(patch_bodies)))
        else:
            out.append(Delete(label, name, namespace))
            live.discard(key)
    return out


# -- faults -----------------------------------------------------------------------------------


def _fault(kind: type[Fault], max_count: int, codes: Sequence[int], retry_after: Sequence[float],
           verbs: Sequence[tuple[str, ...] | None]) -> SearchStrategy[Fault]:
    counts = st.integers(1, max_count)
    if kind is FailNext:
        return st.builds(FailNext, counts, st.sampled_from(list(codes)),
                         st.sampled_from([None, *retry_after]), st.sampled_from(list(verbs)))
    if kind is DropWatchesAfter:
        return st.builds(DropWatchesAfter, st.integers(1, 5))
    if kind is MalformedLines:
        return st.builds(MalformedLines, counts)
    if kind is StallWatches:
        return st.builds(StallWatches, st.booleans().map(lambda b: not b))
    if kind is SlowWrites:
        return st.builds(SlowWrites, st.sampled_from([0.001, 0.005, 0.0]))
    if kind in (DropWatches, Compact, ClearFaults):
        return st.just(kind())
    raise InvalidArgumentError(f"not a fault kind: {kind!r} (one of kinformer.testing.steps.FAULTS)")


def faults(kinds: Sequence[type[Fault]] = FAULTS, *, max_count: int = 3, codes: Sequence[int] = (429, 500, 503),
           retry_after: Sequence[float] = (1.0, 5.0),
           verbs: Sequence[tuple[str, ...] | None] = (None, ("watch",), ("list",))) -> SearchStrategy[Fault]:
    """One fault of `kinds`. `FailNext` takes 1 to `max_count` requests of `verbs` (None: any)
    with one of `codes`, maybe with a Retry-After; `SlowWrites` stays in milliseconds (it
    really sleeps). Shrinks towards `DropWatches()`."""
    return st.one_of([_fault(kind, max_count, codes, retry_after, verbs) for kind in kinds])


def fault_schedules(kinds: Sequence[type[Fault]] = FAULTS, *, min_size: int = 0, max_size: int = 6,
                    **options: Any) -> SearchStrategy[list[Fault]]:
    """Lists of `faults(kinds, **options)`: apply in order with `steps.replay`, interleaved
    with writes (`interleavings`) or one per step of a state machine."""
    return st.lists(faults(kinds, **options), min_size=min_size, max_size=max_size)


@st.composite
def interleavings(draw: st.DrawFn, *parts: SearchStrategy[list[Any]]) -> list[Any]:
    """Draw one list from each strategy and merge them, keeping each list's own order."""
    lists = [draw(p) for p in parts]
    order = draw(st.permutations([i for i, items in enumerate(lists) for _ in items]))
    cursors = [iter(items) for items in lists]
    return [next(cursors[i]) for i in order]


# -- watch streams ----------------------------------------------------------------------------


_RV_STEPS = st.integers(1, 3)
_STREAM_DATA = st.dictionaries(st.sampled_from(["k", "v"]), st.text(max_size=6), max_size=2)


def _stream_bodies(namespace: str | None, name: str) -> SearchStrategy[Obj]:
    return _STREAM_DATA.map(lambda data: {"metadata": {"name": name}, "data": data})


def _expired(rv: int) -> Obj:
    return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
            "message": f"too old resource version: {rv} ({rv + 1})", "reason": "Expired", "code": 410}


@st.composite
def watch_event_streams(draw: st.DrawFn, kind: str = "ConfigMap", api_version: str = "v1", *,
                        keys: Sequence[str] = ("default/a", "default/b", "default/c"),
                        objects: ObjectsFor | None = None, start_rv: int = 1, bookmarks: bool = True,
                        errors: bool = True, min_size: int = 0, max_size: int = 20) -> list[Obj]:
    """A watch stream as a server sends it, from `start_rv` (exclusive) on.

    Object events carry full objects with uid and a resourceVersion above every earlier one
    (gaps allowed: the RV is global to the server). A DELETED event carries the last state
    with a new RV, as the server sends it. BOOKMARKs (with `bookmarks`) carry only the current
    RV; with `errors`, the stream may end in an ERROR 410 `Status`.
    """
    bodies = objects or _stream_bodies
    rv = start_rv
    live: dict[str, Obj] = {}
    events: list[Obj] = []
    kinds = ["object", "object", "object", "bookmark"] if bookmarks else ["object"]
    plan = draw(st.lists(st.tuples(st.sampled_from(kinds), st.sampled_from(list(keys)), st.booleans()),
                         min_size=min_size, max_size=max_size))
    for what, key, delete in plan:
        if what == "bookmark":
            events.append({"type": "BOOKMARK", "object": {"kind": kind, "apiVersion": api_version,
                                                           "metadata": {"resourceVersion": str(rv)}}})
            continue
        rv += draw(_RV_STEPS)
        old = live.get(key)
        if old is not None and delete:
            del live[key]
            events.append({"type": "DELETED", "object": {**old, "metadata": {**old["metadata"],
                                                                             "resourceVersion": str(rv)}}})
            continue
        namespace, name = split_key(key)
        body = draw(bodies(namespace, name))
        uid = old["metadata"]["uid"] if old is not None else draw(_uids())
        meta = {**body.get("metadata", {}), "name": name, "uid": uid, "resourceVersion": str(rv)}
        if namespace:
            meta["namespace"] = namespace
        obj = {**body, "apiVersion": api_version, "kind": kind, "metadata": meta}
        events.append({"type": "ADDED" if old is None else "MODIFIED", "object": obj})
        live[key] = obj
    if errors and draw(st.booleans()):
        events.append({"type": "ERROR", "object": _expired(rv)})
    return events
