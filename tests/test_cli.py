"""The `kinformer` command runs end to end (the demo has its own tests in test_demo.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kinformer.cli import main


def test_version_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["--version"])
    assert info.value.code == 0
    assert "kinformer 0.1.0" in capsys.readouterr().out
    with pytest.raises(SystemExit) as info:
        main([])
    assert info.value.code == 2


def test_example_runs_against_the_fake_server() -> None:
    result = subprocess.run([sys.executable, "examples/pod_phases.py", "--fake", "--seconds", "0.2"],
                            capture_output=True, text=True, timeout=60, check=False)
    assert result.returncode == 0, result.stderr
    assert "Running    20" in result.stdout and "Pending    10" in result.stdout
