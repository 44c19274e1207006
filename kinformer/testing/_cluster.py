"""The fake API server's state: objects per resource, one resourceVersion counter, history.

Invariants:
- Every write bumps the one global counter and appends exactly one event, so the event
  with resourceVersion `r` is `events[r - first_rv]` (O(1) resume).
- `floor` is the newest RV that can no longer be resumed from: a watch or list at an RV
  below it gets 410. Trimming history or `compact()` raises it.
- Objects are stored whole (with kind/apiVersion); the HTTP layer strips TypeMeta from
  built-in list items as the real server does. Stored objects are never mutated: a write
  stores a new dict, so snapshots and in-flight responses stay consistent.
- `snapshot(resource, rv)` is the state at `rv`, rebuilt by undoing newer events.
"""

from __future__ import annotations

import asyncio
import bisect
import copy
import datetime
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from kinformer.resources import BUILTIN_RESOURCES, Resource

Obj = dict[str, Any]


class ClusterError(Exception):
    """A write the API server would refuse; carries the HTTP code and Status reason."""

    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message


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


def object_key(namespace: str | None, name: str) -> str:
    return f"{namespace}/{name}" if namespace else name


def _now() -> str:
    return datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        self.resources[resource] = ResourceInfo(resource, builtin, frozenset(fields))
        self.by_path[(resource.group, resource.version, resource.plural)] = resource

    def lookup(self, group: str, version: str, plural: str) -> Resource | None:
        return self.by_path.get((group, version, plural))

    def info(self, resource: Resource) -> ResourceInfo:
        info = self.resources.get(resource)
        if info is None:
            raise ClusterError(404, "NotFound", f"the server could not find the requested resource ({resource})")
        return info

    # -- writes ---------------------------------------------------------------------------

    def _append(self, resource: Resource, kind: str, obj: Obj, old: Obj | None) -> None:
        self.events.append(Event(self.rv, resource, kind, obj, old))
        if len(self.events) > self.history_size * 2:
            self.trim()
        self._snapshot_cache.clear()
        changed, self.changed = self.changed, asyncio.Event()
        changed.set()

    def trim(self) -> None:
        """Keep only the last `history_size` events; older RVs become 410."""
        drop = len(self.events) - self.history_size
        if drop > 0:
            self.floor = self.events[drop - 1].rv
            del self.events[:drop]
            self.first_rv = self.events[0].rv if self.events else self.rv + 1

    def compact(self) -> None:
        """Forget all history: every RV before now is 410 Gone."""
        self.events.clear()
        self.floor = self.rv
        self.first_rv = self.rv + 1
        self._snapshot_cache.clear()

    def _next_rv(self) -> str:
        self.rv += 1
        return str(self.rv)

    def _namespace_for(self, resource: Resource, obj: Obj, namespace: str | None) -> str | None:
        meta = obj.get("metadata") or {}
        if not resource.namespaced:
            return None
        ns = namespace or meta.get("namespace") or "default"
        if meta.get("namespace") and namespace and meta["namespace"] != namespace:
            raise ClusterError(400, "BadRequest", "the namespace of the provided object does not match "
                               "the namespace sent on the request")
        return str(ns)

    def create(self, resource: Resource, obj: Obj, namespace: str | None = None) -> Obj:
        info = self.info(resource)
        if not isinstance(obj, dict) or not isinstance(obj.get("metadata"), dict):
            raise ClusterError(400, "BadRequest", "object has no metadata")
        meta_in = obj["metadata"]
        name = meta_in.get("name")
        if not name and meta_in.get("generateName"):
            name = f"{meta_in['generateName']}{uuid.uuid4().hex[:5]}"
        if not name:
            raise ClusterError(422, "Invalid", f"{resource.kind} \"\" is invalid: metadata.name: Required value: "
                               "name or generateName is required")
        ns = self._namespace_for(resource, obj, namespace)
        key = object_key(ns, name)
        if key in info.objects:
            raise ClusterError(409, "AlreadyExists", f"{resource.plural} \"{name}\" already exists")
        new = copy.deepcopy(obj)
        new["apiVersion"] = resource.api_version
        new["kind"] = resource.kind
        meta = new["metadata"]
        meta["name"] = name
        if ns:
            meta["namespace"] = ns
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
            raise ClusterError(404, "NotFound", f"{resource.plural} \"{name}\" not found")
        return obj

    def update(self, resource: Resource, obj: Obj, namespace: str | None = None) -> Obj:
        info = self.info(resource)
        meta_in = obj.get("metadata") or {}
        name = meta_in.get("name", "")
        ns = self._namespace_for(resource, obj, namespace)
        key = object_key(ns, name)
        old = info.objects.get(key)
        if old is None:
            raise ClusterError(404, "NotFound", f"{resource.plural} \"{name}\" not found")
        want_rv = meta_in.get("resourceVersion")
        if want_rv and want_rv != old["metadata"]["resourceVersion"]:
            raise ClusterError(409, "Conflict", f"Operation cannot be fulfilled on {resource.plural} \"{name}\": "
                               "the object has been modified; please apply your changes to the latest "
                               "version and try again")
        new = copy.deepcopy(obj)
        new["apiVersion"] = resource.api_version
        new["kind"] = resource.kind
        meta = new.setdefault("metadata", {})
        old_meta = old["metadata"]
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

    def patch(self, resource: Resource, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        current = self.get(resource, name, namespace)
        merged = merge_patch(current, patch)
        if not isinstance(merged, dict):
            raise ClusterError(422, "Invalid", "patch did not produce an object")
        merged.setdefault("metadata", {})["resourceVersion"] = patch.get("metadata", {}).get("resourceVersion")
        return self.update(resource, merged, namespace)

    def delete(self, resource: Resource, name: str, namespace: str | None = None) -> Obj:
        info = self.info(resource)
        key = object_key(namespace if resource.namespaced else None, name)
        if resource == Resource.customresourcedefinitions and key in info.objects:
            self._unregister_crd(info.objects[key])
        old = info.objects.pop(key, None)
        if old is None:
            raise ClusterError(404, "NotFound", f"{resource.plural} \"{name}\" not found")
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


def page_start(keys: list[str], after: str) -> int:
    return bisect.bisect_right(keys, after)


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
