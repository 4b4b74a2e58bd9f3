"""Load generators: timed HTTP GETs with aiohttp, wrk runs and skopeo pulls."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

READ_CHUNK = 1 << 20


class MeasurementError(RuntimeError):
    """A request in a measurement failed, so its number would be meaningless."""


def client_session() -> aiohttp.ClientSession:
    """Return a session for large downloads: no total timeout, 1 MiB read buffer, no connection limit."""
    return aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=None, sock_connect=10, sock_read=120),
        connector=aiohttp.TCPConnector(limit=0, force_close=True),
        read_bufsize=READ_CHUNK,
        auto_decompress=False,
    )


async def download(session: aiohttp.ClientSession, url: str, expected_size: int) -> float:
    """GET `url`, discard the body and return the monotonic time of its last byte.

    Raises MeasurementError unless the status is 200 and exactly `expected_size` bytes arrive.
    """
    received = 0
    async with session.get(url) as response:
        if response.status != 200:
            raise MeasurementError(f"GET {url} returned {response.status}: {(await response.read())[:300]!r}")
        async for chunk in response.content.iter_any():
            received += len(chunk)
    finished = time.monotonic()
    if received != expected_size:
        raise MeasurementError(f"GET {url} returned {received} bytes, expected {expected_size}")
    return finished


async def timed_download(session: aiohttp.ClientSession, url: str, expected_size: int) -> float:
    """Return the seconds from sending a GET to its last byte."""
    started = time.monotonic()
    finished = await download(session, url, expected_size)
    return finished - started


async def concurrent_downloads(session: aiohttp.ClientSession, url: str, expected_size: int, clients: int) -> float:
    """Start `clients` GETs of `url` at once; return the seconds until the last one has its last byte."""
    started = time.monotonic()
    finishes = await asyncio.gather(*(download(session, url, expected_size) for _ in range(clients)))
    return max(finishes) - started


@dataclass
class WrkResult:
    requests: int
    bytes: int
    seconds: float
    errors: dict[str, int]

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def gigabytes_per_second(self) -> float:
        return self.bytes / self.seconds / 1e9


# The done() hook prints wrk's own totals as one JSON line, so nothing parses wrk's
# human-readable summary. summary.bytes counts every byte read, partial responses included.
WRK_SCRIPT = """wrk.method = {method}
{headers}
function done(summary, latency, requests)
  io.write(string.format(
    'BENCH_WRK {{"requests": %d, "bytes": %d, "duration_us": %d, "connect": %d, "read": %d, '
    .. '"write": %d, "status": %d, "timeout": %d}}\\n',
    summary.requests, summary.bytes, summary.duration, summary.errors.connect, summary.errors.read,
    summary.errors.write, summary.errors.status, summary.errors.timeout))
end
"""
WRK_RESULT = re.compile(r"^BENCH_WRK (\{.*\})$", re.MULTILINE)


def _lua_string(value: str) -> str:
    # A JSON string of printable ASCII is also a valid Lua string literal.
    return json.dumps(value, ensure_ascii=True)


def run_wrk(
    url: str,
    *,
    script_dir: Path,
    method: str = "GET",
    headers: dict[str, str] | None = None,
    threads: int = 2,
    connections: int = 8,
    duration: float = 10.0,
    timeout: float = 60.0,
) -> WrkResult:
    """Run wrk against `url` and return its totals; raises MeasurementError on any error that wrk counts."""
    header_lines = "\n".join(
        f"wrk.headers[{_lua_string(name)}] = {_lua_string(value)}" for name, value in (headers or {}).items()
    )
    script = script_dir / "wrk-script.lua"
    script.write_text(WRK_SCRIPT.format(method=_lua_string(method), headers=header_lines))
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        f"--timeout={timeout:g}s",
        "-s",
        str(script),
        url,
    ]
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + timeout + 30)
    match = WRK_RESULT.search(completed.stdout)
    if completed.returncode != 0 or match is None:
        raise MeasurementError(
            f"{' '.join(command)} failed with {completed.returncode}:\n{completed.stdout}{completed.stderr}"
        )
    totals = json.loads(match.group(1))
    errors = {kind: totals[kind] for kind in ("connect", "read", "write", "status", "timeout")}
    if any(errors.values()):
        raise MeasurementError(f"wrk {method} {url} counted errors {errors} in {totals['requests']} requests")
    if totals["requests"] == 0 and totals["bytes"] == 0:
        raise MeasurementError(f"wrk {method} {url} completed no request")
    return WrkResult(totals["requests"], totals["bytes"], totals["duration_us"] / 1e6, errors)


def skopeo_pull(reference: str, destination: Path, timeout: float = 600.0) -> float:
    """Copy `reference` (docker://HOST/NAME:TAG on plain HTTP) to a `dir:` layout; return the seconds it took."""
    shutil.rmtree(destination, ignore_errors=True)
    command = ["skopeo", "copy", "--src-tls-verify=false", reference, f"dir:{destination}"]
    started = time.monotonic()
    completed = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    seconds = time.monotonic() - started
    shutil.rmtree(destination, ignore_errors=True)
    if completed.returncode != 0:
        raise MeasurementError(f"{' '.join(command)} failed with {completed.returncode}:\n{completed.stderr}")
    return seconds


AB_FIELDS = {
    "complete": re.compile(r"^Complete requests:\s+(\d+)", re.MULTILINE),
    "failed": re.compile(r"^Failed requests:\s+(\d+)", re.MULTILINE),
    "non_2xx": re.compile(r"^Non-2xx responses:\s+(\d+)", re.MULTILINE),
    "seconds": re.compile(r"^Time taken for tests:\s+([\d.]+) seconds", re.MULTILINE),
}


def run_ab_head(url: str, *, headers: dict[str, str], connections: int = 8, duration: float = 10.0) -> float:
    """Send keep-alive HEAD requests with ApacheBench for `duration` seconds; return requests per second.

    wrk 4.1 waits for a body after a HEAD response that has a Content-Length, so HEAD
    needs another load generator. Raises MeasurementError on any failed or non-2xx response.
    """
    command = ["ab", "-i", "-k", f"-c{connections}", f"-t{duration:g}"]
    # -t sets the request limit to 50000 unless -n comes after it.
    command += ["-n", "100000000"]
    for name, value in headers.items():
        command += ["-H", f"{name}: {value}"]
    command.append(url)
    completed = subprocess.run(command, capture_output=True, text=True, timeout=duration + 60)
    found = {name: pattern.search(completed.stdout) for name, pattern in AB_FIELDS.items()}
    if completed.returncode != 0 or found["complete"] is None or found["seconds"] is None:
        raise MeasurementError(
            f"{' '.join(command)} failed with {completed.returncode}:\n{completed.stdout}{completed.stderr}"
        )
    failed = int(found["failed"].group(1)) if found["failed"] else 0
    non_2xx = int(found["non_2xx"].group(1)) if found["non_2xx"] else 0
    complete = int(found["complete"].group(1))
    if failed or non_2xx or complete == 0:
        raise MeasurementError(f"ab HEAD {url}: {complete} requests, {failed} failed, {non_2xx} non-2xx")
    return complete / float(found["seconds"].group(1))
