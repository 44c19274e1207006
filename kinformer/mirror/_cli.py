"""`kinformer mirror`: mirror clusters (one per `--kubeconfig`) into a SQL database.

Runs until interrupted, printing one JSON status line per `--status-every` seconds (per
cluster: synced, reachable, resources, rows); `--once` exits (status 0) as soon as every
cluster is synced and written, printing the final status. Logs go to stderr. A cluster's
name is its kubeconfig's current context unless `--name` gives one (a repeated context name
gets `-2`, `-3`, ...).

`--serve HOST:PORT` also serves the mirror's search over HTTP (`SearchApi`,
kinformer/mirror/http.py: `/search...`, `/readyz`) for as long as it runs; once listening it
prints `{"serving": "http://HOST:PORT"}` (the port chosen when PORT is 0). It does not go
with `--once`, which exits at the first sync. What it serves follows `kinformer serve`'s
exposure rules: secrets only with `--allow-secrets` (data redacted unless
`--show-secret-data`), `--deny RESOURCE`, `--token-file PATH` for a bearer token.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import sys
from collections.abc import AsyncIterator
from typing import Any

import anyio
import orjson
import yaml  # kubernetes_asyncio's dependency

from kinformer.errors import InvalidArgumentError
from kinformer.mirror.http import SearchApi, search_aiohttp_app
from kinformer.mirror.storage import MirrorStorage
from kinformer.mirror.sync import Mirror
from kinformer.web import exposure


def add_parser(sub: Any) -> None:
    p = sub.add_parser("mirror", help="mirror clusters into SQL (SQLite by default, or PostgreSQL)")
    p.add_argument("--kubeconfig", action="append", required=True, help="one per cluster (repeat)")
    p.add_argument("--name", action="append", default=[], help="a name per --kubeconfig, in order")
    p.add_argument("--db", default="sqlite:///mirror.db", help="sqlite:///path or postgresql://user@host/db")
    p.add_argument("--resources", default="*",
                   help="'*' (every listable, watchable resource but events, following discovery) or a "
                        "comma-separated list: pods,deployments.apps")
    p.add_argument("--max-concurrent-lists", type=int, default=4)
    p.add_argument("--once", action="store_true", help="exit once every cluster is synced and written")
    p.add_argument("--status-every", type=float, default=30.0, metavar="SECONDS")
    p.add_argument("--serve", metavar="HOST:PORT", help="also serve search over HTTP (/search, /readyz) here")
    exposure.add_cli_options(p, "with --serve, ")


def _names(paths: list[str], given: list[str]) -> list[str]:
    out: list[str] = []
    for i, path in enumerate(paths):
        if i < len(given):
            name = given[i]
        else:
            with open(path) as fh:
                name = str((yaml.safe_load(fh) or {}).get("current-context") or f"cluster-{i + 1}")
        base, n = name, 1
        while name in out:
            n += 1
            name = f"{base}-{n}"
        out.append(name)
    return out


async def _status(mirror: Mirror, storage: MirrorStorage) -> dict[str, Any]:
    health = mirror.health()
    return {
        "writer": {"healthy": health.writer.healthy, "pending": health.writer.pending},
        "clusters": {name: {"synced": c.synced, "reachable": c.reachable, "resources": len(c.resources),
                            "rows": await storage.count(name)} for name, c in health.clusters.items()},
    }


def _address(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise ValueError(f"--serve {text!r}: expected HOST:PORT")
    return host.strip("[]") or "127.0.0.1", int(port)


@contextlib.asynccontextmanager
async def _serving(api: SearchApi, host: str, port: int) -> AsyncIterator[str]:
    from aiohttp import web

    runner = web.AppRunner(search_aiohttp_app(api), access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        yield f"http://{host if ':' not in host else f'[{host}]'}:{bound[1]}"
    finally:
        await runner.cleanup()


async def _run(args: argparse.Namespace) -> int:
    from kubernetes_asyncio.client import ApiClient, Configuration
    from kubernetes_asyncio.config import load_kube_config

    names = _names(args.kubeconfig, args.name)
    resources: Any = "*" if args.resources.strip() == "*" else [
        r.strip() for r in args.resources.split(",") if r.strip()]
    clients = []
    try:
        async with contextlib.AsyncExitStack() as stack:
            storage = await stack.enter_async_context(MirrorStorage(args.db))
            mirror = await stack.enter_async_context(Mirror(storage, max_concurrent_lists=args.max_concurrent_lists))
            for name, path in zip(names, args.kubeconfig, strict=True):
                config = Configuration()
                await load_kube_config(config_file=path, client_configuration=config)
                client = ApiClient(config)
                clients.append(client)
                await mirror.add_cluster(name, client, resources=resources)
            if args.serve:
                api = SearchApi(storage, mirror, **exposure.cli_options(args))
                url = await stack.enter_async_context(_serving(api, *_address(args.serve)))
                print(orjson.dumps({"serving": url}).decode(), flush=True)
            while True:
                synced = await mirror.wait_for_sync(args.status_every)
                print(orjson.dumps(await _status(mirror, storage)).decode(), flush=True)
                if synced and args.once:
                    return 0
                if synced:
                    await anyio.sleep(args.status_every)
    finally:
        for client in clients:
            await client.close()


def run_mirror(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(asctime)s %(name)s %(message)s")
    if args.name and len(args.name) > len(args.kubeconfig):
        print("kinformer mirror: more --name than --kubeconfig", file=sys.stderr)
        return 2
    if args.serve:
        if args.once:
            print("kinformer mirror: --serve and --once do not go together", file=sys.stderr)
            return 2
        try:
            _address(args.serve)
            exposure.cli_options(args)
        except (ValueError, InvalidArgumentError) as err:
            print(f"kinformer mirror: {err}", file=sys.stderr)
            return 2
    try:
        return anyio.run(_run, args)
    except KeyboardInterrupt:
        return 0
