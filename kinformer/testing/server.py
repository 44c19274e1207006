"""`FakeApiServer`: the Kubernetes list/watch protocol over real HTTP, for tests and demos.

What it serves (each point is what kube-apiserver does; the module named is where the rules
are written down):
- Resources at their real paths, discovery, bearer-token auth (optionally anonymous),
  `Status` errors (`_routing`).
- LIST: resourceVersion / resourceVersionMatch rules, `limit`/`continue` paging at one RV,
  label and field selectors, metadata-only lists (`_list`).
- WATCH: resume from an RV, initial events, bookmarks, `sendInitialEvents` with the
  `k8s.io/initial-events-end` bookmark, selector moves, 410 as an ERROR event (`_watch`).
- Writes: create (generateName), update and patch with resourceVersion preconditions (409),
  PUT rules per resource (Leases: created by PUT, resourceVersion required), Lease
  MicroTime fields, delete preconditions (`_cluster`); owner-reference cascading deletes
  when `garbage_collector=True` (`_gc`).
- Faults, all deterministic: `drop_watches()`, `drop_watches_after(k)`, `compact()`,
  `fail_next(n, code, retry_after=, verbs=)`, `malformed_lines(n)`, `stall_watches()`,
  `slow_writes(seconds)` (`_faults`). `requests` records every resource request.

Restart: `save_state(path)` writes the durable state (objects, the resourceVersion counter,
registered resources) as JSON; `load_state(path)` on a fresh server (before or after
`start()`) restores it with no history, so every earlier RV is 410 Gone, as after a
kube-apiserver restart (`_cluster`). `python -m kinformer.testing --state-file PATH` does
both around a process's life, so a new process on the same port continues the old one.

Lifecycle: `async with FakeApiServer() as server:` (or `await start()` / `await stop()`)
binds 127.0.0.1 on an ephemeral port; `stop()` drops open watches, closes the listener and
removes the kubeconfig file it wrote. The Python API (`create`, `update`, `patch`, `delete`,
`get`, `objects`) works before `start()` too, and writes exactly what an HTTP client's
write would (same events, same resourceVersions), except that `update` is a plain update:
it never needs a resourceVersion and never creates (an HTTP PUT may, see `_cluster`).

Not served (deliberately): admission, status and other subresources, server-side apply,
JSON patch, field managers, finalizers, protobuf (kubectl's writes send it and get 415),
table output.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import orjson
from aiohttp import web

from kinformer.resources import Resource
from kinformer.testing._cluster import Cluster
from kinformer.testing._faults import Faults
from kinformer.testing._gc import GarbageCollector
from kinformer.testing._routing import RecordedRequest, Router
from kinformer.testing._watch import INITIAL_EVENTS_END
from kinformer.testing._wire import Obj, StatusError

__all__ = ["DEFAULT_TOKEN", "INITIAL_EVENTS_END", "FakeApiServer", "RecordedRequest"]

DEFAULT_TOKEN = "kinformer-fake-token"


class FakeApiServer:
    """An in-process Kubernetes API server for the list/watch protocol.

    `async with FakeApiServer() as server:` starts it on 127.0.0.1 (ephemeral port);
    `server.api_client()` is a `kubernetes_asyncio` client pointed at it. Requests need the
    bearer `token`; `allow_anonymous=True` also serves requests that send no credentials at
    all (kubectl sends none to a plain-HTTP server). `garbage_collector=True` deletes
    dependents (ownerReferences) with their owner.
    """

    def __init__(
        self,
        *,
        token: str = DEFAULT_TOKEN,
        history_size: int = 10_000,
        bookmark_interval: float = 1.0,
        default_watch_timeout: float = 1800.0,
        host: str = "127.0.0.1",
        port: int = 0,
        allow_anonymous: bool = False,
        garbage_collector: bool = False,
    ) -> None:
        self.token = token
        self.cluster = Cluster(history_size)
        self.bookmark_interval = bookmark_interval
        self.default_watch_timeout = default_watch_timeout
        self.host = host
        self.port = port
        self.allow_anonymous = allow_anonymous
        self.requests: list[RecordedRequest] = []
        self._faults = Faults(self.cluster)
        self._gc = GarbageCollector(self.cluster, garbage_collector)
        self._runner: web.AppRunner | None = None
        self._kubeconfig: str | None = None

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        app = Router(self, self.cluster, self._faults, self._gc, self.requests).application()
        self._runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        server = site._server
        assert server is not None
        sockets = getattr(server, "sockets", None) or []
        self.port = sockets[0].getsockname()[1]

    async def stop(self) -> None:
        self._faults.drop_all()
        self.cluster.wake()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self._kubeconfig:
            with contextlib.suppress(OSError):
                os.unlink(self._kubeconfig)

    async def __aenter__(self) -> FakeApiServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def garbage_collector(self) -> bool:
        return self._gc.enabled

    def api_client(self) -> Any:
        """A new `kubernetes_asyncio.client.ApiClient` for this server (close it when done)."""
        from kubernetes_asyncio.client import ApiClient, Configuration

        config = Configuration(host=self.url)
        config.api_key = {"BearerToken": self.token}
        config.api_key_prefix = {"BearerToken": "Bearer"}
        return ApiClient(config)

    def kubeconfig_path(self) -> str:
        """Write (once) and return a kubeconfig file for this server; `stop()` removes it.

        JSON is YAML, so kubectl and kubernetes_asyncio's `load_kube_config` read it as is.
        """
        if self._kubeconfig is None:
            config = {
                "apiVersion": "v1", "kind": "Config", "current-context": "fake",
                "clusters": [{"name": "fake", "cluster": {"server": self.url}}],
                "users": [{"name": "fake", "user": {"token": self.token}}],
                "contexts": [{"name": "fake", "context": {"cluster": "fake", "user": "fake"}}],
            }
            fd, path = tempfile.mkstemp(prefix="kinformer-fake-", suffix=".kubeconfig")
            with os.fdopen(fd, "w") as fh:
                json.dump(config, fh)
            self._kubeconfig = path
        return self._kubeconfig

    # -- the Python write API -------------------------------------------------------------

    def register(self, resource: Resource, *, fields: Iterable[str] = ()) -> None:
        """Serve a custom resource (its `kind` is required)."""
        self.cluster.register(resource, fields=fields)

    def create(self, resource: Resource | str, obj: Obj) -> Obj:
        return self.cluster.create(self._resource(resource), obj)

    def update(self, resource: Resource | str, obj: Obj) -> Obj:
        return self.cluster.update(self._resource(resource), obj)

    def patch(self, resource: Resource | str, name: str, patch: Obj, namespace: str | None = None) -> Obj:
        return self.cluster.patch(self._resource(resource), name, patch, namespace)

    def delete(self, resource: Resource | str, obj_or_name: Obj | str, namespace: str | None = None, *,
               propagation_policy: str | None = None) -> Obj:
        """Delete an object (and, with the garbage collector on, its dependents; see `_gc`)."""
        if isinstance(obj_or_name, dict):
            meta = obj_or_name.get("metadata") or {}
            name, namespace = meta.get("name", ""), meta.get("namespace", namespace)
        else:
            name = obj_or_name
        return self._gc.delete(self._resource(resource), name, namespace, propagation_policy=propagation_policy)

    def get(self, resource: Resource | str, name: str, namespace: str | None = None) -> Obj:
        return self.cluster.get(self._resource(resource), name, namespace)

    def objects(self, resource: Resource | str) -> dict[str, Obj]:
        """The current objects of a resource by key (a copy of the mapping)."""
        return dict(self.cluster.info(self._resource(resource)).objects)

    @property
    def resource_version(self) -> str:
        return str(self.cluster.rv)

    def _resource(self, resource: Resource | str) -> Resource:
        if isinstance(resource, str):
            resource = Resource.builtin(resource)
        for known in self.cluster.resources:
            if known == resource:
                return known
        raise StatusError(404, "NotFound", f"resource {resource} is not registered")

    # -- restart ----------------------------------------------------------------------------

    def save_state(self, path: str | os.PathLike[str]) -> None:
        """Write the durable state to `path` (atomically: a temporary file, then a rename)."""
        target = Path(path)
        partial = target.with_name(target.name + ".partial")
        partial.write_bytes(orjson.dumps(self.cluster.dump_state()))
        partial.replace(target)

    def load_state(self, path: str | os.PathLike[str]) -> None:
        """Replace the objects and the counter with those `save_state` wrote; history is empty
        (every earlier RV is 410), open watches find out at once."""
        self.cluster.load_state(orjson.loads(Path(path).read_bytes()))

    # -- faults ---------------------------------------------------------------------------

    def drop_watches(self) -> None:
        """Abort every open watch connection now (no clean end: the client sees a drop)."""
        self._faults.drop_all()
        self.cluster.wake()

    def drop_watches_after(self, events: int | None) -> None:
        """Abort each watch after it has sent `events` events (None: never)."""
        self._faults.drop_after = events

    def compact(self) -> None:
        """Forget history: resuming any earlier RV now gets 410 Gone."""
        self.cluster.compact()

    def fail_next(self, count: int, code: int = 500, *, retry_after: float | None = None,
                  verbs: Iterable[str] | None = None) -> None:
        """Answer the next `count` resource requests (of `verbs`, default any) with `code`."""
        self._faults.fail_next(count, code, retry_after, verbs)

    def malformed_lines(self, count: int = 1) -> None:
        """Write a malformed JSON line before each of the next `count` watch events."""
        self._faults.malformed += count

    def stall_watches(self, stalled: bool = True) -> None:
        """Keep watch connections open but send nothing (no events, no bookmarks)."""
        self._faults.stalled = stalled
        self.cluster.wake()

    def slow_writes(self, seconds: float) -> None:
        """Sleep this long before each watch line."""
        self._faults.write_delay = seconds

    def clear_faults(self) -> None:
        self._faults.reset()
        self.cluster.wake()

    def count(self, verb: str) -> int:
        return sum(1 for r in self.requests if r.verb == verb)

    @property
    def open_watches(self) -> int:
        return len(self._faults.watches)
