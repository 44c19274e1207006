"""The `kinformer` command: demo, get, watch, serve, mirror and fake-server.

`get`, `watch` and `serve` are in `kinformer._commands`; `mirror` in `kinformer.mirror._cli`.

A subcommand that needs an extra that is not installed exits with status 2 and one line on
stderr naming the extra (`pip install 'kinformer[demo]'`), not a traceback.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

from kinformer import __version__
from kinformer._commands import add_commands, run_command
from kinformer.errors import MissingExtraError


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="kinformer", description="asyncio-native Kubernetes informers")
    parser.add_argument("--version", action="version", version=f"kinformer {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="informers against an embedded fake API server with live churn")
    demo.add_argument("--duration", type=float, default=None, help="seconds to run (default: until Ctrl-C)")
    demo.add_argument("--pods", type=int, default=500)
    demo.add_argument("--namespaces", type=int, default=5)
    demo.add_argument("--rate", type=float, default=200.0, help="pod writes per second")
    demo.add_argument("--slow-ms", type=float, default=20.0, help="the slow handler's time per event")
    demo.add_argument("--drop-every", type=float, default=3.0, metavar="SECONDS",
                      help="drop every watch this often (the informers resume without a relist)")
    demo.add_argument("--compact-every", type=float, default=8.0, metavar="SECONDS",
                      help="compact the server's history this often (410 Gone: each informer relists once)")
    demo.add_argument("--plain", action="store_true",
                      help="no live table: log lines as they happen, then the final table (the default "
                           "when stdout is not a terminal)")
    add_commands(sub)
    mirror_cli: Any
    try:
        from kinformer.mirror import _cli as mirror_cli
    except MissingExtraError as exc:
        mirror_cli = None
        missing_mirror: MissingExtraError | None = exc
        sub.add_parser("mirror", help="mirror clusters into SQL (needs kinformer[sql])", add_help=False)
    else:
        missing_mirror = None
        mirror_cli.add_parser(sub)
    from kinformer.testing import _cli as fake_server

    server = sub.add_parser("fake-server", help="serve a fake API server (same as python -m kinformer.testing)",
                            description="kinformer's fake Kubernetes API server; prints a kubeconfig for kubectl")
    fake_server.add_arguments(server)
    args = parser.parse_args(argv)
    if args.command in ("get", "watch", "serve"):
        return run_command(args)
    if args.command == "demo":
        try:
            from kinformer._demo import run_demo
        except MissingExtraError as exc:
            print(f"kinformer: {exc}", file=sys.stderr)
            return 2
        try:
            return asyncio.run(run_demo(args))
        except KeyboardInterrupt:
            return 0
    if args.command == "mirror":
        if mirror_cli is None:
            print(f"kinformer: {missing_mirror}", file=sys.stderr)
            return 2
        return int(mirror_cli.run_mirror(args))
    return fake_server.run(args)


if __name__ == "__main__":
    sys.exit(main())
