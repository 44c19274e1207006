"""The reflector's transition table: (state, outcome) → next state, one row per case."""

from __future__ import annotations

import pytest

from kinformer.errors import (
    ConnectionFailedError,
    DecodeError,
    ExpiredError,
    ForbiddenError,
    ServerError,
    TooLargeResourceVersionError,
    TooManyRequestsError,
    UnauthorizedError,
    WatchDroppedError,
    WatchIdleTimeoutError,
)
from kinformer.reflector import (
    BackingOff,
    Ended,
    Failed,
    Listing,
    Outcome,
    ReflectorState,
    StreamingList,
    Synced,
    Watching,
    relist_state,
    transition,
)

LAST = "42"
GONE = ExpiredError(410, "Expired", "too old")
TOO_LARGE = TooLargeResourceVersionError(504, "Timeout", "Too large resource version")
E500 = ServerError(500, "InternalError", "boom")
E429 = TooManyRequestsError(429, "TooManyRequests", "slow down", retry_after=7)
RESYNC = RuntimeError("store resync failed")

CASES: list[tuple[str, ReflectorState, Outcome, bool, ReflectorState]] = [
    # Listing
    ("first list ok", Listing("0"), Synced("10"), False, Watching("10")),
    ("relist ok", Listing(LAST, "NotOlderThan"), Synced("50"), False, Watching("50")),
    ("list 410 -> consistent", Listing(LAST, "NotOlderThan"), Failed(GONE), False, Listing("")),
    ("list too large -> consistent", Listing("0"), Failed(TOO_LARGE), False, Listing("")),
    ("consistent list 410 backs off", Listing(""), Failed(GONE), False, BackingOff(Listing(""))),
    ("consistent list 500 stays consistent", Listing(""), Failed(E500), False, BackingOff(Listing(""))),
    ("list 500 retries same", Listing(LAST, "NotOlderThan"), Failed(E500), False,
     BackingOff(Listing(LAST, "NotOlderThan"))),
    ("list 429 keeps retry-after", Listing("0"), Failed(E429), False, BackingOff(Listing("0"), 7.0)),
    ("list 401", Listing("0"), Failed(UnauthorizedError(401, "Unauthorized", "")), False, BackingOff(Listing("0"))),
    # Watching
    ("clean end after progress", Watching("40"), Ended(True), False, Watching(LAST)),
    ("clean end without progress", Watching("40"), Ended(False), False, BackingOff(Watching(LAST))),
    ("drop after progress", Watching("40"), Failed(WatchDroppedError("x"), True), False, Watching(LAST)),
    ("drop without progress", Watching("40"), Failed(WatchDroppedError("x"), False), False,
     BackingOff(Watching(LAST))),
    ("malformed line", Watching("40"), Failed(DecodeError("x"), True), False, Watching(LAST)),
    ("malformed line, no progress", Watching("40"), Failed(DecodeError("x")), False, BackingOff(Watching(LAST))),
    ("idle timeout", Watching("40"), Failed(WatchIdleTimeoutError("x")), False, Watching(LAST)),
    ("429 on watch", Watching("40"), Failed(E429), False, BackingOff(Watching(LAST), 7.0)),
    ("refused", Watching("40"), Failed(ConnectionFailedError("x")), False, BackingOff(Watching(LAST))),
    ("watch 410 relists consistent", Watching("40"), Failed(GONE, True), False, Listing("")),
    ("watch 410, streaming", Watching("40"), Failed(GONE), True, StreamingList("")),
    ("watch too large", Watching("40"), Failed(TOO_LARGE), False, BackingOff(Listing(""))),
    ("watch 500 relists at last RV", Watching("40"), Failed(E500), False,
     BackingOff(Listing(LAST, "NotOlderThan"))),
    ("watch 403 relists", Watching("40"), Failed(ForbiddenError(403, "Forbidden", "")), False,
     BackingOff(Listing(LAST, "NotOlderThan"))),
    ("resync error ends the round", Watching("40"), Failed(RESYNC), False,
     BackingOff(Listing(LAST, "NotOlderThan"))),
    ("watch 500, streaming", Watching("40"), Failed(E500), True, BackingOff(StreamingList(LAST))),
    # StreamingList
    ("streaming ok", StreamingList(""), Synced("9"), True, Watching("9")),
    ("streaming 500 -> paged relist", StreamingList(LAST), Failed(E500), True, Listing(LAST, "NotOlderThan")),
    ("streaming 410 -> consistent paged", StreamingList(LAST), Failed(GONE), True, Listing("")),
    ("consistent streaming fails -> consistent paged", StreamingList(""), Failed(E500), True, Listing("")),
    ("ended before the end bookmark", StreamingList(LAST), Ended(True), True, Listing(LAST, "NotOlderThan")),
    # BackingOff
    ("backoff over", BackingOff(Listing("0")), Ended(False), False, Listing("0")),
    ("backoff over, watch", BackingOff(Watching("7"), 3.0), Ended(False), False, Watching("7")),
]


@pytest.mark.parametrize(("state", "outcome", "streaming", "expected"), [c[1:] for c in CASES],
                         ids=[c[0] for c in CASES])
def test_transition(state: ReflectorState, outcome: Outcome, streaming: bool, expected: ReflectorState) -> None:
    assert transition(state, outcome, last_rv=LAST, streaming=streaming) == expected


def test_first_streaming_fallback_before_any_sync_lists_at_zero() -> None:
    assert transition(StreamingList(""), Failed(E500), last_rv="", streaming=True) == Listing("0")


@pytest.mark.parametrize(("last", "consistent", "streaming", "expected"), [
    ("", False, False, Listing("0")),
    ("5", False, False, Listing("5", "NotOlderThan")),
    ("5", True, False, Listing("")),
    ("5", False, True, StreamingList("5")),
    ("5", True, True, StreamingList("")),
])
def test_relist_state(last: str, consistent: bool, streaming: bool, expected: ReflectorState) -> None:
    assert relist_state(last, consistent=consistent, streaming=streaming) == expected


class _NoStore:
    """A store the constructor never calls."""

    def start_replace(self, *, skip_unchanged: bool = True) -> object:
        raise AssertionError("not called")

    async def apply(self, changes: object) -> None:
        raise AssertionError("not called")

    async def resync(self) -> None:
        raise AssertionError("not called")


@pytest.mark.parametrize(("initial", "expected", "last"), [
    ("", Listing("0"), ""),
    ("0", Listing("0"), ""),
    ("1234", Watching("1234"), "1234"),
])
def test_initial_resource_version_starts_watching(initial: str, expected: ReflectorState, last: str) -> None:
    from kinformer import ListWatch, Reflector, Resource

    lw = ListWatch(object(), Resource.configmaps)
    r = Reflector(lw, _NoStore(), initial_resource_version=initial)  # type: ignore[arg-type]
    assert r.state == expected and r.last_sync_resource_version == last and not r.has_synced()


def test_resumed_watch_410_relists_consistently() -> None:
    # Before any list: the same row as a watch 410 after a sync.
    assert transition(Watching("7"), Failed(GONE), last_rv="7", streaming=False) == Listing("")
