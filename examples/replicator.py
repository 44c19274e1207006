"""A small operator: replicate labelled ConfigMaps into other namespaces.

    python examples/replicator.py --fake     # embedded FakeApiServer, scripted churn and faults; exits when converged
    python examples/replicator.py            # your kubeconfig's cluster, until SIGTERM / SIGINT

Every ConfigMap labelled `replicate-to=<namespace>` is copied (same name, same data) into
that namespace. A copy is labelled `replicator.kinformer.dev/managed=true` and annotated
with its source's key; editing a copy is undone, moving or deleting the source (or removing
its label) deletes the copy, and a ConfigMap of that name that is not a copy is left alone
(a `TerminalError`: retrying cannot help until something changes). Writes are optimistic:
a replace carries the cached resourceVersion, a stale one gets 409 Conflict, and the
controller retries with backoff from a newer cache.

Why copies are linked by an annotation and not an ownerReference: an ownerReference must
name an owner in the dependent's own namespace (or a cluster-scoped one). The garbage
collector treats a cross-namespace owner as absent and deletes the dependent, so on a real
cluster owner-referenced copies would be deleted as fast as they were made. The
annotation plus `.watches(copies, map=...)` is the cross-namespace form of `.owns(...)`,
and cleanup is the reconcile's job (it runs for a deleted source too: it gets the key).

(The file is not called `operator.py`: run as a script, that name would shadow the
standard library's `operator` module for everything the script imports.)
"""

import argparse
import asyncio
import sys
import time
from typing import Any

# -- the operator (README.md shows this part) ---------------------------------------------
from kubernetes_asyncio.client import ApiClient, ApiException, CoreV1Api

from kinformer import Controller, InformerFactory, Request, TerminalError
from kinformer.objects import annotations, labels

TARGET, MANAGED, SOURCE = "replicate-to", "replicator.kinformer.dev/managed", "replicator.kinformer.dev/source"


def replicator(api: ApiClient, factory: InformerFactory, **controller_options: Any) -> Controller:
    core = CoreV1Api(api)
    sources = factory.informer("configmaps", label_selector=TARGET)
    copies = factory.informer("configmaps", label_selector=f"{MANAGED}=true",
                              indexers={"source": lambda copy: [annotations(copy)[SOURCE]]})

    async def reconcile(request: Request) -> None:
        source = sources.indexer.get_by_key(request.key)  # None: deleted, or no longer labelled
        target = labels(source).get(TARGET)
        for copy in copies.indexer.by_index("source", request.key):  # stale copies go (a 404 is retried)
            if copy["metadata"]["namespace"] != target:
                await core.delete_namespaced_config_map(request.name, copy["metadata"]["namespace"])
        if source is None or target in (None, request.namespace):
            return
        meta = {"name": request.name, "labels": {MANAGED: "true"}, "annotations": {SOURCE: request.key}}
        body = {"metadata": meta, "data": source.get("data") or {}}
        if (have := copies.indexer.get_by_key(f"{target}/{request.name}")) is None:
            try:
                await core.create_namespaced_config_map(target, body)
            except ApiException as e:  # 409: our copy, not in the cache yet (retried), or not ours
                existing = await core.read_namespaced_config_map(request.name, target) if e.status == 409 else None
                if existing is not None and (existing.metadata.annotations or {}).get(SOURCE) != request.key:
                    raise TerminalError(f"{target}/{request.name} exists and is not a copy of {request}") from e
                raise
        elif annotations(have)[SOURCE] != request.key:
            raise TerminalError(f"{target}/{request.name} is a copy of {annotations(have)[SOURCE]}")
        elif have.get("data") != body["data"]:  # new data, or a copy edited by hand
            meta["resourceVersion"] = have["metadata"]["resourceVersion"]  # stale → 409 → retried
            await core.replace_namespaced_config_map(request.name, target, body)

    return Controller("configmap-replicator", reconcile, workers=4, **controller_options).watches(sources).watches(
        copies, map=lambda copy: [Request.from_key(annotations(copy)[SOURCE])])
# -- end of the operator -------------------------------------------------------------------


def expected_copies(configmaps: dict[str, Any]) -> dict[str, dict[str, str]]:
    """What the cluster should hold once converged: copy key → data (from the server's state)."""
    out: dict[str, dict[str, str]] = {}
    for key, cm in configmaps.items():
        target = labels(cm).get(TARGET)
        namespace, name = cm["metadata"]["namespace"], cm["metadata"]["name"]
        if not target or target == namespace:
            continue
        existing = configmaps.get(f"{target}/{name}")
        if existing is not None and annotations(existing).get(SOURCE) != key:
            continue  # a ConfigMap that is not this source's copy is in the way: never overwritten
        out[f"{target}/{name}"] = cm.get("data") or {}
    return out


def actual_copies(configmaps: dict[str, Any]) -> dict[str, dict[str, str]]:
    return {key: cm.get("data") or {} for key, cm in configmaps.items() if labels(cm).get(MANAGED) == "true"}


async def converged(server: Any, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        configmaps = server.objects("configmaps")
        if expected_copies(configmaps) == actual_copies(configmaps):
            return True
        await asyncio.sleep(0.01)
    return False


async def run_fake(timeout: float = 20.0) -> int:
    """Seed a FakeApiServer, run the operator through churn and faults, report convergence."""
    import anyio

    from kinformer.testing import FakeApiServer, make_configmap, make_namespace

    started = time.monotonic()
    async with FakeApiServer(bookmark_interval=0.2) as server:
        for ns in ("src", "team-a", "team-b"):
            server.create("namespaces", make_namespace(ns))
        for i in range(20):
            cm = make_configmap(f"cm-{i:02d}", "src", v="0")
            cm["metadata"]["labels"] = {TARGET: "team-a" if i % 2 == 0 else "team-b"}
            server.create("configmaps", cm)
        server.create("configmaps", make_configmap("cm-03", "team-b", owner="someone else"))
        api = server.api_client()
        try:
            async with InformerFactory(api) as factory, anyio.create_task_group() as tg:
                controller = replicator(api, factory)
                tg.start_soon(controller.run)
                ok = await converged(server, timeout)
                print(f"initial sync: {len(actual_copies(server.objects('configmaps')))} copies, converged={ok}")

                def edit(name: str, ns: str = "src", **changes: Any) -> None:
                    current = server.get("configmaps", name, ns)
                    server.update("configmaps", {**current, **changes})

                server.fail_next(4, 409, verbs=["update", "create"])  # injected conflicts
                for i in range(0, 20, 3):
                    edit(f"cm-{i:02d}", data={"v": "1"})
                edit("cm-01", ns="team-b", data={"v": "edited by hand"})  # a racing writer on a copy
                edit("cm-00", metadata={**server.get("configmaps", "cm-00", "src")["metadata"],
                                        "labels": {TARGET: "team-b"}})  # the copy moves
                server.delete("configmaps", "cm-07", "src")  # its copy goes
                server.drop_watches()
                for i in range(1, 20, 4):
                    edit(f"cm-{i:02d}", data={"v": "2"})
                server.compact()  # resuming watches now get 410: the informers relist
                server.drop_watches()
                ok = ok and await converged(server, timeout)
                stats = controller.stats()
                tg.cancel_scope.cancel()
        finally:
            await api.close()
        copies = actual_copies(server.objects("configmaps"))
        conflicts = sum(1 for r in server.requests if r.verb in ("update", "create"))
    print(f"after churn: {len(copies)} copies, converged={ok}; reconciles {sum(stats.results.values())} "
          f"(errors {stats.errors}, terminal {stats.terminal_errors}); writes {conflicts}; "
          f"{time.monotonic() - started:.1f} s")
    return 0 if ok else 1


async def run_cluster() -> None:
    from kubernetes_asyncio import config

    from kinformer import shutdown_on_signal

    await config.load_kube_config()
    async with ApiClient() as api, InformerFactory(api) as factory, shutdown_on_signal():
        await replicator(api, factory).run()


def main() -> None:
    import logging

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fake", action="store_true", help="run against an embedded FakeApiServer and exit")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO if not args.fake else logging.CRITICAL,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    if args.fake:
        sys.exit(asyncio.run(run_fake()))
    asyncio.run(run_cluster())


if __name__ == "__main__":
    main()
