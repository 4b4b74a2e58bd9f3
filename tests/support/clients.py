"""Container clients that pull through a registry mirror on loopback: podman and containerd's ctr.

Both clients pull images named after a made-up registry (for example `upstream.example`)
from a mirror on loopback. The configurations written here stop either client from
falling back to the made-up registry itself, so a pull that the mirror cannot serve fails
instead of leaving loopback. Both clients run with debug logging, and the HTTP requests
they log are returned for tests to check.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

PODMAN_BINARY = "podman"
CONTAINERD_BINARY = "containerd"
CTR_BINARY = "ctr"
DEFAULT_PLATFORM = "linux/amd64"

# Podman 4.3 with --log-level debug logs each request as msg="GET https://host/v2/...".
PODMAN_REQUEST = re.compile(r'msg="(GET|HEAD|POST|PUT|PATCH|DELETE) (https?://[^"\s]+)"')
# ctr 1.6 with --debug --http-trace logs each request as `request.method=GET url="http://..."`.
CTR_REQUEST = re.compile(r'request\.method=(\w+) url="?(https?://[^"\s]+)"?')


class ClientFailed(RuntimeError):
    """A podman or ctr command that exited with an error; the message contains its stderr."""


@dataclass
class Request:
    """One HTTP request that a client logged."""

    method: str
    url: str


@dataclass
class ClientRun:
    """The outcome of one podman or ctr command."""

    command: list[str]
    returncode: int
    stdout: str
    stderr: str
    requests: list[Request] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def hosts(self) -> set[str]:
        """Return the `host:port` parts of every logged request URL."""
        return {request.url.split("/")[2] for request in self.requests}


def registry_of(image_ref: str) -> str:
    """Return the registry host name of a fully qualified reference such as `upstream.example/repo:tag`."""
    first, _, rest = image_ref.partition("/")
    if not rest or not ("." in first or ":" in first or first == "localhost"):
        raise ValueError(f"image reference {image_ref!r} must start with a registry host name")
    return first


def isolated_env(home: Path, **extra: str) -> dict[str, str]:
    """Build a minimal environment with HOME and XDG folders under `home` and no HTTP proxy."""
    for name in ("config", "data", "cache", "runtime"):
        (home / f"xdg-{name}").mkdir(parents=True, exist_ok=True)
    (home / "tmp").mkdir(parents=True, exist_ok=True)
    (home / "xdg-runtime").chmod(0o700)
    return {
        "PATH": os.environ.get("PATH", "/usr/sbin:/usr/bin:/sbin:/bin"),
        "HOME": str(home),
        "XDG_CONFIG_HOME": str(home / "xdg-config"),
        "XDG_DATA_HOME": str(home / "xdg-data"),
        "XDG_CACHE_HOME": str(home / "xdg-cache"),
        "XDG_RUNTIME_DIR": str(home / "xdg-runtime"),
        "TMPDIR": str(home / "tmp"),
        "NO_PROXY": "*",
        "LANG": "C.UTF-8",
        **extra,
    }


def run_client(
    command: list[str], env: dict[str, str], pattern: re.Pattern[str], timeout: float, check: bool
) -> ClientRun:
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    requests = [Request(method, url) for method, url in pattern.findall(result.stderr)]
    run = ClientRun(command, result.returncode, result.stdout, result.stderr, requests)
    if check and not run.ok:
        raise ClientFailed(f"{' '.join(command)} exited with {result.returncode}:\n{result.stderr[-4000:]}")
    return run


# --- podman -------------------------------------------------------------------------------


def write_registries_conf(path: Path, registry: str, mirror: str) -> Path:
    """Write a registries.conf (v2 format) that sends pulls of `registry` to `mirror` only.

    `mirror` is `HOST:PORT`, optionally followed by `/namespace`, and is spoken to over
    plain HTTP (`insecure = true`; podman first tries HTTPS, then falls back). With
    `blocked = true`, podman 4.3 still tries the mirrors but never the registry itself.
    """
    path.write_text(
        "\n".join(
            [
                "unqualified-search-registries = []",
                'short-name-mode = "disabled"',
                "",
                "[[registry]]",
                f'prefix = "{registry}"',
                f'location = "{registry}"',
                "blocked = true",
                "",
                "[[registry.mirror]]",
                f'location = "{mirror}"',
                "insecure = true",
                "",
            ]
        )
    )
    return path


def podman_pull(
    mirror_host_port: str,
    image_ref: str,
    tmp_dir: Path,
    *,
    platform: str = DEFAULT_PLATFORM,
    check: bool = True,
    timeout: float = 120.0,
) -> ClientRun:
    """Pull `image_ref` with podman (vfs storage under `tmp_dir`) through the mirror `mirror_host_port`.

    `image_ref` must name its registry (`upstream.example/repo:tag`); only that registry
    is mirrored. Storage, configuration, auth file and temporary files all live under
    `tmp_dir`, so calls with different folders share nothing. Calls with the same folder
    reuse its image store. On success, stdout is the image ID. Raises ClientFailed on
    failure unless `check` is false.

    NOTE: podman 4.3 running as root still updates the shared blob-info cache in
    /var/lib/containers/cache and creates the empty folder /run/containers/networks.
    """
    if shutil.which(PODMAN_BINARY) is None:
        raise RuntimeError("podman is not installed; install the Debian package podman")
    tmp_dir.mkdir(parents=True, exist_ok=True)
    registries_conf = write_registries_conf(tmp_dir / "registries.conf", registry_of(image_ref), mirror_host_port)
    policy = tmp_dir / "policy.json"
    policy.write_text(json.dumps({"default": [{"type": "insecureAcceptAnything"}]}))
    auth_file = tmp_dir / "auth.json"
    auth_file.write_text("{}")
    containers_conf = tmp_dir / "containers.conf"
    containers_conf.write_text(
        f'[engine]\nevents_logger = "none"\n\n[network]\nnetwork_config_dir = "{tmp_dir / "networks"}"\n'
    )

    # Podman 4.3 rejects a runroot longer than 50 characters, and pytest's folders are longer.
    runroot = Path(tempfile.mkdtemp(prefix="docket-podman-"))
    storage_conf = tmp_dir / "storage.conf"
    storage_conf.write_text(f'[storage]\ndriver = "vfs"\ngraphroot = "{tmp_dir / "root"}"\nrunroot = "{runroot}"\n')
    env = isolated_env(
        tmp_dir / "home",
        CONTAINERS_REGISTRIES_CONF=str(registries_conf),
        CONTAINERS_STORAGE_CONF=str(storage_conf),
        CONTAINERS_CONF=str(containers_conf),
        REGISTRY_AUTH_FILE=str(auth_file),
    )
    command = [
        PODMAN_BINARY,
        "--log-level",
        "debug",
        "--root",
        str(tmp_dir / "root"),
        "--runroot",
        str(runroot),
        "--storage-driver",
        "vfs",
        "--registries-conf",
        str(registries_conf),
        "--tmpdir",
        str(tmp_dir / "libpod-tmp"),
        "--events-backend",
        "none",
        "pull",
        "--signature-policy",
        str(policy),
        "--platform",
        platform,
        image_ref,
    ]
    try:
        return run_client(command, env, PODMAN_REQUEST, timeout, check)
    finally:
        shutil.rmtree(runroot, ignore_errors=True)


# --- containerd ---------------------------------------------------------------------------

# Plugins that need kernel features, start containers or write outside the root and state
# folders (`opt` creates /opt/containerd). A content fetch needs none of them.
DISABLED_CONTAINERD_PLUGINS = [
    "io.containerd.grpc.v1.cri",
    "io.containerd.internal.v1.opt",
    "io.containerd.internal.v1.restart",
    "io.containerd.snapshotter.v1.aufs",
    "io.containerd.snapshotter.v1.btrfs",
    "io.containerd.snapshotter.v1.devmapper",
    "io.containerd.snapshotter.v1.zfs",
    "io.containerd.runtime.v1.linux",
    "io.containerd.runtime.v2.task",
    "io.containerd.monitor.v1.cgroups",
    "io.containerd.service.v1.tasks-service",
    "io.containerd.grpc.v1.tasks",
]


class Containerd:
    """A containerd 1.6 daemon with its own root, state folder, socket and configuration.

    The gRPC socket lives in a short folder from `tempfile.mkdtemp` because Unix socket
    paths are limited to 107 bytes and pytest's folders can be longer. `stop()` ends the
    daemon (SIGTERM, then SIGKILL after 5 seconds) and removes that folder.
    """

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.root = directory / "root"
        self.state = directory / "state"
        self.config_path = directory / "config.toml"
        self.log_path = directory / "containerd.log"
        self.socket_dir: Path | None = None
        self.address = ""
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> Containerd:
        for binary in (CONTAINERD_BINARY, CTR_BINARY):
            if shutil.which(binary) is None:
                raise RuntimeError(f"{binary} is not installed; install the Debian package containerd")
        self.directory.mkdir(parents=True, exist_ok=True)
        self.socket_dir = Path(tempfile.mkdtemp(prefix="docket-containerd-"))
        self.address = str(self.socket_dir / "containerd.sock")
        self.config_path.write_text(self.config())

        log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [CONTAINERD_BINARY, "--config", str(self.config_path), "--log-level", "debug"],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=isolated_env(self.directory / "home"),
        )
        log.close()
        try:
            self._wait_until_ready(timeout)
        except BaseException:
            self.stop()
            raise
        return self

    def config(self) -> str:
        """Build the containerd configuration (version 2) that `start()` writes."""
        disabled = ", ".join(f'"{plugin}"' for plugin in DISABLED_CONTAINERD_PLUGINS)
        return "\n".join(
            [
                "version = 2",
                f'root = "{self.root}"',
                f'state = "{self.state}"',
                f"disabled_plugins = [{disabled}]",
                "",
                "[grpc]",
                f'  address = "{self.address}"',
                "",
                "[ttrpc]",
                f'  address = "{self.address}.ttrpc"',
                "",
            ]
        )

    def _wait_until_ready(self, timeout: float) -> None:
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"containerd exited with {self.process.returncode}; log:\n{self.log()}")
            if Path(self.address).exists():
                with socket.socket(socket.AF_UNIX) as probe:
                    try:
                        probe.connect(self.address)
                        return
                    except OSError:
                        pass
            time.sleep(0.05)
        raise RuntimeError(f"containerd socket {self.address} not ready after {timeout}s; log:\n{self.log()}")

    def stop(self) -> None:
        if self.process is not None:
            if self.process.poll() is None:
                self.process.send_signal(signal.SIGTERM)
                try:
                    self.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    self.process.kill()
                    self.process.wait()
            self.process = None
        if self.socket_dir is not None:
            shutil.rmtree(self.socket_dir, ignore_errors=True)
            self.socket_dir = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def ctr(self, *args: str, timeout: float = 60.0) -> subprocess.CompletedProcess[str]:
        """Run `ctr --address <this daemon> ARGS...` and return its result without checking it."""
        return subprocess.run(
            [CTR_BINARY, "--address", self.address, *args],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=isolated_env(self.directory / "home"),
        )

    def content_digests(self) -> set[str]:
        """Return the digests of every blob in the content store (namespace `default`)."""
        result = self.ctr("content", "ls", "--quiet")
        if result.returncode != 0:
            raise ClientFailed(f"ctr content ls failed with {result.returncode}:\n{result.stderr}")
        return set(result.stdout.split())

    def image_digest(self, name: str) -> str | None:
        """Return the target digest of the image record `name`, or None when there is none."""
        result = self.ctr("images", "ls", f"name=={name}")
        if result.returncode != 0:
            raise ClientFailed(f"ctr images ls failed with {result.returncode}:\n{result.stderr}")
        for line in result.stdout.splitlines()[1:]:
            columns = line.split()
            if columns and columns[0] == name:
                return columns[2]
        return None

    def __enter__(self) -> Containerd:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def write_hosts_toml(hosts_dir: Path, registry: str, mirror: str) -> Path:
    """Write `hosts_dir/<registry>/hosts.toml` that resolves and pulls `registry` through `mirror`.

    `mirror` is `HOST:PORT`, spoken to over plain HTTP, or `HOST:PORT/namespace`, which
    makes ctr request `/v2/namespace/<repository>/...`. containerd 1.6 always appends the
    `server` entry as the last host to try, so it gets only the `push` capability: a
    resolve or pull that the mirror cannot serve then fails instead of reaching `registry`.
    ctr adds `?ns=<registry>` to every request to a mirror.

    When `mirror` equals `registry` (a reference such as `127.0.0.1:5000/repo:tag`), the
    file only makes `server` plain HTTP, and ctr sends no `ns` parameter.
    """
    directory = hosts_dir / registry
    directory.mkdir(parents=True, exist_ok=True)
    if mirror == registry:
        lines = [f'server = "http://{registry}"', 'capabilities = ["pull", "resolve"]', "skip_verify = true"]
    else:
        host_port, _, namespace = mirror.partition("/")
        lines = [f'server = "https://{registry}"', 'capabilities = ["push"]', ""]
        if namespace:
            lines += [f'[host."http://{host_port}/v2/{namespace}"]', "  override_path = true"]
        else:
            lines += [f'[host."http://{host_port}"]']
        lines += ['  capabilities = ["pull", "resolve"]', "  skip_verify = true"]
    path = directory / "hosts.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def ctr_fetch(
    containerd: Containerd,
    hosts_dir: Path,
    ref: str,
    mirror: str,
    *,
    platform: str = DEFAULT_PLATFORM,
    check: bool = True,
    timeout: float = 60.0,
) -> ClientRun:
    """Fetch `ref` into `containerd` with `ctr content fetch` through the mirror `mirror`.

    Writes the hosts.toml for the registry that `ref` names (see `write_hosts_toml`),
    then fetches the index, the manifest for `platform`, its config and layers. The fetch
    also creates an image record named `ref`. Raises ClientFailed on failure unless
    `check` is false.
    """
    write_hosts_toml(hosts_dir, registry_of(ref), mirror)
    command = [
        CTR_BINARY,
        "--address",
        containerd.address,
        "--debug",
        "content",
        "fetch",
        "--http-trace",
        "--hosts-dir",
        str(hosts_dir),
        "--platform",
        platform,
        ref,
    ]
    return run_client(command, isolated_env(containerd.directory / "home"), CTR_REQUEST, timeout, check)
