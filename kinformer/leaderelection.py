"""`LeaderElector`: one leader among replicas, on a `coordination.k8s.io/v1` Lease.

The algorithm is client-go's `tools/leaderelection` with its `LeaseLock`; this docstring is
the contract. Use it as

    elector = LeaderElector(api, "my-operator", "operators", identity=pod_name)
    async with elector.leading():       # campaigns; the body runs only while leading
        await controller.run()          # cancelled if leadership is lost
    # or: await elector.run(controller.run)

Settings (checked as client-go checks them, else `LeaderElectionConfigError`):
lease_duration > renew_deadline > 1.2 * retry_period (client-go's JitterFactor), all > 0,
and a non-empty identity, lease name and namespace. Defaults 15 / 10 / 2 s are what the
Kubernetes components use.

One attempt (client-go's `tryAcquireOrRenew`) reads and writes the Lease's spec:
- Optimistic concurrency: every update carries the resourceVersion of the Lease last read
  or written, so of two racing writers one gets 409 Conflict and simply fails this attempt.
- A leader first updates from its cached Lease (the fast path: one request); any failure
  falls back to GET, then update.
- No Lease → create it (leaseTransitions 0): we lead. A 409 on create (another candidate
  created it first) fails the attempt.
- Held by another identity and not expired → fail. Otherwise (ours, expired, or released
  with holderIdentity "") write ourselves: as the holder we keep acquireTime and
  leaseTransitions; taking it over, acquireTime = now and leaseTransitions + 1.
- What is written: holderIdentity, leaseDurationSeconds = ceil(lease_duration),
  acquireTime/renewTime as RFC 3339 MicroTime in UTC ("2026-12-01T10:00:00.123456Z") from
  `wall_clock()` (default `datetime.now(UTC)`; a naive datetime is local time, as Python
  defines it), leaseTransitions.

Expiry uses only our own monotonic clock: the record is expired when
`observed_time + record.leaseDurationSeconds <= clock.now()`, where `observed_time` is when
*we* last saw the record's spec change (a renewal changes renewTime). The times in the record
are never read as times (another machine's clock wrote them; a change is all they tell), and
the holder's duration in the record wins over our own setting. This tolerates any clock
offset between machines, but not a difference in clock *rate* beyond
lease_duration / renew_deadline.

Timing:
- Campaign: the first attempt at once, then one every retry_period * (1 + U[0, 1.2))
  (client-go's `wait.JitterUntil(retry_period, 1.2, sliding=True)`; `rand` is injectable).
- Leading: a renewal round starts retry_period after the last success and retries every
  retry_period. Leadership is lost when no renewal has succeeded by
  `renew_by = start of the last successful attempt + retry_period + renew_deadline`, i.e.
  a round failed for renew_deadline (a request still in flight then is abandoned), or at
  once when a read shows another holder. Others cannot take over before lease_duration
  after they saw our last write, so with 15/10/2 the old leader has stopped >= 3 s earlier.
- Stepping down (the body returned, raised or was cancelled, or leadership was lost) goes
  in this order, shielded from cancellation: the guarded work has *finished* (awaited, not
  only signalled); then, with `release_on_cancel`, the lease is re-read and, if we still
  hold it, written with holderIdentity "", leaseDurationSeconds 1, acquireTime = renewTime =
  now, leaseTransitions kept (retried on 409 up to 5 times; abandoned after renew_deadline),
  so a candidate takes it at its next attempt; then `on_stopped_leading()`.

Callbacks may be plain functions or coroutine functions; each runs inline in the elector's
task, and one that raises is logged and ignored. `on_new_leader(identity)` runs after an
attempt that observed a holder other than the last one reported (our own identity
included; never ""). `on_started_leading()` runs once leading, with renewals already
running, before the body. `on_stopped_leading()` runs on every exit after leading started,
including cancellation and loss.

Errors: `AlreadyStartedError` if the elector is already campaigning or leading;
`LeadershipLostError` out of `leading()`/`run()` when leadership was lost (the body was
cancelled by it); an exception raised by the body comes out as itself (after stepping
down); cancellation propagates as cancellation. The elector itself never dies of an API
error: every failed attempt is logged and retried on schedule.

Observable: `state` (`ElectionState`), `is_leader()`, `leader` (the last observed holder),
`check(max_tolerable_expired_lease)` (client-go's HealthzAdaptor: a failure reason once we
are still in the leading phase more than lease_duration + tolerance after our last successful
renewal, e.g. work that ignores cancellation), `safe_time_left()` (how long, at most, work
may go on before another replica could lead: what bounds a controller's graceful shutdown
under leader election), and the gauge `leader_election_master_status{name=<lease name>}`
when prometheus_client is installed.

Deliberate differences from client-go, each safer or simpler; the Lease on the wire is the same:
- A read showing another holder ends leadership at once (client-go retries until the
  renew deadline while the old leader's work goes on).
- The work is awaited before the lease is released (client-go's ReleaseOnCancel only
  signals the context, so its docs warn that two leaders may briefly overlap).
- Release re-reads the lease and writes only if we still hold it (client-go decides by its
  last observation and can clear a lease another candidate has just taken).
- `on_stopped_leading` runs only after leading started (client-go calls it on every exit,
  even for a candidate that never led; its own docs warn about that).
- No extra renewal right after acquiring (client-go renews again at once); the first
  renewal comes retry_period after the acquiring write.
- `renew_by` counts from the start of the successful attempt, not its end, so request
  latency does not eat into the safety margin.
- leaseDurationSeconds is rounded up, not truncated, so a fractional lease_duration never
  advertises less than the leader's own renew deadline.
- `check()` watches the leading phase, not the observed holder, so it also fails for work
  still running after another holder was observed.

Why not kubernetes_asyncio's `leaderelection` module: it writes naive local time with a "Z"
appended (wrong by the UTC offset), judges expiry by the candidate's own lease_duration
instead of the record's, has no release on cancel, validates the jitter factor but never
jitters, never writes leaseTransitions, measures the renew deadline on the wall clock, and
is not cancellation-safe (cancelling it skips on_stopped_leading and leaves the leading task
running un-awaited).
"""

from __future__ import annotations

import enum
import inspect
import math
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any, TypeVar

import aiohttp
import anyio
import orjson
from anyio.abc import TaskGroup

from kinformer._logging import get_logger
from kinformer.clock import REAL_CLOCK, Clock
from kinformer.errors import (
    AlreadyStartedError,
    ConflictError,
    ConnectionFailedError,
    DecodeError,
    KinformerError,
    LeaderElectionConfigError,
    LeadershipLostError,
    NotFoundError,
    api_error_from_status,
)
from kinformer.resources import Resource

T = TypeVar("T")

JITTER_FACTOR = 1.2
"""client-go's: renew_deadline must exceed retry_period * this; candidates wait up to (1 + this) * retry_period."""
DEFAULT_HEALTH_TOLERANCE = 20.0
"""Seconds past the lease's expiry before `check()` fails (kube-controller-manager's adaptor timeout)."""
_RELEASE_CONFLICT_RETRIES = 5

Callback = Callable[..., Any]
"""A plain function or a coroutine function."""


class ElectionState(enum.Enum):
    STOPPED = "stopped"
    """Not running: before `leading()`/`run()`, or after it returned."""
    CANDIDATE = "candidate"
    """Trying to acquire the lease, one attempt per (jittered) retry period."""
    LEADING = "leading"
    """Holding the lease and renewing it; the guarded work runs."""
    STEPPING_DOWN = "stepping-down"
    """Leadership lost or given up: the work is being stopped, the lease released."""


def micro_time(moment: datetime) -> str:
    """`moment` as a Kubernetes MicroTime: RFC 3339 in UTC with microseconds and "Z"."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _utc_now() -> datetime:
    return datetime.now(UTC)


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def _spec(lease: dict[str, Any]) -> dict[str, Any]:
    spec = lease.get("spec")
    return spec if isinstance(spec, dict) else {}


def _validate(lease_name: str, namespace: str, identity: str, lease_duration: float,
              renew_deadline: float, retry_period: float) -> None:
    for name, value in (("lease_duration", lease_duration), ("renew_deadline", renew_deadline),
                        ("retry_period", retry_period)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise LeaderElectionConfigError(f"{name} must be a finite number of seconds > 0, not {value!r}")
    if lease_duration <= renew_deadline:
        raise LeaderElectionConfigError(
            f"lease_duration ({lease_duration}) must be greater than renew_deadline ({renew_deadline})")
    if renew_deadline <= JITTER_FACTOR * retry_period:
        raise LeaderElectionConfigError(
            f"renew_deadline ({renew_deadline}) must be greater than retry_period * {JITTER_FACTOR} "
            f"({JITTER_FACTOR * retry_period:g})")
    for name, text in (("identity", identity), ("lease_name", lease_name), ("namespace", namespace)):
        if not isinstance(text, str) or not text:
            raise LeaderElectionConfigError(f"{name} must be a non-empty string")


class _MasterStatus:
    """`leader_election_master_status{name}` (component-base's name and help) if prometheus_client
    is installed, else nothing. Loaded on first use so that importing kinformer never needs it."""

    HELP = ("Gauge of if the reporting system is master of the relevant lease, 0 indicates backup, "
            "1 indicates master. 'name' is the string used to identify the lease. Please make sure "
            "to group by name.")

    def __init__(self) -> None:
        self._gauge: Any = None
        self._loaded = False

    def set(self, name: str, leading: bool) -> None:
        if not self._loaded:
            self._loaded = True
            try:
                from prometheus_client import Gauge  # type: ignore[import-not-found,unused-ignore]
            except ImportError:
                return
            try:
                self._gauge = Gauge("leader_election_master_status", self.HELP, ["name"])
            except ValueError:  # registered already by another copy of this module
                get_logger("kinformer.leaderelection").warning(
                    "leader_election_master_status is registered elsewhere; not reporting it")
        if self._gauge is not None:
            self._gauge.labels(name=name).set(1 if leading else 0)


_MASTER_STATUS = _MasterStatus()


class _LeaseClient:
    """GET / create / update of one Lease as raw dicts (client-go's LeaseLock).

    `lease` is the Lease last read or written; an update sends its metadata, so it is
    conditional on that resourceVersion. A failed request leaves it as it was.
    """

    def __init__(self, api: Any, namespace: str, name: str, timeout: float) -> None:
        self._api = api
        self.namespace, self.name = namespace, name
        self._collection = Resource.leases.collection_path(namespace)
        self._path = Resource.leases.object_path(name, namespace)
        self._timeout = timeout
        self.lease: dict[str, Any] | None = None

    def __str__(self) -> str:
        return f"{self.namespace}/{self.name}"

    async def get(self) -> dict[str, Any]:
        self.lease = await self._request("GET", self._path)
        return self.lease

    async def create(self, spec: dict[str, Any]) -> dict[str, Any]:
        body = {"apiVersion": Resource.leases.api_version, "kind": "Lease",
                "metadata": {"name": self.name, "namespace": self.namespace}, "spec": spec}
        self.lease = await self._request("POST", self._collection, body)
        return self.lease

    async def update(self, spec: dict[str, Any]) -> dict[str, Any]:
        assert self.lease is not None, "update follows a get or create"
        self.lease = await self._request("PUT", self._path, {**self.lease, "spec": spec})
        return self.lease

    async def _request(self, method: str, path: str, body: Any = None) -> dict[str, Any]:
        try:
            response = await self._api.call_api(
                path, method, body=body,
                header_params={"Accept": "application/json", "Content-Type": "application/json"},
                auth_settings=["BearerToken"], _preload_content=False, _request_timeout=self._timeout)
            try:
                data = await response.read()
            finally:
                response.release()
        except (aiohttp.ClientError, OSError) as exc:  # OSError includes TimeoutError
            raise ConnectionFailedError(f"{method} lease {self}: {exc!r}") from exc
        code = response.status
        if 200 <= code < 300:
            try:
                obj = orjson.loads(data)
            except orjson.JSONDecodeError:
                obj = None
            if not isinstance(obj, dict):
                raise DecodeError(f"{method} lease {self}: the answer is not a JSON object ({len(data)} bytes)")
            return obj
        try:
            status = orjson.loads(data) if data else None
        except orjson.JSONDecodeError:
            status = None
        if not isinstance(status, dict) or status.get("kind") != "Status":
            status = {"message": f"HTTP {code} {response.reason or ''}".strip()}
        raise api_error_from_status(code, status)


class LeaderElector:
    """Lease-based leader election; see the module docstring for the exact rules.

    `api` is a `kubernetes_asyncio` `ApiClient` (only `call_api` is used). `clock` gives
    the monotonic time all timing uses; `wall_clock` only the times written into the Lease.
    """

    def __init__(
        self,
        api: Any,
        lease_name: str,
        namespace: str,
        identity: str,
        lease_duration: float = 15.0,
        renew_deadline: float = 10.0,
        retry_period: float = 2.0,
        *,
        clock: Clock = REAL_CLOCK,
        wall_clock: Callable[[], datetime] = _utc_now,
        rand: Callable[[], float] = random.random,
        release_on_cancel: bool = True,
        on_started_leading: Callback | None = None,
        on_stopped_leading: Callback | None = None,
        on_new_leader: Callback | None = None,
    ) -> None:
        _validate(lease_name, namespace, identity, lease_duration, renew_deadline, retry_period)
        self.lease_name, self.namespace, self.identity = lease_name, namespace, identity
        self.lease_duration = float(lease_duration)
        self.renew_deadline = float(renew_deadline)
        self.retry_period = float(retry_period)
        self.release_on_cancel = release_on_cancel
        self._clock = clock
        self._wall_clock = wall_clock
        self._rand = rand
        self._on_started_leading = on_started_leading
        self._on_stopped_leading = on_stopped_leading
        self._on_new_leader = on_new_leader
        self._lease_seconds = max(1, math.ceil(lease_duration))
        # Each request is also bounded by the transport, so that no attempt can hang for ever.
        self._client = _LeaseClient(api, namespace, lease_name, timeout=self.renew_deadline)
        self._state = ElectionState.STOPPED
        self._observed: dict[str, Any] | None = None  # the Lease spec last seen (read or written)
        self._observed_time = 0.0  # clock.now() when `_observed` last changed
        self._reported_leader = ""
        self._renewed_at = 0.0  # start of the last successful acquire/renew attempt
        self._renew_by = 0.0
        self._lost: str | None = None
        self._scope: anyio.CancelScope | None = None
        self.log = get_logger("kinformer.leaderelection", lease=f"{namespace}/{lease_name}", identity=identity)
        _MASTER_STATUS.set(lease_name, False)

    def __repr__(self) -> str:
        return f"LeaderElector({self.namespace}/{self.lease_name}, identity={self.identity!r}, {self._state.value})"

    # -- observable state -----------------------------------------------------------------

    @property
    def state(self) -> ElectionState:
        return self._state

    def is_leader(self) -> bool:
        """True while we hold the lease and the guarded work may run."""
        return self._state is ElectionState.LEADING

    @property
    def leader(self) -> str:
        """The holder in the Lease we last saw ("" before any, or once released)."""
        return str(self._observed.get("holderIdentity") or "") if self._observed is not None else ""

    def check(self, max_tolerable_expired_lease: float = DEFAULT_HEALTH_TOLERANCE) -> str | None:
        """A health check: None when healthy, else why not.

        Fails while we are still in the leading phase (LEADING or STEPPING_DOWN) more than
        lease_duration + `max_tolerable_expired_lease` after our last successful renewal:
        by then another replica may lead, and this process should be restarted.
        """
        if self._state not in (ElectionState.LEADING, ElectionState.STEPPING_DOWN):
            return None
        if self._clock.now() - self._renewed_at > self.lease_duration + max_tolerable_expired_lease:
            return (f"leader election: lease {self.namespace}/{self.lease_name} was not renewed for "
                    f"longer than {self.lease_duration + max_tolerable_expired_lease:g} s but the leading work "
                    f"has not stopped")
        return None

    def safe_time_left(self) -> float:
        """Seconds during which no other candidate can have taken the lease over; 0 unless
        we hold it (LEADING, or STEPPING_DOWN before the release or another holder was seen).

        A candidate counts the record's leaseDurationSeconds (>= lease_duration) from when *it*
        saw our last write, which is after that write's attempt started; so until
        `lease_duration` after the start of our last successful acquire or renewal, nobody
        else leads. Work that must not overlap a successor (a controller's graceful
        shutdown, `Controller.run(leader_election=...)`) stops within it.
        """
        if self._state not in (ElectionState.LEADING, ElectionState.STEPPING_DOWN) or self.leader != self.identity:
            return 0.0  # not leading, or the lease was released or seen held by another
        return max(0.0, self._renewed_at + self.lease_duration - self._clock.now())

    # -- running --------------------------------------------------------------------------

    def leading(self) -> Leadership:
        """`async with elector.leading():` campaigns until leading, then runs the body while
        leading; see `Leadership`."""
        return Leadership(self)

    async def run(self, work: Callable[[], Awaitable[T]] | None = None) -> T | None:
        """Campaign, then run `work()` while leading and return its result after stepping down.

        Without `work`, lead until cancelled. Raises `LeadershipLostError` when leadership is
        lost (after `work` was cancelled and finished); `work`'s own exception comes out as itself.
        """
        async with self.leading():
            if work is None:
                await anyio.sleep_forever()
            else:
                return await work()
        return None

    async def _campaign(self) -> None:
        if self._state is not ElectionState.STOPPED:
            raise AlreadyStartedError(f"{self!r} is already running")
        self._lost = None
        self._state = ElectionState.CANDIDATE
        self.log.info("attempting to acquire the lease")
        clock = self._clock
        try:
            while True:
                started = clock.now()
                acquired = await self._try_acquire_or_renew()
                await self._report_transition()
                if acquired:
                    break
                await clock.sleep(self.retry_period * (1.0 + self._rand() * JITTER_FACTOR))
        except BaseException:
            self._state = ElectionState.STOPPED
            raise
        self._renewed_at = started
        self._renew_by = started + self.retry_period + self.renew_deadline
        self._state = ElectionState.LEADING
        _MASTER_STATUS.set(self.lease_name, True)
        self.log.info("acquired the lease", transitions=_int((self._observed or {}).get("leaseTransitions")))

    async def _renew_loop(self) -> None:
        clock, period = self._clock, self.retry_period
        while True:
            await clock.sleep(period)
            round_start = clock.now()
            attempt = 0
            while True:
                if clock.now() >= self._renew_by:
                    self._lose(f"no renewal succeeded within renew_deadline ({self.renew_deadline:g} s)")
                    return
                started = clock.now()
                renewed = await self._try_acquire_or_renew()
                await self._report_transition()
                if renewed:
                    self._renewed_at = started
                    self._renew_by = started + period + self.renew_deadline
                    break
                holder = self.leader
                if holder and holder != self.identity:
                    self._lose(f"the lease is now held by {holder!r}")
                    return
                attempt += 1
                await clock.sleep(max(round_start + attempt * period - clock.now(), 0.0))

    async def _watchdog(self) -> None:
        """Ends leadership at `renew_by` even while a renewal request is still in flight."""
        clock = self._clock
        while True:
            remaining = self._renew_by - clock.now()
            if remaining <= 0:
                self._lose(f"no renewal succeeded within renew_deadline ({self.renew_deadline:g} s)")
                return
            await clock.sleep(remaining)

    def _lose(self, reason: str) -> None:
        if self._state is not ElectionState.LEADING:
            return
        self._lost = reason
        self._state = ElectionState.STEPPING_DOWN
        _MASTER_STATUS.set(self.lease_name, False)
        self.log.warning("leadership lost; stopping the leading work", reason=reason)
        if self._scope is not None:
            self._scope.cancel()

    async def _step_down(self) -> None:
        """After the leading work has finished: release, then on_stopped_leading (shielded by the caller)."""
        if self._state is ElectionState.LEADING:
            self._state = ElectionState.STEPPING_DOWN
            _MASTER_STATUS.set(self.lease_name, False)
        self._scope = None
        try:
            if self.release_on_cancel:
                await self._release_within_deadline()
        finally:
            await self._call("on_stopped_leading", self._on_stopped_leading)
            self._state = ElectionState.STOPPED
            self.log.info("stopped leading", reason=self._lost or "stepped down")

    # -- one attempt ----------------------------------------------------------------------

    def _set_observed(self, lease: dict[str, Any]) -> None:
        self._observed = _spec(lease)
        self._observed_time = self._clock.now()

    def _observed_valid(self) -> bool:
        observed = self._observed or {}
        return self._observed_time + _int(observed.get("leaseDurationSeconds")) > self._clock.now()

    async def _try_acquire_or_renew(self) -> bool:
        """One attempt (client-go's tryAcquireOrRenew); True when we hold the lease after it."""
        now = micro_time(self._wall_clock())
        me = self.identity
        record: dict[str, Any] = {"holderIdentity": me, "leaseDurationSeconds": self._lease_seconds,
                                  "acquireTime": now, "renewTime": now, "leaseTransitions": 0}
        client = self._client
        observed = self._observed
        # 1. fast path: as the holder, update from the Lease we hold without reading it first.
        if (observed is not None and observed.get("holderIdentity") == me and client.lease is not None
                and self._observed_valid()):
            record["acquireTime"] = observed.get("acquireTime") or now
            record["leaseTransitions"] = _int(observed.get("leaseTransitions"))
            try:
                self._set_observed(await client.update(record))
                return True
            except Exception as exc:
                self.log.debug("optimistic renewal failed; reading the lease", error=repr(exc))
        # 2. read, or create when there is none.
        try:
            lease = await client.get()
        except NotFoundError:
            try:
                self._set_observed(await client.create(record))
            except Exception as exc:
                self._failed("creating the lease failed", exc)
                return False
            return True
        except Exception as exc:
            self._failed("reading the lease failed", exc)
            return False
        # 3. a changed record restarts its expiry from now, our time.
        spec = _spec(lease)
        if spec != self._observed:
            self._set_observed(lease)
        holder = str(spec.get("holderIdentity") or "")
        if holder and holder != me and self._observed_valid():
            return False
        # 4. ours to write: renewal keeps acquireTime and transitions, a takeover counts one.
        if holder == me:
            record["acquireTime"] = spec.get("acquireTime") or now
            record["leaseTransitions"] = _int(spec.get("leaseTransitions"))
        else:
            record["leaseTransitions"] = _int(spec.get("leaseTransitions")) + 1
        try:
            self._set_observed(await client.update(record))
        except Exception as exc:
            self._failed("updating the lease failed", exc)
            return False
        return True

    async def _release_within_deadline(self) -> None:
        """client-go gives the release renew_deadline; a hung request must not hold up shutdown."""
        async with anyio.create_task_group() as tg:

            async def deadline() -> None:
                await self._clock.sleep(self.renew_deadline)
                self.log.warning("releasing the lease timed out; it will expire instead")
                tg.cancel_scope.cancel()

            tg.start_soon(deadline)
            await self._release()
            tg.cancel_scope.cancel()

    async def _release(self) -> None:
        client, clock = self._client, self._clock
        deadline = clock.now() + self.renew_deadline
        for _ in range(_RELEASE_CONFLICT_RETRIES + 1):
            try:
                lease = await client.get()
            except Exception as exc:
                self._failed("releasing: reading the lease failed", exc)
                return
            spec = _spec(lease)
            holder = str(spec.get("holderIdentity") or "")
            if holder != self.identity:
                self._set_observed(lease)
                self.log.info("not releasing the lease: no longer ours", holder=holder)
                return
            now = micro_time(self._wall_clock())
            record = {"holderIdentity": "", "leaseDurationSeconds": 1, "acquireTime": now, "renewTime": now,
                      "leaseTransitions": _int(spec.get("leaseTransitions"))}
            try:
                self._set_observed(await client.update(record))
            except ConflictError:
                if clock.now() >= deadline:
                    break
                continue  # a renewal still in flight when we stopped has moved the resourceVersion
            except Exception as exc:
                self._failed("releasing the lease failed", exc)
                return
            self.log.info("released the lease")
            return
        self.log.warning("releasing the lease failed: conflicts kept coming; it will expire instead")

    def _failed(self, what: str, exc: Exception) -> None:
        if isinstance(exc, KinformerError):
            self.log.warning(what, error=str(exc), error_type=type(exc).__name__)
        else:
            self.log.error(what, exc_info=exc)

    async def _report_transition(self) -> None:
        holder = self.leader
        if not holder or holder == self._reported_leader:
            return
        self._reported_leader = holder
        self.log.info("new leader observed", leader=holder)
        await self._call("on_new_leader", self._on_new_leader, holder)

    async def _call(self, name: str, callback: Callback | None, *args: Any) -> None:
        if callback is None:
            return
        try:
            result = callback(*args)
            if inspect.isawaitable(result):
                await result
        except Exception:
            self.log.exception("leader election callback failed", callback=name)


class Leadership:
    """`async with elector.leading():` — the body runs only while this elector leads.

    Entering campaigns (an attempt per jittered retry period) until the lease is ours, then
    starts renewing and calls `on_started_leading`. Losing the lease cancels the body and
    `__aexit__` raises `LeadershipLostError`. However the body ends, leaving steps down:
    renewals stop, the lease is released (`release_on_cancel`), `on_stopped_leading` runs.
    Cancelled while campaigning: nothing to step down from, no callback.
    """

    def __init__(self, elector: LeaderElector) -> None:
        self._elector = elector
        self._tg: TaskGroup | None = None

    async def __aenter__(self) -> LeaderElector:
        elector = self._elector
        await elector._campaign()
        tg = anyio.create_task_group()
        await tg.__aenter__()
        self._tg = tg
        elector._scope = tg.cancel_scope
        tg.start_soon(elector._renew_loop)
        tg.start_soon(elector._watchdog)
        try:
            await elector._call("on_started_leading", elector._on_started_leading)
        except BaseException as exc:  # cancelled (leadership lost, or from outside) during the callback
            await self.__aexit__(type(exc), exc, exc.__traceback__)
            raise
        return elector

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        elector, tg = self._elector, self._tg
        assert tg is not None
        self._tg = None
        tg.cancel_scope.cancel()  # stop renewing: we leave whatever ended the body
        cancelled_by_loss = False  # the body ended by the cancellation our loss of the lease caused
        try:
            if exc is None or isinstance(exc, Exception):
                # The body's own exception propagates unwrapped, not inside an ExceptionGroup.
                await tg.__aexit__(None, None, None)
            else:
                cancelled_by_loss = bool(await tg.__aexit__(exc_type, exc, tb))
        finally:
            with anyio.CancelScope(shield=True):
                await elector._step_down()
        if elector._lost is not None and (exc is None or cancelled_by_loss):
            raise LeadershipLostError(
                f"lease {elector.namespace}/{elector.lease_name}: {elector._lost or 'lost'}") from None
