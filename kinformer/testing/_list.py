"""LIST semantics of the fake API server: resourceVersion rules, paging, selectors.

Invariants (each is what kube-apiserver does):
- The RV a list is served at: unset/"" → the latest (a consistent read); "0" → the latest
  too (the real server may serve a slightly stale cache; clients must accept both);
  N with `resourceVersionMatch=Exact` → exactly N (410 Expired below `floor`); N otherwise
  (NotOlderThan, or unset) → the latest. N above the latest → 504 with the
  `ResourceVersionTooLarge` cause. `resourceVersionMatch` without a resourceVersion → 422
  `FieldValueForbidden`; an unknown match → 422.
- Paging: `limit` cuts a page (honoured for RV "0" too); `continue` is an opaque token that
  pins the page to the first page's RV and the last key sent, so every page of one list
  shares one `metadata.resourceVersion` and no key is sent twice. A token older than
  `floor` → 410 Expired; a token together with a resourceVersion → 400.
  `remainingItemCount` is set on a cut page only when no selector was given.
- Items are in key order (`namespace/name`); built-in items carry no kind/apiVersion, custom
  resources keep theirs; `items` is never null; `Accept: ...;as=PartialObjectMetadataList`
  gets PartialObjectMetadata items.
- Selectors: label selectors in the full grammar; field selectors on `metadata.name`,
  `metadata.namespace` and the fields the resource supports (400 `field label not supported`
  otherwise). The same `selection` decides membership for WATCH.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Callable

import orjson

from kinformer.errors import SelectorError
from kinformer.resources import Resource
from kinformer.selectors import FieldSelector, LabelSelector
from kinformer.testing._cluster import Cluster
from kinformer.testing._wire import Obj, StatusError, forbidden_field, partial_metadata

Matcher = Callable[[Obj], bool]

_EXPIRED_CONTINUE = (
    "The provided continue parameter is too old to display a consistent list result. You can start a new "
    "list without the continue parameter, or use the continue token in this response to retrieve the "
    "remainder of the results. Continuing with the provided token results in an inconsistent list - objects "
    "that were created, modified, or deleted between the time the first chunk was returned and now may show "
    "up in the list."
)


# -- selectors ------------------------------------------------------------------------------

def selection(cluster: Cluster, resource: Resource, namespace: str | None,
              params: dict[str, str]) -> tuple[Matcher, bool]:
    """The membership test for a request's namespace, labelSelector and fieldSelector, and
    whether a selector narrows it (then a cut page has no `remainingItemCount`)."""
    try:
        labels = LabelSelector.parse(params.get("labelSelector"))
    except SelectorError as err:
        raise StatusError(400, "BadRequest", f"unable to parse requirement: {err}") from None
    try:
        fields = FieldSelector.parse(params.get("fieldSelector"))
    except SelectorError as err:
        raise StatusError(400, "BadRequest", str(err)) from None
    allowed = {"metadata.name", "metadata.namespace"} | cluster.info(resource).fields
    for path in fields.fields():
        if path not in allowed:
            raise StatusError(400, "BadRequest", f"field label not supported: {path}")
    check_labels, check_fields = not labels.empty(), not fields.empty()

    def matches(obj: Obj) -> bool:
        if namespace is not None and obj["metadata"].get("namespace") != namespace:
            return False
        if check_labels and not labels.matches_object(obj):
            return False
        return not check_fields or fields.matches(obj)

    return matches, check_labels or check_fields


# -- continue tokens ------------------------------------------------------------------------

def _encode_continue(rv: int, start: str) -> str:
    raw = orjson.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": start})
    return base64.urlsafe_b64encode(raw).decode()


def _decode_continue(token: str) -> tuple[int, str]:
    try:
        data = orjson.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), str(data["start"])
    except Exception:
        raise StatusError(400, "BadRequest", "continue key is not valid: incorrect encoded start "
                          "resourceVersion (version meta.k8s.io/v1)") from None


# -- LIST -----------------------------------------------------------------------------------

def _list_rv(cluster: Cluster, params: dict[str, str]) -> tuple[int, str]:
    """The RV to serve the list at and the key to start after, from the RV rules above."""
    rv_param = params.get("resourceVersion")
    match = params.get("resourceVersionMatch")
    token = params.get("continue")
    if match and not rv_param:
        raise forbidden_field("resourceVersionMatch", "resourceVersionMatch is forbidden unless resourceVersion "
                              "is provided")
    if match and match not in ("NotOlderThan", "Exact"):
        raise StatusError(422, "Invalid", f"resourceVersionMatch: Unsupported value: \"{match}\": supported "
                          "values: \"Exact\", \"NotOlderThan\", \"\"")
    if token:
        if rv_param:
            raise StatusError(400, "BadRequest", "specifying resource version is not allowed when using continue")
        at, start_after = _decode_continue(token)
        if at < cluster.floor:
            raise StatusError(410, "Expired", _EXPIRED_CONTINUE)
        return at, start_after
    if rv_param in (None, "", "0"):
        return cluster.rv, ""
    try:
        wanted = int(rv_param)
    except ValueError:
        raise StatusError(400, "BadRequest", f"invalid resource version: {rv_param}") from None
    if wanted > cluster.rv:
        raise StatusError(504, "Timeout", f"Too large resource version: {wanted}, current: {cluster.rv}",
                          details={"causes": [{"reason": "ResourceVersionTooLarge",
                                               "message": "Too large resource version"}],
                                   "retryAfterSeconds": 1})
    if match == "Exact":
        if wanted < cluster.floor:
            raise StatusError(410, "Expired", f"too old resource version: {wanted} ({cluster.floor})")
        return wanted, ""
    return cluster.rv, ""


def list_objects(cluster: Cluster, resource: Resource, namespace: str | None, params: dict[str, str],
                 metadata_only: bool = False) -> Obj:
    """The body of a LIST request (a `{Kind}List` or a `PartialObjectMetadataList`)."""
    matches, narrowed = selection(cluster, resource, namespace, params)
    try:
        limit = int(params.get("limit") or 0)
    except ValueError:
        raise StatusError(400, "BadRequest", "limit must be an integer") from None
    at, start_after = _list_rv(cluster, params)
    objects, keys = cluster.snapshot(resource, at)
    builtin = cluster.info(resource).builtin
    prefix = f"{namespace}/" if namespace is not None else ""
    items: list[Obj] = []
    if start_after:
        index = bisect.bisect_right(keys, start_after)
    else:
        index = bisect.bisect_right(keys, prefix) if prefix else 0
    next_key = ""
    n = len(keys)
    while index < n:
        key = keys[index]
        if prefix and not key.startswith(prefix):
            break
        obj = objects[key]
        index += 1
        if not matches(obj):
            continue
        if metadata_only:
            items.append(partial_metadata(obj))
        elif builtin:
            items.append({k: v for k, v in obj.items() if k not in ("kind", "apiVersion")})
        else:
            items.append(obj)
        if limit and len(items) >= limit:
            next_key = key
            break
    meta: Obj = {"resourceVersion": str(at)}
    if next_key and index < n and (not prefix or keys[index].startswith(prefix)):
        meta["continue"] = _encode_continue(at, next_key)
        if not narrowed:
            end = bisect.bisect_right(keys, f"{namespace}/\x7f") if prefix else n
            meta["remainingItemCount"] = end - index
    if metadata_only:
        return {"kind": "PartialObjectMetadataList", "apiVersion": "meta.k8s.io/v1", "metadata": meta,
                "items": items}
    return {"kind": resource.list_kind, "apiVersion": resource.api_version, "metadata": meta, "items": items}
