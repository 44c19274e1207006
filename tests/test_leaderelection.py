"""LeaderElector against an in-memory Lease API, every timing on a FakeClock."""

from __future__ import annotations

import logging
import math
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import anyio
import pytest

from kinformer import leaderelection
from kinformer.errors import (
    AlreadyStartedError,
    KinformerError,
    LeaderElectionConfigError,
    LeaderElectionError,
    LeadershipLostError,
)
from kinformer.leaderelection import ElectionState, LeaderElector, micro_time
from kinformer.testing import FakeClock, eventually
from tests.leaderelection_harness import (
    LeaseStore,
    StoreApi,
    fake_time_of,
    timeline,
    wall_clock_of,
)

NS, NAME = "default", "lock"


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def store() -> LeaseStore:
    return LeaseStore()


def replicas(clock: FakeClock, store: LeaseStore) -> Any:
    return timeline(clock, lambda who: StoreApi(store, who))


def other_holder(store: LeaseStore, renew_time: str, duration: int = 7, holder: str = "other",
                 transitions: int = 4) -> None:
    store.put(NS, NAME, {"holderIdentity": holder, "leaseDurationSeconds": duration, "acquireTime": renew_time,
                         "renewTime": renew_time, "leaseTransitions": transitions})


# -- configuration -------------------------------------------------------------------------


@pytest.mark.parametrize(("durations", "message"), [
    ((10, 10, 2), "lease_duration (10) must be greater than renew_deadline (10)"),
    ((15, 2.4, 2), "renew_deadline (2.4) must be greater than retry_period * 1.2"),
    ((15, 10, 0), "retry_period must be a finite number of seconds > 0"),
    ((15, -1, 2), "renew_deadline must be a finite number of seconds > 0"),
    ((math.inf, 10, 2), "lease_duration must be a finite number of seconds > 0"),
    ((math.nan, 10, 2), "lease_duration must be a finite number of seconds > 0"),
])
def test_invalid_durations_are_refused_with_the_rule_broken(durations: tuple[float, float, float],
                                                             message: str) -> None:
    with pytest.raises(LeaderElectionConfigError) as info:
        LeaderElector(object(), NAME, NS, "me", *durations)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError) and isinstance(info.value, LeaderElectionError)
    assert isinstance(info.value, KinformerError)


@pytest.mark.parametrize(("lease_name", "namespace", "identity", "field"), [
    (NAME, NS, "", "identity"), ("", NS, "me", "lease_name"), (NAME, "", "me", "namespace")])
def test_empty_names_are_refused(lease_name: str, namespace: str, identity: str, field: str) -> None:
    with pytest.raises(LeaderElectionConfigError, match=f"{field} must be a non-empty string"):
        LeaderElector(object(), lease_name, namespace, identity)


def test_the_boundaries_of_the_rules_are_accepted() -> None:
    elector = LeaderElector(object(), NAME, NS, "me", 2.5, 2.41, 2)
    assert (elector.lease_duration, elector.renew_deadline, elector.retry_period) == (2.5, 2.41, 2.0)
    defaults = LeaderElector(object(), NAME, NS, "me")
    assert (defaults.lease_duration, defaults.renew_deadline, defaults.retry_period) == (15, 10, 2)
    assert defaults.release_on_cancel and defaults.state is ElectionState.STOPPED


def test_micro_time_is_rfc3339_utc_with_microseconds() -> None:
    assert micro_time(datetime(2026, 12, 1, 10, 0, 0, 123456, tzinfo=UTC)) == "2026-12-01T10:00:00.123456Z"
    cest = timezone(timedelta(hours=2))
    assert micro_time(datetime(2026, 12, 1, 12, 0, 0, tzinfo=cest)) == "2026-12-01T10:00:00.000000Z"
    naive_local = datetime(2026, 12, 1, 12, 0, 0)
    assert micro_time(naive_local) == micro_time(naive_local.astimezone())


# -- acquiring and renewing -------------------------------------------------------------------


async def test_first_candidate_creates_the_lease_and_leads(store: LeaseStore,
                                                         clock: FakeClock) -> None:
    async with replicas(clock, store) as tl:
        a = await tl.start("a")
        assert a.elector.is_leader() and a.elector.state is ElectionState.LEADING and a.elector.leader == "a"
        spec = store.spec(NS, NAME)
        assert spec["holderIdentity"] == "a" and spec["leaseDurationSeconds"] == 15 and spec["leaseTransitions"] == 0
        assert spec["acquireTime"] == spec["renewTime"] == micro_time(wall_clock_of(clock)())
        assert [w for _, _, w in tl.events] == ["new-leader:a", "started"]
        assert [m for _, m, _ in store.requests] == ["GET", "POST"]


async def test_renewals_take_the_fast_path_every_retry_period(store: LeaseStore,
                                                             clock: FakeClock) -> None:
    async with replicas(clock, store) as tl:
        await tl.start("a")
        acquired = store.spec(NS, NAME)
        store.requests.clear()
        renew_times = []
        for _ in range(5):
            await tl.advance(2.0)
            renew_times.append(fake_time_of(store.spec(NS, NAME)["renewTime"]))
        assert [m for _, m, _ in store.requests] == ["PUT"] * 5  # no GET while the cached lease is current
        assert renew_times == [1002.0, 1004.0, 1006.0, 1008.0, 1010.0]
        spec = store.spec(NS, NAME)
        assert spec["acquireTime"] == acquired["acquireTime"] and spec["leaseTransitions"] == 0


async def test_a_conflicting_write_sends_the_leader_down_the_slow_path(clock: FakeClock, store: LeaseStore) -> None:
    async with replicas(clock, store) as tl:
        await tl.start("a")
        lease = store.leases[(NS, NAME)]
        store.put(NS, NAME, lease["spec"])  # same spec, new resourceVersion (someone touched a label)
        store.requests.clear()
        await tl.advance(2.0)
        assert [m for _, m, _ in store.requests] == ["PUT", "GET", "PUT"]
        assert tl.leaders() == ["a"] and store.spec(NS, NAME)["holderIdentity"] == "a"


async def test_candidates_retry_every_jittered_retry_period(store: LeaseStore,
                                                            clock: FakeClock) -> None:
    async with replicas(clock, store) as tl:
        other_holder(store, "2026-12-01T10:00:00.000000Z", duration=60)
        await tl.start("b", rand=lambda: 0.625)
        await tl.advance(30.0, step=0.5)
        assert clock.sleeps and set(clock.sleeps) == {2.0 * (1 + 0.625 * 1.2)}  # 3.5 s
        assert store.count("GET", "b") == 1 + math.floor(30.0 / 3.5)


# -- expiry: our observation time + the record's duration ----------------------------------------


@pytest.mark.parametrize("renew_time", ["2099-01-01T00:00:00.000000Z", "1970-01-01T00:00:00.000000Z",
                                        "2026-12-01T10:16:40.000000Z"])
async def test_expiry_counts_the_records_duration_from_our_first_observation(
        store: LeaseStore, clock: FakeClock, renew_time: str) -> None:
    """The record's times are another clock's: far future, far past or "now", b waits the same."""
    async with replicas(clock, store) as tl:
        other_holder(store, renew_time, duration=7)
        observed = clock.now()
        b = await tl.start("b", lease_duration=15)
        assert not b.elector.is_leader() and b.elector.leader == "other"
        waited = await tl.advance_until(b.elector.is_leader, limit=30)
        # attempts at +0, +2, +4, +6 see an unexpired lease (7 s, not b's own 15 s); +8 takes it over
        assert observed + waited == 1008.0
        spec = store.spec(NS, NAME)
        assert spec["holderIdentity"] == "b" and spec["leaseTransitions"] == 5
        assert spec["leaseDurationSeconds"] == 15 and fake_time_of(spec["acquireTime"]) == 1008.0


async def test_every_change_of_the_record_restarts_its_expiry(store: LeaseStore,
                                                              clock: FakeClock) -> None:
    async with replicas(clock, store) as tl:
        other_holder(store, "2030-01-01T00:00:00.000000Z", duration=7)
        b = await tl.start("b")
        for i in range(10):  # the other holder renews every 5 s, its renewTime even going backwards
            await tl.advance(5.0)
            assert not b.elector.is_leader()
            other_holder(store, f"2030-01-01T00:00:{59 - i:02d}.000000Z", duration=7)
        last_change = clock.now()
        await tl.advance_until(b.elector.is_leader, limit=30)
        # b sees that last change at its next attempt (every 2 s, from 1000.0: at +2 after 1050.0)
        first_seen = 1052.0
        assert last_change == 1050.0 and clock.now() == first_seen + 8.0


async def test_a_released_lease_is_taken_at_the_next_attempt(store: LeaseStore,
                                                             clock: FakeClock) -> None:
    async with replicas(clock, store) as tl:
        other_holder(store, "2026-12-01T10:00:00.000000Z", duration=60)
        b = await tl.start("b")
        await tl.advance(1.0)
        other_holder(store, "2026-12-01T10:00:01.000000Z", duration=1, holder="")
        waited = await tl.advance_until(b.elector.is_leader, limit=10)
        assert clock.now() == 1002.0 and waited == 1.0
        assert store.spec(NS, NAME)["leaseTransitions"] == 5


# -- stepping down --------------------------------------------------------------------------


async def test_cancel_releases_the_lease_and_calls_on_stopped_leading(store: LeaseStore,
                                                                     clock: FakeClock) -> None:
    async with replicas(clock, store) as tl:
        a = await tl.start("a")
        await tl.advance(3.0)
        await tl.stop("a")
        spec = store.spec(NS, NAME)
        assert spec["holderIdentity"] == "" and spec["leaseDurationSeconds"] == 1 and spec["leaseTransitions"] == 0
        assert fake_time_of(spec["renewTime"]) == fake_time_of(spec["acquireTime"]) == 1003.0
        assert a.outcome == "cancelled" and a.elector.state is ElectionState.STOPPED and a.elector.leader == ""
        assert tl.times("a", "stopped") == [1003.0]
        assert not a.elector.is_leader()


async def test_without_release_on_cancel_the_lease_is_left_to_expire(clock: FakeClock, store: LeaseStore) -> None:
    async with replicas(clock, store) as tl:
        await tl.start("a", release_on_cancel=False)
        await tl.stop("a")
        assert store.spec(NS, NAME)["holderIdentity"] == "a"
        assert store.count("PUT") == 0 and tl.times("a", "stopped") == [1000.0]


async def test_release_retries_a_conflict(clock: FakeClock, store: LeaseStore) -> None:
    async with replicas(clock, store) as tl:
        await tl.start("a")
        store.failures.append(("PUT", 409))
        await tl.stop("a")
        assert store.spec(NS, NAME)["holderIdentity"] == ""
        assert [m for _, m, _ in store.requests][-4:] == ["GET", "PUT", "GET", "PUT"]


@pytest.mark.parametrize("mode", ["fail", "hang"])
async def test_leadership_is_lost_when_no_renewal_succeeds_within_the_deadline(
        store: LeaseStore, clock: FakeClock, mode: str) -> None:
    async with replicas(clock, store) as tl:
        a = await tl.start("a")
        await tl.advance(4.0)  # renewed at 1002 and 1004
        a.api.partition(mode)
        await tl.advance_until(a.done.is_set, limit=30)
        # the round starting at 1006 has until 1016 (last success 1004 + retry 2 + deadline 10)
        assert tl.times("a", "work-ended") == [1016.0] and a.outcome == "lost"
        # a refused release gives up at once; a hanging one after renew_deadline
        assert tl.times("a", "stopped") == [1016.0 if mode == "fail" else 1026.0]
        assert fake_time_of(store.spec(NS, NAME)["renewTime"]) == 1004.0  # the release could not get through
        assert not a.elector.is_leader() and a.elector.state is ElectionState.STOPPED


async def test_another_holder_ends_leadership_at_once(store: LeaseStore, clock: FakeClock) -> None:
    async with replicas(clock, store) as tl:
        a = await tl.start("a")
        await tl.advance(1.0)
        other_holder(store, "2026-12-01T10:00:01.000000Z", duration=15, holder="intruder")
        await tl.advance_until(a.done.is_set, limit=10)
        assert tl.times("a", "stopped") == [1002.0] and a.outcome == "lost"
        assert store.spec(NS, NAME)["holderIdentity"] == "intruder"  # the release did not clear their lease
        assert ("a", "new-leader:intruder") in [(who, w) for _, who, w in tl.events]


async def test_work_is_cancelled_and_finished_before_the_release(clock: FakeClock, store: LeaseStore) -> None:
    order: list[str] = []

    async def work() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            order.append(f"work ended, holder={store.spec(NS, NAME)['holderIdentity']}")

    elector = LeaderElector(StoreApi(store, "a"), NAME, NS, "a", clock=clock, rand=lambda: 0.0,
                            on_stopped_leading=lambda: order.append(
                                f"stopped, holder={store.spec(NS, NAME)['holderIdentity']}"))
    async def run() -> None:
        with pytest.raises(LeadershipLostError):
            await elector.run(work)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        await eventually(elector.is_leader)
        await clock.wait_for_sleepers(2)
        store.put(NS, NAME, {**store.spec(NS, NAME), "holderIdentity": "intruder"})
        clock.advance(2.0)
        await eventually(lambda: elector.state is ElectionState.STOPPED)
    assert order == ["work ended, holder=intruder", "stopped, holder=intruder"]


async def test_run_returns_the_works_result_after_releasing(clock: FakeClock, store: LeaseStore) -> None:
    async def work() -> int:
        return 42

    elector = LeaderElector(StoreApi(store, "a"), NAME, NS, "a", clock=clock)
    assert await elector.run(work) == 42
    assert store.spec(NS, NAME)["holderIdentity"] == "" and elector.state is ElectionState.STOPPED


async def test_the_works_exception_comes_out_unwrapped(clock: FakeClock, store: LeaseStore) -> None:
    stopped: list[bool] = []

    async def work() -> None:
        raise KeyError("boom")

    elector = LeaderElector(StoreApi(store, "a"), NAME, NS, "a", clock=clock,
                            on_stopped_leading=lambda: stopped.append(True))
    with pytest.raises(KeyError, match="boom"):
        await elector.run(work)
    assert stopped == [True] and store.spec(NS, NAME)["holderIdentity"] == ""


async def test_leading_context_manager_guards_its_body(clock: FakeClock, store: LeaseStore) -> None:
    elector = LeaderElector(StoreApi(store, "a"), NAME, NS, "a", clock=clock)
    async with elector.leading() as inside:
        assert inside is elector and elector.is_leader()
        assert store.spec(NS, NAME)["holderIdentity"] == "a"
    assert store.spec(NS, NAME)["holderIdentity"] == "" and not elector.is_leader()
    async with elector.leading():  # an elector can campaign again once stopped
        assert store.spec(NS, NAME)["leaseTransitions"] == 1


async def test_loss_during_on_started_leading_is_reported(clock: FakeClock, store: LeaseStore) -> None:
    hook_cancelled = anyio.Event()

    async def slow_hook() -> None:
        try:
            await anyio.sleep_forever()
        finally:
            hook_cancelled.set()

    elector = LeaderElector(StoreApi(store, "a"), NAME, NS, "a", clock=clock, rand=lambda: 0.0,
                            on_started_leading=slow_hook)
    body_ran = False

    async def lead() -> None:
        nonlocal body_ran
        async with elector.leading():
            body_ran = True

    async with anyio.create_task_group() as tg:
        outcome: list[BaseException] = []

        async def run() -> None:
            try:
                await lead()
            except LeadershipLostError as exc:
                outcome.append(exc)

        tg.start_soon(run)
        await clock.wait_for_sleepers(2)
        store.put(NS, NAME, {**store.spec(NS, NAME), "holderIdentity": "intruder"})
        clock.advance(2.0)
        with anyio.fail_after(5):
            await hook_cancelled.wait()
    assert len(outcome) == 1 and "intruder" in str(outcome[0]) and not body_ran


async def test_cancelled_while_campaigning_nothing_is_stepped_down(clock: FakeClock, store: LeaseStore) -> None:
    async with replicas(clock, store) as tl:
        other_holder(store, "2026-12-01T10:00:00.000000Z", duration=60)
        b = await tl.start("b")
        await tl.advance(4.0)
        await tl.stop("b")
        assert b.outcome == "cancelled" and b.elector.state is ElectionState.STOPPED
        assert tl.times("b", "started") == [] and tl.times("b", "stopped") == []
        assert store.count("PUT") == 0 and store.spec(NS, NAME)["holderIdentity"] == "other"


async def test_a_running_elector_cannot_be_started_twice(store: LeaseStore, clock: FakeClock, ) -> None:
    async with replicas(clock, store) as tl:
        a = await tl.start("a")
        with pytest.raises(AlreadyStartedError):
            await a.elector.run()
        assert a.elector.is_leader()


async def test_raising_callbacks_are_logged_and_ignored(clock: FakeClock, store: LeaseStore,
                                                        caplog: pytest.LogCaptureFixture) -> None:
    def boom(*_: Any) -> None:
        raise RuntimeError("user bug")

    caplog.set_level(logging.INFO, logger="kinformer")
    elector = LeaderElector(StoreApi(store, "a"), NAME, NS, "a", clock=clock, on_started_leading=boom,
                            on_stopped_leading=boom, on_new_leader=boom)
    async with elector.leading():
        assert elector.is_leader()
    assert store.spec(NS, NAME)["holderIdentity"] == "" and elector.state is ElectionState.STOPPED
    logs = [r.kinformer for r in caplog.records if hasattr(r, "kinformer")]
    failed = [log["callback"] for log in logs if log["event"] == "leader election callback failed"]
    assert failed == ["on_new_leader", "on_started_leading", "on_stopped_leading"]


# -- health and metrics ---------------------------------------------------------------------


async def test_check_fails_when_leading_work_outlives_the_lease(clock: FakeClock,
                                                                store: LeaseStore) -> None:
    release_work = anyio.Event()

    async def stubborn() -> None:
        with anyio.CancelScope(shield=True):
            await release_work.wait()

    elector = LeaderElector(StoreApi(store, "a"), NAME, NS, "a", clock=clock, rand=lambda: 0.0)
    async with anyio.create_task_group() as tg:
        lost: list[BaseException] = []

        async def run() -> None:
            try:
                await elector.run(stubborn)
            except LeadershipLostError as exc:
                lost.append(exc)

        tg.start_soon(run)
        await clock.wait_for_sleepers(2)
        assert elector.check(5.0) is None
        store.put(NS, NAME, {**store.spec(NS, NAME), "holderIdentity": "intruder"})
        clock.advance(2.0)
        await eventually(lambda: elector.state is ElectionState.STEPPING_DOWN)
        assert not elector.is_leader()
        clock.advance(18.0)  # 20 s after the last renewal at 1000: exactly lease_duration + 5
        assert elector.check(5.0) is None
        clock.advance(0.5)
        reason = elector.check(5.0)
        assert reason is not None and "default/lock" in reason
        release_work.set()
        await eventually(lambda: elector.state is ElectionState.STOPPED)
    assert elector.check(5.0) is None and len(lost) == 1


class _Recorder:
    def __init__(self) -> None:
        self.values: list[tuple[str, bool]] = []

    def set(self, name: str, leading: bool) -> None:
        self.values.append((name, leading))


async def test_master_status_follows_leadership(clock: FakeClock, monkeypatch: pytest.MonkeyPatch,
                                                store: LeaseStore) -> None:
    async with replicas(clock, store) as tl:
        recorder = _Recorder()
        monkeypatch.setattr(leaderelection, "_MASTER_STATUS", recorder)
        a = await tl.start("a")
        assert recorder.values == [("lock", False), ("lock", True)]
        a.api.partition("fail")
        await tl.advance_until(a.done.is_set, limit=30)
        assert recorder.values == [("lock", False), ("lock", True), ("lock", False)]


async def test_master_status_gauge_in_prometheus(clock: FakeClock, store: LeaseStore) -> None:
    prometheus_client = pytest.importorskip("prometheus_client")
    elector = LeaderElector(StoreApi(store, "a"), "gauge-lock", NS, "a", clock=clock)

    def value() -> float | None:
        return prometheus_client.REGISTRY.get_sample_value("leader_election_master_status",
                                                           {"name": "gauge-lock"})

    assert value() == 0.0
    async with elector.leading():
        assert value() == 1.0
    assert value() == 0.0
