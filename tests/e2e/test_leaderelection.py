"""Leader election against a real kube-apiserver: a real Lease, its validation and optimistic
concurrency, and real time (short durations: lease 3 s, renew deadline 2 s, retry 0.5 s)."""

from __future__ import annotations

import re
import time
from typing import Any

import anyio

from kinformer.leaderelection import ElectionState, LeaderElector
from kinformer.testing import eventually
from tests.e2e.conftest import raw

LD, RD, RP = 3.0, 2.0, 0.5
MAX_WAIT = RP * (1 + 1.2)
MICRO_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$")


async def test_electors_share_a_real_lease_and_hand_it_over(api: Any, namespace: str) -> None:
    path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/e2e-lock"
    electors: dict[str, LeaderElector] = {}
    scopes: dict[str, anyio.CancelScope] = {}
    overlaps: list[list[str]] = []

    async def lease() -> dict[str, Any]:
        status, body = await raw(api, "GET", path)
        assert status == 200, body
        return body["spec"]  # type: ignore[no-any-return]

    async def run(identity: str) -> None:
        with anyio.CancelScope() as scope:
            scopes[identity] = scope
            await electors[identity].run()

    async def start(identity: str, release: bool) -> LeaderElector:
        electors[identity] = LeaderElector(api, "e2e-lock", namespace, identity, LD, RD, RP,
                                           release_on_cancel=release)
        tg.start_soon(run, identity)
        return electors[identity]

    async def watch_for_overlap() -> None:
        while True:
            leading = [i for i, e in electors.items() if e.is_leader()]
            if len(leading) > 1:
                overlaps.append(leading)
            await anyio.sleep(0.02)

    async with anyio.create_task_group() as tg:
        tg.start_soon(watch_for_overlap)
        a = await start("a", release=True)
        await eventually(a.is_leader, 10)
        spec = await lease()
        assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 3
        assert spec["leaseTransitions"] == 0
        assert MICRO_TIME.match(spec["renewTime"]) and MICRO_TIME.match(spec["acquireTime"])
        first_renew = spec["renewTime"]
        b = await start("b", release=False)
        await eventually(lambda: b.leader == "a", 10)
        with anyio.fail_after(5):  # a renews on the server every retry period
            while (await lease())["renewTime"] == first_renew:  # noqa: ASYNC110 - polling the server's state
                await anyio.sleep(0.05)

        # a steps down and releases: b takes over at its next attempt
        cancelled = time.monotonic()
        scopes["a"].cancel()
        await eventually(b.is_leader, 10)
        release_handover = time.monotonic() - cancelled
        spec = await lease()
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 1
        assert release_handover < MAX_WAIT + 1.0

        # b dies without releasing: c waits out the lease duration it observed
        c = await start("c", release=True)
        await eventually(lambda: c.leader == "b", 10)
        killed = time.monotonic()
        scopes["b"].cancel()
        await eventually(c.is_leader, 20)
        expiry_handover = time.monotonic() - killed
        spec = await lease()
        assert spec["holderIdentity"] == "c" and spec["leaseTransitions"] == 2
        assert LD - MAX_WAIT <= expiry_handover < LD + 2 * MAX_WAIT + 1.0

        scopes["c"].cancel()
        await eventually(lambda: not c.is_leader(), 10)
        await eventually(lambda: c.state is ElectionState.STOPPED, 10)
        spec = await lease()
        assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1
        tg.cancel_scope.cancel()
    assert overlaps == []
    print(f"\nreal hand-over: release {release_handover:.3f} s, expiry {expiry_handover:.3f} s")


async def test_the_real_server_refuses_a_stale_update(api: Any, namespace: str) -> None:
    """The premise of the algorithm: a Lease update with an old resourceVersion gets 409."""
    elector = LeaderElector(api, "e2e-stale", namespace, "a", LD, RD, RP)
    async with elector.leading():
        path = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases/e2e-stale"
        status, current = await raw(api, "GET", path)
        assert status == 200
        stale = {**current, "metadata": {**current["metadata"], "resourceVersion": "1"}}
        status, body = await raw(api, "PUT", path, stale)
        assert status == 409 and body["reason"] == "Conflict"
    status, after = await raw(api, "GET", path)
    assert status == 200 and after["spec"]["holderIdentity"] == ""

