"""Property-test a handler-maintained index (pods per node) against any writes and faults.

    python examples/property_test_pods_per_node.py            # the default budget
    python examples/property_test_pods_per_node.py --examples 300 --steps 40

`NodeIndex` keeps node → pod keys from an informer's events. `check_converges` creates,
updates, patches and deletes pods at random (pods move between nodes on update), injects
FakeApiServer faults (drops, 410s, 429s, 500s, malformed lines, stalls), lets time pass on a
FakeClock, and after each settle asserts that the index equals the server's pods grouped by
`spec.nodeName`. Break `on_delete` (drop the tombstone branch) or `on_update` (forget to
remove the old node) and it fails with a shrunk sequence of a few steps.
"""

from __future__ import annotations

import argparse
from typing import Any

from hypothesis import settings

from kinformer import DeletedFinalStateUnknown, meta_namespace_key
from kinformer.testing import ConvergenceEnv, FakeApiServer, check_converges
from kinformer.testing.convergence import DEFAULT_SETTINGS


class NodeIndex:
    """node name → keys of the pods on it (unscheduled pods are not indexed)."""

    def __init__(self) -> None:
        self.by_node: dict[str, set[str]] = {}

    def _put(self, pod: Any) -> None:
        node = pod["spec"].get("nodeName")
        if node:
            self.by_node.setdefault(node, set()).add(meta_namespace_key(pod))

    def _remove(self, key: str) -> None:
        for node, keys in list(self.by_node.items()):
            keys.discard(key)
            if not keys:
                del self.by_node[node]

    def on_add(self, pod: Any, is_in_initial_list: bool) -> None:
        self._put(pod)

    def on_update(self, old: Any, new: Any) -> None:
        self._remove(meta_namespace_key(old))
        self._put(new)

    def on_delete(self, pod: Any) -> None:
        # After a missed delete (a watch gap, then a relist), the informer hands over a tombstone.
        key = pod.key if isinstance(pod, DeletedFinalStateUnknown) else meta_namespace_key(pod)
        self._remove(key)


def index_pods_by_node(env: ConvergenceEnv) -> NodeIndex:
    index = NodeIndex()
    env.informer("pods").add_event_handler(index.on_add, index.on_update, index.on_delete)
    return index


def pods_by_node(server: FakeApiServer) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for key, pod in server.objects("pods").items():
        if pod["spec"].get("nodeName"):
            out.setdefault(pod["spec"]["nodeName"], set()).add(key)
    return out


def index_matches_the_server(server: FakeApiServer, index: NodeIndex) -> None:
    expected = pods_by_node(server)
    assert index.by_node == expected, f"the index says {index.by_node}, the server's pods {expected}"


def test_pods_per_node_index_converges(budget: settings = DEFAULT_SETTINGS) -> None:
    check_converges(index_pods_by_node, index_matches_the_server, resources=["pods"], settings=budget)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=DEFAULT_SETTINGS.max_examples)
    parser.add_argument("--steps", type=int, default=DEFAULT_SETTINGS.stateful_step_count)
    args = parser.parse_args()
    test_pods_per_node_index_converges(settings(DEFAULT_SETTINGS, max_examples=args.examples,
                                                stateful_step_count=args.steps))
    print(f"pods-per-node index converged in {args.examples} examples of up to {args.steps} steps")
