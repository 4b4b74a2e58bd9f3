"""Tests of `docket serve` start-up failures: each ends with one clear line and exit status 1."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import httpx

from tests.support.oci import push_blob, random_blob
from tests.support.processes import DocketProcess

COMMAND_TIMEOUT = 60.0


def serve(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docket", "serve", *arguments],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )


def last_line(result: subprocess.CompletedProcess[str]) -> str:
    return result.stderr.strip().splitlines()[-1]


def test_serve_data_dir_in_use(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    running = start_docket("--workers", "2", data_dir=data_dir)
    with httpx.Client(base_url=running.url, timeout=10.0) as client:
        blob = random_blob(1024)
        push_blob(client, "startup/app", blob)
        client.get(f"/v2/startup/app/blobs/{blob.digest}")
    metrics_before = sorted(path.name for path in (data_dir / "metrics").glob("*.db"))

    second = serve("--listen", "127.0.0.1:0", "--data-dir", str(data_dir))

    assert running.process is not None
    assert second.returncode == 1
    busy = f"data directory {data_dir} is in use by a running Docket server (pid {running.process.pid})"
    assert last_line(second) == f"docket: cannot serve: {busy}"
    # The refused server changed nothing: the running server's metric files are still there.
    assert metrics_before != []
    assert sorted(path.name for path in (data_dir / "metrics").glob("*.db")) == metrics_before
    with httpx.Client(base_url=running.url, timeout=10.0) as client:
        assert client.get(f"/v2/startup/app/blobs/{blob.digest}").status_code == 200


def test_serve_port_in_use(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    running = start_docket()
    address = running.url.removeprefix("http://")

    for workers in ("1", "2"):
        second = serve("--listen", address, "--data-dir", str(tmp_path / f"other-{workers}"), "--workers", workers)

        assert second.returncode == 1
        assert last_line(second).startswith(f"docket: cannot serve: cannot listen on {address}: ")


def test_serve_data_dir_is_file(tmp_path: Path) -> None:
    path = tmp_path / "not-a-directory"
    path.write_text("a file")

    result = serve("--listen", "127.0.0.1:0", "--data-dir", str(path))

    assert result.returncode == 1
    assert last_line(result).startswith(f"docket: cannot serve: cannot use data directory {path}: ")
