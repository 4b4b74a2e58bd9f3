"""Collect measurements, describe the machine and the tools, and render the results as Markdown."""

from __future__ import annotations

import importlib.metadata
import os
import platform
import statistics
import subprocess
from dataclasses import dataclass
from pathlib import Path

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent


class Results:
    """Named series of measurements, one value for each run."""

    def __init__(self) -> None:
        self.series: dict[str, list[float]] = {}
        self.units: dict[str, str] = {}

    def add(self, name: str, value: float, unit: str) -> None:
        self.series.setdefault(name, []).append(value)
        self.units[name] = unit

    def median(self, name: str) -> float | None:
        values = self.series.get(name)
        return statistics.median(values) if values else None

    def values(self, name: str) -> list[float]:
        return self.series.get(name, [])


@dataclass
class TableRow:
    """One line of the results table: Docket's median, its peers' medians and the target."""

    name: str
    unit: str
    docket: float | None
    peers: list[tuple[str, float | None]]
    target: str
    met: bool | None = None
    error: str | None = None
    # A second Docket value shown under the first, with its label; it has no target.
    detail: tuple[str, float | None] | None = None

    def result(self) -> str:
        if self.error is not None:
            return "failed"
        if self.docket is None:
            return "not measured"
        if self.met is None:
            return "no target"
        return "met" if self.met else "missed"


def format_value(value: float | None, unit: str) -> str:
    if value is None:
        return "–"
    if unit == "req/s":
        return f"{value:,.0f}"
    if unit in ("GB/s", "s"):
        return f"{value:.3g}" if value < 100 else f"{value:.0f}"
    if unit == "MiB":
        return f"{value:.1f}"
    if unit == "GETs":
        return f"{value:g}"
    return f"{value:.3g}"


def format_ratio(docket: float | None, peer: float | None) -> str:
    if docket is None or peer is None or peer == 0:
        return "–"
    return f"{docket / peer:.2f}×"


def render_table(rows: list[TableRow]) -> str:
    lines = [
        "| Benchmark | Unit | Docket | Peers | Docket / peer | Target | Result |",
        "| --- | --- | ---: | --- | --- | --- | --- |",
    ]
    for row in rows:
        peers = "<br>".join(f"{label}: {format_value(value, row.unit)}" for label, value in row.peers) or "–"
        ratios = "<br>".join(f"{format_ratio(row.docket, value)} {label}" for label, value in row.peers) or "–"
        docket = format_value(row.docket, row.unit)
        if row.detail is not None:
            label, value = row.detail
            docket += f"<br>{label}: {format_value(value, row.unit)}"
        lines.append(f"| {row.name} | {row.unit} | {docket} | {peers} | {ratios} | {row.target} | {row.result()} |")
    return "\n".join(lines)


def render_runs(results: Results) -> str:
    lines = ["| Series | Unit | Runs | Median |", "| --- | --- | --- | ---: |"]
    for name, values in results.series.items():
        unit = results.units[name]
        runs = ", ".join(format_value(value, unit) for value in values)
        lines.append(f"| {name} | {unit} | {runs} | {format_value(results.median(name), unit)} |")
    return "\n".join(lines)


def _command_output(command: list[str]) -> str:
    """Return the first line a tool prints for its version, from stdout or stderr."""
    try:
        completed = subprocess.run(command, capture_output=True, text=True, timeout=30, cwd=REPOSITORY_ROOT)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"unavailable ({error})"
    text = (completed.stdout.strip() or completed.stderr.strip()).splitlines()
    return text[0].strip() if text else "unavailable"


def _package_version(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def machine_description() -> list[tuple[str, str]]:
    cpu_model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu_model = line.split(":", 1)[1].strip()
            break
    memory = "unknown"
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            memory = f"{int(line.split()[1]) / (1 << 20):.1f} GiB"
            break
    return [
        ("CPUs (nproc)", str(len(os.sched_getaffinity(0)))),
        ("CPU model", cpu_model),
        ("Memory", memory),
        ("Kernel", f"{platform.system()} {platform.release()}"),
    ]


def tool_versions() -> list[tuple[str, str]]:
    docket_commit = _command_output(["git", "describe", "--always", "--dirty", "--tags"])
    return [
        ("Python", platform.python_version()),
        ("aiohttp", _package_version("aiohttp")),
        ("uvloop", _package_version("uvloop")),
        ("Docket", f"{_package_version('docket')} ({docket_commit})"),
        ("distribution", _command_output(["docker-registry", "--version"])),
        ("nginx", _command_output(["nginx", "-v"])),
        ("wrk", _command_output(["wrk", "-v"])),
        ("ApacheBench", _command_output(["ab", "-V"])),
        ("skopeo", _command_output(["skopeo", "--version"])),
    ]


def render_document(
    *,
    command: str,
    started: str,
    methods: list[str],
    rows: list[TableRow],
    results: Results,
    runs: int,
) -> str:
    machine = "\n".join(f"| {name} | {value} |" for name, value in machine_description())
    versions = "\n".join(f"| {name} | {value} |" for name, value in tool_versions())
    method_lines = "\n".join(f"- {line}" for line in methods)
    failures = [row for row in rows if row.error is not None]
    failure_lines = "\n".join(f"- {row.name}: {row.error}" for row in failures)
    sections = [
        "# Benchmarks",
        f"Docket side by side with CNCF distribution and nginx on one machine over loopback, "
        f"written by `bench/run.py` on {started}. Every number is the median of {runs} run(s); "
        "the ratio is Docket's value divided by the peer's.",
        "## Command",
        f"```sh\n{command}\n```",
        "## Machine",
        f"| | |\n| --- | --- |\n{machine}",
        "## Versions",
        f"| Tool | Version |\n| --- | --- |\n{versions}",
        "## Results",
        render_table(rows),
    ]
    if failures:
        sections += ["## Failed measurements", failure_lines]
    sections += ["## What each row measures", method_lines, "## All runs", render_runs(results)]
    return "\n\n".join(sections) + "\n"
