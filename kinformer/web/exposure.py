"""What `CacheApi` lets out: denied resources, Secret redaction, bearer-token authentication.

Denied resources (`CacheApi(deny=..., allow_secrets=...)`):
- `secrets` is denied unless `allow_secrets=True`; `deny` names more resources (a `Resource`,
  or a name: `"configmaps"`, `"cm"`, `"deployments.apps"`, `"widgets.example.com"`). A denial
  covers every version of the group's resource.
- A denied resource is not served at all: it is dropped from the resources to serve (a
  warning is logged, naming the resource only), its informer is never requested from the
  factory (so `CacheApi.run(factory)` never lists or watches it, and no object of it enters
  the process through the API), an informer of it in a bound source is skipped, and it is
  absent from discovery, health checks and /metrics.
- A request for it is 403 Forbidden, a `Status` with reason `Forbidden` and
  `details.kind` (and `details.group`): what kube-apiserver answers a client RBAC does not
  allow, and what client-go users handle (`apierrors.IsForbidden`). 403 rather than 404
  because the path is a real Kubernetes resource; 404 would read as "no such API".

Secret redaction (unless `reveal_secret_data=True`):
- Every value of a Secret's `data` and `stringData` becomes `""`; the keys stay. `""` and not
  a marker such as `"<redacted>"` because `data` is base64 (`map[string][]byte`): a typed
  client (client-go, kubernetes_asyncio's `V1Secret`) must still decode the object, and `""`
  is the valid encoding of zero bytes. The object is marked with the annotation
  `kinformer.io/secret-data: redacted`, so a reader can tell an emptied value from an empty one.
- The annotation `kubectl.kubernetes.io/last-applied-configuration` becomes `""` too: after
  `kubectl apply` it holds the whole Secret as applied, data included.
- Redaction happens on the way out, in list, get and watch responses (every event type, the
  initial events included): the informer's cache keeps the real object for the application
  that shares it. `redact_secrets` is also a transform (`InformerFactory(transform=...)`) for
  a process that only serves — `kinformer serve` uses it — so the data is dropped as each
  object is decoded and never sits in the cache. Redacting is idempotent.
- While redacting, a field selector on a Secret may use only the fields kube-apiserver
  supports for Secrets (`metadata.name`, `metadata.namespace`, `type`): any other path would
  let a client test guesses of a value against the real data (400 BadRequest otherwise).

Bearer tokens (`CacheApi(bearer_token=...)` or `bearer_token_file=`):
- Every request must carry exactly one `Authorization: Bearer <token>` (the scheme is
  case-blind, RFC 7235), compared in constant time (`hmac.compare_digest`); otherwise 401, the
  `Status` kube-apiserver sends (`reason: Unauthorized`, `message: Unauthorized`) with
  `WWW-Authenticate: Bearer realm="kinformer"` (plus `error="invalid_token"` when a token was
  sent but is wrong, RFC 6750). Authentication comes before everything else, so an
  unauthenticated client learns nothing, not even which methods or paths exist.
- `/livez`, `/readyz`, `/healthz` (and their sub-paths) are exempt: kube-apiserver's default
  RBAC lets anonymous users read them (`system:public-info-viewer`), and probes (the kubelet's)
  carry no token. `/metrics` and the page at `/` are not exempt (the page's event stream
  cannot send a header: behind a token it needs a proxy that adds one).
- A token file is read once, when the `CacheApi` is made; surrounding whitespace is stripped.
  A token must be non-empty printable ASCII without spaces. No message, log line or response
  ever contains the configured token or a presented one.
"""

from __future__ import annotations

import argparse
import hmac
import os
from collections.abc import Iterable, Mapping
from typing import Any

from kinformer.errors import ForbiddenError, InvalidArgumentError
from kinformer.resources import Resource

SECRETS = ("", "secrets")
REDACTED_ANNOTATION = "kinformer.io/secret-data"
LAST_APPLIED = "kubectl.kubernetes.io/last-applied-configuration"
SECRET_FIELDS = frozenset(("metadata.name", "metadata.namespace", "type"))
HEALTH_PATHS = frozenset(("livez", "readyz", "healthz"))
REALM = 'Bearer realm="kinformer"'

GroupResource = tuple[str, str]


def group_resource(resource: Resource | str) -> GroupResource:
    """(group, plural) of a `Resource` or a name: a built-in's plural, kind or short name, or
    `plural.group` (`deployments.apps`, `widgets.example.com`)."""
    if isinstance(resource, Resource):
        return resource.group, resource.plural
    name = resource.strip()
    try:
        found = Resource.builtin(name)
    except KeyError:
        plural, _, group = name.partition(".")
        if not plural:
            raise InvalidArgumentError(f"not a resource name: {resource!r}") from None
        try:
            found = Resource.builtin(plural)
        except KeyError:
            return group, plural.lower()
        if group and found.group != group:
            return group, plural.lower()
    return found.group, found.plural


def denied_set(deny: Iterable[Resource | str], allow_secrets: bool) -> frozenset[GroupResource]:
    denied = {group_resource(r) for r in deny}
    if not allow_secrets:
        denied.add(SECRETS)
    elif SECRETS in denied:
        raise InvalidArgumentError("secrets are both allowed (allow_secrets=True) and denied")
    return frozenset(denied)


def is_secret(resource: Resource) -> bool:
    return (resource.group, resource.plural) == SECRETS


def _emptied(values: Any) -> Any:
    return {k: "" for k in values} if isinstance(values, dict) else values


def redact_secret(obj: Any) -> Any:
    """A copy of a Secret with its values emptied (module docstring); the input is not
    changed. Anything that is not a dict comes back as it is."""
    if not isinstance(obj, dict):
        return obj
    out = dict(obj)
    for field in ("data", "stringData"):
        if field in out:
            out[field] = _emptied(out[field])
    meta = out.get("metadata")
    if isinstance(meta, dict):
        meta = out["metadata"] = dict(meta)
        annotations = meta.get("annotations")
        annotations = dict(annotations) if isinstance(annotations, dict) else {}
        if LAST_APPLIED in annotations:
            annotations[LAST_APPLIED] = ""
        annotations[REDACTED_ANNOTATION] = "redacted"
        meta["annotations"] = annotations
    return out


def redact_secrets(obj: Any) -> Any:
    """A transform for `InformerFactory(transform=...)`: objects of kind `Secret` (v1)
    redacted, every other object as it is (one dict lookup)."""
    if isinstance(obj, dict) and obj.get("kind") == "Secret" and obj.get("apiVersion") == "v1":
        return redact_secret(obj)
    return obj


def forbidden(group: str, plural: str, what: str) -> ForbiddenError:
    """The 403 Forbidden Status for a denied resource (`what` serves it: "this cache")."""
    how = ("allow_secrets=True, --allow-secrets" if (group, plural) == SECRETS else "it is on the deny list")
    details = {"kind": plural, **({"group": group} if group else {})}
    return ForbiddenError(403, "Forbidden", f"{plural}{'.' + group if group else ''} is forbidden: {what} does "
                          f"not serve it ({how})", status={"details": details})


def add_cli_options(parser: argparse.ArgumentParser, scope: str = "") -> None:
    """`--token-file`, `--allow-secrets`, `--show-secret-data` and `--deny` (kinformer serve,
    kinformer mirror --serve); `scope` prefixes their help ("with --serve, ")."""
    parser.add_argument("--token-file", metavar="PATH",
                        help=f"{scope}require 'Authorization: Bearer <token>' with the token in this file "
                             "(health checks stay open)")
    parser.add_argument("--allow-secrets", action="store_true",
                        help=f"{scope}serve secrets (their data redacted)")
    parser.add_argument("--show-secret-data", action="store_true",
                        help="with --allow-secrets, serve secrets' data and stringData as they are")
    parser.add_argument("--deny", action="append", default=[], metavar="RESOURCE",
                        help=f"{scope}never serve this resource; repeatable or comma-separated")


def cli_options(args: argparse.Namespace) -> dict[str, Any]:
    """The `add_cli_options` flags as `CacheApi`/`SearchApi` keyword arguments, checked:
    `InvalidArgumentError` for an inconsistent set or an unusable token file."""
    if args.show_secret_data and not args.allow_secrets:
        raise InvalidArgumentError("--show-secret-data needs --allow-secrets")
    deny = [d.strip() for arg in args.deny for d in arg.split(",") if d.strip()]
    denied_set(deny, args.allow_secrets)
    BearerAuth.from_options(None, args.token_file)
    return {"allow_secrets": args.allow_secrets, "deny": deny, "reveal_secret_data": args.show_secret_data,
            "bearer_token_file": args.token_file}


def check_secret_fields(fields: Iterable[str]) -> str | None:
    """The first field path a redacted Secret's field selector may not use, or None."""
    for path in fields:
        if path not in SECRET_FIELDS:
            return path
    return None


def check_secret_query_paths(paths: Iterable[str]) -> str | None:
    """The first path a query over redacted Secrets may not filter or order by, or None.

    Filtering or ordering on a redacted value would reveal it a guess at a time (or by
    rank), so only metadata is allowed, without `metadata.annotations` (which can hold the
    last-applied configuration, data included), and `type` / `immutable`.
    """
    for path in paths:
        if path in SECRET_FIELDS or path in ("immutable",):
            continue
        if path.startswith("metadata.") and not path.startswith("metadata.annotations"):
            continue
        return path
    return None


class BearerAuth:
    """One expected bearer token; `check` says whether a request's headers carry it."""

    __slots__ = ("_token",)

    def __init__(self, token: str) -> None:
        if not token:
            raise InvalidArgumentError("the bearer token is empty")
        if not all(33 <= ord(c) <= 126 for c in token):
            raise InvalidArgumentError("the bearer token must be printable ASCII without spaces")
        self._token = token.encode()

    @classmethod
    def from_options(cls, token: str | None, token_file: str | os.PathLike[str] | None) -> BearerAuth | None:
        if token is not None and token_file is not None:
            raise InvalidArgumentError("give bearer_token or bearer_token_file, not both")
        if token_file is not None:
            try:
                with open(token_file, encoding="utf-8") as fh:
                    token = fh.read().strip()
            except (OSError, UnicodeDecodeError) as exc:
                # The exception's text names the file, never its content.
                raise InvalidArgumentError(f"cannot read the bearer token file {os.fspath(token_file)!r}: "
                                           f"{type(exc).__name__}: {getattr(exc, 'strerror', None) or 'not UTF-8'}"
                                           ) from None
            if not token:
                raise InvalidArgumentError(f"the bearer token file {os.fspath(token_file)!r} is empty")
        return cls(token) if token is not None else None

    def challenge(self, authorization: list[str]) -> str | None:
        """None if `authorization` (every Authorization header sent) holds exactly this
        token; otherwise the WWW-Authenticate value to answer with."""
        if not authorization:
            return REALM
        if len(authorization) == 1:
            scheme, _, credentials = authorization[0].strip().partition(" ")
            if scheme.lower() == "bearer" and hmac.compare_digest(
                    credentials.strip().encode("utf-8", "surrogatepass"), self._token):
                return None
        return REALM + ', error="invalid_token"'

    def __repr__(self) -> str:
        return "BearerAuth(<token>)"


def exempt(parts: list[str]) -> bool:
    """Is this path (split on "/") a health endpoint, readable without a token?"""
    return bool(parts) and parts[0] in HEALTH_PATHS


def accept_and_authorization(headers: Mapping[str, str] | None) -> tuple[str, list[str]]:
    """(the Accept header, every Authorization header) from a request's headers."""
    accept = ""
    authorization: list[str] = []
    for name, value in (headers or {}).items():
        lower = name.lower()
        if lower == "accept":
            accept = value
        elif lower == "authorization":
            authorization.append(value)
    return accept, authorization
