"""`python -m kinformer.testing` (also `kinformer fake-server`): a fake API server in its own process.

Invariants:
- Both commands take exactly the options `add_arguments` defines, and run `run(args)`.
- Once the server listens, stdout says where: the URL, a kubeconfig path (server URL and
  bearer token; JSON, which kubectl and kubernetes_asyncio read as YAML) and a kubectl line
  to try. kubectl never sends a kubeconfig's token to a plain-HTTP server (client-go reads
  credentials only for TLS), so the server also serves requests with no credentials unless
  `--require-token`; a wrong token is always 401. `--json` prints one line instead, for
  scripts: `{"url", "token", "kubeconfig", "resourceVersion"}`. Output is flushed before
  serving, so a parent process can read it.
- Seeded pods (`--seed-pods N`) go round-robin into `--namespaces` namespaces `ns-0`…, and
  those Namespace objects exist too, so `kubectl get namespaces` agrees with the pods.
- It serves until SIGINT or SIGTERM, then stops cleanly (open watches dropped, the
  kubeconfig file removed) and exits 0.
- `--state-file PATH`: when PATH exists, the server starts from the state in it (objects,
  resourceVersion counter; no history, so earlier RVs are 410) instead of seeding; at a clean
  stop it writes its state there. A new process with the same `--port` and `--state-file` is
  a restart of the old one. A process killed with SIGKILL writes nothing.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal

from kinformer.testing.generators import make_namespace, make_pod
from kinformer.testing.server import DEFAULT_TOKEN, FakeApiServer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (default: 0, any free port)")
    parser.add_argument("--token", default=DEFAULT_TOKEN, help=f"the bearer token clients must send (default: "
                        f"{DEFAULT_TOKEN})")
    parser.add_argument("--seed-pods", type=int, default=0, metavar="N", help="create N pods before serving")
    parser.add_argument("--pod-bytes", type=int, default=3000, help="approximate JSON size of each seeded pod")
    parser.add_argument("--namespaces", type=int, default=10, help="spread seeded pods over this many namespaces")
    parser.add_argument("--history", type=int, default=10_000,
                        help="watch events kept for resuming (older resourceVersions get 410)")
    parser.add_argument("--bookmark-interval", type=float, default=1.0, help="seconds between watch bookmarks")
    parser.add_argument("--garbage-collector", action="store_true",
                        help="delete dependents (ownerReferences) with their owner")
    parser.add_argument("--require-token", action="store_true",
                        help="refuse requests without the token (kubectl sends none to a plain-HTTP server)")
    parser.add_argument("--state-file", metavar="PATH",
                        help="start from the state in PATH when it exists (no seeding); write it there at stop")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of the instructions")


def _instructions(server: FakeApiServer, kubeconfig: str, pods: int, namespaces: int,
                  restored_from: str | None = None) -> str:
    seeded = f"{pods} pods in {namespaces} namespaces" if pods else "no objects yet (--seed-pods N adds pods)"
    if restored_from is not None:
        seeded = f"state restored from {restored_from}"
    auth = (f"bearer token {server.token!r} required" if not server.allow_anonymous
            else f"bearer token {server.token!r}, or none (kubectl sends none over plain HTTP)")
    lines = [
        f"kinformer fake API server listening on {server.url}",
        f"  {seeded}; resourceVersion {server.resource_version}; {auth}",
        f"kubeconfig: {kubeconfig}",
        "  (removed when the server stops)",
        "",
        "Try:",
        f"  kubectl --kubeconfig {kubeconfig} get pods -A",
        f"  export KUBECONFIG={kubeconfig}   # then kubectl, kinformer, kubernetes_asyncio use it",
        "",
        "Serving until interrupted (Ctrl-C).",
    ]
    if not server.allow_anonymous:
        lines[6] += "   # needs --require-token off: kubectl sends no token over plain HTTP"
    return "\n".join(lines)


async def _serve(args: argparse.Namespace) -> None:
    server = FakeApiServer(token=args.token, history_size=args.history,
                           bookmark_interval=args.bookmark_interval, host=args.host, port=args.port,
                           allow_anonymous=not args.require_token, garbage_collector=args.garbage_collector)
    spread = max(1, min(args.namespaces, args.seed_pods))
    state_file: str | None = args.state_file
    restored: bool = args.restore
    if restored:
        assert state_file is not None
        server.load_state(state_file)
    elif args.seed_pods:
        for n in range(spread):
            server.create("namespaces", make_namespace(f"ns-{n}"))
        for i in range(args.seed_pods):
            server.create("pods", make_pod(i, f"ns-{i % spread}", size=args.pod_bytes))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    await server.start()
    try:
        kubeconfig = server.kubeconfig_path()
        if args.json:
            print(json.dumps({"url": server.url, "token": server.token, "kubeconfig": kubeconfig,
                              "resourceVersion": server.resource_version}), flush=True)
        else:
            print(_instructions(server, kubeconfig, args.seed_pods, spread if args.seed_pods else 0,
                                state_file if restored else None), flush=True)
        await stop.wait()
    finally:
        await server.stop()
        if state_file is not None:
            server.save_state(state_file)
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(signum)


def run(args: argparse.Namespace) -> int:
    args.restore = args.state_file is not None and os.path.exists(args.state_file)
    asyncio.run(_serve(args))
    if not args.json:
        print("fake API server stopped", flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kinformer.testing",
                                     description="kinformer's fake Kubernetes API server, in its own process")
    add_arguments(parser)
    return run(parser.parse_args(argv))
