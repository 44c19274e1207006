"""`python -m kinformer.testing`: a fake API server in its own process.

Invariants:
- Prints one JSON line `{"url": ..., "token": ..., "resourceVersion": ...}` once the server
  listens, then serves until interrupted.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json

from kinformer.testing.generators import make_pod
from kinformer.testing.server import DEFAULT_TOKEN, FakeApiServer


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="kinformer's fake Kubernetes API server")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--token", default=DEFAULT_TOKEN)
    parser.add_argument("--seed-pods", type=int, default=0)
    parser.add_argument("--pod-bytes", type=int, default=3000)
    parser.add_argument("--namespaces", type=int, default=10)
    parser.add_argument("--history", type=int, default=10_000)
    parser.add_argument("--bookmark-interval", type=float, default=1.0)
    args = parser.parse_args(argv)

    async def serve() -> None:
        server = FakeApiServer(token=args.token, history_size=args.history,
                               bookmark_interval=args.bookmark_interval, host=args.host, port=args.port)
        for i in range(args.seed_pods):
            server.create("pods", make_pod(i, f"ns-{i % args.namespaces}", size=args.pod_bytes))
        await server.start()
        print(json.dumps({"url": server.url, "token": server.token,
                          "resourceVersion": server.resource_version}), flush=True)
        try:
            await asyncio.Event().wait()
        finally:
            await server.stop()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
