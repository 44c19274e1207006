"""`kinformer demo`: its default schedule shows what it promises within 20 s; the plain output.

The run is a subprocess with stdout a pipe (not a terminal), so the demo picks plain output by
itself: log lines as they happen, then the final table once, the legend, the totals and the
verdict (exit 0 only if every cache equals the server).
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys

import pytest

import kinformer._demo as demo
from kinformer._demo import LEGEND, Schedule
from kinformer.cli import main


def _simulate(schedule: Schedule, until: float, tick: float = 0.05) -> list[tuple[float, str]]:
    actions: list[tuple[float, str]] = []
    t = 0.0
    while t <= until:
        actions.extend((t, a) for a in schedule.due(t))
        t = round(t + tick, 6)
    return actions


def test_default_schedule_shows_drops_and_a_compaction_within_20_seconds() -> None:
    actions = _simulate(Schedule(drop_every=3.0, compact_every=8.0), 20.0)
    kinds = [a for _, a in actions]
    assert kinds.count("drop") >= 3
    assert kinds.count("compact") == 2
    compactions = [t for t, a in actions if a == "compact"]
    assert compactions[0] <= 15  # leaves time to see the relist in a 20 s run
    # Each compaction is preceded by its partition, and no drop falls inside one.
    partitions = list(zip([t for t, a in actions if a == "stall"], compactions, strict=True))
    assert all(0 < end - begin <= 1.0 + 1e-9 for begin, end in partitions)
    drops = [t for t, a in actions if a == "drop"]
    assert not [t for t in drops if any(begin <= t <= end for begin, end in partitions)]


def test_the_cli_defaults_are_that_schedule(monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[argparse.Namespace] = []

    async def record(args: argparse.Namespace) -> int:
        seen.append(args)
        return 0

    monkeypatch.setattr(demo, "run_demo", record)
    assert main(["demo"]) == 0
    assert (seen[0].drop_every, seen[0].compact_every) == (3.0, 8.0)
    with pytest.raises(SystemExit):
        main(["demo", "--help"])
    assert "--drop-every SECONDS" in capsys.readouterr().out


def _number(name: str, text: str) -> int:
    match = re.search(rf"\b{name}=(\d+)", text)
    assert match, text
    return int(match.group(1))


def test_short_run_shows_drops_a_relist_and_coalescing_once() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kinformer.cli", "demo", "--duration", "3.5", "--pods", "200",
         "--drop-every", "0.8", "--compact-every", "2.5"],
        capture_output=True, text=True, timeout=120, check=False,
    )
    out = result.stdout
    assert result.returncode == 0, out + result.stderr
    assert out.rstrip().endswith("caches equal the server: yes")
    totals = next(line for line in out.splitlines() if line.startswith("totals:"))
    assert _number("drops", totals) >= 1
    assert _number("compactions", totals) == 1
    # The compaction's single relist: once for the pods informer, per compaction.
    assert _number("pod_relists", totals) == _number("compactions", totals)
    assert _number("merged", totals) > 0
    # The final table is printed once, after every log line, followed by the legend.
    lines = out.splitlines()
    titles = [i for i, line in enumerate(lines) if line.startswith("kinformer demo: ") and " writes, " in line]
    assert len(titles) == 1
    log_lines = [i for i, line in enumerate(lines) if re.match(r"\d\d:\d\d:\d\d (info|warning|error) ", line)]
    assert log_lines and max(log_lines) < titles[0]
    assert any("410 Gone" in lines[i] for i in log_lines)
    assert out.count("pod handlers, each with its own bounded queue") == 1
    for term, _ in LEGEND:
        assert re.search(rf"^{term}\s", out, re.MULTILINE), term
    assert "coalescing" in out and "slow" in out
