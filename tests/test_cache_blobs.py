"""Blobs of the pull-through cache against a fake upstream: cold reads, shared fills and broken bodies.

Most tests share one Docket and one `FakeUpstream` and count only the upstream
requests for their own repository. Tests that inspect `<data_dir>/tmp/` start a
Docket of their own, so no other test's fill can leave a file there.
"""

from __future__ import annotations

import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.config import write_config
from tests.support.fake_upstream import FakeUpstream, Fault, Hang, ShortBody, SlowBody, WrongBytes
from tests.support.oci import digest_of, error_codes
from tests.support.processes import DocketProcess

PREFIX = "up"
# Rule whose upstream read timeout is short, for bodies that stall.
QUICK = "quick"
READ_TIMEOUT = 1.0  # read_timeout of the QUICK rule, in seconds


def rules_for(upstream: FakeUpstream) -> list[dict[str, Any]]:
    return [
        {"prefix": PREFIX, "url": upstream.url, "tag_ttl": "1h"},
        {"prefix": QUICK, "url": upstream.url, "namespace": "quick.test", "read_timeout": f"{READ_TIMEOUT}s"},
    ]


@pytest.fixture(scope="module")
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


@pytest.fixture(scope="module")
def cache(upstream: FakeUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocketProcess]:
    folder = tmp_path_factory.mktemp("cache-blobs")
    config = write_config(folder / "docket.toml", rules_for(upstream))
    with DocketProcess(folder / "data", "--config", str(config)) as server:
        yield server


@pytest.fixture
def own_cache(upstream: FakeUpstream, tmp_path: Path, start_docket: Callable[..., DocketProcess]) -> DocketProcess:
    """A Docket for one test, with the same rules as `cache`."""
    config = write_config(tmp_path / "docket.toml", rules_for(upstream))
    return start_docket("--config", str(config))


@pytest.fixture(autouse=True)
def clear_faults(upstream: FakeUpstream) -> Iterator[None]:
    yield
    upstream.faults.clear()


@pytest.fixture
def http(cache: DocketProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cache.url, timeout=15.0) as client:
        yield client


def blob_path(repository: str, digest: str) -> re.Pattern[str]:
    """Match exactly the upstream path of one blob, for faults."""
    return re.compile(rf"^/v2/{re.escape(repository)}/blobs/{re.escape(digest)}$")


def sent(upstream: FakeUpstream, method: str, repository: str, digest: str) -> int:
    path = f"/v2/{repository}/blobs/{digest}"
    return sum(1 for request in upstream.requests(method, path) if request.path == path)


def stored_path(server: DocketProcess, digest: str) -> Path:
    algorithm, encoded = digest.split(":")
    return server.data_dir / "blobs" / algorithm / encoded[:2] / encoded


def read_until_error(client: httpx.Client, url: str) -> tuple[int, bytes, Exception | None]:
    """Stream a GET and return the status, the bytes received before the transport failed, and the error."""
    received = bytearray()
    status = 0
    try:
        with client.stream("GET", url) as response:
            status = response.status_code
            for chunk in response.iter_raw():
                received += chunk
    except (httpx.TransportError, httpx.StreamError) as error:
        return status, bytes(received), error
    return status, bytes(received), None


def wait_for_empty(folder: Path, timeout: float = 5.0) -> list[str]:
    """Return the names left in `folder` once it is empty, or after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    names = sorted(os.listdir(folder))
    while names and time.monotonic() < deadline:
        time.sleep(0.05)
        names = sorted(os.listdir(folder))
    return names


# Cold reads.


def test_blob_head_cold_no_body(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    data = os.urandom(3000)
    digest = upstream.add_blob(repo, data)

    response = http.head(f"/v2/{PREFIX}/{repo}/blobs/{digest}")

    assert response.status_code == 200
    assert response.headers["Content-Length"] == "3000"
    assert response.headers["Docker-Content-Digest"] == digest
    assert sent(upstream, "HEAD", repo, digest) == 1
    assert sent(upstream, "GET", repo, digest) == 0


def test_blob_get_cold_then_cached(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    data = os.urandom(3000)
    digest = upstream.add_blob(repo, data)

    first = http.get(f"/v2/{PREFIX}/{repo}/blobs/{digest}")
    second = http.get(f"/v2/{PREFIX}/{repo}/blobs/{digest}")
    head = http.head(f"/v2/{PREFIX}/{repo}/blobs/{digest}")

    assert first.status_code == 200
    assert first.content == data
    assert first.headers["Docker-Content-Digest"] == digest
    assert second.content == data
    assert head.status_code == 200
    assert sent(upstream, "GET", repo, digest) == 1
    assert sent(upstream, "HEAD", repo, digest) == 0


def test_blob_get_upstream_404(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    digest = digest_of(os.urandom(64))

    response = http.get(f"/v2/{PREFIX}/{repo}/blobs/{digest}")

    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UNKNOWN"]
    assert sent(upstream, "GET", repo, digest) == 1


def test_blob_head_upstream_404(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    digest = digest_of(os.urandom(64))

    response = http.head(f"/v2/{PREFIX}/{repo}/blobs/{digest}")

    assert response.status_code == 404
    assert sent(upstream, "HEAD", repo, digest) == 1


def test_blob_other_repository_404(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    """A blob cached for one repository is not served for another whose upstream repository does not have it."""
    data = os.urandom(500)
    digest = upstream.add_blob(repo, data)
    assert http.get(f"/v2/{PREFIX}/{repo}/blobs/{digest}").status_code == 200

    response = http.get(f"/v2/{PREFIX}/{repo}-other/blobs/{digest}")

    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UNKNOWN"]
    assert sent(upstream, "HEAD", f"{repo}-other", digest) == 1


def test_blob_range_on_miss(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    data = os.urandom(4096)
    digest = upstream.add_blob(repo, data)

    response = http.get(f"/v2/{PREFIX}/{repo}/blobs/{digest}", headers={"Range": "bytes=100-1099"})

    assert response.status_code == 206
    assert response.content == data[100:1100]
    assert response.headers["Content-Range"] == "bytes 100-1099/4096"
    assert sent(upstream, "GET", repo, digest) == 1


def test_blob_range_tail_on_miss(http: httpx.Client, upstream: FakeUpstream, repo: str) -> None:
    data = os.urandom(4096)
    digest = upstream.add_blob(repo, data)

    response = http.get(f"/v2/{PREFIX}/{repo}/blobs/{digest}", headers={"Range": "bytes=-10"})

    assert response.status_code == 206
    assert response.content == data[-10:]
    assert response.headers["Content-Range"] == "bytes 4086-4095/4096"


# Fills shared by clients.


def test_blob_concurrent_cold_one_fetch(cache: DocketProcess, upstream: FakeUpstream, repo: str) -> None:
    data = os.urandom(30 * 1024 * 1024)
    digest = upstream.add_blob(repo, data)
    # About 0.6 s for the whole body, so all ten requests arrive while the fill runs.
    upstream.add_fault(SlowBody(interval=0.02, chunk_size=1024 * 1024), method="GET", path=blob_path(repo, digest))
    url = f"{cache.url}/v2/{PREFIX}/{repo}/blobs/{digest}"

    def pull(_: int) -> tuple[int, int, str]:
        hasher = hashlib.sha256()
        size = 0
        with httpx.Client(timeout=30.0) as client, client.stream("GET", url) as response:
            for chunk in response.iter_bytes():
                hasher.update(chunk)
                size += len(chunk)
        return response.status_code, size, f"sha256:{hasher.hexdigest()}"

    with ThreadPoolExecutor(max_workers=10) as pool:
        results = list(pool.map(pull, range(10)))

    assert results == [(200, len(data), digest)] * 10
    assert sent(upstream, "GET", repo, digest) == 1
    assert sent(upstream, "HEAD", repo, digest) == 0


def test_blob_streams_before_upstream_done(cache: DocketProcess, upstream: FakeUpstream, repo: str) -> None:
    data = os.urandom(160 * 1024)
    digest = upstream.add_blob(repo, data)
    # Ten pieces with 0.2 s between them: the upstream needs at least 1.8 s for the body.
    upstream.add_fault(SlowBody(interval=0.2, chunk_size=16 * 1024), method="GET", path=blob_path(repo, digest))
    upstream_minimum = 9 * 0.2

    with (
        httpx.Client(timeout=15.0) as client,
        client.stream("GET", f"{cache.url}/v2/{PREFIX}/{repo}/blobs/{digest}") as response,
    ):
        chunks = response.iter_raw()
        first = next(chunks)
        first_arrived = time.monotonic()
        stored_early = stored_path(cache, digest).exists()
        rest = b"".join(chunks)

    upstream_started = upstream.requests("GET", f"/v2/{repo}/blobs/{digest}")[0].time
    assert response.status_code == 200
    assert first == data[: len(first)]
    assert first_arrived - upstream_started < upstream_minimum
    assert not stored_early
    assert first + rest == data


def test_blob_disconnect_keeps_fill(cache: DocketProcess, upstream: FakeUpstream, repo: str) -> None:
    data = os.urandom(160 * 1024)
    digest = upstream.add_blob(repo, data)
    upstream.add_fault(SlowBody(interval=0.1, chunk_size=16 * 1024), method="GET", path=blob_path(repo, digest))
    url = f"{cache.url}/v2/{PREFIX}/{repo}/blobs/{digest}"

    with httpx.Client(timeout=15.0) as leaving, leaving.stream("GET", url) as response:
        first = next(response.iter_raw())
    with httpx.Client(timeout=15.0) as staying:
        second = staying.get(url)

    assert first == data[: len(first)]
    assert second.status_code == 200
    assert second.content == data
    assert sent(upstream, "GET", repo, digest) == 1


# Broken upstream bodies: the client sees an error, nothing is stored, and the next request tries again.

BROKEN_BODIES = {
    "wrong-bytes": WrongBytes(),
    "wrong-length": WrongBytes(data=b"x" * 100),
    "short-body": ShortBody(sent_bytes=32 * 1024),
    "stalled-body": Hang(after_bytes=32 * 1024),
}


@pytest.mark.parametrize("fault", BROKEN_BODIES.values(), ids=BROKEN_BODIES.keys())
def test_blob_broken_body_not_stored(own_cache: DocketProcess, upstream: FakeUpstream, repo: str, fault: Fault) -> None:
    data = os.urandom(100 * 1024)
    digest = upstream.add_blob(repo, data)
    upstream.add_fault(fault, method="GET", path=blob_path(repo, digest))
    url = f"{own_cache.url}/v2/{QUICK}/{repo}/blobs/{digest}"

    with httpx.Client(timeout=15.0) as client:
        started = time.monotonic()
        status, received, error = read_until_error(client, url)
        elapsed = time.monotonic() - started
        leftovers = wait_for_empty(own_cache.data_dir / "tmp")
        stored = stored_path(own_cache, digest).exists()
        retry = client.get(url)

    assert status == 200
    assert error is not None
    assert received != data
    assert elapsed < READ_TIMEOUT + 5
    assert leftovers == []
    assert not stored
    assert retry.status_code == 200
    assert retry.content == data
    assert sent(upstream, "GET", repo, digest) == 2
    assert "Traceback" not in own_cache.log()


def test_blob_stalled_fill_fails_all_readers(own_cache: DocketProcess, upstream: FakeUpstream, repo: str) -> None:
    """Every client reading a fill that fails gets an error, not only the one that started it."""
    data = os.urandom(100 * 1024)
    digest = upstream.add_blob(repo, data)
    upstream.add_fault(Hang(after_bytes=32 * 1024), method="GET", path=blob_path(repo, digest))
    url = f"{own_cache.url}/v2/{QUICK}/{repo}/blobs/{digest}"

    with ThreadPoolExecutor(max_workers=3) as pool, httpx.Client(timeout=15.0) as client:
        results = list(pool.map(lambda _: read_until_error(client, url), range(3)))

    for status, received, error in results:
        assert status == 200
        assert error is not None
        assert received == data[: len(received)]
        assert len(received) < len(data)
    assert sent(upstream, "GET", repo, digest) == 1
