"""Blob reads, byte ranges, deletes and input validation over HTTP against a real `docket serve`."""

from __future__ import annotations

import hashlib
import os
import socket

import httpx
import pytest

from tests.support.oci import Blob, digest_of, error_codes, push_blob, random_blob
from tests.support.processes import DocketProcess

EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
EMPTY_DIGEST = "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"


def raw_exchange(port: int, payload: bytes, timeout: float = 10.0) -> bytes:
    """Send bytes as they are on a new loopback connection and return everything read until the server closes it."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(payload)
        received = b""
        while chunk := sock.recv(65536):
            received += chunk
    return received


def raw_get(port: int, target: str, method: str = "GET") -> tuple[int, bytes]:
    """Send one request with `target` unchanged, dot segments included, and return the status and body."""
    request = f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode()
    head, _, body = raw_exchange(port, request).partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, body


@pytest.fixture
def blob_2k(client: httpx.Client, repo: str) -> Blob:
    """A 2048-byte random blob pushed to `repo`."""
    blob = random_blob(2048)
    push_blob(client, repo, blob)
    return blob


# GET and HEAD


def test_blob_get_exact_bytes(client: httpx.Client, repo: str) -> None:
    blob = random_blob(4096)
    push_blob(client, repo, blob)

    response = client.get(f"/v2/{repo}/blobs/{blob.digest}")

    assert response.status_code == 200
    assert response.content == blob.data
    assert response.headers["Content-Length"] == "4096"
    assert response.headers["Docker-Content-Digest"] == blob.digest


def test_blob_head_headers_no_body(client: httpx.Client, repo: str) -> None:
    blob = random_blob(3000)
    push_blob(client, repo, blob)

    response = client.head(f"/v2/{repo}/blobs/{blob.digest}")

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Length"] == "3000"
    assert response.headers["Docker-Content-Digest"] == blob.digest


def test_blob_etag_head_matches_get(client: httpx.Client, repo: str) -> None:
    blob = random_blob(100)
    push_blob(client, repo, blob)

    head = client.head(f"/v2/{repo}/blobs/{blob.digest}")
    get = client.get(f"/v2/{repo}/blobs/{blob.digest}")

    # RFC 9110 section 9.3.2: HEAD should send the same header fields as GET.
    assert head.headers.get("ETag") == get.headers.get("ETag")


def test_blob_empty(client: httpx.Client, repo: str) -> None:
    blob = Blob(b"")
    push_blob(client, repo, blob)
    assert blob.digest == EMPTY_DIGEST

    get = client.get(f"/v2/{repo}/blobs/{blob.digest}")
    head = client.head(f"/v2/{repo}/blobs/{blob.digest}")

    assert get.status_code == 200
    assert get.content == b""
    assert get.headers["Content-Length"] == "0"
    assert get.headers["Docker-Content-Digest"] == EMPTY_DIGEST
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "0"
    assert head.headers["Docker-Content-Digest"] == EMPTY_DIGEST


def test_blob_empty_json(client: httpx.Client, repo: str) -> None:
    blob = Blob(b"{}")
    push_blob(client, repo, blob)
    assert blob.digest == EMPTY_JSON_DIGEST

    get = client.get(f"/v2/{repo}/blobs/{EMPTY_JSON_DIGEST}")
    head = client.head(f"/v2/{repo}/blobs/{EMPTY_JSON_DIGEST}")

    assert get.status_code == 200
    assert get.content == b"{}"
    assert get.headers["Content-Length"] == "2"
    assert get.headers["Docker-Content-Digest"] == EMPTY_JSON_DIGEST
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "2"


def test_blob_unknown_404(client: httpx.Client, repo: str) -> None:
    missing = digest_of(b"hello world")

    get = client.get(f"/v2/{repo}/blobs/{missing}")
    head = client.head(f"/v2/{repo}/blobs/{missing}")

    assert get.status_code == 404
    assert error_codes(get) == ["BLOB_UNKNOWN"]
    assert head.status_code == 404
    assert head.content == b""


# Range requests on a 2048-byte blob


@pytest.mark.parametrize(
    ("range_header", "first", "last"),
    [
        ("bytes=500-1499", 500, 1499),
        ("bytes=500-", 500, 2047),
        ("bytes=-500", 1548, 2047),
        ("bytes=2000-5000", 2000, 2047),
        ("bytes=0-0", 0, 0),
        ("bytes=2047-2047", 2047, 2047),
        ("bytes=-5000", 0, 2047),
    ],
)
def test_range_partial(
    client: httpx.Client, repo: str, blob_2k: Blob, range_header: str, first: int, last: int
) -> None:
    response = client.get(f"/v2/{repo}/blobs/{blob_2k.digest}", headers={"Range": range_header})

    assert response.status_code == 206
    assert response.headers["Content-Range"] == f"bytes {first}-{last}/2048"
    assert response.headers["Content-Length"] == str(last - first + 1)
    assert response.content == blob_2k.data[first : last + 1]


@pytest.mark.parametrize("range_header", ["bytes=500-0", "bytes=5000-10000", "bytes=2048-", "bytes=-0"])
def test_range_unsatisfiable_416(client: httpx.Client, repo: str, blob_2k: Blob, range_header: str) -> None:
    response = client.get(f"/v2/{repo}/blobs/{blob_2k.digest}", headers={"Range": range_header})

    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */2048"


@pytest.mark.parametrize("range_header", ["bytes=0-99,200-299", "items=0-99", "bytes=abc"])
def test_range_ignored_full_body(client: httpx.Client, repo: str, blob_2k: Blob, range_header: str) -> None:
    response = client.get(f"/v2/{repo}/blobs/{blob_2k.digest}", headers={"Range": range_header})

    assert response.status_code == 200
    assert response.content == blob_2k.data
    assert "Content-Range" not in response.headers


@pytest.mark.parametrize(
    ("range_header", "first_status"),
    [("bytes=0-99", b"206"), ("bytes=0-99,200-299", b"200"), ("items=0-99", b"200")],
)
def test_range_keeps_connection(
    docket: DocketProcess, client: httpx.Client, repo: str, blob_2k: Blob, range_header: str, first_status: bytes
) -> None:
    # Two pipelined requests share one connection. The server must send both responses,
    # also when it ignores the first request's Range header.
    target = f"/v2/{repo}/blobs/{blob_2k.digest}"
    payload = (
        f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nRange: {range_header}\r\n\r\n"
        f"GET /v2/ HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n"
    ).encode()

    received = raw_exchange(docket.port, payload)

    assert received.startswith(b"HTTP/1.1 " + first_status)
    # The `GET /v2/` response starts right after the blob body.
    assert received.rfind(b"HTTP/1.1 200 OK\r\n") > 0


def test_range_with_spaces_not_416(client: httpx.Client, repo: str, blob_2k: Blob) -> None:
    # Docket's range parser accepts blanks around the numbers. A range inside the blob
    # must get the range or the whole blob, not 416.
    response = client.get(f"/v2/{repo}/blobs/{blob_2k.digest}", headers={"Range": "bytes= 500-1499"})

    assert response.status_code in (200, 206)
    expected = blob_2k.data if response.status_code == 200 else blob_2k.data[500:1500]
    assert response.content == expected


def test_range_on_empty_blob_416(client: httpx.Client, repo: str) -> None:
    blob = Blob(b"")
    push_blob(client, repo, blob)

    response = client.get(f"/v2/{repo}/blobs/{blob.digest}", headers={"Range": "bytes=0-10"})

    assert response.status_code == 416
    assert response.headers["Content-Range"] == "bytes */0"


# Repository isolation


def test_blob_isolated_between_repos(client: httpx.Client, repo: str) -> None:
    other = f"{repo}-other"
    blob = random_blob(256)
    push_blob(client, repo, blob)

    get = client.get(f"/v2/{other}/blobs/{blob.digest}")
    head = client.head(f"/v2/{other}/blobs/{blob.digest}")

    assert get.status_code == 404
    assert error_codes(get) == ["BLOB_UNKNOWN"]
    assert head.status_code == 404
    assert client.head(f"/v2/{repo}/blobs/{blob.digest}").status_code == 200


def test_blob_isolated_after_other_push(client: httpx.Client, repo: str) -> None:
    # The same content pushed to a second repository is stored once but linked to both.
    other = f"{repo}-other"
    blob = random_blob(256)
    push_blob(client, repo, blob)
    push_blob(client, other, blob)
    third = f"{repo}-third"

    assert client.get(f"/v2/{other}/blobs/{blob.digest}").content == blob.data
    assert client.head(f"/v2/{third}/blobs/{blob.digest}").status_code == 404


# DELETE


def test_blob_delete_then_head_404(client: httpx.Client, repo: str) -> None:
    blob = random_blob(128)
    push_blob(client, repo, blob)

    deleted = client.delete(f"/v2/{repo}/blobs/{blob.digest}")
    head = client.head(f"/v2/{repo}/blobs/{blob.digest}")
    get = client.get(f"/v2/{repo}/blobs/{blob.digest}")

    assert deleted.status_code == 202
    assert head.status_code == 404
    assert get.status_code == 404
    assert error_codes(get) == ["BLOB_UNKNOWN"]


def test_blob_delete_keeps_other_repo(client: httpx.Client, repo: str) -> None:
    other = f"{repo}-other"
    blob = random_blob(128)
    push_blob(client, repo, blob)
    push_blob(client, other, blob)

    deleted = client.delete(f"/v2/{repo}/blobs/{blob.digest}")
    kept = client.get(f"/v2/{other}/blobs/{blob.digest}")

    assert deleted.status_code == 202
    assert client.head(f"/v2/{repo}/blobs/{blob.digest}").status_code == 404
    assert kept.status_code == 200
    assert kept.content == blob.data


def test_blob_delete_unknown_404(client: httpx.Client, repo: str) -> None:
    response = client.delete(f"/v2/{repo}/blobs/{digest_of(b'never pushed')}")

    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UNKNOWN"]


def test_blob_delete_twice_404(client: httpx.Client, repo: str) -> None:
    blob = random_blob(64)
    push_blob(client, repo, blob)

    first = client.delete(f"/v2/{repo}/blobs/{blob.digest}")
    second = client.delete(f"/v2/{repo}/blobs/{blob.digest}")

    assert first.status_code == 202
    assert second.status_code == 404
    assert error_codes(second) == ["BLOB_UNKNOWN"]


def test_blob_repush_after_delete(client: httpx.Client, repo: str) -> None:
    blob = random_blob(64)
    push_blob(client, repo, blob)
    assert client.delete(f"/v2/{repo}/blobs/{blob.digest}").status_code == 202

    push_blob(client, repo, blob)
    response = client.get(f"/v2/{repo}/blobs/{blob.digest}")

    assert response.status_code == 200
    assert response.content == blob.data


# Invalid digests and repository names

BAD_DIGESTS = [
    "sha256:totallywrong",
    "md5:abc",
    "sha256:" + hashlib.sha256(b"x").hexdigest().upper(),
    "sha256:" + "a" * 63,
    "sha512:" + "a" * 64,
    "sha256",
]


@pytest.mark.parametrize("digest", BAD_DIGESTS)
def test_blob_get_bad_digest_400(client: httpx.Client, repo: str, digest: str) -> None:
    response = client.get(f"/v2/{repo}/blobs/{digest}")

    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    assert error_codes(response) == ["DIGEST_INVALID"]


@pytest.mark.parametrize("digest", BAD_DIGESTS[:3])
def test_blob_head_bad_digest_400(client: httpx.Client, repo: str, digest: str) -> None:
    response = client.head(f"/v2/{repo}/blobs/{digest}")

    assert response.status_code == 400
    assert response.content == b""


@pytest.mark.parametrize("digest", BAD_DIGESTS[:3])
def test_blob_delete_bad_digest_400(client: httpx.Client, repo: str, digest: str) -> None:
    response = client.delete(f"/v2/{repo}/blobs/{digest}")

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


@pytest.mark.parametrize("name", ["Upper/case", "a//b", "-leading", "trailing-", "a/b/"])
def test_blob_bad_name_400(client: httpx.Client, name: str) -> None:
    response = client.get(f"/v2/{name}/blobs/{digest_of(b'x')}")

    assert response.status_code == 400
    assert error_codes(response) == ["NAME_INVALID"]


@pytest.mark.parametrize("name", ["a/../b", "a/./b", "..", "a/.."])
def test_blob_dot_segment_name_400(docket: DocketProcess, name: str) -> None:
    # httpx would remove dot segments, so the request line is written by hand.
    status, body = raw_get(docket.port, f"/v2/{name}/blobs/{digest_of(b'x')}")

    assert status == 400
    assert b'"NAME_INVALID"' in body


def test_blob_name_too_long_400(client: httpx.Client) -> None:
    name = "/".join(["abcdefghij"] * 30)

    response = client.get(f"/v2/{name}/blobs/{digest_of(b'x')}")

    assert response.status_code == 400
    assert error_codes(response) == ["NAME_INVALID"]


# sha512


def test_sha512_blob_get_head(client: httpx.Client, repo: str) -> None:
    data = os.urandom(1500)
    digest = digest_of(data, "sha512")
    pushed = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data)
    assert pushed.status_code == 201

    get = client.get(f"/v2/{repo}/blobs/{digest}")
    head = client.head(f"/v2/{repo}/blobs/{digest}")

    assert get.status_code == 200
    assert get.content == data
    assert get.headers["Docker-Content-Digest"] == digest
    assert head.status_code == 200
    assert head.headers["Content-Length"] == "1500"
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.content == b""


def test_sha512_not_found_by_sha256(client: httpx.Client, repo: str) -> None:
    data = os.urandom(300)
    pushed = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest_of(data, "sha512")}, content=data)
    assert pushed.status_code == 201

    response = client.head(f"/v2/{repo}/blobs/{digest_of(data)}")

    assert response.status_code == 404


def test_sha512_range(client: httpx.Client, repo: str) -> None:
    data = os.urandom(2048)
    digest = digest_of(data, "sha512")
    assert client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201

    response = client.get(f"/v2/{repo}/blobs/{digest}", headers={"Range": "bytes=100-199"})

    assert response.status_code == 206
    assert response.headers["Content-Range"] == "bytes 100-199/2048"
    assert response.content == data[100:200]


def test_sha512_delete(client: httpx.Client, repo: str) -> None:
    data = os.urandom(64)
    digest = digest_of(data, "sha512")
    assert client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201

    deleted = client.delete(f"/v2/{repo}/blobs/{digest}")

    assert deleted.status_code == 202
    assert client.head(f"/v2/{repo}/blobs/{digest}").status_code == 404
