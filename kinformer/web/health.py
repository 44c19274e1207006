"""Readiness and liveness of informers, in kube-apiserver's healthz format.

Checks (one per served informer, named after its resource: `pods`, `deployments.apps`):

- `/readyz`: `ping` and `informer-sync/<resource>`, which passes once the informer's cache
  has synced. Never blocks: it reads `informer.health()`.
- `/livez`: `ping` and `informer-watch/<resource>`, which fails when the informer was
  started and has stopped; when its list/watch has been failing (`last_error` set) for at
  least `failure_threshold` seconds (`failing_since`); when for that long no watch event or
  bookmark arrived while errors kept coming (a server that answers lists but refuses
  watches: each successful relist clears `last_error`, so the first rule alone would never
  fire; the check compares the reflector's counters between calls, so it needs two calls
  that far apart, which probes give); or, with `stale_after` set, when the informer has run
  that long with no list, event or bookmark (`last_progress`). An informer
  that is retrying a refused watch stays alive for `failure_threshold` (a blip is not a
  reason to restart), then fails: the "zombie operator" whose watches are dead while the
  process looks fine. `stale_after` is off by default because a quiet resource on a server
  that sends no bookmarks makes no progress either; the reflector's idle timeout already
  turns a silent dead connection into an error, which `failure_threshold` then catches.
  Times are the informer's clock (pass the same clock, e.g. `factory.clock`).

The format is `k8s.io/apiserver/pkg/server/healthz`'s: a passing root answers `ok`
(with `?verbose`, one `[+]name ok` line per check, then `readyz check passed`); a failing
one lists every check — `[-]name failed: reason withheld` for failures — and ends with
`readyz check failed`. `?exclude=name` (repeatable) skips a check (`[+]name excluded: ok`;
a name that matches nothing is reported in a `warn:` line). `/readyz/<check>` runs one check
and, unlike the root, gives its reason. One deliberate difference: a failure answers 503
Service Unavailable, where kube-apiserver answers 500; kubelet probes treat both as failure,
and 503 is what load balancers expect from a backend that is not ready.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kinformer.clock import REAL_CLOCK, Clock
from kinformer.informer import SharedIndexInformer
from kinformer.web.responses import Response, text_response

CheckFunc = Callable[[], str | None]
"""Returns None when healthy, else the reason."""


@dataclass(frozen=True, slots=True)
class HealthCheck:
    name: str
    check: CheckFunc


def ping() -> str | None:
    return None


def informer_sync_check(name: str, informer: SharedIndexInformer[Any]) -> HealthCheck:
    def check() -> str | None:
        health = informer.health()
        if health.synced:
            return None
        if health.state == "new":
            return "informer not started yet"
        reason = "informer has not synced yet"
        if health.last_error is not None:
            reason += f"; last list/watch error: {type(health.last_error).__name__}: {health.last_error}"
        return reason

    return HealthCheck(f"informer-sync/{name}", check)


@dataclass(frozen=True, slots=True)
class LivenessPolicy:
    failure_threshold: float = 300.0
    """Seconds of uninterrupted list/watch failure after which an informer is not alive."""
    stale_after: float | None = None
    """Seconds without a list, event or bookmark after which a running informer is not alive
    (off by default: see the module docstring)."""


class _WatchProgress:
    """What an `informer-watch` check remembers between calls (probes come every few seconds)."""

    __slots__ = ("errors", "errors_when_quiet", "first_seen", "progress", "quiet_since")

    def __init__(self) -> None:
        self.progress: int | None = None
        self.quiet_since = 0.0
        self.errors_when_quiet = 0
        self.errors = 0
        self.first_seen: float | None = None


def informer_watch_check(name: str, informer: SharedIndexInformer[Any], policy: LivenessPolicy,
                         clock: Clock = REAL_CLOCK) -> HealthCheck:
    seen = _WatchProgress()

    def check() -> str | None:
        health = informer.health()
        if health.state == "new":
            return None
        if not health.running:
            return "informer stopped"
        now = clock.now()
        if seen.first_seen is None:
            seen.first_seen = now
        if health.last_error is not None and health.failing_since is not None:
            failing = now - health.failing_since
            if failing >= policy.failure_threshold:
                return (f"list/watch failing for {failing:.0f}s (threshold {policy.failure_threshold:.0f}s): "
                        f"{type(health.last_error).__name__}: {health.last_error}")
        reflector = informer.reflector
        if reflector is not None:
            # A successful relist clears `last_error`, so a server that lists but refuses every
            # watch never fails the check above: the cache is then refreshed only by relists,
            # each after a backoff. Caught here: errors keep coming, no watch event or bookmark.
            stats = reflector.stats
            progress = stats.events + stats.bookmarks
            if progress != seen.progress:
                seen.progress, seen.quiet_since, seen.errors_when_quiet = progress, now, stats.errors
            errors_before, seen.errors = seen.errors, stats.errors
            quiet = now - seen.quiet_since
            still_failing = health.last_error is not None or stats.errors > errors_before
            if quiet >= policy.failure_threshold and stats.errors > seen.errors_when_quiet and still_failing:
                return (f"no watch event or bookmark for {quiet:.0f}s (threshold {policy.failure_threshold:.0f}s) "
                        f"while list/watch keeps failing ({stats.errors - seen.errors_when_quiet} errors)")
        if policy.stale_after is not None:
            since = health.last_progress if health.last_progress is not None else seen.first_seen
            quiet = now - since
            if quiet >= policy.stale_after:
                return f"no list, event or bookmark for {quiet:.0f}s (threshold {policy.stale_after:.0f}s)"
        return None

    return HealthCheck(f"informer-watch/{name}", check)


def render(endpoint: str, checks: Sequence[HealthCheck], rest: str, query: Mapping[str, list[str]]) -> Response:
    """Answer `/<endpoint>` (rest "") or `/<endpoint>/<check>` in the healthz format."""
    if rest:
        for hc in checks:
            if hc.name == rest:
                reason = hc.check()
                if reason is None:
                    return text_response("ok")
                return text_response(f"internal server error: {reason}\n", 503)
        return text_response("404 page not found\n", 404)
    excluded = set(query.get("exclude", ()))
    unmatched = set(excluded)
    lines: list[str] = []
    failed = False
    for hc in checks:
        if hc.name in excluded:
            unmatched.discard(hc.name)
            lines.append(f"[+]{hc.name} excluded: ok")
            continue
        if hc.check() is None:
            lines.append(f"[+]{hc.name} ok")
        else:
            failed = True
            lines.append(f"[-]{hc.name} failed: reason withheld")
    if unmatched:
        quoted = ",".join(f'"{n}"' for n in sorted(unmatched))
        lines.append(f"warn: some health checks cannot be excluded: no matches for {quoted}")
    if failed:
        return text_response("\n".join(lines) + f"\n{endpoint} check failed\n", 503)
    if "verbose" not in query:
        return text_response("ok")
    return text_response("\n".join(lines) + f"\n{endpoint} check passed\n")
