"""The fake API server's state: objects per resource, one resourceVersion counter, history.

Invariants:
- Every write bumps the one global counter and appends exactly one event, so the event
  with resourceVersion `r` is `events[r - first_rv]` (O(1) resume). Each write, and
  `wake()`, sets `changed` (an `asyncio.Event`) and replaces it with a fresh one, so a
  watch waiting on `changed` wakes once and then sees the new state.
- `floor` is the newest RV that can no longer be resumed from: a watch or list at an RV
  below it gets 410. Trimming history or `compact()` raises it.
- Objects are stored whole (with kind/apiVersion); the HTTP layer strips TypeMeta from
  built-in list items as the real server does. Stored objects are never mutated: a write
  stores a new dict, so snapshots, history and in-flight responses stay consistent.
- `snapshot(resource, rv)` is the state at `rv`, rebuilt by undoing newer events.
- `dump_state()` / `load_state(state)` carry what survives a restart of a real API server
  (what etcd keeps): the objects, the resourceVersion counter and the registered resources.
  History does not survive: after `load_state` the floor is the restored counter, so a watch
  or list at any earlier RV gets 410, as from a kube-apiserver whose watch cache was rebuilt
  by a fresh list. The counter only moves forward: the next write gets restored RV + 1.

Writes follow the real registry strategies where a client can tell:
- `create` honours `generateName` (five random characters appended), sets uid,
  creationTimestamp and `generation: 1` (set for every kind, which the real server does
  only for kinds with a spec).
- `update` keeps uid, creationTimestamp, name and namespace, bumps `generation` only when
  `spec` changes, and answers a stale `metadata.resourceVersion` with 409 Conflict. Without
  a resourceVersion it is unconditional: that is the Python API, the test's god mode.
- `replace` is an HTTP PUT, per resource as its strategy's AllowCreateOnUpdate /
  AllowUnconditionalUpdate say: a PUT of a missing Lease creates it (201); Leases, CRDs and
  custom resources need `metadata.resourceVersion` on PUT (422 Invalid without it); other
  built-ins take an unconditional PUT.
- `patch` is an RFC 7386 merge patch (strategic merge patch is treated as one) followed by
  an update; a `metadata.resourceVersion` in the patch is the same precondition (409).
- `delete` checks DeleteOptions preconditions (uid, resourceVersion) with 409 Conflict.
  It deletes one object; dependents are the garbage collector's business (`_gc`).
- Lease `spec.acquireTime` / `spec.renewTime` are MicroTime: accepted only as RFC 3339 with
  exactly six fractional digits (Go's `RFC3339Micro`; anything else is a 400, as
  kube-apiserver's decoder answers) and stored in UTC, `2026-12-01T10:00:00.000000Z`, as it
  re-encodes them. Beware: Python's `datetime.isoformat()` drops the fraction when
  `microsecond == 0`, so a typed kubernetes_asyncio model re-sent as read is refused by both.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kinformer.resources import BUILTIN_RESOURCES, Resource
from kinformer.testing._wire import Obj, StatusError


@dataclass(slots=True)
class Event:
    rv: int
    resource: Resource
    type: str  # ADDED / MODIFIED / DELETED
    obj: Obj
    old: Obj | None


@dataclass(slots=True)
class ResourceInfo:
    resource: Resource
    builtin: bool
    fields: frozenset[str] = frozenset()
    objects: dict[str, Obj] = field(default_factory=dict)
    unconditional_update: bool = True
    """A PUT without `metadata.resourceVersion` is accepted (AllowUnconditionalUpdate)."""
    create_on_update: bool = False
    """A PUT of a missing object creates it (AllowCreateOnUpdate)."""


# Field selectors each built-in supports beyond metadata.name / metadata.namespace
# (a subset of the server's field label conversion functions).
_BUILTIN_FIELDS: dict[str, frozenset[str]] = {
    "pods": frozenset({"spec.nodeName", "spec.restartPolicy", "spec.schedulerName",
                       "spec.serviceAccountName", "status.phase", "status.podIP",
                       "status.nominatedNodeName"}),
    "secrets": frozenset({"type"}),
    "events": frozenset({"involvedObject.kind", "involvedObject.namespace", "involvedObject.name",
                         "involvedObject.uid", "involvedObject.apiVersion",
                         "involvedObject.resourceVersion", "involvedObject.fieldPath", "reason",
                         "reportingComponent", "source", "type"}),
    "namespaces": frozenset({"status.phase"}),
    "nodes": frozenset({"spec.unschedulable"}),
    "replicasets": frozenset({"status.replicas"}),
    "jobs": frozenset({"status.successful"}),
}

# (AllowUnconditionalUpdate, AllowCreateOnUpdate) of the built-ins whose strategy is not
# (True, False); registered custom resources are (False, False), as the CR strategy says.
_PUT_POLICY: dict[str, tuple[bool, bool]] = {
    "leases": (False, True),
    "customresourcedefinitions": (False, False),
}

# MicroTime fields of built-ins, as (parent field, field).
_MICROTIME_FIELDS: dict[str, tuple[tuple[str, str], ...]] = {
    "leases": (("spec", "acquireTime"), ("spec", "renewTime")),
}
_RFC3339_MICRO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)")


def object_key(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _canonical_micro_times(resource: Resource, obj: Obj) -> None:
    """Rewrite the MicroTime fields of `obj` (a fresh copy, not yet stored) in UTC form."""
    for parent_name, name in _MICROTIME_FIELDS.get(resource.plural, ()):
        parent = obj.get(parent_name)
        value = parent.get(name) if isinstance(parent, dict) else None
        if value is None:
            continue
        if not isinstance(value, str) or not _RFC3339_MICRO.fullmatch(value):
            raise StatusError(400, "BadRequest", f"{resource.kind} in version \"{resource.version}\" cannot be "
                              f"handled as a {resource.kind}: parsing time \"{value}\" as "
                              "\"2006-01-02T15:04:05.000000Z07:00\" "
                              f"({parent_name}.{name} is MicroTime: RFC 3339 with exactly six fractional digits)")
        when = datetime.datetime.fromisoformat(value.replace("Z", "+00:00"))
        assert isinstance(parent, dict)
        parent[name] = when.astimezone(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _conflict(resource: Resource, name: str, why: str) -> StatusError:
    return StatusError(409, "Conflict", f"Operation cannot be fulfilled on {resource.plural} \"{name}\": {why}")


class Cluster:
    def __init__(self, history_size: int = 10_000) -> None:
        self.history_size = history_size
        self.rv = 1
        self.floor = 1
        self.events: list[Event] = []
        self.first_rv = 2  # rv of events[0]
        self.resources: dict[Resource, ResourceInfo] = {}
        self.by_path: dict[tuple[str, str, str], Resource] = {}
        self.changed = asyncio.Event()
        self._snapshot_cache: dict[tuple[Resource, int], tuple[dict[str, Obj], list[str]]] = {}
        for res in BUILTIN_RESOURCES:
            self.register(res, fields=_BUILTIN_FIELDS.get(res.plural, frozenset()), builtin=True)

    # -- registry -------------------------------------------------------------------------

    def register(self, resource: Resource, *, fields: Iterable[str] = (), builtin: bool = False) -> None:
        if not resource.kind:
            raise ValueError(f"resource {resource} needs a kind to be served")
        if resource in self.resources:
            return
        unconditional, on_put = _PUT_POLICY.get(resource.plural, (True, False)) if builtin else (False, False)
        self.resources[resource] = ResourceInfo(resource, builtin, frozenset(fields),
                                                unconditional_update=unconditional, create_on_update=on_put)
        self.by_path[(resource.group, resource.version, resource.plural)] = resource

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        return self.by_path.get((group, version, plural))

    def info(self, resource: Resource) -> ResourceInfo:
        info = self.resources.get(resource)
        if info is None:
            raise StatusError(404, "NotFound", f"the server could not find the requested resource ({resource})")
        return info

    # -- writes ---------------------------------------------------------------------------

    def wake(self) -> None:
        """Wake every task waiting on `changed` (a fault or a compaction changed what it sees)."""
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def _append(self, resource: Resource, kind: str, obj: Obj, old: Obj | None) -> None:
        self.events.append(Event(self.rv, resource, kind, obj, old))
        if len(self.events) > self.history_size * 2:
            self.trim()
        self._snapshot_cache.clear()
        self.wake()

    def trim(self) -> None:
        """Keep only the last `history_size` events; older RVs become 410."""
        drop = len(self.events) - self.history_size
        if drop > 0:
            self.floor = self.events[drop - 1].rv
            del self.events[:drop]
            self.first_rv = self.events[0].rv if self.events else self.rv + 1

    def compact(self) -> None:
        """Forget all history: every RV before now is 410 Gone (open watches find out now)."""
        self.events.clear()
        self.floor = self.rv
        self.first_rv = self.rv + 1
        self._snapshot_cache.clear()
        self.wake()

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _namespace_for(self, resource: Resource, obj: Obj, namespace: str | None) -> str | None:
        meta = obj.get("metadata") or {}
        if not resource.namespaced:
            return None
        ns = namespace or meta.get("namespace") or "default"
        if meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise StatusError(400, "BadRequest", "the namespace of the provided object does not match "
                              "the namespace sent on the request")
        return str(ns)

    def create(self, resource: Resource, obj: Obj, namespace: str | None = None) -> Obj:
        info = self.info(resource)
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise StatusError(400, "BadRequest", "object has no metadata")
        meta_in = obj["metadata"]
        name = meta_in.get("name")
        if not name and meta_in.get("generateName"):
            name = f"{meta_in['generateName']}{uuid.uuid4().hex[:5]}"
        if not name:
            raise StatusError(422, "Invalid", f"{resource.kind} \"\" is invalid: metadata.name: Required value: "
                              "name or generateName is required")
        ns = self._namespace_for(resource, obj, namespace)
        key = object_key(ns, name)
        if key in info.objects:
            raise StatusError(409, "AlreadyExists", f"{resource.plural} \"{name}\" already exists")
        new = copy.deepcopy(obj)
        _canonical_micro_times(resource, new)
        new["apiVersion"] = resource.api_version
        new["kind"] = resource.kind
        meta = new["metadata"]
        meta["name"] = name
        if ns:
            meta["namespace"] = ns
        else:  # the real server clears it for cluster-scoped kinds
            meta.pop("namespace", None)
        meta.pop("generateName", None)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = _now()
        meta["generation"] = 1
        meta["resourceVersion"] = self._next_rv()
        info.objects[key] = new
        self._append(resource, "ADDED", new, None)
        if resource == Resource.customresourcedefinitions:
            self._register_crd(new)
        return new

    def get(self, resource: Resource, name: str, namespace: str | None = None) -> Obj:
        info = self.info(resource)
        obj = info.objects.get(object_key(namespace if resource.namespaced else None, name))
        if obj is None:
            raise StatusError(404, "NotFound", f"{resource.plural} \"{name}\" not found")
        return obj

    def update(self, resource: Resource, obj: Obj, namespace: str | None = None) -> Obj:
        info = self.info(resource)
        meta_in = obj.get("metadata") or {}
        name = meta_in.get("name", "")
        ns = self._namespace_for(resource, obj, namespace)
        key = object_key(ns, name)
        old = info.objects.get(key)
        if old is None:
            raise StatusError(404, "NotFound", f"{resource.plural} \"{name}\" not found")
        want_rv = meta_in.get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise _conflict(resource, name, "the object has been modified; please apply your changes to the "
                            "latest version and try again")
        new = copy.deepcopy(obj)
        _canonical_micro_times(resource, new)
        new["apiVersion"] = resource.api_version
        new["kind"] = resource.kind
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
        meta.pop("namespace", None)
        for preserved in ("uid", "creationTimestamp", "namespace", "name"):
            if preserved in old_meta:
                meta[preserved] = old_meta[preserved]
        generation = old_meta.get("generation", 1)
        if new.get("spec") != old.get("spec"):
            generation += 1
        meta["generation"] = generation
        meta["resourceVersion"] = self._next_rv()
        info.objects[key] = new
        self._append(resource, "MODIFIED", new, old)
        return new

    def replace(self, resource: Resource, obj: Obj, namespace: str | None = None) -> tuple[Obj, bool]:
        """An HTTP PUT: `(object, created)`, with the resource's strategy rules (see above)."""
        info = self.info(resource)
        meta_in = obj.get("metadata") or {}
        name = str(meta_in.get("name", ""))
        if object_key(self._namespace_for(resource, obj, namespace), name) not in info.objects:
            if not info.create_on_update:
                raise StatusError(404, "NotFound", f"{resource.plural} \"{name}\" not found")
            # The real server clears a resourceVersion before storing a PUT-created object.
            fresh = {**obj, "metadata": {k: v for k, v in meta_in.items() if k != "resourceVersion"}}
            return self.create(resource, fresh, namespace), True
        if not meta_in.get("resourceVersion") and not info.unconditional_update:
            group = f"{resource.plural}.{resource.group}" if resource.group else resource.plural
            raise StatusError(422, "Invalid", f"{group} \"{name}\" is invalid: metadata.resourceVersion: Invalid "
                              "value: 0x0: must be specified for an update",
                              details={"name": name, "group": resource.group, "kind": resource.plural,
                                       "causes": [{"reason": "FieldValueInvalid", "field": "metadata.resourceVersion",
                                                   "message": "Invalid value: 0x0: must be specified for an update"}]})
        return self.update(resource, obj, namespace), False

    def patch(self, resource: Resource, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        current = self.get(resource, name, namespace)
        merged = merge_patch(current, patch)
        if not isinstance(merged, dict):
            raise StatusError(422, "Invalid", "patch did not produce an object")
        patch_meta = patch.get("metadata")
        want_rv = patch_meta.get("resourceVersion") if isinstance(patch_meta, dict) else None
        # A fresh metadata dict: merge_patch shares sub-dicts the patch did not touch with the
        # stored object, which must not be mutated.
        merged["metadata"] = {**(merged.get("metadata") or {}), "resourceVersion": want_rv,
                              "name": current["metadata"]["name"]}
        return self.update(resource, merged, namespace)

    def check_preconditions(self, resource: Resource, name: str, namespace: str | None,
                            preconditions: Obj | None) -> Obj:
        """The stored object, after checking DeleteOptions preconditions against it (409)."""
        obj = self.get(resource, name, namespace)
        if preconditions:
            meta = obj["metadata"]
            for field_name, label in (("uid", "UID"), ("resourceVersion", "ResourceVersion")):
                want = preconditions.get(field_name)
                if want and want != meta.get(field_name):
                    raise _conflict(resource, name, f"Precondition failed: {label} in precondition: {want}, "
                                    f"{label} in object meta: {meta.get(field_name)}")
        return obj

    def delete(self, resource: Resource, name: str, namespace: str | None = None,
               preconditions: Obj | None = None) -> Obj:
        old = self.check_preconditions(resource, name, namespace, preconditions)
        if resource == Resource.customresourcedefinitions:
            self._unregister_crd(old)
        del self.resources[resource].objects[object_key(namespace if resource.namespaced else None, name)]
        gone = {**old, "metadata": {**old["metadata"], "resourceVersion": self._next_rv()}}
        self._append(resource, "DELETED", gone, old)
        return gone

    def _register_crd(self, crd: Obj) -> None:
        spec = crd.get("spec") or {}
        names = spec.get("names") or {}
        for version in spec.get("versions") or ():
            if version.get("served", True):
                self.register(Resource(spec.get("group", ""), version["name"], names.get("plural", ""),
                                       spec.get("scope", "Namespaced") == "Namespaced", names.get("kind", "")))

    def _unregister_crd(self, crd: Obj) -> None:
        """What the server does before a CRD is gone: delete its objects (DELETED events),
        then stop serving it (requests answer 404, it leaves discovery)."""
        spec = crd.get("spec") or {}
        plural = (spec.get("names") or {}).get("plural", "")
        for version in spec.get("versions") or ():
            resource = self.lookup(spec.get("group", ""), version["name"], plural)
            if resource is None:
                continue
            for obj in list(self.resources[resource].objects.values()):
                meta = obj["metadata"]
                self.delete(resource, meta["name"], meta.get("namespace"))
            del self.resources[resource]
            del self.by_path[(resource.group, resource.version, resource.plural)]

    # -- restart ----------------------------------------------------------------------------

    def dump_state(self) -> Obj:
        """The durable state as plain JSON data (see the module docstring)."""
        return {
            "resourceVersion": self.rv,
            "resources": [
                {"group": r.group, "version": r.version, "plural": r.plural, "namespaced": r.namespaced,
                 "kind": r.kind, "fields": sorted(info.fields), "builtin": info.builtin,
                 "objects": list(info.objects.values())}
                for r, info in self.resources.items()
            ],
        }

    def load_state(self, state: Obj) -> None:
        """Replace every object and the counter with `state` (from `dump_state`); no events."""
        rv = int(state["resourceVersion"])
        if rv < self.rv:
            raise ValueError(f"state at resourceVersion {rv} is older than this server's {self.rv}")
        for entry in state["resources"]:
            resource = Resource(entry["group"], entry["version"], entry["plural"], entry["namespaced"],
                                entry["kind"])
            self.register(resource, fields=entry["fields"], builtin=entry["builtin"])
        for entry in state["resources"]:
            known = self.lookup(entry["group"], entry["version"], entry["plural"])
            assert known is not None
            info = self.resources[known]
            info.objects = {object_key(o["metadata"].get("namespace"), o["metadata"]["name"]): o
                            for o in entry["objects"]}
        self.rv = rv
        self.compact()

    # -- reads ----------------------------------------------------------------------------

    def snapshot(self, resource: Resource, rv: int) -> tuple[dict[str, Obj], list[str]]:
        """Objects of `resource` at `rv` (≥ floor) and their sorted keys."""
        cached = self._snapshot_cache.get((resource, rv))
        if cached is not None:
            return cached
        objects = dict(self.info(resource).objects)
        start = max(rv + 1, self.first_rv) - self.first_rv
        for event in reversed(self.events[start:]):
            if event.resource != resource:
                continue
            meta = event.obj["metadata"]
            key = object_key(meta.get("namespace"), meta["name"])
            if event.type == "ADDED":
                objects.pop(key, None)
            elif event.old is not None:
                objects[key] = event.old
        result = (objects, sorted(objects))
        if len(self._snapshot_cache) > 4:
            self._snapshot_cache.clear()
        self._snapshot_cache[(resource, rv)] = result
        return result

    def events_after(self, rv: int) -> list[Event]:
        """Events with resourceVersion > rv (the caller checked rv ≥ floor)."""
        start = max(rv + 1 - self.first_rv, 0)
        return self.events[start:]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result
