"""Real clients pulling through the cache from a real upstream (CNCF distribution 2.8).

skopeo copies whole multi-platform images through a prefixed name, podman pulls
through Docket configured as a registries.conf mirror, and containerd's ctr fetches
through a hosts.toml mirror, which names the upstream in the `ns` query parameter.
Upstream requests are counted in distribution's access log.
"""

from __future__ import annotations

import gzip
import io
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.clients import Containerd, ctr_fetch, podman_pull
from tests.support.distribution import DistributionRegistry
from tests.support.layout import OciLayout, push_blob_data
from tests.support.oci import OCI_CONFIG, OCI_LAYER, OCI_MANIFEST, Blob, Manifest, canonical, digest_of, index
from tests.support.processes import DocketProcess

UPSTREAM_HOST = "upstream.example"
REPOSITORY = "clients/app"
_REQUEST_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3})')

pytestmark = pytest.mark.skipif(
    shutil.which("docker-registry") is None or shutil.which("skopeo") is None,
    reason="docker-registry and skopeo are not installed; run scripts/test",
)


def push(client: httpx.Client, repository: str, manifest: Manifest, reference: str | None = None) -> None:
    for child in manifest.children:
        push(client, repository, child)
    for blob in manifest.blobs:
        push_blob_data(client, repository, blob.digest, blob.data)
    response = client.put(
        f"/v2/{repository}/manifests/{reference or manifest.digest}",
        content=manifest.data,
        headers={"Content-Type": manifest.media_type},
    )
    assert response.status_code == 201, response.text


def upstream_requests(registry: DistributionRegistry, method: str, path_contains: str) -> int:
    return sum(
        1
        for match in _REQUEST_LINE.finditer(registry.log())
        if match["method"] == method and path_contains in match["path"]
    )


def runnable_image(architecture: str) -> Manifest:
    """An image that container runtimes can unpack: a gzipped tar layer and a config with its diff ID."""
    tar_buffer = io.BytesIO()
    with tarfile.open(fileobj=tar_buffer, mode="w") as archive:
        content = os.urandom(64 * 1024)
        entry = tarfile.TarInfo(f"docket-test/{architecture}.bin")
        entry.size = len(content)
        archive.addfile(entry, io.BytesIO(content))
    tar = tar_buffer.getvalue()
    layer = Blob(gzip.compress(tar), OCI_LAYER)
    config = Blob(
        canonical(
            {
                "architecture": architecture,
                "os": "linux",
                "rootfs": {"type": "layers", "diff_ids": [digest_of(tar)]},
                "config": {},
            }
        ),
        OCI_CONFIG,
    )
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [layer.descriptor()],
    }
    return Manifest(canonical(document), OCI_MANIFEST, [config, layer])


@pytest.fixture(scope="module")
def multi_platform() -> Manifest:
    # index() gives its children the platforms linux/amd64 and linux/arm64, in that order.
    return index([runnable_image("amd64"), runnable_image("arm64")])


@pytest.fixture(scope="module")
def upstream(tmp_path_factory: pytest.TempPathFactory, multi_platform: Manifest) -> Iterator[DistributionRegistry]:
    with DistributionRegistry(tmp_path_factory.mktemp("distribution")) as registry, registry.client() as client:
        push(client, REPOSITORY, multi_platform, "v1")
        yield registry


@pytest.fixture
def cache(start_docket: Callable[..., DocketProcess], tmp_path: Path, upstream: DistributionRegistry) -> DocketProcess:
    config = tmp_path / "docket.toml"
    config.write_text(
        f"""
[cache]
embedded_rules = false
tag_ttl = "1h"

[[rules]]
prefix = "{UPSTREAM_HOST}"
url = "{upstream.url}"
"""
    )
    return start_docket("--config", str(config))


def skopeo_copy(source: str, destination: str) -> None:
    result = subprocess.run(
        ["skopeo", "copy", "--all", "--preserve-digests", "--src-tls-verify=false", source, destination],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr


def test_skopeo_copy_through_cache(
    cache: DocketProcess, upstream: DistributionRegistry, multi_platform: Manifest, tmp_path: Path
) -> None:
    host = cache.url.removeprefix("http://")
    source = f"docker://{host}/{UPSTREAM_HOST}/{REPOSITORY}:v1"
    before_blobs = upstream_requests(upstream, "GET", f"/v2/{REPOSITORY}/blobs/")
    before_tags = upstream_requests(upstream, "GET", f"/v2/{REPOSITORY}/manifests/v1")

    skopeo_copy(source, f"oci:{tmp_path / 'cold'}:v1")
    cold_blobs = upstream_requests(upstream, "GET", f"/v2/{REPOSITORY}/blobs/") - before_blobs
    skopeo_copy(source, f"oci:{tmp_path / 'warm'}:v1")
    warm_blobs = upstream_requests(upstream, "GET", f"/v2/{REPOSITORY}/blobs/") - before_blobs - cold_blobs
    tag_gets = upstream_requests(upstream, "GET", f"/v2/{REPOSITORY}/manifests/v1") - before_tags

    copied = OciLayout(tmp_path / "warm")
    assert copied.tags()["v1"]["digest"] == multi_platform.digest
    expected_blobs = {blob.digest for child in multi_platform.children for blob in child.blobs}
    for digest in expected_blobs:
        assert copied.has(digest), digest
    assert cold_blobs == len(expected_blobs)
    assert warm_blobs == 0
    assert tag_gets == 1


@pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed; run scripts/test")
def test_podman_pull_through_mirror(cache: DocketProcess, multi_platform: Manifest, tmp_path: Path) -> None:
    mirror = f"{cache.url.removeprefix('http://')}/{UPSTREAM_HOST}"
    run = podman_pull(mirror, f"{UPSTREAM_HOST}/{REPOSITORY}:v1", tmp_path / "podman")

    amd64 = multi_platform.children[0]
    assert run.ok
    assert run.hosts() == {cache.url.removeprefix("http://")}
    assert f"/v2/{UPSTREAM_HOST}/{REPOSITORY}/manifests/v1" in cache.log()
    assert f"cache miss: blob {amd64.blobs[1].digest}" in cache.log()


@pytest.mark.skipif(
    shutil.which("containerd") is None or shutil.which("ctr") is None,
    reason="containerd and ctr are not installed; run scripts/test",
)
def test_ctr_fetch_through_mirror_ns(
    cache: DocketProcess, upstream: DistributionRegistry, multi_platform: Manifest, tmp_path: Path
) -> None:
    with Containerd(tmp_path / "containerd") as containerd:
        run = ctr_fetch(
            containerd, tmp_path / "hosts", f"{UPSTREAM_HOST}/{REPOSITORY}:v1", cache.url.removeprefix("http://")
        )
        fetched = containerd.content_digests()

    amd64 = multi_platform.children[0]
    assert run.ok
    assert all(f"ns={UPSTREAM_HOST}" in request.url for request in run.requests)
    assert multi_platform.digest in fetched
    assert amd64.digest in fetched
    for blob in amd64.blobs:
        assert blob.digest in fetched, blob.digest
    assert f"/v2/{REPOSITORY}/manifests/v1?ns={UPSTREAM_HOST}" in cache.log()
