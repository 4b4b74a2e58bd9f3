"""The benchmark script (bench/run.py) in quick mode: it runs end to end, reports every row and cleans up."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import REPOSITORY_ROOT

# Each tool the benchmark starts or drives, and the Debian package that installs it.
REQUIRED_TOOLS = {
    "docker-registry": "docker-registry",
    "nginx": "nginx",
    "wrk": "wrk",
    "ab": "apache2-utils",
    "skopeo": "skopeo",
}
ROW_NAMES = [
    "1. Cold blob GET",
    "2. Hot blob throughput",
    "3a. Manifest GET by tag, TTL 1h",
    "3b. Manifest GET by tag, TTL 0",
    "3c. Manifest GET by digest",
    "3d. Manifest HEAD by tag",
    "4a. Image pull, cold",
    "4b. Image pull, warm",
    "5a. Concurrent cold GETs, upstream GETs",
    "5b. Concurrent cold GETs, last byte",
    "6. Peak RSS",
]
QUICK_RUN_TIMEOUT = 150


@dataclass
class QuickRun:
    result: subprocess.CompletedProcess[str]
    report: str
    temp_dir: Path


def processes_inside(directory: Path) -> list[str]:
    """Return the command lines of live processes whose command line or working directory names `directory`.

    The benchmark starts each server in its own directory, and nginx's workers, whose
    command line names no path, inherit that working directory.
    """
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            command = Path(f"/proc/{entry}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(f"/proc/{entry}/cwd")
        except OSError:
            continue
        if str(directory) in command or cwd.startswith(str(directory)):
            found.append(f"{entry}: {command}")
    return found


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory: pytest.TempPathFactory) -> QuickRun:
    missing = [
        f"{tool} (Debian package {package})" for tool, package in REQUIRED_TOOLS.items() if not shutil.which(tool)
    ]
    if missing:
        pytest.skip(f"the benchmark needs tools that are not installed: {', '.join(missing)}")
    base = tmp_path_factory.mktemp("bench")
    output = base / "benchmarks.md"
    temp_dir = base / "tmp"
    temp_dir.mkdir()
    # The benchmark keeps all its data under TMPDIR, so the test can check that nothing is left.
    result = subprocess.run(
        [sys.executable, "bench/run.py", "--quick", "--output", str(output)],
        cwd=REPOSITORY_ROOT,
        env={**os.environ, "TMPDIR": str(temp_dir)},
        capture_output=True,
        text=True,
        timeout=QUICK_RUN_TIMEOUT,
    )
    report = output.read_text() if output.exists() else ""
    return QuickRun(result, report, temp_dir)


def test_quick_run_exits_zero(quick_run: QuickRun) -> None:
    assert quick_run.result.returncode == 0, quick_run.result.stdout + quick_run.result.stderr


@pytest.mark.parametrize("row", ROW_NAMES)
def test_quick_run_reports_row(quick_run: QuickRun, row: str) -> None:
    assert f"| {row}" in quick_run.report


def test_quick_run_reports_no_failure(quick_run: QuickRun) -> None:
    assert "## Failed measurements" not in quick_run.report


def test_quick_run_deletes_temp_data(quick_run: QuickRun) -> None:
    assert list(quick_run.temp_dir.iterdir()) == []


def test_quick_run_stops_servers(quick_run: QuickRun) -> None:
    assert processes_inside(quick_run.temp_dir) == []
