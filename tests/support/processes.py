"""Start and stop real servers on loopback ports for the tests."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_ready(url: str, process: subprocess.Popen[bytes], log_path: Path, timeout: float = 30.0) -> None:
    """Poll `url` until it responds, failing early with the log if the process exits."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}; log:\n{log_path.read_text()}")
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    raise RuntimeError(f"server at {url} not ready after {timeout}s; log:\n{log_path.read_text()}")


_LISTENING_RE = re.compile(rb"Docket listening on http://127\.0\.0\.1:(\d+)")


class DocketProcess:
    """A `docket serve` subprocess with its own data directory and port.

    Without a fixed port the server binds port 0 and the test reads the port the
    kernel chose from its log, so no other process can take it in between.
    """

    def __init__(self, data_dir: Path, *extra_args: str, port: int | None = None) -> None:
        self.data_dir = data_dir
        self.fixed_port = port
        self.port = port or 0
        self.extra_args = extra_args
        self.log_path = data_dir.parent / f"{data_dir.name}.log"
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _wait_for_port(self, offset: int, timeout: float = 30.0) -> int:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = _LISTENING_RE.search(self.log_path.read_bytes()[offset:])
            if match is not None:
                return int(match.group(1))
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited with {self.process.returncode}; log:\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"server did not report its port within {timeout}s; log:\n{self.log()}")

    def start(self) -> DocketProcess:
        command = [
            sys.executable,
            "-m",
            "docket",
            "serve",
            "--listen",
            f"127.0.0.1:{self.fixed_port or 0}",
            "--data-dir",
            str(self.data_dir),
            *self.extra_args,
        ]
        log = self.log_path.open("ab")
        offset = log.tell()
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env={**os.environ})
        log.close()
        self.port = self._wait_for_port(offset)
        wait_until_ready(f"{self.url}/v2/", self.process, self.log_path)
        return self

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def kill(self) -> None:
        """Stop the server abruptly, as a crash would."""
        if self.process is not None:
            self.process.kill()
            self.process.wait()
            self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def __enter__(self) -> DocketProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
