"""Electors against FakeApiServer over HTTP (one kubernetes_asyncio client each), on one FakeClock.

Every hand-over is asserted on the fake timeline; "started" is on_started_leading, "work-ended"
is the guarded work finishing (the end of a term), "stopped" is on_stopped_leading.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

from kinformer import Resource
from kinformer.testing import FakeApiServer, FakeClock
from tests.leaderelection_harness import Timeline, fake_time_of, timeline

LD, RD, RP = 15.0, 10.0, 2.0
MAX_WAIT = RP * (1 + 1.2)  # a candidate's longest wait between attempts


@asynccontextmanager
async def electors(server: FakeApiServer, clock: FakeClock, **defaults: Any) -> AsyncIterator[Timeline]:
    clients: list[Any] = []

    def connect(_: str) -> Any:
        clients.append(server.api_client())
        return clients[-1]

    try:
        async with timeline(clock, connect, **defaults) as tl:
            yield tl
    finally:
        for client in clients:
            await client.close()


def lease(server: FakeApiServer) -> dict[str, Any]:
    return server.get(Resource.leases, "lock", "default")["spec"]  # type: ignore[no-any-return]


async def test_of_two_electors_exactly_one_leads(fake_api_server: FakeApiServer) -> None:
    clock = FakeClock()
    async with electors(fake_api_server, clock, rand=random.Random(7).random) as tl:
        await tl.start_together("a", "b")  # both may see no Lease; one create wins, the other gets 409
        winner = tl.leaders()
        assert len(winner) == 1
        for _ in range(240):  # a minute of renewals and retries, checked at every quarter second
            await tl.advance(0.25)
            assert tl.leaders() == winner
        spec = lease(fake_api_server)
        assert spec["holderIdentity"] == winner[0] and spec["leaseTransitions"] == 0
        assert {w for _, _, w in tl.events if w.startswith("new-leader")} == {f"new-leader:{winner[0]}"}
        tl.assert_no_overlap()


@pytest.mark.parametrize("phase", [0.25, 1.0, 1.75, 2.0])
async def test_release_on_cancel_hands_over_within_retry_period(fake_api_server: FakeApiServer,
                                                                phase: float) -> None:
    clock = FakeClock()
    async with electors(fake_api_server, clock) as tl:
        await tl.start("a")
        await tl.advance(1.0)
        await tl.start("b")  # b attempts at 1001, 1003, ... (no jitter)
        await tl.advance(10.0 + phase)
        await tl.stop("a")
        released = clock.now()
        assert lease(fake_api_server)["holderIdentity"] == ""
        handover = await tl.advance_until(tl.replicas["b"].elector.is_leader, limit=RP)
        assert 0 < handover <= RP
        assert tl.times("b", "started") == [released + handover]
        assert lease(fake_api_server)["holderIdentity"] == "b" and lease(fake_api_server)["leaseTransitions"] == 1
        tl.assert_no_overlap()


async def test_release_on_cancel_hands_over_within_a_jittered_retry_period(fake_api_server: FakeApiServer) -> None:
    clock = FakeClock()
    async with electors(fake_api_server, clock, rand=random.Random(3).random) as tl:
        await tl.start("a")
        await tl.start("b")
        handovers = []
        for i in range(6):  # the leader steps down, the other takes over, the first comes back as a candidate
            leader = tl.leaders()[0]
            await tl.advance(3.0 + i * 0.75)
            await tl.stop(leader)
            handovers.append(await tl.advance_until(lambda: bool(tl.leaders()), limit=MAX_WAIT))
            await tl.start(leader)
            assert tl.leaders() not in ([], [leader])
        assert all(0 < h <= MAX_WAIT for h in handovers)
        assert lease(fake_api_server)["leaseTransitions"] == 6
        tl.assert_no_overlap()


@pytest.mark.parametrize("phase", [0.0, 0.5, 1.0, 1.5])
async def test_a_killed_leader_is_replaced_after_lease_duration(fake_api_server: FakeApiServer,
                                                                phase: float) -> None:
    clock = FakeClock()
    async with electors(fake_api_server, clock, release_on_cancel=False) as tl:
        await tl.start("a")
        await tl.advance(0.5)
        await tl.start("b")  # b attempts at 1000.5, 1002.5, ...
        await tl.advance(10.0 + phase)
        last_renewal = fake_time_of(lease(fake_api_server)["renewTime"])
        await tl.stop("a")  # a process that dies: nothing released
        killed = clock.now()
        handover = await tl.advance_until(tl.replicas["b"].elector.is_leader, limit=LD + 2 * RP)
        taken = killed + handover
        # never before lease_duration after a's last renewal, b's own observation of it included
        assert taken - last_renewal >= LD
        assert handover <= LD + 2 * RP
        assert lease(fake_api_server)["leaseTransitions"] == 1
        tl.assert_no_overlap()


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_a_partitioned_leader_stops_before_another_starts(fake_api_server: FakeApiServer, mode: str) -> None:
    clock = FakeClock()
    async with electors(fake_api_server, clock, rand=random.Random(11).random) as tl:
        a = await tl.start("a")
        await tl.advance(0.75)
        b = await tl.start("b")
        await tl.advance(9.0)
        last_renewal = fake_time_of(lease(fake_api_server)["renewTime"])
        a.api.partition(mode)
        await tl.advance_until(b.elector.is_leader, limit=LD + 2 * MAX_WAIT)
        (a_end,) = tl.times("a", "work-ended")
        (b_start,) = tl.times("b", "started")
        assert a_end <= last_renewal + RP + RD  # a gave up at its renew deadline ...
        assert b_start - a_end >= LD - RD - RP  # ... at least 3 s before b could start
        assert b_start - last_renewal >= LD
        tl.assert_no_overlap()
        await tl.advance_until(a.done.is_set, limit=RD)  # a hanging release is given up after renew_deadline
        assert a.outcome == "lost" and lease(fake_api_server)["holderIdentity"] == "b"


async def test_lease_transitions_count_each_change_of_holder(fake_api_server: FakeApiServer) -> None:
    clock = FakeClock()
    async with electors(fake_api_server, clock) as tl:
        await tl.start("a")
        acquired = lease(fake_api_server)["acquireTime"]
        await tl.advance(6.0)
        assert lease(fake_api_server)["acquireTime"] == acquired  # renewals keep it
        await tl.start("b")
        expected_holders = ["a"]
        for step in range(1, 4):
            holder = tl.leaders()[0]
            nxt = "b" if holder == "a" else "a"
            await tl.stop(holder)
            await tl.advance_until(tl.replicas[nxt].elector.is_leader, limit=RP)
            spec = lease(fake_api_server)
            assert spec["holderIdentity"] == nxt and spec["leaseTransitions"] == step
            assert fake_time_of(spec["acquireTime"]) == clock.now()
            await tl.start(holder)  # back as a candidate
            await tl.advance(4.0)
            expected_holders.append(nxt)
        assert [who for _, who, w in tl.events if w == "started"] == expected_holders
        tl.assert_no_overlap()


async def test_transient_server_errors_do_not_end_leadership(fake_api_server: FakeApiServer) -> None:
    clock = FakeClock()
    async with electors(fake_api_server, clock) as tl:
        a = await tl.start("a")
        updates = fake_api_server.count("update")
        gets = fake_api_server.count("get")
        await tl.advance(4.0)
        assert fake_api_server.count("update") == updates + 2 and fake_api_server.count("get") == gets
        fake_api_server.fail_next(3, 500, verbs=["update"])  # 1.5 rounds of failed writes, 6 s
        await tl.advance(12.0)
        assert a.elector.is_leader() and a.elector.check() is None
        fake_api_server.fail_next(4, 429, retry_after=1, verbs=["get", "update"])
        await tl.advance(12.0)
        assert a.elector.is_leader() and tl.times("a", "stopped") == []
        assert clock.now() - fake_time_of(lease(fake_api_server)["renewTime"]) <= RP
