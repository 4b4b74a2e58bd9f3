"""Static checks of the package: strict typing and lint, as part of the suite."""

import subprocess
import sys

import pytest

from tests.conftest import REPOSITORY_ROOT


def run_tool(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=REPOSITORY_ROOT, capture_output=True, text=True, timeout=300)


def test_ruff_clean() -> None:
    pytest.importorskip("ruff")
    result = run_tool(sys.executable, "-m", "ruff", "check", "src")
    assert result.returncode == 0, result.stdout + result.stderr


def test_mypy_strict_clean() -> None:
    pytest.importorskip("mypy")
    result = run_tool(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr
