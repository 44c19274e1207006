"""`kinformer get`, `kinformer watch`, `kinformer serve`: informer caches from the command line.

Each runs informers against a cluster — `--kubeconfig` / `--context` (default: $KUBECONFIG,
else ~/.kube/config; in a pod without one, the in-cluster config) — or, with `--fake`, an
embedded FakeApiServer seeded with namespaces, deployments and pods; `--fake-churn` writes
per second keep it changing (watch and serve: 2 by default; get: none).

- `get RESOURCE [-n NS | -A] [-l SEL] [--field-selector SEL] [-o wide|json|yaml]`: lists
  from an informer (the selectors go to the server) once it has synced; exit 1, naming the
  last list error, when it does not sync within `--request-timeout` (30 s). The table has
  kubectl's columns for pods and deployments (NAME AGE for the rest; NAMESPACE first with
  -A); json and yaml print a `List` of the objects, as kubectl does.
- `watch RESOURCE ...`: the informer's events. On a terminal with rich installed, a live
  table of the cached objects with event counts; otherwise one line per event,
  `ADDED default/web-1 Running rv=12`. `--max-events` / `--duration` end it.
- `serve --resources pods,deployments [--host 127.0.0.1] [--port 8080]`: `kinformer.web`'s
  API over aiohttp, with /readyz, /livez, /metrics and the live page at `/`. Binds loopback
  unless told otherwise (warning on stderr when it binds elsewhere without a token). Prints
  `serving http://HOST:PORT/` once listening, then runs until interrupted. Exposure:
  secrets are not served unless `--allow-secrets` (a denied resource in --resources gets
  one stderr line, is never informed, and is 403 on request); `--deny RESOURCE`
  (repeatable, comma-separated) denies more; an allowed Secret's data is emptied by the
  factory's transform as each object is decoded (`redact_secrets`: it never sits in
  memory) unless `--show-secret-data`; `--token-file PATH` requires that bearer token on
  everything but /livez, /readyz, /healthz (a file, so the token is not in `ps`).

The namespace defaults to the kubeconfig context's (else "default"), as in kubectl; `serve`
caches every namespace unless given `-n`. Like the demo, the command is an application: it
sends kinformer's warnings to stderr.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import logging
import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

import anyio
import orjson

from kinformer.errors import KinformerError
from kinformer.factory import InformerFactory
from kinformer.objects import DeletedFinalStateUnknown, meta_namespace_key
from kinformer.resources import Resource

_FAKE_NAMESPACES = ("default", "team-a", "team-b")


def add_commands(sub: Any) -> None:
    """Add the get, watch and serve subcommands to an argparse subparsers object."""

    def cluster_options(p: argparse.ArgumentParser, churn: float) -> None:
        p.add_argument("--kubeconfig", help="kubeconfig file (default: $KUBECONFIG or ~/.kube/config)")
        p.add_argument("--context", help="kubeconfig context (default: the current one)")
        p.add_argument("--fake", action="store_true", help="use an embedded fake API server seeded with objects")
        p.add_argument("--fake-churn", type=float, default=churn, metavar="WRITES_PER_S",
                       help=f"with --fake, pod writes per second (default {churn:g})")
        p.add_argument("--request-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="how long to wait for the cache to sync (default 30)")

    def selection(p: argparse.ArgumentParser) -> None:
        p.add_argument("-n", "--namespace", help="namespace (default: the context's, else 'default')")
        p.add_argument("-A", "--all-namespaces", action="store_true", help="every namespace")
        p.add_argument("-l", "--selector", help="label selector, e.g. app=web,tier in (a,b)")
        p.add_argument("--field-selector", help="field selector, e.g. status.phase=Running")

    get = sub.add_parser("get", help="list objects from an informer's cache once it has synced")
    get.add_argument("resource", help="a built-in resource: pods, deploy, nodes, ...")
    selection(get)
    get.add_argument("-o", "--output", choices=("wide", "json", "yaml"), help="output format (default: a table)")
    cluster_options(get, 0.0)

    watch = sub.add_parser("watch", help="follow an informer's events (a live table on a terminal)")
    watch.add_argument("resource")
    selection(watch)
    watch.add_argument("--max-events", type=int, default=None, help="stop after this many events")
    watch.add_argument("--duration", type=float, default=None, help="stop after this many seconds")
    watch.add_argument("--plain", action="store_true", help="one line per event even on a terminal")
    cluster_options(watch, 2.0)

    serve = sub.add_parser("serve", help="serve informer caches over HTTP (Kubernetes API, health, metrics, page)")
    serve.add_argument("--resources", default="pods", help="comma-separated resources (default: pods)")
    serve.add_argument("-n", "--namespace", help="cache only this namespace (default: all)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8080, help="port (default 8080; 0 = any free port)")
    serve.add_argument("--failure-threshold", type=float, default=300.0, metavar="SECONDS",
                       help="/livez fails once list/watch has been failing this long (default 300)")
    from kinformer.web import exposure

    exposure.add_cli_options(serve)
    cluster_options(serve, 2.0)


def run_command(args: argparse.Namespace) -> int:
    """Run a subcommand added by `add_commands`; the exit status."""
    command = {"get": _get, "watch": _watch, "serve": _serve}[args.command]
    # kinformer's warnings (a failing list/watch) to stderr, for this command only.
    logger = logging.getLogger("kinformer")
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("kinformer: %(message)s"))
    saved = logger.level, logger.propagate
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False
    try:
        return anyio.run(_main, command, args)
    except KeyboardInterrupt:
        return 0
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


async def _main(command: Callable[[argparse.Namespace, Any, str], Any], args: argparse.Namespace) -> int:
    with anyio.CancelScope() as scope:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            import asyncio

            asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, scope.cancel)
        try:
            async with contextlib.AsyncExitStack() as stack:
                client, namespace = await _connect(args, stack)
                result: int = await command(args, client, namespace)
                return result
        except KinformerError as exc:
            print(f"kinformer: {exc}", file=sys.stderr)
            return 1
    return 0


# -- connecting ---------------------------------------------------------------------------

async def _connect(args: argparse.Namespace, stack: contextlib.AsyncExitStack) -> tuple[Any, str]:
    """(ApiClient, default namespace) for the command's cluster."""
    if args.fake:
        from kinformer.testing.server import FakeApiServer

        server = await stack.enter_async_context(FakeApiServer())
        _seed(server)
        client = server.api_client()
        stack.push_async_callback(client.close)
        if args.fake_churn > 0:
            tg = await stack.enter_async_context(anyio.create_task_group())
            stack.callback(tg.cancel_scope.cancel)
            tg.start_soon(_churn, server, args.fake_churn)
        return client, "default"
    from kubernetes_asyncio import config
    from kubernetes_asyncio.client import ApiClient, Configuration

    configuration = Configuration()
    path, in_cluster_namespace = _kubeconfig_path(args)
    namespace = "default"
    if path is None:
        load_incluster: Any = config.load_incluster_config  # untyped in kubernetes_asyncio
        load_incluster(client_configuration=configuration)
        namespace = in_cluster_namespace or namespace
    else:
        try:
            loader = await config.load_kube_config(config_file=path, context=args.context,
                                                   client_configuration=configuration, persist_config=False)
        except (OSError, config.ConfigException) as exc:
            raise KinformerError(f"cannot load the kubeconfig: {exc}") from exc
        context: Any = loader.current_context
        # A context without a namespace (or no current context) means "default", as for kubectl.
        with contextlib.suppress(KeyError, TypeError):
            namespace = context["context"]["namespace"] or namespace
    client = ApiClient(configuration)
    stack.push_async_callback(client.close)
    return client, namespace


def _kubeconfig_path(args: argparse.Namespace) -> tuple[str | None, str]:
    """(kubeconfig path, "") or, in a pod with no kubeconfig, (None, the pod's namespace)."""
    path = args.kubeconfig or os.environ.get("KUBECONFIG", "").split(os.pathsep)[0] or None
    default_path = os.path.expanduser("~/.kube/config")
    if path is None and not os.path.exists(default_path) and os.environ.get("KUBERNETES_SERVICE_HOST"):
        namespace = ""
        with contextlib.suppress(OSError), open("/var/run/secrets/kubernetes.io/serviceaccount/namespace") as fh:
            namespace = fh.read().strip()
        return None, namespace
    return path or default_path, ""


def _seed(server: Any) -> None:
    from kinformer.testing.generators import make_deployment, make_namespace, make_pod

    for ns in _FAKE_NAMESPACES:
        server.create("namespaces", make_namespace(ns))
    server.create("deployments", make_deployment("web", "default", replicas=3))
    server.create("deployments", make_deployment("api", "team-a", replicas=2))
    for i in range(9):
        app = "web" if i % 3 else "api"
        ns = "default" if i < 5 else "team-a" if i < 8 else "team-b"
        server.create("pods", make_pod(i, ns, size=600, app=app, phase="Pending" if i == 4 else "Running"))


async def _churn(server: Any, rate: float) -> None:
    """One pod write per 1/rate seconds: an annotation bump, cycling over the pods."""
    tick = 0
    while True:
        await anyio.sleep(1.0 / rate)  # the churn's pace, not a synchronisation
        pods = sorted(server.objects("pods").values(), key=meta_namespace_key)
        if not pods:
            continue
        pod = pods[tick % len(pods)]
        meta = pod["metadata"]
        tick += 1
        server.patch("pods", meta["name"], {"metadata": {"annotations": {"kinformer.io/tick": str(tick)}}},
                     meta["namespace"])


def _resource(name: str) -> Resource:
    try:
        return Resource.builtin(name)
    except KeyError:
        plural, _, group = name.partition(".")
        for candidate in (plural, name):
            with contextlib.suppress(KeyError):
                found = Resource.builtin(candidate)
                if not group or found.group == group:
                    return found
        raise KinformerError(f"unknown resource {name!r}: use a built-in resource (pods, deployments, ...)") from None


def _namespace(args: argparse.Namespace, resource: Resource, default: str) -> str | None:
    """The namespace to list, None for all (`-A`, or `-n ""`: an empty namespace is every
    namespace, as in the API's paths, never a namespace named "")."""
    if not resource.namespaced or args.all_namespaces:
        return None
    namespace: str = args.namespace if args.namespace is not None else default
    return namespace or None


async def _synced_informer(args: argparse.Namespace, factory: InformerFactory, resource: Resource,
                           namespace: str | None) -> Any:
    informer = factory.informer(resource, namespace=namespace, label_selector=args.selector or None,
                                field_selector=args.field_selector or None)
    if not await informer.wait_for_sync(args.request_timeout):
        error = informer.last_error
        reason = f"{type(error).__name__}: {error}" if error is not None else "no answer"
        raise KinformerError(f"the {resource.plural} cache did not sync within {args.request_timeout:g} s ({reason})")
    return informer


# -- get ----------------------------------------------------------------------------------

async def _get(args: argparse.Namespace, client: Any, default_ns: str) -> int:
    resource = _resource(args.resource)
    namespace = _namespace(args, resource, default_ns)
    async with InformerFactory(client) as factory:
        informer = await _synced_informer(args, factory, resource, namespace)
        objs = sorted(informer.indexer.list(), key=meta_namespace_key)
    if args.output in ("json", "yaml"):
        # kubectl's order: apiVersion and kind first (the cache keeps them where the decoder put them).
        items = [{"apiVersion": o.get("apiVersion"), "kind": o.get("kind"), **o} for o in objs]
        doc = {"apiVersion": "v1", "kind": "List", "items": items, "metadata": {"resourceVersion": ""}}
        if args.output == "json":
            sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        else:
            import yaml

            sys.stdout.write(yaml.safe_dump(doc, sort_keys=False))
        return 0
    if not objs:
        where = f" in {namespace} namespace" if namespace else ""
        print(f"No resources found{where}.", file=sys.stderr)
        return 0
    print(table(resource, objs, wide=args.output == "wide", namespaces=namespace is None and resource.namespaced))
    return 0


def age(obj: Any, now: datetime.datetime | None = None) -> str:
    """kubectl's AGE: `45s`, `12m`, `5h`, `3d` (`<unknown>` without creationTimestamp)."""
    stamp = (obj.get("metadata") or {}).get("creationTimestamp")
    if not stamp:
        return "<unknown>"
    try:
        created = datetime.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return "<unknown>"
    seconds = int(((now or datetime.datetime.now(datetime.UTC)) - created).total_seconds())
    if seconds < 0:
        return "0s"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= 2 * size or (unit == "m" and seconds >= 120):
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _pod_row(obj: Any, wide: bool) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    containers = spec.get("containers") or []
    statuses = status.get("containerStatuses") or []
    ready = sum(1 for c in statuses if c.get("ready"))
    restarts = sum(int(c.get("restartCount") or 0) for c in statuses)
    phase = status.get("phase") or "Unknown"
    if (obj.get("metadata") or {}).get("deletionTimestamp"):
        phase = "Terminating"
    row = [f"{ready}/{len(containers)}", phase, str(restarts), age(obj)]
    if wide:
        row += [status.get("podIP") or "<none>", spec.get("nodeName") or "<none>"]
    return row


def _deployment_row(obj: Any, wide: bool) -> list[str]:
    spec, status = obj.get("spec") or {}, obj.get("status") or {}
    replicas = spec.get("replicas", 1)
    row = [f"{status.get('readyReplicas', 0)}/{replicas}", str(status.get("updatedReplicas", 0)),
           str(status.get("availableReplicas", 0)), age(obj)]
    if wide:
        containers = ((spec.get("template") or {}).get("spec") or {}).get("containers") or []
        selector = ",".join(f"{k}={v}" for k, v in ((spec.get("selector") or {}).get("matchLabels") or {}).items())
        row += [",".join(c.get("name", "") for c in containers), ",".join(c.get("image", "") for c in containers),
                selector]
    return row


_COLUMNS: dict[str, tuple[list[str], list[str], Callable[[Any, bool], list[str]]]] = {
    "pods": (["READY", "STATUS", "RESTARTS", "AGE"], ["IP", "NODE"], _pod_row),
    "deployments": (["READY", "UP-TO-DATE", "AVAILABLE", "AGE"], ["CONTAINERS", "IMAGES", "SELECTOR"],
                    _deployment_row),
}


def table(resource: Resource, objs: list[Any], *, wide: bool = False, namespaces: bool = False) -> str:
    """kubectl's plain table for these objects (no trailing newline)."""
    columns, wide_columns, row_of = _COLUMNS.get(resource.plural, (["AGE"], [], lambda o, w: [age(o)]))
    header = (["NAMESPACE"] if namespaces else []) + ["NAME", *columns, *(wide_columns if wide else [])]
    rows = [header]
    for obj in objs:
        meta = obj.get("metadata") or {}
        rows.append(([meta.get("namespace", "")] if namespaces else []) + [meta.get("name", ""), *row_of(obj, wide)])
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("   ".join(cell.ljust(widths[i]) for i, cell in enumerate(r)).rstrip() for r in rows)


# -- watch --------------------------------------------------------------------------------

def _status(obj: Any) -> str:
    status = obj.get("status") or {}
    if status.get("phase"):
        return str(status["phase"])
    return ""


async def _watch(args: argparse.Namespace, client: Any, default_ns: str) -> int:
    resource = _resource(args.resource)
    namespace = _namespace(args, resource, default_ns)
    live_table = not args.plain and sys.stdout.isatty()
    if live_table:
        try:
            import rich  # noqa: F401
        except ImportError:
            live_table = False
    counts: Counter[str] = Counter()
    async with InformerFactory(client) as factory:
        informer = factory.informer(resource, namespace=namespace, label_selector=args.selector or None,
                                    field_selector=args.field_selector or None)
        with anyio.move_on_after(args.duration):
            async with informer.events() as events:
                if live_table:
                    await _watch_live(resource, informer, events, counts, args.max_events, namespace is None)
                else:
                    async for event in events:
                        obj = event.object
                        if isinstance(obj, DeletedFinalStateUnknown):
                            obj = obj.obj
                        counts[event.type] += 1
                        meta = obj.get("metadata") or {}
                        status = _status(obj)
                        print(f"{event.type:<8} {meta_namespace_key(obj)} {status + ' ' if status else ''}"
                              f"rv={meta.get('resourceVersion', '')}", flush=True)
                        if args.max_events is not None and counts.total() >= args.max_events:
                            break
    return 0


async def _watch_live(resource: Resource, informer: Any, events: Any, counts: Counter[str], max_events: int | None,
                      namespaces: bool) -> None:
    from rich.console import Group
    from rich.live import Live
    from rich.table import Table
    from rich.text import Text

    def screen() -> Group:
        grid = Table(expand=False, header_style="bold")
        if namespaces:
            grid.add_column("NAMESPACE")
        for column in ("NAME", "STATUS", "RESOURCE VERSION"):
            grid.add_column(column)
        for _, obj in sorted(informer.indexer.items())[:200]:
            meta = obj.get("metadata") or {}
            grid.add_row(*([meta.get("namespace", "")] if namespaces else []), meta.get("name", ""), _status(obj),
                         meta.get("resourceVersion", ""))
        stats = informer.stats()
        line = (f"{resource.plural}: {stats.cached} cached, {stats.queued} queued; events: "
                f"{counts['ADDED']} added, {counts['MODIFIED']} modified, {counts['DELETED']} deleted; "
                f"synced: {'yes' if informer.has_synced() else 'no'}")
        return Group(Text(line, style="bold"), grid)

    last = 0.0
    with Live(screen(), auto_refresh=False) as live:
        async for event in events:
            counts[event.type] += 1
            now = time.monotonic()
            if now - last >= 0.1:  # at most ten redraws a second
                live.update(screen(), refresh=True)
                last = now
            if max_events is not None and counts.total() >= max_events:
                break
        live.update(screen(), refresh=True)


# -- serve --------------------------------------------------------------------------------

def serve_setup(args: argparse.Namespace, client: Any) -> tuple[Any, InformerFactory]:
    """`serve`'s CacheApi and factory. Denied resources are dropped with a warning on stderr
    (their informers are never made); unless --show-secret-data, the factory's transform
    empties Secrets' data as each object is decoded, so it never sits in the cache."""
    from kinformer.web import CacheApi, LivenessPolicy, exposure, redact_secrets

    options = exposure.cli_options(args)
    denied = exposure.denied_set(options["deny"], args.allow_secrets)
    resources = []
    for r in (_resource(name.strip()) for name in args.resources.split(",") if name.strip()):
        if (r.group, r.plural) in denied:
            hint = " (serve them with --allow-secrets)" if (r.group, r.plural) == ("", "secrets") else ""
            print(f"kinformer: not serving {r.plural}: denied{hint}", file=sys.stderr)
        else:
            resources.append(r)
    # An unreadable token file is an InvalidArgumentError: one line, exit 1.
    cache = CacheApi(resources, page=True, liveness=LivenessPolicy(failure_threshold=args.failure_threshold),
                     **options)
    transform = None if args.show_secret_data else redact_secrets
    return cache, InformerFactory(client, namespace=args.namespace or None, transform=transform)


async def _serve(args: argparse.Namespace, client: Any, default_ns: str) -> int:
    from aiohttp import web

    from kinformer.web import aiohttp_app

    cache, factory = serve_setup(args, client)
    if not cache.resources:
        raise KinformerError("nothing to serve: every resource given is denied")
    if not cache.authenticated and args.host not in ("127.0.0.1", "::1", "localhost"):
        print(f"kinformer: warning: serving {args.host} without --token-file: anyone who can reach the port "
              "can read the caches", file=sys.stderr)
    async with cache.run(factory):
        runner = web.AppRunner(aiohttp_app(cache), access_log=None, handle_signals=False, shutdown_timeout=1.0)
        await runner.setup()
        try:
            site = web.TCPSite(runner, args.host, args.port)
            await site.start()
            server = site._server
            sockets = getattr(server, "sockets", None) or []
            port = sockets[0].getsockname()[1] if sockets else args.port
            host = f"[{args.host}]" if ":" in args.host else args.host
            auth = "; bearer token required" if cache.authenticated else ""
            print(f"serving http://{host}:{port}/ ({', '.join(r.plural for r in cache.resources)}; "
                  f"/readyz, /livez, /metrics{auth})", flush=True)
            await anyio.sleep_forever()
        finally:
            await runner.cleanup()
    return 0
