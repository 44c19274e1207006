"""Count pods per phase with a shared informer, and keep the counts live.

    python examples/pod_phases.py            # against your kubeconfig's cluster
    python examples/pod_phases.py --fake     # against an embedded FakeApiServer

Shows the pieces most operators need: a factory, a handler that may be async, the
cache read through a Lister, and `wait_synced` for "this handler has seen everything".
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
from typing import Any

from kinformer import InformerFactory, Resource


async def count_phases(api: Any, seconds: float) -> collections.Counter[str]:
    async with InformerFactory(api) as factory:
        pods = factory.informer(Resource.pods)
        changes = collections.Counter[str]()

        def on_update(old: Any, new: Any) -> None:
            if old["status"].get("phase") != new["status"].get("phase"):
                changes[f"{old['status'].get('phase')}→{new['status'].get('phase')}"] += 1

        reg = pods.add_event_handler(on_update=on_update)
        await factory.wait_for_cache_sync(30)
        await reg.wait_synced()
        await asyncio.sleep(seconds)
        phases = collections.Counter(p["status"].get("phase", "Unknown") for p in factory.lister(Resource.pods).list())
        for change, n in changes.items():
            print(f"phase change {change}: {n}")
        return phases


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--fake", action="store_true", help="use an embedded FakeApiServer")
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args()
    async with contextlib.AsyncExitStack() as stack:
        if args.fake:
            from kinformer.testing import FakeApiServer, make_pod

            server = await stack.enter_async_context(FakeApiServer())
            for i in range(30):
                server.create("pods", make_pod(i, "default", phase="Running" if i % 3 else "Pending"))
            api = server.api_client()
        else:
            from kubernetes_asyncio import config
            from kubernetes_asyncio.client import ApiClient

            await config.load_kube_config()
            api = ApiClient()
        stack.push_async_callback(api.close)
        phases = await count_phases(api, args.seconds)
    for phase, n in sorted(phases.items()):
        print(f"{phase:<10} {n}")


if __name__ == "__main__":
    asyncio.run(main())
