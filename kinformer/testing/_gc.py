"""Deletion with propagation: the fake API server's minimal garbage collector.

`FakeApiServer(garbage_collector=True)` turns it on; it is off by default, like a cluster
with no kube-controller-manager: deleting an owner then leaves its dependents in place and
`propagationPolicy` has no effect (it is still validated).

Invariants:
- A dependent is an object whose `metadata.ownerReferences` names the deleted object's uid
  (the uid alone decides; uids are unique). Dependents of every resource are found.
- Collection is synchronous: every write it causes happens inside the delete call that
  triggered it (over HTTP or from Python), each as its own event with its own
  resourceVersion, so the whole cascade is visible as soon as the delete returns. The real
  collector is asynchronous; a client can tell only by timing.
- `propagationPolicy` (DeleteOptions body or query parameter):
  - `Background` (the default): the owner is deleted first, then its dependents level by
    level (breadth first), cascading to their own dependents.
  - `Foreground`: dependents are deleted before their owner (depth first). The owner's
    intermediate state (`deletionTimestamp` and the `foregroundDeletion` finalizer) is not
    shown: the owner simply goes last.
  - `Orphan`: the owner's reference is removed from each dependent (one MODIFIED each), then
    the owner is deleted.
  Anything else is 422 Invalid, as the real server answers. The owner's preconditions are
  checked before any dependent is touched.
- A dependent that still has another owner that exists is not deleted; its references to
  owners that are gone (or going, in Foreground) are removed instead, as the real
  collector does.
- Finalizers and `blockOwnerDeletion` are not modelled: every delete is immediate.
"""

from __future__ import annotations

from collections import deque

from kinformer.resources import Resource
from kinformer.testing._cluster import Cluster
from kinformer.testing._wire import Obj, StatusError

POLICIES = ("Background", "Foreground", "Orphan")

_Ref = tuple[Resource, str]  # (resource, key) of a stored object


def _owner_uids(obj: Obj) -> list[str]:
    refs = obj["metadata"].get("ownerReferences") or ()
    return [str(r["uid"]) for r in refs if isinstance(r, dict) and r.get("uid")]


class GarbageCollector:
    def __init__(self, cluster: Cluster, enabled: bool) -> None:
        self.cluster = cluster
        self.enabled = enabled

    def delete(self, resource: Resource, name: str, namespace: str | None = None, *,
               propagation_policy: str | None = None, preconditions: Obj | None = None) -> Obj:
        """Delete one object and, when collection is on, its dependents as the policy says."""
        policy = propagation_policy or "Background"
        if policy not in POLICIES:
            raise StatusError(422, "Invalid", "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: "
                              f"Unsupported value: \"{policy}\": supported values: \"Foreground\", "
                              "\"Background\", \"Orphan\", \"nil\"")
        cluster = self.cluster
        if not self.enabled:
            return cluster.delete(resource, name, namespace, preconditions)
        owner = cluster.check_preconditions(resource, name, namespace, preconditions)
        uid = str(owner["metadata"].get("uid", ""))
        index, live = self._scan()
        if policy == "Background":
            gone = cluster.delete(resource, name, namespace)
            live.discard(uid)
            self._collect_background(uid, index, live)
            return gone
        if policy == "Orphan":
            for ref in index.get(uid, ()):
                obj = self._current(ref)
                if obj is not None:
                    self._drop_owner_refs(ref[0], obj, {uid})
        else:
            self._collect_foreground(uid, index, live, {uid})
        return cluster.delete(resource, name, namespace)

    # -- the cascade --------------------------------------------------------------------------

    def _scan(self) -> tuple[dict[str, list[_Ref]], set[str]]:
        """Dependents by owner uid, and the uids of all stored objects (one pass over all)."""
        index: dict[str, list[_Ref]] = {}
        live: set[str] = set()
        for resource, info in self.cluster.resources.items():
            for key, obj in info.objects.items():
                live.add(str(obj["metadata"].get("uid", "")))
                for owner in _owner_uids(obj):
                    index.setdefault(owner, []).append((resource, key))
        return index, live

    def _current(self, ref: _Ref) -> Obj | None:
        return self.cluster.resources[ref[0]].objects.get(ref[1])

    def _delete(self, resource: Resource, obj: Obj) -> None:
        meta = obj["metadata"]
        self.cluster.delete(resource, meta["name"], meta.get("namespace"))

    def _drop_owner_refs(self, resource: Resource, obj: Obj, gone: set[str]) -> None:
        """Store `obj` without its references to the owners in `gone`."""
        meta = obj["metadata"]
        kept = [r for r in meta.get("ownerReferences") or () if not (isinstance(r, dict) and r.get("uid") in gone)]
        new_meta = {k: v for k, v in meta.items() if k != "ownerReferences"}
        if kept:
            new_meta["ownerReferences"] = kept
        self.cluster.update(resource, {**obj, "metadata": new_meta}, meta.get("namespace"))

    def _still_owned(self, resource: Resource, obj: Obj, live: set[str], going: set[str]) -> bool:
        """True when `obj` has an owner that exists and is not going; then it loses the
        references to the others instead of being deleted."""
        owners = _owner_uids(obj)
        if not any(o in live and o not in going for o in owners):
            return False
        self._drop_owner_refs(resource, obj, {o for o in owners if o not in live or o in going})
        return True

    def _collect_background(self, uid: str, index: dict[str, list[_Ref]], live: set[str]) -> None:
        queue = deque([uid])
        while queue:
            for ref in index.get(queue.popleft(), ()):
                obj = self._current(ref)
                if obj is None or self._still_owned(ref[0], obj, live, set()):
                    continue
                dependent = str(obj["metadata"].get("uid", ""))
                self._delete(ref[0], obj)
                live.discard(dependent)
                queue.append(dependent)

    def _collect_foreground(self, uid: str, index: dict[str, list[_Ref]], live: set[str], going: set[str]) -> None:
        for ref in index.get(uid, ()):
            obj = self._current(ref)
            if obj is None or self._still_owned(ref[0], obj, live, going):
                continue
            dependent = str(obj["metadata"].get("uid", ""))
            if dependent in going:  # an ownership cycle: it is already being deleted further up
                continue
            going.add(dependent)
            self._collect_foreground(dependent, index, live, going)
            current = self._current(ref)
            if current is not None:
                self._delete(ref[0], current)
            live.discard(dependent)
