"""`Resource`: which API collection an informer lists and watches, and the paths it maps to.

Invariants:
- A resource is identified by group/version/plural (GVR); `kind` and `list_kind` are for
  display and for completing list items, which the server sends without kind/apiVersion
  for built-in types.
- Paths follow the API server: core group under `/api/v1`, others under `/apis/{g}/{v}`;
  namespaced collections under `namespaces/{ns}/`, the all-namespaces form without it.
- Aliases (`Resource.pods`, `Resource.deployments`, …) cover the common built-ins; any
  custom resource is `Resource("example.com", "v1", "widgets", kind="Widget")`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar


@dataclass(frozen=True, slots=True)
class Resource:
    group: str
    version: str
    plural: str
    namespaced: bool = True
    kind: str = field(default="", compare=False)

    pods: ClassVar[Resource]
    configmaps: ClassVar[Resource]
    secrets: ClassVar[Resource]
    services: ClassVar[Resource]
    serviceaccounts: ClassVar[Resource]
    endpoints: ClassVar[Resource]
    events: ClassVar[Resource]
    persistentvolumeclaims: ClassVar[Resource]
    persistentvolumes: ClassVar[Resource]
    namespaces: ClassVar[Resource]
    nodes: ClassVar[Resource]
    deployments: ClassVar[Resource]
    replicasets: ClassVar[Resource]
    statefulsets: ClassVar[Resource]
    daemonsets: ClassVar[Resource]
    jobs: ClassVar[Resource]
    cronjobs: ClassVar[Resource]
    leases: ClassVar[Resource]
    customresourcedefinitions: ClassVar[Resource]

    @property
    def api_version(self) -> str:
        """`v1` for the core group, `group/version` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version_prefix(self) -> str:
        return f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"

    @property
    def list_kind(self) -> str:
        return f"{self.kind}List" if self.kind else ""

    def collection_path(self, namespace: str | None = None) -> str:
        """The list/watch path: all namespaces when `namespace` is None or the resource is
        cluster-scoped."""
        if self.namespaced and namespace:
            return f"{self.group_version_prefix}/namespaces/{namespace}/{self.plural}"
        return f"{self.group_version_prefix}/{self.plural}"

    def object_path(self, name: str, namespace: str | None = None) -> str:
        return f"{self.collection_path(namespace)}/{name}"

    def __str__(self) -> str:
        return f"{self.plural}.{self.version}.{self.group}" if self.group else f"{self.plural}.{self.version}"

    @classmethod
    def builtin(cls, name: str) -> Resource:
        """A built-in by plural name (`"pods"`), kind (`"Pod"`) or short name (`"deploy"`)."""
        key = name.lower()
        found = _ALIASES.get(key)
        if found is None:
            raise KeyError(f"unknown built-in resource {name!r}; use Resource(group, version, plural)")
        return found


_BUILTINS: dict[str, tuple[str, str, str, bool, tuple[str, ...]]] = {
    "pods": ("", "v1", "Pod", True, ("po",)),
    "configmaps": ("", "v1", "ConfigMap", True, ("cm",)),
    "secrets": ("", "v1", "Secret", True, ()),
    "services": ("", "v1", "Service", True, ("svc",)),
    "serviceaccounts": ("", "v1", "ServiceAccount", True, ("sa",)),
    "endpoints": ("", "v1", "Endpoints", True, ("ep",)),
    "events": ("", "v1", "Event", True, ("ev",)),
    "persistentvolumeclaims": ("", "v1", "PersistentVolumeClaim", True, ("pvc",)),
    "persistentvolumes": ("", "v1", "PersistentVolume", False, ("pv",)),
    "namespaces": ("", "v1", "Namespace", False, ("ns",)),
    "nodes": ("", "v1", "Node", False, ("no",)),
    "deployments": ("apps", "v1", "Deployment", True, ("deploy",)),
    "replicasets": ("apps", "v1", "ReplicaSet", True, ("rs",)),
    "statefulsets": ("apps", "v1", "StatefulSet", True, ("sts",)),
    "daemonsets": ("apps", "v1", "DaemonSet", True, ("ds",)),
    "jobs": ("batch", "v1", "Job", True, ()),
    "cronjobs": ("batch", "v1", "CronJob", True, ("cj",)),
    "leases": ("coordination.k8s.io", "v1", "Lease", True, ()),
    "customresourcedefinitions": ("apiextensions.k8s.io", "v1", "CustomResourceDefinition", False, ("crd",)),
}

_ALIASES: dict[str, Resource] = {}
BUILTIN_RESOURCES: tuple[Resource, ...]


def _register_builtins() -> tuple[Resource, ...]:
    out = []
    for plural, (group, version, kind, namespaced, shorts) in _BUILTINS.items():
        res = Resource(group, version, plural, namespaced, kind)
        setattr(Resource, plural, res)
        for alias in (plural, kind.lower(), *shorts):
            _ALIASES[alias] = res
        out.append(res)
    return tuple(out)


BUILTIN_RESOURCES = _register_builtins()
