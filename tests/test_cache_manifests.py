"""Manifests of the pull-through cache against a fake upstream: faithful bytes, cold pulls and tag TTLs.

One Docket serves every test of this module. Its rules all point at one
`FakeUpstream`, so each test counts only the upstream requests whose path names
its own repository, and removes its faults afterwards.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.config import write_config
from tests.support.fake_upstream import (
    CloseConnection,
    Delay,
    FakeUpstream,
    Fault,
    Hang,
    OmitDigestHeader,
    RecordedRequest,
    Status,
)
from tests.support.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_INDEX,
    OCI_MANIFEST,
    Manifest,
    error_codes,
    image,
    index,
)
from tests.support.processes import DocketProcess

# Rule prefixes of the module's Docket. Each rule has its own `namespace` because
# rules on one upstream host would otherwise claim the same mirror namespace.
LONG_TTL = "up"  # tags stay fresh for an hour
NO_TTL = "zero"  # every pull by tag sends a HEAD upstream, and a deleted tag is forgotten
KEEP = "keep"  # like NO_TTL, but a tag deleted upstream is still served
SHORT_TTL = "short"  # tags stay fresh for one second
# The `read_timeout` of the NO_TTL and KEEP rules in seconds, which a Delay fault must exceed.
READ_TIMEOUT = 1.0
ALL_MANIFEST_TYPES = (OCI_INDEX, OCI_MANIFEST, DOCKER_MANIFEST_LIST, DOCKER_MANIFEST)


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def cache(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocketProcess]:
    folder = tmp_path_factory.mktemp("cache-manifests")
    config = write_config(
        folder / "docket.toml",
        [
            {"prefix": LONG_TTL, "url": upstream.url, "tag_ttl": "1h"},
            {
                "prefix": NO_TTL,
                "url": upstream.url,
                "namespace": "zero.test",
                "tag_ttl": "0",
                "read_timeout": f"{READ_TIMEOUT}s",
            },
            {
                "prefix": KEEP,
                "url": upstream.url,
                "namespace": "keep.test",
                "tag_ttl": "0",
                "read_timeout": f"{READ_TIMEOUT}s",
                "upstream_tag_deleted": "keep",
            },
            {"prefix": SHORT_TTL, "url": upstream.url, "namespace": "short.test", "tag_ttl": "1s"},
        ],
    )
    with DocketProcess(folder / "data", "--config", str(config)) as server:
        yield server


@pytest.fixture(autouse=True)
def clear_faults(upstream: FakeUpstream) -> Iterator[None]:
    yield
    upstream.faults.clear()


@pytest.fixture
def http(cache: DocketProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cache.url, timeout=15.0) as client:
        yield client


def non_canonical(manifest: Manifest) -> Manifest:
    """Reserialize with reversed key order, three-space indentation and a trailing newline."""
    document = json.loads(manifest.data)
    reordered = dict(reversed(list(document.items())))
    data = (json.dumps(reordered, indent=3) + "\n").encode()
    return Manifest(data, manifest.media_type, manifest.blobs, manifest.children)


def manifests_path(repository: str, reference: str) -> re.Pattern[str]:
    """Match exactly the upstream path of one manifest, for faults."""
    return re.compile(rf"^/v2/{re.escape(repository)}/manifests/{re.escape(reference)}$")


def sent(upstream: FakeUpstream, method: str | None, repository: str, reference: str | None = None) -> int:
    """Count the upstream requests for the repository's manifests, or for one tag or digest.

    Without `reference`, the `sha256-<hex>` tags that the referrer sync looks up
    after each cached manifest are left out, so counts cover only pulls.
    """
    prefix = f"/v2/{repository}/manifests/"
    names = [request.path[len(prefix) :] for request in upstream.requests(method, prefix)]
    if reference is not None:
        return names.count(reference)
    return sum(1 for name in names if not name.startswith("sha256-"))


def requests_for(upstream: FakeUpstream, method: str, repository: str, reference: str) -> list[RecordedRequest]:
    path = f"/v2/{repository}/manifests/{reference}"
    return [request for request in upstream.requests(method, path) if request.path == path]


def wait_for_log(server: DocketProcess, text: str, timeout: float = 5.0) -> str:
    """Return the server log once it contains `text`, or the log as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    log = server.log()
    while text not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = server.log()
    return log


def docket_refresh(server: DocketProcess, reference: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docket", "refresh", reference, "--server", server.url],
        capture_output=True,
        text=True,
        timeout=60,
    )


# Faithful bytes.


@pytest.mark.parametrize("media_type", ALL_MANIFEST_TYPES)
def test_manifest_bytes_faithful(http: httpx.Client, upstream: FakeUpstream, repo: str, media_type: str) -> None:
    if media_type in (OCI_INDEX, DOCKER_MANIFEST_LIST):
        child_type = OCI_MANIFEST if media_type == OCI_INDEX else DOCKER_MANIFEST
        original = index([image(media_type=child_type), image(media_type=child_type)], media_type=media_type)
    else:
        original = image(media_type=media_type)
    manifest = non_canonical(original)
    upstream.add_image(repo, manifest, tags=["v1"])

    response = http.get(f"/v2/{LONG_TTL}/{repo}/manifests/v1")

    assert response.status_code == 200
    assert response.content == manifest.data
    assert response.headers["Content-Type"] == media_type
    assert response.headers["Docker-Content-Digest"] == manifest.digest


def test_manifest_head_faithful_headers(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    manifest = non_canonical(image(media_type=DOCKER_MANIFEST))
    upstream.add_image(repo, manifest, tags=["v1"])
    http.get(f"/v2/{LONG_TTL}/{repo}/manifests/v1")

    response = http.head(f"/v2/{LONG_TTL}/{repo}/manifests/v1")

    assert response.status_code == 200
    assert response.headers["Content-Length"] == str(len(manifest.data))
    assert response.headers["Content-Type"] == DOCKER_MANIFEST
    assert response.headers["Docker-Content-Digest"] == manifest.digest


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_manifest_accept_lists_every_type(http: httpx.Client, upstream: FakeUpstream, repo: str, method: str) -> None:
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")
    http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")  # the tag TTL is 0, so this one sends a HEAD

    recorded = requests_for(upstream, method, repo, "v1")
    assert len(recorded) == 1
    accepted = {item.split(";")[0].strip() for item in recorded[0].headers.get("Accept", "").split(",")}
    for media_type in ALL_MANIFEST_TYPES:
        assert media_type in accepted


def test_manifest_tabs_spacing_kept(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    """Docket parses the manifest to index it but stores and serves the upstream's bytes unchanged."""
    document = json.loads(image().data)
    members = [f'"{key}" :  {json.dumps(value)}' for key, value in document.items()]
    data = ("{\n\t" + ",\n\t".join(members) + "\n}").encode()
    digest = upstream.add_manifest(repo, data, OCI_MANIFEST, tags=["v1"])

    response = http.get(f"/v2/{LONG_TTL}/{repo}/manifests/{digest}")

    assert response.status_code == 200
    assert response.content == data


# Indexes and cold pulls by digest.


def test_index_children_fetched_on_demand(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    children = [image(), image(), image()]
    platforms = index(children)
    upstream.add_image(repo, platforms, tags=["v1"])

    response = http.get(f"/v2/{LONG_TTL}/{repo}/manifests/v1")

    assert response.status_code == 200
    assert response.content == platforms.data
    assert sent(upstream, "GET", repo) == 1
    assert upstream.count(None, f"/v2/{repo}/blobs/") == 0

    child = http.get(f"/v2/{LONG_TTL}/{repo}/manifests/{children[1].digest}")

    assert child.status_code == 200
    assert child.content == children[1].data
    assert sent(upstream, "GET", repo, children[1].digest) == 1
    assert sent(upstream, None, repo, children[0].digest) == 0
    assert sent(upstream, None, repo, children[2].digest) == 0
    assert upstream.count(None, f"/v2/{repo}/blobs/") == 0


def test_digest_cold_child_cached(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    children = [image(), image()]
    upstream.add_image(repo, index(children), tags=["v1"])
    url = f"/v2/{LONG_TTL}/{repo}/manifests/{children[0].digest}"

    first = http.get(url)
    second = http.get(url)

    assert first.status_code == 200
    assert first.content == children[0].data
    assert second.content == children[0].data
    assert sent(upstream, "GET", repo, children[0].digest) == 1
    assert sent(upstream, None, repo) == 1


def test_digest_cold_index_cached(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    platforms = non_canonical(index([image(), image()]))
    upstream.add_image(repo, platforms)
    url = f"/v2/{NO_TTL}/{repo}/manifests/{platforms.digest}"

    first = http.get(url)
    second = http.get(url)

    assert first.status_code == 200
    assert first.content == platforms.data
    assert first.headers["Content-Type"] == OCI_INDEX
    assert second.content == platforms.data
    assert sent(upstream, None, repo) == 1


@pytest.mark.parametrize("reference", ["v404", "sha256:" + "ab" * 32])
def test_manifest_upstream_404(http: httpx.Client, upstream: FakeUpstream, repo: str, reference: str) -> None:
    upstream.add_image(repo, image(), tags=["v1"])

    response = http.get(f"/v2/{LONG_TTL}/{repo}/manifests/{reference}")

    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_UNKNOWN"]
    assert sent(upstream, "GET", repo, reference) == 1


def test_manifest_head_upstream_404(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    response = http.head(f"/v2/{LONG_TTL}/{repo}/manifests/v1")

    assert response.status_code == 404


# Tags: TTL and revalidation.


def test_tag_within_ttl_no_requests(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    http.get(f"/v2/{LONG_TTL}/{repo}/manifests/v1")

    second = http.get(f"/v2/{LONG_TTL}/{repo}/manifests/v1")
    head = http.head(f"/v2/{LONG_TTL}/{repo}/manifests/v1")

    assert second.status_code == 200
    assert second.content == manifest.data
    assert head.status_code == 200
    assert sent(upstream, None, repo) == 1


def test_tag_ttl_expiry_one_head(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    assert http.get(f"/v2/{SHORT_TTL}/{repo}/manifests/v1").status_code == 200

    deadline = time.monotonic() + 10
    while sent(upstream, "HEAD", repo) == 0 and time.monotonic() < deadline:
        response = http.get(f"/v2/{SHORT_TTL}/{repo}/manifests/v1")
        assert response.content == manifest.data
        time.sleep(0.05)

    heads = requests_for(upstream, "HEAD", repo, "v1")
    gets = requests_for(upstream, "GET", repo, "v1")
    assert len(heads) == 1
    assert len(gets) == 1
    assert heads[0].time - gets[0].time >= 1.0


def test_tag_unchanged_no_get(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    manifest = non_canonical(image())
    upstream.add_image(repo, manifest, tags=["v1"])
    http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")

    response = http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")

    assert response.status_code == 200
    assert response.content == manifest.data
    assert sent(upstream, "HEAD", repo) == 1
    assert sent(upstream, "GET", repo) == 1


def test_tag_changed_get_by_digest(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    old, new = image(), non_canonical(image())
    upstream.add_image(repo, old, tags=["v1"])
    http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")
    upstream.add_image(repo, new, tags=["v1"])

    response = http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")

    assert response.status_code == 200
    assert response.content == new.data
    assert response.headers["Docker-Content-Digest"] == new.digest
    assert sent(upstream, "HEAD", repo) == 1
    assert sent(upstream, "GET", repo) == 2
    assert sent(upstream, "GET", repo, "v1") == 1
    assert sent(upstream, "GET", repo, new.digest) == 1


def test_tag_changed_old_digest_kept(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    old, new = image(), image()
    upstream.add_image(repo, old, tags=["v1"])
    http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")
    upstream.add_image(repo, new, tags=["v1"])
    http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")

    response = http.get(f"/v2/{NO_TTL}/{repo}/manifests/{old.digest}")

    assert response.status_code == 200
    assert response.content == old.data
    assert sent(upstream, None, repo, old.digest) == 0


STALE_FAULTS = {
    "status-500": Status(500),
    "status-503": Status(503),
    "status-429": Status(429, retry_after=1),
    "delay": Delay(READ_TIMEOUT + 3),
    "hang": Hang(),
    "close": CloseConnection(),
}


@pytest.mark.parametrize("fault", STALE_FAULTS.values(), ids=STALE_FAULTS.keys())
def test_tag_head_failure_serves_stale(
    http: httpx.Client, cache: DocketProcess, upstream: FakeUpstream, repo: str, fault: Fault
) -> None:
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")
    upstream.add_fault(fault, method="HEAD", path=manifests_path(repo, "v1"), times=None)

    started = time.monotonic()
    response = http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")
    elapsed = time.monotonic() - started

    assert response.status_code == 200
    assert response.content == manifest.data
    assert elapsed < READ_TIMEOUT + 2
    assert sent(upstream, "HEAD", repo) == 1
    assert sent(upstream, "GET", repo) == 1
    stale_line = f"WARNING docket.cache.manifests: cache stale: manifest {NO_TTL}/{repo}:v1"
    assert stale_line in wait_for_log(cache, stale_line)


def test_tag_head_without_digest_gets(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    """An upstream that sends no Docker-Content-Digest on HEAD costs one GET by tag."""
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")
    upstream.add_fault(OmitDigestHeader(), method="HEAD", path=manifests_path(repo, "v1"))

    response = http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")

    assert response.content == manifest.data
    assert sent(upstream, "HEAD", repo) == 1
    assert sent(upstream, "GET", repo, "v1") == 2


def test_refresh_cli_forces_head(cache: DocketProcess, http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    http.get(f"/v2/{LONG_TTL}/{repo}/manifests/v1")

    result = docket_refresh(cache, f"{LONG_TTL}/{repo}:v1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{LONG_TTL}/{repo}:v1 -> {manifest.digest} (unchanged)"
    assert sent(upstream, "HEAD", repo) == 1
    assert sent(upstream, "GET", repo) == 1


def test_refresh_cli_changed_tag(cache: DocketProcess, http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    old, new = image(), image()
    upstream.add_image(repo, old, tags=["v1"])
    http.get(f"/v2/{LONG_TTL}/{repo}/manifests/v1")
    upstream.add_image(repo, new, tags=["v1"])

    result = docket_refresh(cache, f"{LONG_TTL}/{repo}:v1")
    response = http.get(f"/v2/{LONG_TTL}/{repo}/manifests/v1")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"{LONG_TTL}/{repo}:v1 -> {new.digest} (changed)"
    assert response.content == new.data
    assert sent(upstream, "HEAD", repo) == 1
    assert sent(upstream, "GET", repo, new.digest) == 1
    assert sent(upstream, "GET", repo) == 2


def test_refresh_cli_unknown_rule(cache: DocketProcess, repo: str) -> None:
    result = docket_refresh(cache, f"hosted/{repo}:v1")

    assert result.returncode == 1
    assert result.stdout == ""
    assert f"hosted/{repo}" in result.stderr


def test_digest_never_revalidated(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")

    first = http.get(f"/v2/{NO_TTL}/{repo}/manifests/{manifest.digest}")
    second = http.head(f"/v2/{NO_TTL}/{repo}/manifests/{manifest.digest}")

    assert first.status_code == 200
    assert first.content == manifest.data
    assert second.status_code == 200
    assert sent(upstream, None, repo) == 1


def test_tag_deleted_upstream_forgotten(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")
    upstream.delete_tag(repo, "v1")

    response = http.get(f"/v2/{NO_TTL}/{repo}/manifests/v1")
    by_digest = http.get(f"/v2/{NO_TTL}/{repo}/manifests/{manifest.digest}")

    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_UNKNOWN"]
    assert sent(upstream, "HEAD", repo) == 1
    assert by_digest.status_code == 200


def test_tag_deleted_upstream_kept(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    http.get(f"/v2/{KEEP}/{repo}/manifests/v1")
    upstream.delete_tag(repo, "v1")

    response = http.get(f"/v2/{KEEP}/{repo}/manifests/v1")

    assert response.status_code == 200
    assert response.content == manifest.data
    assert sent(upstream, "HEAD", repo) == 1
    assert sent(upstream, "GET", repo) == 1
