"""Discovery: the set of resources to inform when the answer is "every resource".

`discover(api_client)` is kube-controller-manager's `ServerPreferredResources` filtered the
way its garbage collector filters it, with the pitfalls of seed 001 handled:

- Legacy discovery documents: `/api` and `/api/v1` for the core group, `/apis` for the
  groups, then `/apis/{group}/{version}` for every version of every group. Each
  group-resource is informed once, at the group's *preferred* version when that version
  serves it (the other versions are the same objects in etcd), else at the first version
  `/apis` lists that serves it — what client-go's `ServerPreferredResources` does. A
  resource served only by a non-preferred version is not rare: two CRDs sharing a group
  (the Prometheus operator's `alertmanagerconfigs` is v1alpha1 while the group prefers
  v1), or an API whose other kinds graduated.
- A resource is kept when its verbs include `list` and `watch` (`verbs=` to change), its
  name has no `/` (a subresource such as `pods/log`), and its group-resource is not
  excluded: `events` and `events.events.k8s.io` by default (handling events creates more
  of them; kopf's "EVERYTHING" does exactly that).
- A group-version whose document fails (an aggregated API answering 503, typically
  metrics.k8s.io) is tolerated: the result holds the partial set and `failed` names each
  group-version with its error; `/api`, `/api/v1` or `/apis` failing raises (nothing to go on).
  A group-version answering 404 is not a failure: it is gone (a CRD deleted after `/apis`
  was read), and serves nothing.
  As in client-go, a group-resource whose preferred version failed is taken from another
  version of the group that answered, if one serves it.

`ResourceDiscovery` keeps the answer across runs, as the GC's `Sync` does: the resources of
a group-version that failed this time are kept from the previous answer (a flaky aggregated
API does not stop and restart its informers; a kept resource wins over the same
group-resource found at another version this time, so a failing preferred version does not
switch an informer to another version and back), the partial set is logged once per change of
the failed set, and `refresh()` returns what appeared and what disappeared (a CRD created,
a CRD deleted: its group answers 404 or is gone from `/apis`).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from kinformer._logging import get_logger
from kinformer.errors import ConnectionFailedError, DecodeError, KinformerError, NotFoundError
from kinformer.listwatch import _raise_for_status
from kinformer.resources import Resource

DEFAULT_EXCLUDE = frozenset({"events", "events.events.k8s.io"})
DEFAULT_VERBS = frozenset({"list", "watch"})


def group_resource(resource: Resource) -> str:
    """`plural.group` (`deployments.apps`), or the plural alone for the core group."""
    return f"{resource.plural}.{resource.group}" if resource.group else resource.plural


@dataclass(frozen=True, slots=True)
class DiscoveryResult:
    resources: tuple[Resource, ...]
    failed: dict[str, BaseException] = field(default_factory=dict)
    """group-version → the error its discovery document answered with."""
    group_versions: frozenset[str] = frozenset()
    """The group-versions whose documents were read (every served version)."""


async def _get_json(api_client: Any, path: str) -> Any:
    try:
        response: aiohttp.ClientResponse = await api_client.call_api(
            path, "GET", header_params={"Accept": "application/json"}, auth_settings=["BearerToken"],
            _preload_content=False)
    except (aiohttp.ClientConnectionError, OSError) as exc:
        raise ConnectionFailedError(f"cannot reach the API server for discovery ({path}): {exc}") from exc
    except TimeoutError as exc:
        raise ConnectionFailedError(f"timed out reading discovery ({path})") from exc
    await _raise_for_status(response)
    try:
        body = await response.read()
    finally:
        response.release()
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        raise DecodeError(f"discovery document {path} is not JSON ({len(body)} bytes)") from None


def _resources(document: Any, group: str, version: str, verbs: frozenset[str],
               exclude: frozenset[str]) -> list[Resource]:
    out = []
    for entry in (document or {}).get("resources") or ():
        name = entry.get("name") or ""
        if not name or "/" in name:
            continue
        if not verbs <= set(entry.get("verbs") or ()):
            continue
        res = Resource(group, version, name, bool(entry.get("namespaced")), entry.get("kind") or "")
        if group_resource(res) in exclude:
            continue
        out.append(res)
    return out


async def discover(api_client: Any, *, exclude: Iterable[str] = DEFAULT_EXCLUDE,
                   verbs: Iterable[str] = DEFAULT_VERBS) -> DiscoveryResult:
    """The preferred, listable and watchable resources (see the module docstring)."""
    excluded, wanted = frozenset(exclude), frozenset(verbs)
    found: list[Resource] = []
    failed: dict[str, BaseException] = {}
    read: set[str] = set()
    core = await _get_json(api_client, "/api")
    if "v1" in (core.get("versions") or ()):
        found += _resources(await _get_json(api_client, "/api/v1"), "", "v1", wanted, excluded)
        read.add("v1")
    groups = await _get_json(api_client, "/apis")
    for group in groups.get("groups") or ():
        name = group.get("name") or ""
        versions = [v.get("version") for v in group.get("versions") or () if v.get("version")]
        preferred = (group.get("preferredVersion") or {}).get("version") or next(iter(versions), "")
        if not name or not preferred:
            continue
        # The preferred version first, then the others in the order /apis gives (priority).
        chosen: dict[str, Resource] = {}
        for version in [preferred, *(v for v in versions if v != preferred)]:
            gv = f"{name}/{version}"
            try:
                document = await _get_json(api_client, f"/apis/{gv}")
            except NotFoundError:
                continue  # gone between reading /apis and this (a CRD deleted): not a failure
            except KinformerError as error:
                failed[gv] = error
                continue
            read.add(gv)
            for res in _resources(document, name, version, wanted, excluded):
                chosen.setdefault(res.plural, res)
        found += chosen.values()
    return DiscoveryResult(tuple(found), failed, frozenset(read))


@dataclass(frozen=True, slots=True)
class DiscoveryChange:
    added: frozenset[Resource]
    removed: frozenset[Resource]
    current: frozenset[Resource]
    failed: dict[str, BaseException]


class ResourceDiscovery:
    """`discover()` across runs, keeping what failed groups had (see the module docstring)."""

    def __init__(self, api_client: Any, *, exclude: Iterable[str] = DEFAULT_EXCLUDE,
                 verbs: Iterable[str] = DEFAULT_VERBS, cluster: str = "") -> None:
        self.api_client = api_client
        self.exclude = frozenset(exclude)
        self.verbs = frozenset(verbs)
        self.current: frozenset[Resource] = frozenset()
        self.failed: dict[str, BaseException] = {}
        self.log = get_logger("kinformer.discovery", cluster=cluster)

    async def refresh(self) -> DiscoveryChange:
        """Discover again; raises what `discover` raises (then nothing changed)."""
        result = await discover(self.api_client, exclude=self.exclude, verbs=self.verbs)
        kept = {r for r in self.current if r.api_version in result.failed}
        kept_names = {group_resource(r) for r in kept}
        current = frozenset(r for r in result.resources if group_resource(r) not in kept_names) | kept
        if set(result.failed) != set(self.failed):
            if result.failed:
                self.log.warning("discovery failed for some groups; using the partial set",
                                 failed={gv: str(e) for gv, e in sorted(result.failed.items())},
                                 resources=len(current), kept_from_before=len(kept))
            else:
                self.log.info("discovery complete again", resources=len(current))
        change = DiscoveryChange(current - self.current, self.current - current, current, dict(result.failed))
        self.current, self.failed = current, dict(result.failed)
        return change
