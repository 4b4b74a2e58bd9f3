"""Tests of the fake upstream registry in tests/support/fake_upstream.py, driven with httpx."""

from __future__ import annotations

import hashlib
import os
import re
import ssl
import time
from collections.abc import Iterator

import httpx
import pytest

from tests.support.fake_upstream import (
    CloseConnection,
    Delay,
    FakeUpstream,
    Hang,
    OmitDigestHeader,
    RequireBasicAuth,
    RequireBearerToken,
    ShortBody,
    SlowBody,
    Status,
    WrongBytes,
)
from tests.support.oci import OCI_MANIFEST, artifact, digest_of, image

REPOSITORY = "library/team/alpine"
# Every URL here is plain http on loopback. A bare TLS context spares each client from
# loading the CA bundle, the slowest step of creating an httpx.Client.
PLAIN_HTTP = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def http(upstream: FakeUpstream) -> Iterator[httpx.Client]:
    """A client for the `upstream` fixture's registry."""
    with httpx.Client(base_url=upstream.url, timeout=5.0, verify=PLAIN_HTTP) as client:
        yield client


@pytest.fixture
def client() -> Iterator[httpx.Client]:
    """A client for servers that a test starts itself, so it takes full URLs."""
    with httpx.Client(timeout=5.0, verify=PLAIN_HTTP) as plain:
        yield plain


def read_until_error(client: httpx.Client, url: str, timeout: float = 5.0) -> tuple[bytes, Exception | None]:
    """Stream a GET and return the bytes received before the transport failed, with the error."""
    received = bytearray()
    try:
        with client.stream("GET", url, timeout=timeout) as response:
            for chunk in response.iter_raw():
                received += chunk
    except (httpx.TransportError, httpx.StreamError) as error:
        return bytes(received), error
    return bytes(received), None


def bearer_challenge(header: str) -> dict[str, str]:
    assert header.startswith("Bearer ")
    return dict(re.findall(r'(\w+)="([^"]*)"', header))


# Lifecycle.


def test_lifecycle_stop_closes_port(client: httpx.Client) -> None:
    upstream = FakeUpstream().start()
    url = upstream.url
    assert client.get(f"{url}/v2/").status_code == 200
    upstream.stop()
    upstream.stop()
    with pytest.raises(httpx.ConnectError):
        client.get(f"{url}/v2/", timeout=1.0)


def test_lifecycle_separate_token_port(upstream: FakeUpstream) -> None:
    assert upstream.token_port != upstream.port
    assert upstream.token_url == f"http://127.0.0.1:{upstream.token_port}/token"
    assert upstream.host == f"127.0.0.1:{upstream.port}"


def test_lifecycle_start_twice_rejected(upstream: FakeUpstream) -> None:
    with pytest.raises(RuntimeError):
        upstream.start()


# Content.


def test_ping_get_and_head(http: httpx.Client) -> None:
    assert http.get("/v2/").status_code == 200
    assert http.head("/v2/").status_code == 200


def test_blob_get_headers(upstream: FakeUpstream, http: httpx.Client) -> None:
    data = os.urandom(3000)
    digest = upstream.add_blob(REPOSITORY, data)
    response = http.get(f"/v2/{REPOSITORY}/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == data
    assert digest == digest_of(data)
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Content-Length"] == "3000"
    assert response.headers["Content-Type"] == "application/octet-stream"


def test_blob_head_has_no_body(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_blob(REPOSITORY, b"x" * 100)
    response = http.head(f"/v2/{REPOSITORY}/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Length"] == "100"
    assert response.headers["Docker-Content-Digest"] == digest


@pytest.mark.parametrize(
    ("header", "expected", "content_range"),
    [
        ("bytes=10-19", slice(10, 20), "bytes 10-19/100"),
        ("bytes=90-", slice(90, 100), "bytes 90-99/100"),
        ("bytes=-5", slice(95, 100), "bytes 95-99/100"),
        ("bytes=95-500", slice(95, 100), "bytes 95-99/100"),
    ],
)
def test_blob_range_partial(
    upstream: FakeUpstream, http: httpx.Client, header: str, expected: slice, content_range: str
) -> None:
    data = bytes(range(100))
    digest = upstream.add_blob(REPOSITORY, data)
    response = http.get(f"/v2/{REPOSITORY}/blobs/{digest}", headers={"Range": header})
    assert response.status_code == 206
    assert response.content == data[expected]
    assert response.headers["Content-Range"] == content_range


def test_blob_range_unsatisfiable(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_blob(REPOSITORY, bytes(100))
    response = http.get(f"/v2/{REPOSITORY}/blobs/{digest}", headers={"Range": "bytes=100-200"})
    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */100"


def test_blob_unknown_404(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_blob("other/repo", b"elsewhere")
    response = http.get(f"/v2/{REPOSITORY}/blobs/{digest}")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "BLOB_UNKNOWN"


def test_blob_large_served_whole(upstream: FakeUpstream, http: httpx.Client) -> None:
    data = os.urandom(30 * 1024 * 1024)
    digest = upstream.add_blob(REPOSITORY, data)
    hasher = hashlib.sha256()
    size = 0
    with http.stream("GET", f"/v2/{REPOSITORY}/blobs/{digest}") as response:
        for chunk in response.iter_bytes():
            hasher.update(chunk)
            size += len(chunk)
    assert size == len(data)
    assert f"sha256:{hasher.hexdigest()}" == digest


def test_manifest_by_tag_and_digest(upstream: FakeUpstream, http: httpx.Client) -> None:
    manifest = image()
    digest = upstream.add_image(REPOSITORY, manifest, tags=["v1"])
    for reference in ("v1", digest):
        response = http.get(f"/v2/{REPOSITORY}/manifests/{reference}")
        assert response.status_code == 200
        assert response.content == manifest.data
        assert response.headers["Content-Type"] == OCI_MANIFEST
        assert response.headers["Docker-Content-Digest"] == digest
        assert response.headers["Content-Length"] == str(len(manifest.data))


def test_manifest_exact_bytes_kept(upstream: FakeUpstream, http: httpx.Client) -> None:
    data = b'{ "schemaVersion" : 2,\n  "layers": [] }\n'
    digest = upstream.add_manifest(REPOSITORY, data, "application/vnd.example+json")
    response = http.get(f"/v2/{REPOSITORY}/manifests/{digest}")
    assert response.content == data
    assert response.headers["Content-Type"] == "application/vnd.example+json"


def test_manifest_head(upstream: FakeUpstream, http: httpx.Client) -> None:
    manifest = image()
    digest = upstream.add_image(REPOSITORY, manifest, tags=["v1"])
    response = http.head(f"/v2/{REPOSITORY}/manifests/v1")
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Docker-Content-Digest"] == digest
    assert response.headers["Content-Length"] == str(len(manifest.data))


def test_manifest_image_blobs_added(upstream: FakeUpstream, http: httpx.Client) -> None:
    manifest = image(layers=2)
    upstream.add_image(REPOSITORY, manifest)
    for blob in manifest.blobs:
        response = http.get(f"/v2/{REPOSITORY}/blobs/{blob.digest}")
        assert response.content == blob.data


def test_tag_move_and_delete(upstream: FakeUpstream, http: httpx.Client) -> None:
    first = upstream.add_image(REPOSITORY, image(), tags=["latest"])
    second = upstream.add_image(REPOSITORY, image())
    upstream.tag(REPOSITORY, "latest", second)
    moved = http.head(f"/v2/{REPOSITORY}/manifests/latest")
    assert moved.headers["Docker-Content-Digest"] == second
    upstream.delete_tag(REPOSITORY, "latest")
    deleted = http.get(f"/v2/{REPOSITORY}/manifests/latest")
    assert deleted.status_code == 404
    assert deleted.json()["errors"][0]["code"] == "MANIFEST_UNKNOWN"
    assert http.get(f"/v2/{REPOSITORY}/manifests/{first}").status_code == 200


def test_tag_unknown_digest_rejected(upstream: FakeUpstream) -> None:
    with pytest.raises(KeyError):
        upstream.tag(REPOSITORY, "v1", digest_of(b"missing"))
    with pytest.raises(KeyError):
        upstream.delete_tag(REPOSITORY, "missing")


def test_tags_list_sorted(upstream: FakeUpstream, http: httpx.Client) -> None:
    upstream.add_image(REPOSITORY, image(), tags=["v2", "v1", "latest"])
    response = http.get(f"/v2/{REPOSITORY}/tags/list")
    assert response.json() == {"name": REPOSITORY, "tags": ["latest", "v1", "v2"]}


def test_tags_list_paginated(upstream: FakeUpstream, http: httpx.Client) -> None:
    upstream.add_image(REPOSITORY, image(), tags=["a", "b", "c"])
    first = http.get(f"/v2/{REPOSITORY}/tags/list", params={"n": "2"})
    assert first.json()["tags"] == ["a", "b"]
    assert first.headers["Link"] == f'</v2/{REPOSITORY}/tags/list?n=2&last=b>; rel="next"'
    second = http.get(f"/v2/{REPOSITORY}/tags/list", params={"n": "2", "last": "b"})
    assert second.json()["tags"] == ["c"]
    assert "Link" not in second.headers


def test_tags_list_unknown_repository(http: httpx.Client) -> None:
    response = http.get("/v2/no/such/repo/tags/list")
    assert response.status_code == 404
    assert response.json()["errors"][0]["code"] == "NAME_UNKNOWN"


def test_unknown_route_404(http: httpx.Client) -> None:
    response = http.get("/v2/_catalog/extra/thing")
    assert response.status_code == 404
    assert "errors" in response.json()


def test_write_methods_rejected(upstream: FakeUpstream, http: httpx.Client) -> None:
    response = http.put(f"/v2/{REPOSITORY}/manifests/v1", content=b"{}")
    assert response.status_code == 405


# Referrers.


def test_referrers_index_lists_subject(upstream: FakeUpstream, http: httpx.Client) -> None:
    subject = image()
    signature = artifact(subject, "application/vnd.example.signature")
    sbom = image(subject=subject, annotations={"kind": "sbom"})
    upstream.add_image(REPOSITORY, subject)
    signature_digest = upstream.add_image(REPOSITORY, signature)
    sbom_digest = upstream.add_image(REPOSITORY, sbom)
    upstream.add_image(REPOSITORY, artifact(image(), "application/vnd.example.other"))
    response = http.get(f"/v2/{REPOSITORY}/referrers/{subject.digest}")
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "application/vnd.oci.image.index.v1+json"
    index = response.json()
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    by_digest = {entry["digest"]: entry for entry in index["manifests"]}
    assert set(by_digest) == {signature_digest, sbom_digest}
    assert by_digest[signature_digest]["artifactType"] == "application/vnd.example.signature"
    assert by_digest[signature_digest]["size"] == len(signature.data)
    assert by_digest[sbom_digest]["artifactType"] == "application/vnd.oci.image.config.v1+json"
    assert by_digest[sbom_digest]["annotations"] == {"kind": "sbom"}


def test_referrers_filter_artifact_type(upstream: FakeUpstream, http: httpx.Client) -> None:
    subject = image()
    upstream.add_image(REPOSITORY, subject)
    signature_digest = upstream.add_image(REPOSITORY, artifact(subject, "application/vnd.example.signature"))
    upstream.add_image(REPOSITORY, artifact(subject, "application/vnd.example.sbom"))
    response = http.get(
        f"/v2/{REPOSITORY}/referrers/{subject.digest}", params={"artifactType": "application/vnd.example.signature"}
    )
    assert [entry["digest"] for entry in response.json()["manifests"]] == [signature_digest]
    assert response.headers["OCI-Filters-Applied"] == "artifactType"


def test_referrers_unknown_subject_empty(http: httpx.Client) -> None:
    response = http.get(f"/v2/{REPOSITORY}/referrers/{digest_of(b'nothing')}")
    assert response.status_code == 200
    assert response.json()["manifests"] == []


def test_referrers_not_found_mode(upstream: FakeUpstream, http: httpx.Client) -> None:
    upstream.referrers = "not_found"
    response = http.get(f"/v2/{REPOSITORY}/referrers/{digest_of(b'x')}")
    assert response.status_code == 404
    assert "errors" in response.json()


def test_referrers_redirect_mode(upstream: FakeUpstream, http: httpx.Client) -> None:
    upstream.referrers = "redirect"
    response = http.get(f"/v2/{REPOSITORY}/referrers/{digest_of(b'x')}")
    assert response.status_code == 303
    location = response.headers["Location"]
    assert location.startswith(f"{upstream.url}/")
    page = http.get(location)
    assert page.status_code == 200
    assert page.headers["Content-Type"].startswith("text/html")


# Request log.


def test_log_records_request_details(upstream: FakeUpstream, http: httpx.Client) -> None:
    before = time.monotonic()
    http.get(f"/v2/{REPOSITORY}/tags/list", params={"n": "5"}, headers={"Authorization": "Bearer abc"})
    [entry] = upstream.requests("GET", "/tags/list")
    assert entry.path == f"/v2/{REPOSITORY}/tags/list"
    assert entry.query["n"] == "5"
    assert entry.authorization == "Bearer abc"
    assert entry.headers["authorization"] == "Bearer abc"
    assert entry.time >= before
    assert entry.status == 404


def test_log_count_filters_and_clear(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_blob(REPOSITORY, b"data")
    http.get("/v2/")
    http.head(f"/v2/{REPOSITORY}/blobs/{digest}")
    http.get(f"/v2/{REPOSITORY}/blobs/{digest}")
    assert upstream.count() == 3
    assert upstream.count("GET") == 2
    assert upstream.count(path_contains="/blobs/") == 2
    assert upstream.count("head", "/blobs/") == 1
    upstream.clear_log()
    assert upstream.count() == 0


def test_log_wait_for_times_out(upstream: FakeUpstream) -> None:
    with pytest.raises(TimeoutError):
        upstream.log.wait_for(1, timeout=0.05)


# Faults.


def test_fault_status_used_once(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_blob(REPOSITORY, b"data")
    rule = upstream.add_fault(Status(429, retry_after=3), method="GET", path="/blobs/")
    limited = http.get(f"/v2/{REPOSITORY}/blobs/{digest}")
    assert limited.status_code == 429
    assert limited.headers["Retry-After"] == "3"
    assert limited.json()["errors"][0]["code"] == "TOOMANYREQUESTS"
    assert http.get(f"/v2/{REPOSITORY}/blobs/{digest}").status_code == 200
    assert rule.hits == 1
    assert rule.remaining == 0


def test_fault_rules_in_order(upstream: FakeUpstream, http: httpx.Client) -> None:
    upstream.add_fault(Status(500), path="/v2/", times=2)
    upstream.add_fault(Status(502), path="/v2/")
    upstream.add_fault(Status(503), path="/v2/", times=None)
    statuses = [http.get("/v2/").status_code for _ in range(6)]
    assert statuses == [500, 500, 502, 503, 503, 503]


def test_fault_matches_method_and_regex(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_blob(REPOSITORY, b"data")
    upstream.add_fault(Status(500), method="HEAD", path=re.compile(r"/blobs/sha256:[0-9a-f]{64}$"))
    assert http.get(f"/v2/{REPOSITORY}/blobs/{digest}").status_code == 200
    assert http.head(f"/v2/{REPOSITORY}/tags/list").status_code == 405
    assert http.head(f"/v2/{REPOSITORY}/blobs/{digest}").status_code == 500


def test_fault_status_custom_body(upstream: FakeUpstream, http: httpx.Client) -> None:
    upstream.add_fault(Status(502, body=b"<html>bad gateway</html>", headers={"Content-Type": "text/html"}))
    response = http.get("/v2/")
    assert response.status_code == 502
    assert response.text == "<html>bad gateway</html>"
    assert response.headers["Content-Type"] == "text/html"


def test_fault_delay_before_headers(upstream: FakeUpstream, http: httpx.Client) -> None:
    upstream.add_fault(Delay(0.3))
    started = time.monotonic()
    response = http.get("/v2/")
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_fault_delay_then_status(upstream: FakeUpstream, http: httpx.Client) -> None:
    upstream.add_fault(Delay(0.05, then=Status(503)))
    assert http.get("/v2/").status_code == 503


def test_fault_delay_past_timeout(upstream: FakeUpstream, client: httpx.Client) -> None:
    upstream.add_fault(Delay(30))
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{upstream.url}/v2/", timeout=0.2)


def test_fault_wrong_bytes(upstream: FakeUpstream, http: httpx.Client) -> None:
    data = os.urandom(500)
    digest = upstream.add_blob(REPOSITORY, data)
    upstream.add_fault(WrongBytes(), path=digest)
    response = http.get(f"/v2/{REPOSITORY}/blobs/{digest}")
    assert response.status_code == 200
    assert len(response.content) == len(data)
    assert digest_of(response.content) != digest
    assert response.headers["Docker-Content-Digest"] == digest


def test_fault_wrong_bytes_given_data(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_manifest(REPOSITORY, b'{"schemaVersion":2}', OCI_MANIFEST, tags=["v1"])
    upstream.add_fault(WrongBytes(b'{"schemaVersion":2,"evil":true}'), path="/manifests/")
    response = http.get(f"/v2/{REPOSITORY}/manifests/v1")
    assert response.content == b'{"schemaVersion":2,"evil":true}'
    assert response.headers["Docker-Content-Digest"] == digest


def test_fault_short_body(upstream: FakeUpstream, http: httpx.Client) -> None:
    data = os.urandom(10_000)
    digest = upstream.add_blob(REPOSITORY, data)
    upstream.add_fault(ShortBody(1234), path="/blobs/")
    received, error = read_until_error(http, f"/v2/{REPOSITORY}/blobs/{digest}")
    assert isinstance(error, httpx.RemoteProtocolError)
    assert received == data[:1234]
    assert upstream.requests(path_contains="/blobs/")[0].status == 200


def test_fault_short_body_zero_bytes(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_blob(REPOSITORY, b"abc")
    upstream.add_fault(ShortBody(0))
    received, error = read_until_error(http, f"/v2/{REPOSITORY}/blobs/{digest}")
    assert isinstance(error, httpx.RemoteProtocolError)
    assert received == b""


def test_fault_slow_body(upstream: FakeUpstream, http: httpx.Client) -> None:
    data = os.urandom(4096)
    digest = upstream.add_blob(REPOSITORY, data)
    upstream.add_fault(SlowBody(interval=0.05, chunk_size=1024))
    started = time.monotonic()
    response = http.get(f"/v2/{REPOSITORY}/blobs/{digest}")
    assert response.content == data
    assert time.monotonic() - started >= 0.15


def test_fault_slow_body_read_timeout(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_blob(REPOSITORY, os.urandom(4096))
    upstream.add_fault(SlowBody(interval=30, chunk_size=100))
    received, error = read_until_error(http, f"/v2/{REPOSITORY}/blobs/{digest}", timeout=0.3)
    assert isinstance(error, httpx.ReadTimeout)
    assert len(received) == 100


def test_fault_hang_before_headers(upstream: FakeUpstream, client: httpx.Client) -> None:
    upstream.add_fault(Hang())
    with pytest.raises(httpx.ReadTimeout):
        client.get(f"{upstream.url}/v2/", timeout=0.2)
    assert upstream.requests()[0].status is None


def test_fault_hang_mid_body(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_blob(REPOSITORY, os.urandom(1000))
    upstream.add_fault(Hang(after_bytes=10))
    received, error = read_until_error(http, f"/v2/{REPOSITORY}/blobs/{digest}", timeout=0.2)
    assert isinstance(error, httpx.ReadTimeout)
    assert len(received) == 10


def test_fault_hang_ends_on_stop(client: httpx.Client) -> None:
    upstream = FakeUpstream().start()
    try:
        upstream.add_fault(Hang(), times=None)
        with pytest.raises(httpx.ReadTimeout):
            client.get(f"{upstream.url}/v2/", timeout=0.1)
    finally:
        started = time.monotonic()
        upstream.stop()
    assert time.monotonic() - started < 2.0


def test_fault_close_connection(upstream: FakeUpstream, http: httpx.Client) -> None:
    upstream.add_fault(CloseConnection())
    with pytest.raises(httpx.RemoteProtocolError):
        http.get("/v2/")
    assert http.get("/v2/").status_code == 200


def test_fault_omit_digest_on_head(upstream: FakeUpstream, http: httpx.Client) -> None:
    digest = upstream.add_image(REPOSITORY, image(), tags=["v1"])
    upstream.add_fault(OmitDigestHeader(), method="HEAD")
    head = http.head(f"/v2/{REPOSITORY}/manifests/v1")
    assert head.status_code == 200
    assert "Docker-Content-Digest" not in head.headers
    get = http.get(f"/v2/{REPOSITORY}/manifests/v1")
    assert get.headers["Docker-Content-Digest"] == digest


# Authentication.


def test_basic_auth_challenge(client: httpx.Client) -> None:
    with FakeUpstream(auth=RequireBasicAuth("alice", "secret")) as upstream:
        digest = upstream.add_blob(REPOSITORY, b"data")
        url = f"{upstream.url}/v2/{REPOSITORY}/blobs/{digest}"
        anonymous = client.get(url)
        wrong = client.get(url, auth=("alice", "wrong"))
        right = client.get(url, auth=("alice", "secret"))
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"] == 'Basic realm="fake"'
    assert anonymous.json()["errors"][0]["code"] == "UNAUTHORIZED"
    assert wrong.status_code == 401
    assert right.status_code == 200


def test_basic_auth_failure_keeps_fault(client: httpx.Client) -> None:
    with FakeUpstream(auth=RequireBasicAuth("alice", "secret")) as upstream:
        rule = upstream.add_fault(Status(503))
        assert client.get(f"{upstream.url}/v2/").status_code == 401
        assert client.get(f"{upstream.url}/v2/", auth=("alice", "secret")).status_code == 503
    assert rule.hits == 1


def test_bearer_challenge_and_token(client: httpx.Client) -> None:
    with FakeUpstream(auth=RequireBearerToken()) as upstream:
        digest = upstream.add_blob(REPOSITORY, b"data")
        url = f"{upstream.url}/v2/{REPOSITORY}/blobs/{digest}"
        challenged = client.get(url)
        challenge = bearer_challenge(challenged.headers["WWW-Authenticate"])
        token_response = client.get(
            challenge["realm"], params={"service": challenge["service"], "scope": challenge["scope"]}
        )
        token = token_response.json()["token"]
        authorized = client.get(url, headers={"Authorization": f"Bearer {token}"})
        token_requests = upstream.token_log.entries()
    assert challenged.status_code == 401
    assert challenge == {
        "realm": upstream.token_url,
        "service": "fake",
        "scope": f"repository:{REPOSITORY}:pull",
    }
    assert token_response.json()["access_token"] == token
    assert authorized.status_code == 200
    assert len(token_requests) == 1
    assert token_requests[0].authorization is None


def test_bearer_token_scope_enforced(client: httpx.Client) -> None:
    with FakeUpstream(auth=RequireBearerToken()) as upstream:
        token = client.get(upstream.token_url, params={"scope": "repository:other/repo:pull"}).json()["token"]
        response = client.get(f"{upstream.url}/v2/{REPOSITORY}/tags/list", headers={"Authorization": f"Bearer {token}"})
        ping = client.get(f"{upstream.url}/v2/", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401
    assert bearer_challenge(response.headers["WWW-Authenticate"])["error"] == "insufficient_scope"
    assert ping.status_code == 200


def test_bearer_invalid_token_rejected(client: httpx.Client) -> None:
    with FakeUpstream(auth=RequireBearerToken()) as upstream:
        response = client.get(f"{upstream.url}/v2/", headers={"Authorization": "Bearer made-up"})
    assert response.status_code == 401
    assert bearer_challenge(response.headers["WWW-Authenticate"])["error"] == "invalid_token"


def test_bearer_token_needs_credentials(client: httpx.Client) -> None:
    with FakeUpstream(auth=RequireBearerToken("bob", "hunter2")) as upstream:
        scope = {"service": "fake", "scope": f"repository:{REPOSITORY}:pull"}
        anonymous = client.get(upstream.token_url, params=scope)
        authorized = client.get(upstream.token_url, params=scope, auth=("bob", "hunter2"))
        entries = upstream.token_log.entries()
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic ")
    assert authorized.status_code == 200
    assert [entry.authorization is not None for entry in entries] == [False, True]


def test_bearer_token_expiry(client: httpx.Client) -> None:
    with FakeUpstream(auth=RequireBearerToken(expires_in=300)) as upstream:
        token_body = client.get(upstream.token_url, params={"scope": f"repository:{REPOSITORY}:pull"}).json()
        headers = {"Authorization": f"Bearer {token_body['token']}"}
        before = client.get(f"{upstream.url}/v2/", headers=headers)
        upstream.expire_tokens()
        after = client.get(f"{upstream.url}/v2/", headers=headers)
    assert token_body["expires_in"] == 300
    assert before.status_code == 200
    assert after.status_code == 401


def test_bearer_token_endpoint_fault(client: httpx.Client) -> None:
    with FakeUpstream(auth=RequireBearerToken()) as upstream:
        upstream.add_token_fault(Status(500))
        failed = client.get(upstream.token_url)
        recovered = client.get(upstream.token_url)
        count = upstream.token_log.count("GET", "/token")
    assert failed.status_code == 500
    assert recovered.status_code == 200
    assert count == 2


def test_auth_mode_switch_at_runtime(upstream: FakeUpstream, http: httpx.Client) -> None:
    assert http.get("/v2/").status_code == 200
    upstream.auth = RequireBasicAuth("alice", "secret")
    assert http.get("/v2/").status_code == 401
    upstream.auth = None
    assert http.get("/v2/").status_code == 200
