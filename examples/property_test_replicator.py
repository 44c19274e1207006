"""Property-test the example operator (examples/replicator.py): copies equal their sources
after any interleaving of writes and API-server faults.

    python examples/property_test_replicator.py                 # the default budget
    python examples/property_test_replicator.py --examples 200 --steps 40

The machine writes ConfigMaps in `src` and `team-a` labelled `replicate-to=team-a`,
`team-b`, their own namespace, or nothing, and changes their data and labels at random; it
drops, stalls and compacts watches and fails requests (the operator's creates, replaces and
deletes too: they are retried with backoff on the machine's FakeClock). Whenever it
settles — informers caught up, the controller idle, every retry that was due run — the
copies on the server must be exactly what the sources ask for (`expected_copies`).
"""

from __future__ import annotations

import argparse
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from replicator import TARGET, actual_copies, expected_copies, replicator

from kinformer.testing import ConvergenceEnv, ConvergenceMachine
from kinformer.testing import strategies as ks
from kinformer.testing.convergence import DEFAULT_SETTINGS

# None of these keys is another's copy (a copy keeps its source's name), so the operator never
# meets a ConfigMap in the way of a copy.
SOURCES = ("src/a", "src/b", "team-a/c")
TARGETS = st.sampled_from([{}, {TARGET: "team-a"}, {TARGET: "team-b"}, {TARGET: "src"}])
DATA = st.dictionaries(st.sampled_from(["k", "v"]), st.sampled_from(["0", "1"]), max_size=2)


class ReplicatorConverges(ConvergenceMachine):
    resources = ("configmaps",)
    keys = SOURCES

    def objects(self, resource: Any, namespace: str | None, name: str) -> st.SearchStrategy[dict[str, Any]]:
        return ks.config_maps(name=name, namespace=namespace, labels=TARGETS, data=DATA)

    async def setup(self, env: ConvergenceEnv) -> None:
        # On the machine's clock, so retries and requeues wait for the time the machine lets pass.
        env.add(replicator(env.client, env.factory, clock=env.clock))

    def check(self, env: ConvergenceEnv) -> None:
        configmaps = env.server.objects("configmaps")
        assert actual_copies(configmaps) == expected_copies(configmaps), (
            f"copies {actual_copies(configmaps)}, wanted {expected_copies(configmaps)}")


def test_copies_equal_sources_after_any_interleaving(budget: settings = DEFAULT_SETTINGS) -> None:
    ReplicatorConverges.TestCase.settings = budget
    ReplicatorConverges.TestCase().runTest()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=DEFAULT_SETTINGS.max_examples)
    parser.add_argument("--steps", type=int, default=DEFAULT_SETTINGS.stateful_step_count)
    args = parser.parse_args()
    test_copies_equal_sources_after_any_interleaving(settings(DEFAULT_SETTINGS, max_examples=args.examples,
                                                              stateful_step_count=args.steps))
    print(f"the replicator converged in {args.examples} examples of up to {args.steps} steps")
