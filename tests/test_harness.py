"""Third-party test harness: distribution as a registry, podman and ctr pulling through a mirror.

Docket is a plain hosted registry here, so the mirror serves the repository name as it is.
ctr adds `?ns=<registry>` to mirror requests, so its mirror tests use distribution, which
ignores that parameter, while ctr reaches Docket by its own address. The client
configurations block the made-up registry `upstream.example`, and the tests check that
every request the clients logged went to the mirror.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.support.clients import ClientRun, Containerd, ctr_fetch, podman_pull
from tests.support.distribution import DistributionRegistry, skopeo_copy_layout
from tests.support.layout import OciLayout
from tests.support.processes import DocketProcess

UPSTREAM = "upstream.example"
REPOSITORY = "harness/testrepo"
TAG = "v2"

needs_skopeo = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed; run scripts/test")
needs_distribution = pytest.mark.skipif(
    shutil.which("docker-registry") is None,
    reason="docker-registry (CNCF distribution) is not installed; run scripts/test",
)
needs_podman = pytest.mark.skipif(shutil.which("podman") is None, reason="podman is not installed; run scripts/test")
needs_containerd = pytest.mark.skipif(
    shutil.which("containerd") is None or shutil.which("ctr") is None,
    reason="containerd and ctr are not installed; run scripts/test",
)


@pytest.fixture(scope="module")
def testrepo(fixtures_dir: Path) -> OciLayout:
    return OciLayout(fixtures_dir / "oci" / "regclient-testrepo")


@dataclass(frozen=True)
class PlatformImage:
    """Digests of an index and of its linux/amd64 manifest, config and layers."""

    index: str
    manifest: str
    config: str
    layers: frozenset[str]

    def all(self) -> set[str]:
        return {self.index, self.manifest, self.config, *self.layers}


@pytest.fixture(scope="module")
def amd64(testrepo: OciLayout) -> PlatformImage:
    index_digest = testrepo.tags()[TAG]["digest"]
    index = json.loads(testrepo.read(index_digest))
    manifest_digest = next(
        child["digest"] for child in index["manifests"] if child["platform"]["architecture"] == "amd64"
    )
    manifest = json.loads(testrepo.read(manifest_digest))
    return PlatformImage(
        index_digest,
        manifest_digest,
        manifest["config"]["digest"],
        frozenset(layer["digest"] for layer in manifest["layers"]),
    )


@pytest.fixture(scope="module")
def loaded_docket(docket: DocketProcess, testrepo: OciLayout) -> DocketProcess:
    """The session's Docket with tag v2 of the fixture copied into REPOSITORY by skopeo."""
    if shutil.which("skopeo") is None:
        pytest.skip("skopeo is not installed; run scripts/test")
    skopeo_copy_layout(testrepo.path, TAG, docket.url.removeprefix("http://"), REPOSITORY)
    return docket


@pytest.fixture(scope="module")
def loaded_distribution(
    tmp_path_factory: pytest.TempPathFactory, testrepo: OciLayout
) -> Iterator[DistributionRegistry]:
    """A distribution registry with tag v2 of the fixture in REPOSITORY, pushed over HTTP."""
    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry (CNCF distribution) is not installed; run scripts/test")
    with DistributionRegistry(tmp_path_factory.mktemp("distribution")) as registry:
        registry.push_layout(testrepo, REPOSITORY, TAG)
        yield registry


@pytest.fixture
def distribution(tmp_path: Path) -> Iterator[DistributionRegistry]:
    with DistributionRegistry(tmp_path / "distribution") as registry:
        yield registry


@pytest.fixture
def containerd(tmp_path: Path) -> Iterator[Containerd]:
    with Containerd(tmp_path / "containerd") as daemon:
        yield daemon


def docket_host(docket: DocketProcess) -> str:
    return docket.url.removeprefix("http://")


def request_paths(run: ClientRun) -> list[str]:
    return [urlsplit(request.url).path for request in run.requests]


@needs_distribution
@needs_skopeo
def test_distribution_load_layout(distribution: DistributionRegistry, testrepo: OciLayout) -> None:
    distribution.load_layout(testrepo.path, TAG, REPOSITORY)

    assert distribution.tags(REPOSITORY) == [TAG]
    with distribution.client() as http:
        response = http.head(
            f"/v2/{REPOSITORY}/manifests/{TAG}", headers={"Accept": "application/vnd.oci.image.index.v1+json"}
        )
    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == testrepo.tags()[TAG]["digest"]


@needs_distribution
def test_distribution_push_fallback_tag(distribution: DistributionRegistry, testrepo: OciLayout) -> None:
    """The referrers tag schema names the index of a subject's referrers sha256-<hex of its digest>."""
    fallback_tag = testrepo.tags()[TAG]["digest"].replace(":", "-")

    distribution.push_layout(testrepo, REPOSITORY, TAG)
    distribution.push_layout(testrepo, REPOSITORY, fallback_tag)

    assert sorted(distribution.tags(REPOSITORY)) == sorted([TAG, fallback_tag])
    with distribution.client() as http:
        response = http.get(
            f"/v2/{REPOSITORY}/manifests/{fallback_tag}", headers={"Accept": "application/vnd.oci.image.index.v1+json"}
        )
    assert response.status_code == 200
    assert response.content == testrepo.read(testrepo.tags()[fallback_tag]["digest"])


@needs_distribution
def test_distribution_proxy_of_docket(loaded_docket: DocketProcess, tmp_path: Path, testrepo: OciLayout) -> None:
    log_before = len(loaded_docket.log())

    with DistributionRegistry(tmp_path / "proxy", remote_url=loaded_docket.url) as proxy, proxy.client() as http:
        response = http.get(
            f"/v2/{REPOSITORY}/manifests/{TAG}", headers={"Accept": "application/vnd.oci.image.index.v1+json"}
        )

    assert response.status_code == 200
    assert response.headers["Docker-Content-Digest"] == testrepo.tags()[TAG]["digest"]
    assert f"/v2/{REPOSITORY}/manifests/{TAG} " in loaded_docket.log()[log_before:]


@needs_podman
def test_podman_pull_through_mirror(loaded_docket: DocketProcess, tmp_path: Path, amd64: PlatformImage) -> None:
    run = podman_pull(docket_host(loaded_docket), f"{UPSTREAM}/{REPOSITORY}:{TAG}", tmp_path / "podman")

    assert run.stdout.strip() == amd64.config.removeprefix("sha256:")
    assert run.hosts() == {docket_host(loaded_docket)}
    assert f"/v2/{REPOSITORY}/manifests/{TAG}" in request_paths(run)
    assert f"/v2/{REPOSITORY}/manifests/{amd64.manifest}" in request_paths(run)


@needs_podman
def test_podman_mirror_namespace(loaded_docket: DocketProcess, tmp_path: Path, amd64: PlatformImage) -> None:
    namespace, _, short_name = REPOSITORY.partition("/")
    mirror = f"{docket_host(loaded_docket)}/{namespace}"

    run = podman_pull(mirror, f"{UPSTREAM}/{short_name}:{TAG}", tmp_path / "podman")

    assert run.stdout.strip() == amd64.config.removeprefix("sha256:")
    assert f"/v2/{REPOSITORY}/manifests/{TAG}" in request_paths(run)


@needs_podman
def test_podman_missing_tag_no_fallback(loaded_docket: DocketProcess, tmp_path: Path) -> None:
    run = podman_pull(docket_host(loaded_docket), f"{UPSTREAM}/{REPOSITORY}:missing", tmp_path / "podman", check=False)

    assert not run.ok
    assert run.hosts() == {docket_host(loaded_docket)}
    assert f"registry {UPSTREAM} is blocked" in run.stderr


@needs_containerd
def test_ctr_fetch_from_docket(
    loaded_docket: DocketProcess, containerd: Containerd, tmp_path: Path, amd64: PlatformImage
) -> None:
    """ctr fetches from Docket by its own address, so it sends no `ns` parameter."""
    host = docket_host(loaded_docket)
    ref = f"{host}/{REPOSITORY}:{TAG}"

    run = ctr_fetch(containerd, tmp_path / "hosts", ref, host)

    assert containerd.image_digest(ref) == amd64.index
    assert containerd.content_digests() >= amd64.all()
    assert run.hosts() == {host}
    assert f"/v2/{REPOSITORY}/manifests/{TAG}" in request_paths(run)
    for request in run.requests:
        assert urlsplit(request.url).query == "", request.url


@needs_containerd
def test_ctr_mirror_request_to_docket(loaded_docket: DocketProcess, containerd: Containerd, tmp_path: Path) -> None:
    """Through a mirror, ctr names the registry in `ns`. Whether Docket serves it depends on its cache rules."""
    run = ctr_fetch(
        containerd, tmp_path / "hosts", f"{UPSTREAM}/{REPOSITORY}:{TAG}", docket_host(loaded_docket), check=False
    )

    assert run.hosts() == {docket_host(loaded_docket)}
    assert run.requests[0].method == "HEAD"
    assert urlsplit(run.requests[0].url).path == f"/v2/{REPOSITORY}/manifests/{TAG}"
    assert parse_qs(urlsplit(run.requests[0].url).query) == {"ns": [UPSTREAM]}


@needs_containerd
@needs_distribution
def test_ctr_fetch_through_mirror(
    loaded_distribution: DistributionRegistry, containerd: Containerd, tmp_path: Path, amd64: PlatformImage
) -> None:
    """Distribution ignores the `ns` parameter, so it serves as a mirror of any registry."""
    ref = f"{UPSTREAM}/{REPOSITORY}:{TAG}"

    run = ctr_fetch(containerd, tmp_path / "hosts", ref, loaded_distribution.host)

    assert containerd.image_digest(ref) == amd64.index
    assert containerd.content_digests() >= amd64.all()
    assert run.hosts() == {loaded_distribution.host}
    assert f"/v2/{REPOSITORY}/manifests/{TAG}" in request_paths(run)
    for request in run.requests:
        assert parse_qs(urlsplit(request.url).query) == {"ns": [UPSTREAM]}, request.url


@needs_containerd
@needs_distribution
def test_ctr_mirror_namespace(
    loaded_distribution: DistributionRegistry, containerd: Containerd, tmp_path: Path, amd64: PlatformImage
) -> None:
    namespace, _, short_name = REPOSITORY.partition("/")
    ref = f"{UPSTREAM}/{short_name}:{TAG}"

    run = ctr_fetch(containerd, tmp_path / "hosts", ref, f"{loaded_distribution.host}/{namespace}")

    assert containerd.image_digest(ref) == amd64.index
    assert f"/v2/{REPOSITORY}/manifests/{TAG}" in request_paths(run)


@needs_containerd
@needs_distribution
def test_ctr_missing_tag_no_fallback(
    loaded_distribution: DistributionRegistry, containerd: Containerd, tmp_path: Path
) -> None:
    ref = f"{UPSTREAM}/{REPOSITORY}:missing"

    run = ctr_fetch(containerd, tmp_path / "hosts", ref, loaded_distribution.host, check=False)

    assert not run.ok
    assert run.hosts() == {loaded_distribution.host}
    assert "not found" in run.stderr
    assert containerd.image_digest(ref) is None
