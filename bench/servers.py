"""Start, watch and stop the servers that the benchmark compares, all on 127.0.0.1.

Every server runs in its own session (process group), in its own directory, and gets
SIGKILL from the kernel if the benchmark process dies first (Linux `PR_SET_PDEATHSIG`).
`ServerSet` stops the ones still running when its `with` block ends, also on errors and
Ctrl-C, and stopping a server kills its whole process group.

NOTE: only the process the benchmark starts gets PR_SET_PDEATHSIG. If the benchmark is
killed with SIGKILL, nginx's worker processes outlive their master.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import os
import pwd
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from types import TracebackType

STOP_TIMEOUT = 10.0
READY_TIMEOUT = 60.0

# Distribution 2.8 logs the address it bound, including the port the kernel chose for port 0.
DISTRIBUTION_LISTENING = re.compile(r"listening on 127\.0\.0\.1:(\d+)")

_PR_SET_PDEATHSIG = 1
_libc = ctypes.CDLL(None, use_errno=True)


def _die_with_parent() -> None:
    """Run in the child between fork and exec: ask for SIGKILL when the benchmark process exits."""
    _libc.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


class ServerError(RuntimeError):
    """A server failed to start or exited early; the message includes the end of its log."""


def free_port() -> int:
    """Return a loopback port that was free a moment ago.

    NOTE: another process could take the port before the server binds it. Only nginx and
    Docket use this, because they print no port when asked to bind port 0.
    """
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def process_tree(pid: int) -> list[int]:
    """Return `pid` and the ids of all its live descendants, read from /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        # The command name in field 2 is in parentheses and may contain spaces.
        fields = stat[stat.rindex(")") + 2 :].split()
        children.setdefault(int(fields[1]), []).append(int(entry))
    tree = [pid]
    index = 0
    while index < len(tree):
        tree.extend(children.get(tree[index], []))
        index += 1
    return tree


def memory_kib(pid: int) -> tuple[int, int]:
    """Return (VmRSS, VmHWM) in KiB summed over `pid` and its descendants.

    The sum of VmHWM is an upper bound of the peak of the summed RSS, and it counts
    pages that processes share (after a fork, say) once for each process.
    """
    rss = hwm = 0
    for member in process_tree(pid):
        try:
            status = Path(f"/proc/{member}/status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                rss += int(line.split()[1])
            elif line.startswith("VmHWM:"):
                hwm += int(line.split()[1])
    return rss, hwm


def pss_kib(pid: int) -> int:
    """Return the proportional set size (Pss) in KiB summed over `pid` and its descendants.

    Pss divides each shared page among the processes that map it, so the sum counts
    every page once. The kernel keeps no peak of it, so callers sample it.
    """
    total = 0
    for member in process_tree(pid):
        try:
            rollup = Path(f"/proc/{member}/smaps_rollup").read_text()
        except OSError:
            continue
        for line in rollup.splitlines():
            if line.startswith("Pss:"):
                total += int(line.split()[1])
                break
    return total


def _answers_http(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0):
            return True
    except urllib.error.HTTPError:
        return True
    except (urllib.error.URLError, OSError):
        return False


class Server:
    """One server process with its log file in `directory`."""

    def __init__(self, name: str, directory: Path) -> None:
        self.name = name
        self.directory = directory
        self.log_path = directory / f"{name}.log"
        self.port = 0
        self.log_offset = 0
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def command(self) -> list[str]:
        raise NotImplementedError

    def ready_path(self) -> str:
        return "/v2/"

    def environment(self) -> dict[str, str]:
        return dict(os.environ)

    def prepare(self) -> None:
        """Write configuration files and choose the port before the process starts."""

    def read_port(self) -> int | None:
        """Return the bound port from the log, for servers that bind port 0."""
        return self.port

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        self.prepare()
        log = self.log_path.open("ab")
        self.log_offset = log.tell()
        try:
            self.process = subprocess.Popen(
                self.command(),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=self.environment(),
                # Children inherit the working directory, so /proc/PID/cwd shows which run a process belongs to.
                cwd=self.directory,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )
        finally:
            log.close()
        self._wait_until_ready()

    def _wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise ServerError(f"{self.name} exited with {self.process.returncode}; log:\n{self.log_tail()}")
            port = self.read_port()
            if port:
                self.port = port
                if _answers_http(self.url + self.ready_path()):
                    return
            time.sleep(0.05)
        raise ServerError(f"{self.name} not ready after {READY_TIMEOUT:.0f}s; log:\n{self.log_tail()}")

    def log_text(self, offset: int = 0) -> str:
        if not self.log_path.exists():
            return ""
        with self.log_path.open("rb") as log:
            log.seek(offset)
            return log.read().decode(errors="replace")

    def log_size(self) -> int:
        return self.log_path.stat().st_size if self.log_path.exists() else 0

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])

    @property
    def pid(self) -> int:
        if self.process is None:
            raise ServerError(f"{self.name} is not running")
        return self.process.pid

    def stop(self) -> None:
        """Send SIGTERM, wait, then SIGKILL the server's process group, workers included."""
        process = self.process
        if process is None:
            return
        self.process = None
        if process.poll() is None:
            process.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=STOP_TIMEOUT)
        # The group id is the id of the process that start_new_session made its leader.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class Distribution(Server):
    """CNCF distribution 2.8 (`docker-registry serve`), plain or as a pull-through proxy of `remote_url`."""

    BINARY = "docker-registry"

    def __init__(self, name: str, directory: Path, remote_url: str | None = None) -> None:
        super().__init__(name, directory)
        self.remote_url = remote_url
        self.config_path = directory / "config.yml"

    def prepare(self) -> None:
        config: dict[str, object] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.directory / "storage")},
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": "127.0.0.1:0", "secret": secrets.token_hex(16)},
            "health": {"storagedriver": {"enabled": False}},
        }
        if self.remote_url is not None:
            config["proxy"] = {"remoteurl": self.remote_url}
        # JSON is valid YAML.
        self.config_path.write_text(json.dumps(config, indent=2))

    def environment(self) -> dict[str, str]:
        # REGISTRY_* variables would override the configuration file.
        return {key: value for key, value in os.environ.items() if not key.startswith("REGISTRY_")}

    def command(self) -> list[str]:
        return [self.BINARY, "serve", str(self.config_path)]

    def read_port(self) -> int | None:
        match = DISTRIBUTION_LISTENING.search(self.log_text(self.log_offset))
        return int(match.group(1)) if match else None


class Nginx(Server):
    """nginx in the foreground with its own configuration, pid file and temp paths, serving `root`."""

    BINARY = "nginx"

    def __init__(self, name: str, directory: Path, root: Path) -> None:
        super().__init__(name, directory)
        self.root = root
        self.config_path = directory / "nginx.conf"

    def ready_path(self) -> str:
        return "/"

    def prepare(self) -> None:
        self.port = free_port()
        temp = self.directory / "temp"
        temp.mkdir(exist_ok=True)
        temp_paths = "\n".join(
            f"    {kind}_temp_path {temp / kind};" for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi")
        )
        # Started by root, nginx workers switch to `nobody`, who may be unable to reach a
        # temporary directory. Keep them as the current user instead.
        user = f"user {pwd.getpwuid(os.geteuid()).pw_name};" if os.geteuid() == 0 else ""
        self.config_path.write_text(
            f"""daemon off;
{user}
worker_processes 2;
pid {self.directory / "nginx.pid"};
error_log {self.directory / "error.log"} warn;
events {{
    worker_connections 1024;
}}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    default_type application/octet-stream;
{temp_paths}
    server {{
        listen 127.0.0.1:{self.port};
        root {self.root};
    }}
}}
"""
        )

    def command(self) -> list[str]:
        # -e sets the error log used before the configuration is read (nginx 1.19.5 and newer).
        return [
            self.BINARY,
            "-p",
            str(self.directory),
            "-c",
            str(self.config_path),
            "-e",
            str(self.directory / "error.log"),
        ]

    def log_tail(self, lines: int = 40) -> str:
        error_log = self.directory / "error.log"
        text = error_log.read_text(errors="replace") if error_log.exists() else ""
        return "\n".join((self.log_text() + text).splitlines()[-lines:])


class Docket(Server):
    """`python -m docket serve` with a TOML configuration written by `config_text`."""

    def __init__(
        self,
        name: str,
        directory: Path,
        config_text: Callable[[], str],
        workers: int | None = None,
    ) -> None:
        super().__init__(name, directory)
        self.config_text = config_text
        self.workers = workers
        self.config_path = directory / "docket.toml"
        self.data_dir = directory / "data"

    def prepare(self) -> None:
        self.port = free_port()
        self.config_path.write_text(self.config_text())

    def command(self) -> list[str]:
        command = [
            sys.executable,
            "-m",
            "docket",
            "serve",
            "--config",
            str(self.config_path),
            "--listen",
            self.host,
            "--data-dir",
            str(self.data_dir),
        ]
        if self.workers is not None:
            command += ["--workers", str(self.workers)]
        return command


class ServerSet:
    """Servers started in a `with` block; all that still run are stopped when it ends."""

    def __init__(self) -> None:
        self.servers: list[Server] = []

    def start(self, server: Server) -> Server:
        self.servers.append(server)
        server.start()
        return server

    def stop(self, server: Server) -> None:
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def __enter__(self) -> ServerSet:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        # Stop every server even if stopping one fails or is interrupted.
        errors: list[BaseException] = []
        for server in reversed(self.servers):
            try:
                server.stop()
            except BaseException as error:  # noqa: BLE001 - re-raised below after the rest are stopped
                errors.append(error)
        self.servers.clear()
        if errors:
            raise errors[0]
