"""Upstream failures seen through the pull-through cache: outages are not absence, and retries are polite.

An upstream that fails must never make Docket return 404, because a client would
take that to mean "this image does not exist". Content that is already cached keeps being
served while the upstream is down. Retries happen only before any byte reached
a client, with backoff, and a 429's Retry-After is honoured when it is short.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.config import write_config
from tests.support.fake_upstream import (
    CloseConnection,
    FakeUpstream,
    Hang,
    ShortBody,
    Status,
)
from tests.support.oci import error_codes, image
from tests.support.processes import DocketProcess

# Rule prefixes of the module's Docket, all on one FakeUpstream.
NO_RETRY = "up"  # retries = 0, so every failure costs exactly one upstream request
RETRY = "retry"  # the default two retries with backoff
READ_TIMEOUT = 1.0  # read_timeout of both rules, in seconds
# Docket's first backoff is 0.2 s times a random factor of 0.5 to 1.5.
MIN_BACKOFF = 0.1


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def cache(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocketProcess]:
    folder = tmp_path_factory.mktemp("cache-failures")
    config = write_config(
        folder / "docket.toml",
        [
            {"prefix": NO_RETRY, "url": upstream.url, "retries": 0, "read_timeout": f"{READ_TIMEOUT}s"},
            {"prefix": RETRY, "url": upstream.url, "namespace": "retry.test", "read_timeout": f"{READ_TIMEOUT}s"},
        ],
    )
    with DocketProcess(folder / "data", "--config", str(config)) as server:
        yield server


@pytest.fixture(autouse=True)
def clear_faults(upstream: FakeUpstream) -> Iterator[None]:
    yield
    upstream.faults.clear()


@pytest.fixture
def own_upstream() -> Iterator[FakeUpstream]:
    """A FakeUpstream that the test may stop. Stopping it twice is harmless."""
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture
def http(cache: DocketProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cache.url, timeout=15.0) as client:
        yield client


def exact(repository: str, kind: str, reference: str) -> re.Pattern[str]:
    """Match exactly the upstream path of one manifest or blob (`kind` "manifests" or "blobs")."""
    return re.compile(rf"^/v2/{re.escape(repository)}/{kind}/{re.escape(reference)}$")


def recorded(upstream: FakeUpstream, method: str, repository: str, kind: str, reference: str) -> list[Any]:
    path = f"/v2/{repository}/{kind}/{reference}"
    return [request for request in upstream.requests(method, path) if request.path == path]


def sent(upstream: FakeUpstream, method: str, repository: str, kind: str, reference: str) -> int:
    return len(recorded(upstream, method, repository, kind, reference))


def wait_for_log(server: DocketProcess, text: str, timeout: float = 5.0) -> str:
    """Return the server log once it contains `text`, or the log as it is after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    log = server.log()
    while text not in log and time.monotonic() < deadline:
        time.sleep(0.05)
        log = server.log()
    return log


# Uncached content: an upstream failure is 502, 503 or 429, never 404.


@pytest.mark.parametrize("status", [500, 502, 503])
def test_manifest_upstream_5xx(http: httpx.Client, upstream: FakeUpstream, repo: str, status: int) -> None:
    upstream.add_image(repo, image(), tags=["v1"])
    upstream.add_fault(Status(status), method="GET", path=exact(repo, "manifests", "v1"), times=None)

    response = http.get(f"/v2/{NO_RETRY}/{repo}/manifests/v1")

    assert response.status_code == 502
    assert error_codes(response) == ["UNAVAILABLE"]
    assert sent(upstream, "GET", repo, "manifests", "v1") == 1


@pytest.mark.parametrize("status", [500, 502, 503])
def test_blob_upstream_5xx(http: httpx.Client, upstream: FakeUpstream, repo: str, status: int) -> None:
    digest = upstream.add_blob(repo, os.urandom(256))
    upstream.add_fault(Status(status), path=exact(repo, "blobs", digest), times=None)

    response = http.get(f"/v2/{NO_RETRY}/{repo}/blobs/{digest}")
    head = http.head(f"/v2/{NO_RETRY}/{repo}/blobs/{digest}")

    assert response.status_code == 502
    assert error_codes(response) == ["UNAVAILABLE"]
    assert head.status_code == 502
    assert sent(upstream, "GET", repo, "blobs", digest) == 1
    assert sent(upstream, "HEAD", repo, "blobs", digest) == 1


def test_manifest_upstream_429_retry_after(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    upstream.add_image(repo, image(), tags=["v1"])
    # 120 s is beyond the rule's max_retry_after (10 s), so Docket passes the 429 on without waiting.
    upstream.add_fault(Status(429, retry_after=120), path=exact(repo, "manifests", "v1"), times=None)

    started = time.monotonic()
    response = http.get(f"/v2/{RETRY}/{repo}/manifests/v1")
    elapsed = time.monotonic() - started

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "120"
    assert error_codes(response) == ["TOOMANYREQUESTS"]
    assert elapsed < 5
    assert sent(upstream, "GET", repo, "manifests", "v1") == 1


def test_blob_upstream_429_retry_after(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    digest = upstream.add_blob(repo, os.urandom(256))
    upstream.add_fault(Status(429, retry_after=120), path=exact(repo, "blobs", digest), times=None)

    response = http.get(f"/v2/{RETRY}/{repo}/blobs/{digest}")

    assert response.status_code == 429
    assert response.headers["Retry-After"] == "120"
    assert sent(upstream, "GET", repo, "blobs", digest) == 1


@pytest.mark.parametrize("kind", ["manifests", "blobs"])
def test_upstream_hang_bounded(http: httpx.Client, upstream: FakeUpstream, repo: str, kind: str) -> None:
    reference = "v1"
    if kind == "blobs":
        reference = upstream.add_blob(repo, os.urandom(256))
    else:
        upstream.add_image(repo, image(), tags=["v1"])
    upstream.add_fault(Hang(), path=exact(repo, kind, reference), times=None)

    started = time.monotonic()
    response = http.get(f"/v2/{NO_RETRY}/{repo}/{kind}/{reference}")
    elapsed = time.monotonic() - started

    assert response.status_code == 503
    assert error_codes(response) == ["UNAVAILABLE"]
    assert elapsed < READ_TIMEOUT + 3
    assert sent(upstream, "GET", repo, kind, reference) == 1


def test_upstream_stopped_uncached_503(
    tmp_path: Path, start_docket: Callable[..., DocketProcess], own_upstream: FakeUpstream, repo: str
) -> None:
    fake = own_upstream
    config = write_config(tmp_path / "docket.toml", [{"prefix": NO_RETRY, "url": fake.url, "retries": 0}])
    server = start_docket("--config", str(config))
    digest = fake.add_blob(repo, os.urandom(256))
    fake.stop()

    with httpx.Client(base_url=server.url, timeout=15.0) as client:
        manifest = client.get(f"/v2/{NO_RETRY}/{repo}/manifests/v1")
        blob = client.get(f"/v2/{NO_RETRY}/{repo}/blobs/{digest}")
        head = client.head(f"/v2/{NO_RETRY}/{repo}/blobs/{digest}")

    assert manifest.status_code == 503
    assert error_codes(manifest) == ["UNAVAILABLE"]
    assert blob.status_code == 503
    assert head.status_code == 503


def test_upstream_stopped_cached_served(
    tmp_path: Path, start_docket: Callable[..., DocketProcess], own_upstream: FakeUpstream, repo: str
) -> None:
    fake = own_upstream
    config = write_config(
        tmp_path / "docket.toml", [{"prefix": NO_RETRY, "url": fake.url, "retries": 0, "tag_ttl": "0"}]
    )
    server = start_docket("--config", str(config))
    manifest = image()
    fake.add_image(repo, manifest, tags=["v1"])
    layer = manifest.blobs[1]
    with httpx.Client(base_url=server.url, timeout=15.0) as client:
        assert client.get(f"/v2/{NO_RETRY}/{repo}/manifests/v1").status_code == 200
        assert client.get(f"/v2/{NO_RETRY}/{repo}/blobs/{layer.digest}").status_code == 200
        fake.stop()

        by_tag = client.get(f"/v2/{NO_RETRY}/{repo}/manifests/v1")
        by_digest = client.get(f"/v2/{NO_RETRY}/{repo}/manifests/{manifest.digest}")
        blob = client.get(f"/v2/{NO_RETRY}/{repo}/blobs/{layer.digest}")
        head = client.head(f"/v2/{NO_RETRY}/{repo}/blobs/{layer.digest}")

    assert by_tag.status_code == 200
    assert by_tag.content == manifest.data
    assert by_digest.content == manifest.data
    assert blob.status_code == 200
    assert blob.content == layer.data
    assert head.status_code == 200
    stale_line = f"WARNING docket.cache.manifests: cache stale: manifest {NO_RETRY}/{repo}:v1"
    assert stale_line in wait_for_log(server, stale_line)


# Politeness: retries with backoff before the first byte, none after it.


def test_manifest_retry_after_503(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    upstream.add_fault(Status(503), method="GET", path=exact(repo, "manifests", "v1"), times=2)

    response = http.get(f"/v2/{RETRY}/{repo}/manifests/v1")

    attempts = recorded(upstream, "GET", repo, "manifests", "v1")
    assert response.status_code == 200
    assert response.content == manifest.data
    assert len(attempts) == 3
    assert attempts[1].time - attempts[0].time >= MIN_BACKOFF
    assert attempts[2].time - attempts[1].time >= 2 * MIN_BACKOFF


def test_blob_retry_after_503(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    data = os.urandom(2048)
    digest = upstream.add_blob(repo, data)
    upstream.add_fault(Status(503), method="GET", path=exact(repo, "blobs", digest), times=2)

    response = http.get(f"/v2/{RETRY}/{repo}/blobs/{digest}")

    attempts = recorded(upstream, "GET", repo, "blobs", digest)
    assert response.status_code == 200
    assert response.content == data
    assert len(attempts) == 3
    assert attempts[1].time - attempts[0].time >= MIN_BACKOFF


def test_retries_exhausted_502(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    upstream.add_image(repo, image(), tags=["v1"])
    upstream.add_fault(Status(503), method="GET", path=exact(repo, "manifests", "v1"), times=None)

    response = http.get(f"/v2/{RETRY}/{repo}/manifests/v1")

    assert response.status_code == 502
    assert sent(upstream, "GET", repo, "manifests", "v1") == 3


def test_retry_after_one_second_honoured(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    manifest = image()
    upstream.add_image(repo, manifest, tags=["v1"])
    upstream.add_fault(Status(429, retry_after=1), method="GET", path=exact(repo, "manifests", "v1"))

    response = http.get(f"/v2/{RETRY}/{repo}/manifests/v1")

    attempts = recorded(upstream, "GET", repo, "manifests", "v1")
    assert response.status_code == 200
    assert response.content == manifest.data
    assert len(attempts) == 2
    assert attempts[1].time - attempts[0].time >= 1.0


def test_retry_after_connection_closed(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    data = os.urandom(2048)
    digest = upstream.add_blob(repo, data)
    upstream.add_fault(CloseConnection(), method="GET", path=exact(repo, "blobs", digest))

    response = http.get(f"/v2/{RETRY}/{repo}/blobs/{digest}")

    assert response.status_code == 200
    assert response.content == data
    assert sent(upstream, "GET", repo, "blobs", digest) == 2


def test_connection_closed_no_retry_rule(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    """With retries = 0, a dropped connection costs one upstream request and the client gets 503."""
    digest = upstream.add_blob(repo, os.urandom(2048))
    upstream.add_fault(CloseConnection(), method="GET", path=exact(repo, "blobs", digest), times=None)

    response = http.get(f"/v2/{NO_RETRY}/{repo}/blobs/{digest}")

    assert response.status_code == 503
    assert sent(upstream, "GET", repo, "blobs", digest) == 1


def test_no_retry_after_first_byte(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    data = os.urandom(64 * 1024)
    digest = upstream.add_blob(repo, data)
    upstream.add_fault(ShortBody(sent_bytes=16 * 1024), method="GET", path=exact(repo, "blobs", digest))

    received = bytearray()
    error: Exception | None = None
    try:
        with http.stream("GET", f"/v2/{RETRY}/{repo}/blobs/{digest}") as response:
            for chunk in response.iter_raw():
                received += chunk
    except (httpx.TransportError, httpx.StreamError) as failure:
        error = failure

    assert error is not None
    assert bytes(received) == data[: len(received)]
    assert len(received) < len(data)
    assert sent(upstream, "GET", repo, "blobs", digest) == 1
