"""A CI-sized chaos soak (tests/soak.py): ≈50k writes from a server process with every kind of fault,
a real process restart among them, nothing lost or leaked, the controller's record exact."""

from __future__ import annotations

from tests.soak import FAULTS, run_soak


async def test_soak_ci_sized() -> None:
    report = await run_soak(events=50_000, seed=7, objects=2000, fault_every=2000, checkpoint_every=12_500)
    assert report.events == 50_000
    assert all(report.faults[kind] >= 1 for kind in FAULTS), report.faults
    assert report.server_restarts == report.faults["restart"]
    assert report.checkpoints >= 4
    assert report.missed_deletes == 0
    assert report.deletes_delivered + report.tombstones_delivered > 0 and report.tombstones_delivered > 0
    assert report.relists > 0
    assert report.reconcile_errors > 0 and report.reconcile_results.get("success", 0) > report.reconcile_errors
    assert report.tasks_leaked == 0 and report.sockets_leaked == 0 and report.processes_leaked == 0, report
