"""Garbage collection of unreferenced blobs and expired uploads, inside a running server and offline.

The servers here set `[storage] gc_grace = "0"`, so a blob is collectable the moment
nothing links or references it. Collection must still never take content that a push
in progress or a manifest needs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.oci import Blob, Manifest, digest_of, image, push_blob, push_manifest, random_blob
from tests.support.processes import DocketProcess

CLI_TIMEOUT = 60.0
DEADLINE = 15.0
MAX_PUSHES_PER_WORKER = 64


def write_config(path: Path, storage: str) -> Path:
    path.write_text(f"[cache]\nembedded_rules = false\n\n[storage]\n{storage}\n", encoding="utf-8")
    return path


def blob_path(data_dir: Path, digest: str) -> Path:
    encoded = digest.removeprefix("sha256:")
    return data_dir / "blobs" / "sha256" / encoded[:2] / encoded


def run_docket(*arguments: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docket", *arguments],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
        env=env,
        check=False,
    )


def collect(client: httpx.Client, dry_run: bool = False) -> dict[str, Any]:
    response = client.post("/_docket/gc", params={"dry_run": "true" if dry_run else "false"})
    assert response.status_code == 200, response.text
    report: dict[str, Any] = response.json()
    return report


def orphan(client: httpx.Client, repository: str, blob: Blob) -> None:
    """Push a blob and delete its only link, so nothing keeps it."""
    push_blob(client, repository, blob)
    response = client.delete(f"/v2/{repository}/blobs/{blob.digest}")
    assert response.status_code == 202, response.text


def pull_problems(client: httpx.Client, repository: str, manifest: Manifest, reference: str) -> list[str]:
    """Pull an image and return every status other than 200 and every body that differs from what was pushed."""
    problems = []
    response = client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": manifest.media_type})
    if response.status_code != 200 or response.content != manifest.data:
        problems.append(f"manifest {repository}:{reference}: status {response.status_code}")
    for blob in manifest.blobs:
        response = client.get(f"/v2/{repository}/blobs/{blob.digest}")
        if response.status_code != 200 or digest_of(response.content) != blob.digest:
            problems.append(f"blob {blob.digest} in {repository}: status {response.status_code}")
    return problems


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocketProcess]:
    folder = tmp_path_factory.mktemp("gc")
    config = write_config(folder / "docket.toml", 'gc_grace = "0"')
    with DocketProcess(folder / "data", "--config", str(config)) as process:
        yield process


@pytest.fixture
def client(server: DocketProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


def test_gc_dry_run_then_delete(server: DocketProcess, client: httpx.Client) -> None:
    blob = random_blob(4096)
    orphan(client, "gc/orphan", blob)
    path = blob_path(server.data_dir, blob.digest)

    dry_run = run_docket("gc", "--server", server.url, "--dry-run")
    kept_by_dry_run = path.is_file()
    collected = run_docket("gc", "--server", server.url)
    again = collect(client)

    assert dry_run.returncode == 0, dry_run.stderr
    assert dry_run.stdout.startswith("would delete ")
    assert f"  {blob.digest}" in dry_run.stdout.splitlines()
    assert kept_by_dry_run
    assert collected.returncode == 0, collected.stderr
    assert collected.stdout.startswith("deleted ")
    assert f"  {blob.digest}" in collected.stdout.splitlines()
    assert not path.exists()
    assert blob.digest not in again["blobs"]


def test_gc_keeps_linked_and_referenced(server: DocketProcess, client: httpx.Client) -> None:
    # Linked in two repositories, unlinked from one.
    shared = random_blob(2048)
    push_blob(client, "gc/keep-a", shared)
    orphan(client, "gc/keep-b", shared)
    # Referenced by a manifest whose repository no longer links it.
    manifest = image()
    push_manifest(client, "gc/keep-image", manifest, "v1")
    unlinked_layer = manifest.blobs[1]
    assert client.delete(f"/v2/gc/keep-image/blobs/{unlinked_layer.digest}").status_code == 202

    dry_run = collect(client, dry_run=True)
    report = collect(client)
    shared_pull = client.get(f"/v2/gc/keep-a/blobs/{shared.digest}")
    manifest_pull = client.get("/v2/gc/keep-image/manifests/v1", headers={"Accept": manifest.media_type})

    for digest in (shared.digest, unlinked_layer.digest, manifest.digest):
        assert digest not in dry_run["blobs"]
        assert digest not in report["blobs"]
        assert blob_path(server.data_dir, digest).is_file()
    assert shared_pull.content == shared.data
    assert manifest_pull.content == manifest.data


def test_gc_during_chunked_upload(server: DocketProcess, client: httpx.Client) -> None:
    manifest = image(1, layer_size=256 * 1024)
    config, layer = manifest.blobs
    half = len(layer.data) // 2
    repository = "gc/chunked"
    reports = []

    push_blob(client, repository, config)
    reports.append(collect(client))
    started = client.post(f"/v2/{repository}/blobs/uploads/")
    location = started.headers["Location"]
    reports.append(collect(client))
    first = client.patch(
        location,
        content=layer.data[:half],
        headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{half - 1}"},
    )
    reports.append(collect(client))
    second = client.patch(
        first.headers["Location"],
        content=layer.data[half:],
        headers={"Content-Type": "application/octet-stream", "Content-Range": f"{half}-{len(layer.data) - 1}"},
    )
    reports.append(collect(client))
    finished = client.put(second.headers["Location"], params={"digest": layer.digest})
    reports.append(collect(client))
    pushed = client.put(
        f"/v2/{repository}/manifests/v1", content=manifest.data, headers={"Content-Type": manifest.media_type}
    )
    reports.append(collect(client))

    assert started.status_code == 202, started.text
    assert first.status_code == 202, first.text
    assert second.status_code == 202, second.text
    assert finished.status_code == 201, finished.text
    assert pushed.status_code == 201, pushed.text
    assert pull_problems(client, repository, manifest, "v1") == []
    for report in reports:
        assert not {config.digest, layer.digest, manifest.digest} & set(report["blobs"])
        assert report["uploads"] == []


def test_gc_concurrent_pushes(server: DocketProcess) -> None:
    pushed: list[tuple[str, Manifest]] = []
    problems: list[str] = []
    pushing = threading.Event()
    pushing.set()
    collections = 0

    def push_images(worker: int) -> None:
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            number = 0
            # Push at least 8 images, and go on until collections have overlapped the pushes. A collector
            # starved by the pushes never completes 3 runs, and the bound then ends the test.
            while number < 8 or (collections < 3 and number < MAX_PUSHES_PER_WORKER):
                manifest = image(2, layer_size=16 * 1024)
                repository = f"gc/push-{worker}"
                try:
                    # Orphan the layer first, so a collection may be deleting it while it is pushed again.
                    orphan(http, f"gc/scratch-{worker}", manifest.blobs[1])
                    push_manifest(http, repository, manifest, f"v{number}")
                    pushed.append((repository, manifest))
                except Exception as error:
                    problems.append(f"push to {repository}: {type(error).__name__}: {error}")
                number += 1

    def collect_repeatedly() -> None:
        nonlocal collections
        with httpx.Client(base_url=server.url, timeout=30.0) as http:
            while pushing.is_set():
                collect(http)
                collections += 1

    collector = threading.Thread(target=collect_repeatedly)
    pushers = [threading.Thread(target=push_images, args=(worker,)) for worker in range(4)]
    collector.start()
    for thread in pushers:
        thread.start()
    for thread in pushers:
        thread.join()
    pushing.clear()
    collector.join()

    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        http.post("/_docket/gc")
        for repository, manifest in pushed:
            problems += pull_problems(http, repository, manifest, manifest.digest)

    assert problems == []
    assert len(pushed) >= 32
    assert collections >= 3


def test_gc_expired_uploads(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    config = write_config(tmp_path / "docket.toml", 'upload_expiry = "1s"')
    data = tmp_path / "data"
    server = start_docket("--config", str(config), data_dir=data)
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        idle = client.post("/v2/gc/expiry/blobs/uploads/")
        idle_id = idle.headers["Location"].rsplit("/", 1)[1]
        client.patch(idle.headers["Location"], content=b"partial", headers={"Content-Type": "application/octet-stream"})
        at_once = collect(client, dry_run=True)
        deadline = time.monotonic() + DEADLINE
        while idle_id not in collect(client, dry_run=True)["uploads"] and time.monotonic() < deadline:
            time.sleep(0.1)
        active = client.post("/v2/gc/expiry/blobs/uploads/")
        report = collect(client)
        idle_status = client.get(idle.headers["Location"])
        blob = random_blob(512)
        active_finished = client.put(
            active.headers["Location"],
            params={"digest": blob.digest},
            content=blob.data,
            headers={"Content-Type": "application/octet-stream"},
        )

    assert idle.status_code == 202
    assert idle_id not in at_once["uploads"]
    assert idle_id in report["uploads"]
    assert idle_status.status_code == 404
    assert not (data / "uploads" / idle_id).exists()
    assert active_finished.status_code == 201, active_finished.text


def test_gc_offline(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    data = tmp_path / "data"
    server = start_docket(data_dir=data)
    manifest = image()
    blob = random_blob(1024)
    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        push_manifest(client, "gc/offline", manifest, "v1")
        orphan(client, "gc/offline", blob)
    env = {**os.environ, "DOCKET_STORAGE__GC_GRACE": "0", "DOCKET_CACHE__EMBEDDED_RULES": "false"}

    while_running = run_docket("gc", "--offline", "--data-dir", str(data), env=env)
    kept_while_running = blob_path(data, blob.digest).is_file()
    server.stop()
    collected = run_docket("gc", "--offline", "--data-dir", str(data), env=env)
    restarted = start_docket(data_dir=data)
    with httpx.Client(base_url=restarted.url, timeout=30.0) as client:
        problems = pull_problems(client, "gc/offline", manifest, "v1")

    assert while_running.returncode != 0
    assert "running Docket server" in while_running.stderr
    assert kept_while_running
    assert collected.returncode == 0, collected.stderr
    assert collected.stdout.startswith("deleted 1 unreferenced blobs")
    assert f"  {blob.digest}" in collected.stdout.splitlines()
    assert not blob_path(data, blob.digest).exists()
    assert problems == []
