"""LRU eviction of cached images under `[storage] max_size` and `max_age`, against real servers.

Images come from a FakeUpstream with 1 MiB layers, so a few of them cross the small
size limits set here. Eviction must never hand a client a short or wrong body: a
pull either gets the stored bytes or Docket fetches them again. Content shared
with a kept image, and pushed content, must survive.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fake_upstream import FakeUpstream
from tests.support.oci import OCI_CONFIG, OCI_MANIFEST, Blob, Manifest, artifact, canonical, push_blob, push_manifest
from tests.support.processes import DocketProcess

MiB = 1 << 20
DEADLINE = 20.0


def image_of(layers: list[Blob]) -> Manifest:
    """An image manifest with these layers and a config of its own."""
    config = Blob(canonical({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}), OCI_CONFIG)
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor() for layer in layers],
    }
    return Manifest(canonical(document), OCI_MANIFEST, [config, *layers])


def layer(size: int = MiB) -> Blob:
    return Blob(os.urandom(size))


def write_config(path: Path, upstream: FakeUpstream, storage: str) -> Path:
    path.write_text(
        f"[cache]\nembedded_rules = false\n\n[storage]\n{storage}\n\n"
        f'[[rules]]\nprefix = "up"\nurl = "{upstream.url}"\n',
        encoding="utf-8",
    )
    return path


def pull(client: httpx.Client, repository: str, manifest: Manifest, reference: str = "v1") -> list[str]:
    """Pull an image and return what was wrong with it: statuses other than 200 or wrong bytes."""
    problems = []
    response = client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": manifest.media_type})
    if response.status_code != 200 or response.content != manifest.data:
        problems.append(f"manifest {repository}:{reference}: status {response.status_code}")
    for blob in manifest.blobs:
        response = client.get(f"/v2/{repository}/blobs/{blob.digest}")
        received = "sha256:" + hashlib.sha256(response.content).hexdigest()
        if response.status_code != 200 or received != blob.digest:
            problems.append(
                f"blob {blob.digest} in {repository}: status {response.status_code}, "
                f"{len(response.content)} of {len(blob.data)} bytes, digest {received}"
            )
    return problems


def manifest_status(client: httpx.Client, repository: str, manifest: Manifest, reference: str = "v1") -> int:
    return client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": manifest.media_type}).status_code


def evicted_images(url: str) -> float:
    text = httpx.get(f"{url}/metrics", timeout=10.0).text
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "docket_evicted_images_total":
                return sample.value
    return 0.0


def store_bytes(url: str) -> int:
    size: int = httpx.get(f"{url}/_docket/status", timeout=10.0).json()["store"]["bytes"]
    return size


def evict_until(url: str, done: Callable[[], bool]) -> bool:
    """Ask for eviction passes until `done()` holds, and return False if it does not within DEADLINE seconds."""
    deadline = time.monotonic() + DEADLINE
    while time.monotonic() < deadline:
        response = httpx.post(f"{url}/_docket/evict", timeout=30.0)
        assert response.status_code == 200, response.text
        if done():
            return True
        time.sleep(0.1)
    return False


def blob_path(data_dir: Path, blob: Blob) -> Path:
    encoded = blob.digest.removeprefix("sha256:")
    return data_dir / "blobs" / "sha256" / encoded[:2] / encoded


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def test_eviction_concurrent_pulls(
    upstream: FakeUpstream, start_docket: Callable[..., DocketProcess], tmp_path: Path
) -> None:
    shared = layer()
    first, second = image_of([shared, layer()]), image_of([shared, layer()])
    upstream.add_image("team/first", first, tags=["v1"])
    upstream.add_image("team/second", second, tags=["v1"])
    config = write_config(tmp_path / "docket.toml", upstream, 'max_size = "3MiB"\neviction_interval = "1s"')
    server = start_docket("--config", str(config))
    problems: list[str] = []

    def pull_repeatedly(repository: str, manifest: Manifest) -> None:
        with httpx.Client(base_url=server.url, timeout=30.0) as client:
            for _ in range(15):
                try:
                    problems.extend(pull(client, repository, manifest))
                except Exception as error:  # httpx raises on a short body, and every error counts
                    problems.append(f"{repository}: {type(error).__name__}: {error}")

    threads = [
        threading.Thread(target=pull_repeatedly, args=(repository, manifest))
        for repository, manifest in [("up/team/first", first), ("up/team/second", second)] * 3
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert problems == []
    # Both images together exceed max_size, so the pulls above crossed it.
    assert evicted_images(server.url) >= 1
    assert evict_until(server.url, lambda: store_bytes(server.url) <= 3 * MiB)


def test_eviction_keeps_shared_layer(
    upstream: FakeUpstream, start_docket: Callable[..., DocketProcess], tmp_path: Path
) -> None:
    shared = layer()
    older, newer = image_of([shared, layer()]), image_of([shared, layer()])
    upstream.add_image("team/older", older, tags=["v1"])
    upstream.add_image("team/newer", newer, tags=["v1"])
    config = write_config(tmp_path / "docket.toml", upstream, 'max_size = "3MiB"')
    server = start_docket("--config", str(config), data_dir=tmp_path / "data")

    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        assert pull(client, "up/team/older", older) == []
        assert pull(client, "up/team/newer", newer) == []
        assert evict_until(server.url, lambda: evicted_images(server.url) >= 1)
        upstream.stop()
        # Only the cache can serve pulls now: the newer image must be whole and the older one gone.
        newer_problems = pull(client, "up/team/newer", newer)
        older_status = manifest_status(client, "up/team/older", older)

    assert newer_problems == []
    assert blob_path(tmp_path / "data", shared).is_file()
    assert older_status in (502, 503)
    assert store_bytes(server.url) <= 3 * MiB


def test_eviction_lru_refreshed_by_hits(
    upstream: FakeUpstream, start_docket: Callable[..., DocketProcess], tmp_path: Path
) -> None:
    images = {name: image_of([layer()]) for name in ("used", "untouched", "newest")}
    for name, manifest in images.items():
        upstream.add_image(f"team/{name}", manifest, tags=["v1"])
    # Two images fit. The third crosses the limit, and evicting one image is enough.
    config = write_config(tmp_path / "docket.toml", upstream, 'max_size = "2560KiB"')
    server = start_docket("--config", str(config))

    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        assert pull(client, "up/team/used", images["used"]) == []
        assert pull(client, "up/team/untouched", images["untouched"]) == []
        for _ in range(3):
            assert pull(client, "up/team/used", images["used"]) == []
        assert pull(client, "up/team/newest", images["newest"]) == []
        assert evict_until(server.url, lambda: evicted_images(server.url) >= 1)
        upstream.stop()
        used = pull(client, "up/team/used", images["used"])
        newest = pull(client, "up/team/newest", images["newest"])
        untouched = manifest_status(client, "up/team/untouched", images["untouched"])

    assert used == []
    assert newest == []
    assert untouched in (502, 503)
    assert evicted_images(server.url) == 1


def test_eviction_skips_pushed_content(
    upstream: FakeUpstream, start_docket: Callable[..., DocketProcess], tmp_path: Path
) -> None:
    cached = image_of([layer()])
    upstream.add_image("team/cached", cached, tags=["v1"])
    pushed = image_of([layer(3 * MiB // 2)])
    config = write_config(tmp_path / "docket.toml", upstream, 'max_size = "2MiB"')
    server = start_docket("--config", str(config), data_dir=tmp_path / "data")

    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        push_manifest(client, "local/app", pushed, "v1")
        assert pull(client, "up/team/cached", cached) == []
        # A referrer pushed into the cached repository belongs to the pusher, not the cache.
        note = artifact(cached, "application/vnd.example.scan+json")
        for blob in note.blobs:
            push_blob(client, "up/team/cached", blob)
        pushed_referrer = client.put(
            f"/v2/up/team/cached/manifests/{note.digest}", content=note.data, headers={"Content-Type": note.media_type}
        )
        assert evict_until(server.url, lambda: evicted_images(server.url) >= 1)
        upstream.stop()
        pushed_problems = pull(client, "local/app", pushed)
        referrer_problems = pull(client, "up/team/cached", note, note.digest)
        cached_status = manifest_status(client, "up/team/cached", cached)

    assert pushed_referrer.status_code == 201, pushed_referrer.text
    assert pushed_problems == []
    assert referrer_problems == []
    for blob in pushed.blobs:
        assert blob_path(tmp_path / "data", blob).is_file()
    assert cached_status in (502, 503)


def test_eviction_max_age(upstream: FakeUpstream, start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    stale, fresh = image_of([layer(64 * 1024)]), image_of([layer(64 * 1024)])
    upstream.add_image("team/stale", stale, tags=["v1"])
    upstream.add_image("team/fresh", fresh, tags=["v1"])
    config = write_config(tmp_path / "docket.toml", upstream, 'max_age = "2s"\neviction_interval = "500ms"')
    server = start_docket("--config", str(config), data_dir=tmp_path / "data")

    with httpx.Client(base_url=server.url, timeout=30.0) as client:
        assert pull(client, "up/team/stale", stale) == []
        assert pull(client, "up/team/fresh", fresh) == []
        started = time.monotonic()
        # Keep using the fresh image until the stale one has been evicted.
        while evicted_images(server.url) < 1 and time.monotonic() - started < DEADLINE:
            assert pull(client, "up/team/fresh", fresh) == []
            time.sleep(0.2)
        waited = time.monotonic() - started
        stale_layer_kept = blob_path(tmp_path / "data", stale.blobs[1]).exists()
        fetches = upstream.count("GET", "/manifests/")
        stale_again = pull(client, "up/team/stale", stale)
        stale_fetches = upstream.count("GET", "/v2/team/stale/manifests/v1")
        fresh_again = pull(client, "up/team/fresh", fresh)
        fetches_after = upstream.count("GET", "/manifests/")

    assert evicted_images(server.url) == 1
    assert waited >= 2.0
    assert not stale_layer_kept
    assert stale_again == []
    assert fresh_again == []
    assert stale_fetches == 2
    # One GET for the stale image's manifest again, because the fresh one is still cached.
    assert fetches_after - fetches == 1
