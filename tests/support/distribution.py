"""CNCF distribution (`docker-registry` 2.8 from Debian) as a registry on loopback.

Tests use it as the upstream that a Docket pull-through cache reads from, or, with
`remote_url`, as a reference pull-through proxy in front of another registry.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.layout import OciLayout
from tests.support.processes import wait_until_ready

DISTRIBUTION_BINARY = "docker-registry"
# Distribution 2.8 logs the address it bound, including the port the kernel chose for port 0.
LISTENING_PATTERN = re.compile(r"listening on 127\.0\.0\.1:(\d+)")


def skopeo_copy_layout(
    layout_dir: Path,
    tag: str,
    host: str,
    repository: str,
    destination_tag: str | None = None,
    timeout: float = 120.0,
) -> None:
    """Copy one tag of an OCI layout, with all platforms and unchanged digests, to a plain-HTTP registry.

    `host` is `HOST:PORT` of any registry (distribution, Docket). Skopeo 1.9 cannot copy
    every index, for example referrers fallback-tag indexes whose children are missing
    from the layout; push those with `OciLayout.push` instead.
    """
    source = f"oci:{layout_dir}:{tag}"
    destination = f"docker://{host}/{repository}:{destination_tag or tag}"
    command = ["skopeo", "copy", "--all", "--preserve-digests", "--dest-tls-verify=false", source, destination]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    if result.returncode != 0:
        raise RuntimeError(f"skopeo copy {source} {destination} failed with {result.returncode}:\n{result.stderr}")


def push_blob_in_two_steps(client: httpx.Client, repository: str, digest: str, data: bytes) -> None:
    """Upload a blob with POST then PUT, the monolithic upload that every registry supports.

    Distribution 2.8 ignores the body and `digest` of a single POST, so the one-request
    upload of `OciLayout.push` leaves the blob missing there.
    """
    started = client.post(f"/v2/{repository}/blobs/uploads/")
    if started.status_code != 202:
        raise RuntimeError(
            f"starting the upload of {digest} to {repository} failed: {started.status_code} {started.text}"
        )
    location = started.headers["Location"]
    separator = "&" if "?" in location else "?"
    finished = client.put(
        f"{location}{separator}digest={digest}",
        content=data,
        headers={"Content-Type": "application/octet-stream"},
    )
    if finished.status_code != 201:
        raise RuntimeError(f"uploading {digest} to {repository} failed: {finished.status_code} {finished.text}")


def push_layout_manifest(
    client: httpx.Client,
    layout: OciLayout,
    repository: str,
    descriptor: dict[str, Any],
    tag: str | None = None,
) -> None:
    """Push a manifest or index of a layout with what it references, children first.

    This is `OciLayout.push` with two-step blob uploads, so it also works with distribution.
    Blobs and child manifests that the layout lacks are skipped, and the registry then
    decides whether it accepts the manifest without them.
    """
    digest = descriptor["digest"]
    data = layout.read(digest)
    document = json.loads(data)
    for child in document.get("manifests") or []:
        if layout.has(child["digest"]):
            push_layout_manifest(client, layout, repository, child)

    blobs = list(document.get("layers") or []) + list(document.get("blobs") or [])
    if "config" in document:
        blobs.append(document["config"])
    for blob in blobs:
        if not layout.has(blob["digest"]):
            continue
        if client.head(f"/v2/{repository}/blobs/{blob['digest']}").status_code == 200:
            continue
        push_blob_in_two_steps(client, repository, blob["digest"], layout.read(blob["digest"]))

    reference = tag or digest
    response = client.put(
        f"/v2/{repository}/manifests/{reference}",
        content=data,
        headers={"Content-Type": descriptor["mediaType"]},
    )
    if response.status_code != 201:
        raise RuntimeError(
            f"pushing manifest {reference} to {repository} failed: {response.status_code} {response.text}"
        )


class DistributionRegistry:
    """A `docker-registry serve` process with filesystem storage in its own directory.

    Without `remote_url` it is a plain registry that accepts pushes and deletes. With
    `remote_url` it runs as distribution's pull-through proxy of that registry, which
    rejects pushes. Without `port` it binds port 0, and `start()` reads the port from the
    log, so no other process can take the port in between. `stop()` ends the process
    (SIGTERM, then SIGKILL after 5 seconds).
    """

    def __init__(
        self,
        directory: Path,
        *,
        remote_url: str | None = None,
        remote_username: str | None = None,
        remote_password: str | None = None,
        port: int | None = None,
    ) -> None:
        self.directory = directory
        self.requested_port = port or 0
        self.port = self.requested_port
        self.remote_url = remote_url
        self.remote_username = remote_username
        self.remote_password = remote_password
        self.storage_dir = directory / "storage"
        self.config_path = directory / "config.yml"
        self.log_path = directory / "distribution.log"
        self.process: subprocess.Popen[bytes] | None = None

    def config(self) -> dict[str, Any]:
        """Build the distribution 2.8 configuration that `start()` writes."""
        config: dict[str, Any] = {
            "version": 0.1,
            "log": {"level": "info", "accesslog": {"disabled": False}},
            "storage": {
                "filesystem": {"rootdirectory": str(self.storage_dir)},
                "delete": {"enabled": True},
                # Upload purging and storage health checks run timers in the background.
                "maintenance": {"uploadpurging": {"enabled": False}},
            },
            "http": {"addr": f"127.0.0.1:{self.requested_port}", "secret": secrets.token_hex(16)},
            "health": {"storagedriver": {"enabled": False}},
        }
        if self.remote_url is not None:
            proxy: dict[str, str] = {"remoteurl": self.remote_url}
            if self.remote_username is not None:
                proxy["username"] = self.remote_username
                proxy["password"] = self.remote_password or ""
            config["proxy"] = proxy
        return config

    def start(self) -> DistributionRegistry:
        if shutil.which(DISTRIBUTION_BINARY) is None:
            raise RuntimeError(f"{DISTRIBUTION_BINARY} is not installed; install the Debian package docker-registry")
        self.storage_dir.mkdir(parents=True, exist_ok=True)
        # JSON is valid YAML, so the configuration needs no YAML library.
        self.config_path.write_text(json.dumps(self.config(), indent=2))
        # REGISTRY_* variables override the configuration file in distribution.
        env = {key: value for key, value in os.environ.items() if not key.startswith("REGISTRY_")}
        log = self.log_path.open("ab")
        log_start = log.tell()
        self.process = subprocess.Popen(
            [DISTRIBUTION_BINARY, "serve", str(self.config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
        )
        log.close()
        try:
            if self.requested_port == 0:
                self.port = self._read_bound_port(log_start, timeout=30.0)
            wait_until_ready(f"{self.url}/v2/", self.process, self.log_path)
        except BaseException:
            self.stop()
            raise
        return self

    @property
    def host(self) -> str:
        """`127.0.0.1:PORT`, valid once `start()` has returned."""
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.host}"

    def _read_bound_port(self, log_start: int, timeout: float) -> int:
        """Wait for the listening line that this run appended to the log after byte `log_start`."""
        assert self.process is not None
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            match = LISTENING_PATTERN.search(self.log_path.read_bytes()[log_start:].decode(errors="replace"))
            if match is not None:
                return int(match.group(1))
            if self.process.poll() is not None:
                raise RuntimeError(f"docker-registry exited with {self.process.returncode}; log:\n{self.log()}")
            time.sleep(0.05)
        raise RuntimeError(f"docker-registry logged no listening address after {timeout}s; log:\n{self.log()}")

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def client(self) -> httpx.Client:
        """Return a new HTTP client for this registry; the caller closes it."""
        return httpx.Client(base_url=self.url, timeout=30.0)

    def load_layout(self, layout_dir: Path, tag: str, repository: str, destination_tag: str | None = None) -> None:
        """Copy one tag of an OCI layout into `repository` with skopeo."""
        skopeo_copy_layout(layout_dir, tag, self.host, repository, destination_tag)

    def push_layout(self, layout: OciLayout, repository: str, tag: str) -> None:
        """Push one tag of an OCI layout over HTTP, for content that skopeo cannot copy."""
        with self.client() as http:
            push_layout_manifest(http, layout, repository, layout.tags()[tag], tag)

    def tags(self, repository: str) -> list[str]:
        """Return the tags that `GET /v2/<repository>/tags/list` lists."""
        with self.client() as http:
            response = http.get(f"/v2/{repository}/tags/list")
        response.raise_for_status()
        return list(response.json().get("tags") or [])

    def __enter__(self) -> DistributionRegistry:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
