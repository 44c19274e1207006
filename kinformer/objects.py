"""Object access on plain dicts, and the tombstone of a deletion seen only by relist.

Invariants:
- Objects are the dicts orjson decoded from the wire; nothing here copies or mutates them.
- An object's key is `namespace/name`, or `name` for cluster-scoped objects; a
  `DeletedFinalStateUnknown` yields the key it was created with.
- Accessors return "" (or an empty mapping) for missing fields, never raise, except
  `meta_namespace_key`, which raises `KeyFuncError` when there is no name to key on.
"""

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeAlias

from typing_extensions import TypeVar

from kinformer.errors import KeyFuncError

KubeObject: TypeAlias = dict[str, Any]
"""A Kubernetes object as decoded JSON. Treat it as read-only."""

Obj = KubeObject

ObjT = TypeVar("ObjT", default=KubeObject)
"""What an informer caches and hands to handlers: a `KubeObject` unless a transform makes
it something else (`SharedIndexInformer[KubeObject]` is what an unparameterised one means)."""

KeyFunc = Callable[[Any], str]


@dataclass(frozen=True, slots=True)
class DeletedFinalStateUnknown:
    """A deletion the watch missed and a relist discovered.

    `obj` is the last state kinformer knew (possibly stale), or None if it knew none.
    Compares by value.
    """

    key: str
    obj: Any


def meta_namespace_key(obj: Any) -> str:
    """`ns/name` for namespaced objects, `name` for cluster-scoped ones (client-go's
    `MetaNamespaceKeyFunc`, including its `DeletionHandlingMetaNamespaceKeyFunc` tombstone case)."""
    try:
        meta = obj["metadata"]
        name = meta["name"]
    except (KeyError, TypeError) as exc:
        if isinstance(obj, DeletedFinalStateUnknown):
            return obj.key
        raise KeyFuncError(f"object has no metadata.name: {type(obj).__name__}") from exc
    ns = meta.get("namespace")
    return f"{ns}/{name}" if ns else str(name)


def split_key(key: str) -> tuple[str, str]:
    """Inverse of `meta_namespace_key`: `(namespace, name)`, namespace "" when cluster-scoped."""
    parts = key.split("/")
    if len(parts) == 1:
        return "", parts[0]
    if len(parts) == 2 and parts[0] and parts[1]:
        return parts[0], parts[1]
    raise KeyFuncError(f"unexpected key format: {key!r}")


def _meta(obj: Any) -> Mapping[str, Any]:
    if isinstance(obj, DeletedFinalStateUnknown):
        obj = obj.obj
    if isinstance(obj, dict):
        meta = obj.get("metadata")
        if isinstance(meta, dict):
            return meta
    return {}


def name(obj: Any) -> str:
    return str(_meta(obj).get("name") or "")


def namespace(obj: Any) -> str:
    return str(_meta(obj).get("namespace") or "")


def uid(obj: Any) -> str:
    return str(_meta(obj).get("uid") or "")


def resource_version(obj: Any) -> str:
    return str(_meta(obj).get("resourceVersion") or "")


def labels(obj: Any) -> Mapping[str, str]:
    value = _meta(obj).get("labels")
    return value if isinstance(value, dict) else {}


def annotations(obj: Any) -> Mapping[str, str]:
    value = _meta(obj).get("annotations")
    return value if isinstance(value, dict) else {}


def field_value(obj: Any, path: str) -> str:
    """The value at a dotted path (`status.phase`) as the field-selector string form.

    Missing fields read as "" (so `spec.nodeName=` matches unscheduled pods, as on the
    server); booleans read as "true"/"false"; other scalars as their JSON text.
    """
    if isinstance(obj, DeletedFinalStateUnknown):
        obj = obj.obj
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, dict):
            return ""
        cur = cur.get(part)
        if cur is None:
            return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    if isinstance(cur, str):
        return cur
    if isinstance(cur, int | float):
        return str(cur)
    return ""
