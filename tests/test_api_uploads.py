"""Blob upload sessions, single-request uploads and cross-repository mounts against a real `docket serve`."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from tests.support.oci import digest_of, error_codes, push_blob, random_blob
from tests.support.processes import DocketProcess

OCTET_STREAM = {"Content-Type": "application/octet-stream"}


def start_upload(client: httpx.Client, repository: str) -> str:
    """Open an upload session and return its Location."""
    response = client.post(f"/v2/{repository}/blobs/uploads/")
    assert response.status_code == 202, response.text
    return response.headers["Location"]


def patch_chunk(client: httpx.Client, location: str, data: bytes, start: int) -> httpx.Response:
    """Send one chunk with an inclusive Content-Range starting at `start`."""
    headers = {**OCTET_STREAM, "Content-Range": f"{start}-{start + len(data) - 1}"}
    return client.patch(location, content=data, headers=headers)


def stream_of(data: bytes, piece: int = 1000) -> Iterator[bytes]:
    """Yield `data` in pieces, so httpx sends it with chunked transfer encoding."""
    for offset in range(0, len(data), piece):
        yield data[offset : offset + piece]


def assert_stored(client: httpx.Client, repository: str, data: bytes, digest: str) -> None:
    response = client.get(f"/v2/{repository}/blobs/{digest}")
    assert response.status_code == 200
    assert response.content == data


# Monolithic and single-request uploads


def test_monolithic_post_put(client: httpx.Client, repo: str) -> None:
    blob = random_blob(1000)
    location = start_upload(client, repo)

    response = client.put(location, params={"digest": blob.digest}, content=blob.data, headers=OCTET_STREAM)

    assert response.status_code == 201
    assert response.headers["Location"] == f"/v2/{repo}/blobs/{blob.digest}"
    assert response.headers["Docker-Content-Digest"] == blob.digest
    assert_stored(client, repo, blob.data, blob.digest)


def test_post_digest_single_request(client: httpx.Client, repo: str) -> None:
    blob = random_blob(1000)

    response = client.post(
        f"/v2/{repo}/blobs/uploads/", params={"digest": blob.digest}, content=blob.data, headers=OCTET_STREAM
    )

    assert response.status_code == 201
    assert response.headers["Location"] == f"/v2/{repo}/blobs/{blob.digest}"
    assert response.headers["Docker-Content-Digest"] == blob.digest
    assert_stored(client, repo, blob.data, blob.digest)


def test_post_digest_location_readable(client: httpx.Client, repo: str) -> None:
    blob = random_blob(100)

    response = push_blob(client, repo, blob)
    followed = client.get(response.headers["Location"])

    assert followed.status_code == 200
    assert followed.content == blob.data


def test_post_digest_streamed_body(client: httpx.Client, repo: str) -> None:
    data = os.urandom(5000)
    digest = digest_of(data)

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=stream_of(data))

    assert response.status_code == 201
    assert_stored(client, repo, data, digest)


def test_post_digest_wrong_not_stored(client: httpx.Client, repo: str) -> None:
    data = os.urandom(500)
    claimed = digest_of(b"something else")

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": claimed}, content=data)

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert client.head(f"/v2/{repo}/blobs/{claimed}").status_code == 404
    assert client.head(f"/v2/{repo}/blobs/{digest_of(data)}").status_code == 404


def test_post_digest_invalid_400(client: httpx.Client, repo: str) -> None:
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": "sha256:nothex"}, content=b"x")

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_post_bad_name_400(client: httpx.Client) -> None:
    response = client.post("/v2/Upper/case/blobs/uploads/")

    assert response.status_code == 400
    assert error_codes(response) == ["NAME_INVALID"]


def test_post_empty_blob(client: httpx.Client, repo: str) -> None:
    digest = digest_of(b"")

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=b"")

    assert response.status_code == 201
    assert client.head(f"/v2/{repo}/blobs/{digest}").headers["Content-Length"] == "0"


# Chunked sessions


def test_post_opens_session(client: httpx.Client, repo: str) -> None:
    response = client.post(f"/v2/{repo}/blobs/uploads/")

    assert response.status_code == 202
    assert response.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert response.headers["Range"] == "0-0"
    assert response.headers["Docker-Upload-UUID"]
    assert response.headers["Location"].endswith(response.headers["Docker-Upload-UUID"])


def test_chunked_two_chunks_put(client: httpx.Client, repo: str) -> None:
    data = os.urandom(2048)
    location = start_upload(client, repo)

    first = patch_chunk(client, location, data[:1024], 0)
    second = patch_chunk(client, first.headers["Location"], data[1024:], 1024)
    done = client.put(second.headers["Location"], params={"digest": digest_of(data)})

    assert first.status_code == 202
    assert first.headers["Range"] == "0-1023"
    assert first.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert second.status_code == 202
    assert second.headers["Range"] == "0-2047"
    assert second.headers["Location"]
    assert done.status_code == 201
    assert done.headers["Location"] == f"/v2/{repo}/blobs/{digest_of(data)}"
    assert done.headers["Docker-Content-Digest"] == digest_of(data)
    assert_stored(client, repo, data, digest_of(data))


def test_chunked_last_chunk_in_put(client: httpx.Client, repo: str) -> None:
    data = os.urandom(3000)
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data[:2000], 0).status_code == 202

    done = client.put(
        location,
        params={"digest": digest_of(data)},
        content=data[2000:],
        headers={**OCTET_STREAM, "Content-Range": "2000-2999"},
    )

    assert done.status_code == 201
    assert_stored(client, repo, data, digest_of(data))


def test_chunked_rfc_content_range(client: httpx.Client, repo: str) -> None:
    data = os.urandom(200)
    location = start_upload(client, repo)

    response = client.patch(location, content=data, headers={"Content-Range": "bytes 0-199/200"})

    assert response.status_code == 202
    assert response.headers["Range"] == "0-199"


def test_patch_streamed_no_range(client: httpx.Client, repo: str) -> None:
    data = os.urandom(10_000)
    location = start_upload(client, repo)

    response = client.patch(location, content=stream_of(data), headers=OCTET_STREAM)
    done = client.put(location, params={"digest": digest_of(data)})

    assert response.status_code == 202
    assert response.headers["Range"] == "0-9999"
    assert response.headers["Location"]
    assert done.status_code == 201
    assert_stored(client, repo, data, digest_of(data))


def test_patch_streamed_then_ranged(client: httpx.Client, repo: str) -> None:
    data = os.urandom(3000)
    location = start_upload(client, repo)

    streamed = client.patch(location, content=stream_of(data[:1000], 100))
    ranged = patch_chunk(client, location, data[1000:], 1000)
    done = client.put(location, params={"digest": digest_of(data)})

    assert streamed.status_code == 202
    assert ranged.status_code == 202
    assert ranged.headers["Range"] == "0-2999"
    assert done.status_code == 201
    assert_stored(client, repo, data, digest_of(data))


def test_patch_chunked_with_range(client: httpx.Client, repo: str) -> None:
    # A Content-Range with a chunked body that has no Content-Length.
    data = os.urandom(1500)
    location = start_upload(client, repo)

    response = client.patch(location, content=stream_of(data, 500), headers={"Content-Range": "0-1499"})

    assert response.status_code == 202
    assert response.headers["Range"] == "0-1499"


def test_put_streamed_final_chunk(client: httpx.Client, repo: str) -> None:
    data = os.urandom(4000)
    location = start_upload(client, repo)

    done = client.put(location, params={"digest": digest_of(data)}, content=stream_of(data))

    assert done.status_code == 201
    assert_stored(client, repo, data, digest_of(data))


def test_large_upload_chunks(client: httpx.Client, repo: str) -> None:
    data = os.urandom(8 << 20)
    chunk_size = 3 << 20
    location = start_upload(client, repo)

    for start in range(0, len(data), chunk_size):
        response = patch_chunk(client, location, data[start : start + chunk_size], start)
        assert response.status_code == 202
        assert response.headers["Range"] == f"0-{min(start + chunk_size, len(data)) - 1}"
        location = response.headers["Location"]
    done = client.put(location, params={"digest": digest_of(data)})
    fetched = client.get(f"/v2/{repo}/blobs/{digest_of(data)}")

    assert done.status_code == 201
    assert fetched.status_code == 200
    assert fetched.headers["Content-Length"] == str(len(data))
    assert hashlib.sha256(fetched.content).hexdigest() == hashlib.sha256(data).hexdigest()


# Out-of-order and inconsistent chunks


def test_chunk_wrong_start_416(client: httpx.Client, repo: str) -> None:
    data = os.urandom(2048)
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data[:1024], 0).status_code == 202

    response = patch_chunk(client, location, data[1024:], 1000)

    assert response.status_code == 416
    assert response.headers["Range"] == "0-1023"
    assert response.headers["Location"]


def test_chunk_first_not_zero_416(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)

    response = patch_chunk(client, location, os.urandom(100), 100)

    assert response.status_code == 416


def test_chunk_repeated_416_recovers(client: httpx.Client, repo: str) -> None:
    data = os.urandom(2048)
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data[:1024], 0).status_code == 202

    repeated = patch_chunk(client, location, data[:1024], 0)
    status = client.get(location)
    resumed = patch_chunk(client, status.headers["Location"], data[1024:], 1024)
    done = client.put(location, params={"digest": digest_of(data)})

    assert repeated.status_code == 416
    assert status.status_code == 204
    assert status.headers["Range"] == "0-1023"
    assert resumed.status_code == 202
    assert done.status_code == 201
    assert_stored(client, repo, data, digest_of(data))


def test_chunk_gap_416_recovers(client: httpx.Client, repo: str) -> None:
    data = os.urandom(3072)
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data[:1024], 0).status_code == 202

    gap = patch_chunk(client, location, data[2048:], 2048)
    status = client.get(location)
    resumed = patch_chunk(client, location, data[1024:2048], 1024)
    last = patch_chunk(client, location, data[2048:], 2048)
    done = client.put(location, params={"digest": digest_of(data)})

    assert gap.status_code == 416
    assert status.status_code == 204
    assert status.headers["Range"] == "0-1023"
    assert status.headers["Location"]
    assert resumed.status_code == 202
    assert last.status_code == 202
    assert done.status_code == 201
    assert done.headers["Docker-Content-Digest"] == digest_of(data)
    assert_stored(client, repo, data, digest_of(data))


def test_large_wrong_chunk_recovers(client: httpx.Client, repo: str) -> None:
    # The rejected body is megabytes long, and the retry must work on the same connection.
    data = os.urandom(4 << 20)
    half = len(data) // 2
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data[:half], 0).status_code == 202

    wrong = patch_chunk(client, location, data[half:], half - 1)
    right = patch_chunk(client, location, data[half:], half)
    done = client.put(location, params={"digest": digest_of(data)})

    assert wrong.status_code == 416
    assert wrong.headers["Range"] == f"0-{half - 1}"
    assert right.status_code == 202
    assert done.status_code == 201
    assert_stored(client, repo, data, digest_of(data))


def test_final_put_wrong_chunk_416(client: httpx.Client, repo: str) -> None:
    data = os.urandom(2048)
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data[:1024], 0).status_code == 202

    response = client.put(
        location, params={"digest": digest_of(data)}, content=data[1024:], headers={"Content-Range": "1000-2023"}
    )
    status = client.get(location)

    assert response.status_code == 416
    assert client.head(f"/v2/{repo}/blobs/{digest_of(data)}").status_code == 404
    assert status.status_code == 204
    assert status.headers["Range"] == "0-1023"


def test_range_length_mismatch_recovers(client: httpx.Client, repo: str) -> None:
    data = os.urandom(2048)
    location = start_upload(client, repo)

    # Content-Range covers 512 bytes while the body, and so Content-Length, has 1024.
    mismatch = client.patch(location, content=data[:1024], headers={"Content-Range": "0-511"})
    status = client.get(location)
    first = patch_chunk(client, location, data[:1024], 0)
    second = patch_chunk(client, location, data[1024:], 1024)
    done = client.put(location, params={"digest": digest_of(data)})

    assert 400 <= mismatch.status_code < 500
    assert status.status_code == 204
    assert status.headers["Range"] == "0-0"
    assert first.status_code == 202
    assert second.status_code == 202
    assert done.status_code == 201
    assert_stored(client, repo, data, digest_of(data))


def test_chunked_body_short_of_range(client: httpx.Client, repo: str) -> None:
    # A chunked body shorter than its Content-Range must not be kept.
    data = os.urandom(1000)
    location = start_upload(client, repo)

    short = client.patch(location, content=stream_of(data[:600], 200), headers={"Content-Range": "0-999"})
    status = client.get(location)
    retry = patch_chunk(client, location, data, 0)

    assert 400 <= short.status_code < 500
    assert status.headers["Range"] == "0-0"
    assert retry.status_code == 202
    assert retry.headers["Range"] == "0-999"


def test_malformed_content_range_400(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)

    response = client.patch(location, content=b"abcd", headers={"Content-Range": "3-0"})

    assert response.status_code == 400
    assert error_codes(response) == ["BLOB_UPLOAD_INVALID"]


# Completing with a wrong or missing digest


def test_put_wrong_digest_400(client: httpx.Client, repo: str) -> None:
    data = os.urandom(1024)
    claimed = digest_of(b"other content")
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data, 0).status_code == 202

    response = client.put(location, params={"digest": claimed})

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert client.head(f"/v2/{repo}/blobs/{claimed}").status_code == 404
    assert client.head(f"/v2/{repo}/blobs/{digest_of(data)}").status_code == 404


def test_put_wrong_digest_with_body(client: httpx.Client, repo: str) -> None:
    data = os.urandom(1024)
    claimed = digest_of(b"other content")
    location = start_upload(client, repo)

    response = client.put(location, params={"digest": claimed}, content=data, headers=OCTET_STREAM)

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert client.head(f"/v2/{repo}/blobs/{claimed}").status_code == 404


def test_put_without_digest_400(client: httpx.Client, repo: str) -> None:
    data = os.urandom(64)
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data, 0).status_code == 202

    response = client.put(location)
    status = client.get(location)

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert status.status_code == 204
    assert status.headers["Range"] == "0-63"


def test_put_invalid_digest_400(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)

    response = client.put(location, params={"digest": "md5:abc"})

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


# Session status, unknown sessions and cancel


def test_status_fresh_session(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)

    response = client.get(location)

    assert response.status_code == 204
    assert response.headers["Range"] == "0-0"
    assert response.headers["Location"] == location
    assert response.content == b""


def test_status_after_one_byte(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)
    assert patch_chunk(client, location, b"x", 0).status_code == 202

    response = client.get(location)

    assert response.status_code == 204
    assert response.headers["Range"] == "0-0"


def test_status_unknown_upload_404(client: httpx.Client, repo: str) -> None:
    for upload_id in ("0" * 32, "not-an-upload", "A" * 32):
        response = client.get(f"/v2/{repo}/blobs/uploads/{upload_id}")
        assert response.status_code == 404
        assert error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]


def test_upload_other_repo_404(client: httpx.Client, repo: str) -> None:
    other = f"{repo}-other"
    location = start_upload(client, repo)
    upload_id = location.rsplit("/", 1)[1]
    foreign = f"/v2/{other}/blobs/uploads/{upload_id}"

    status = client.get(foreign)
    patched = client.patch(foreign, content=b"abc", headers={"Content-Range": "0-2"})
    finished = client.put(foreign, params={"digest": digest_of(b"")})
    cancelled = client.delete(foreign)

    assert status.status_code == 404
    assert error_codes(status) == ["BLOB_UPLOAD_UNKNOWN"]
    assert patched.status_code == 404
    assert error_codes(patched) == ["BLOB_UPLOAD_UNKNOWN"]
    assert finished.status_code == 404
    assert cancelled.status_code == 404
    assert client.get(location).headers["Range"] == "0-0"


def test_cancel_then_status_404(client: httpx.Client, repo: str) -> None:
    location = start_upload(client, repo)
    assert patch_chunk(client, location, b"some bytes", 0).status_code == 202

    cancelled = client.delete(location)
    status = client.get(location)
    patched = client.patch(location, content=b"more", headers={"Content-Range": "10-13"})

    assert cancelled.status_code == 204
    assert status.status_code == 404
    assert error_codes(status) == ["BLOB_UPLOAD_UNKNOWN"]
    assert patched.status_code == 404


def test_cancel_unknown_404(client: httpx.Client, repo: str) -> None:
    response = client.delete(f"/v2/{repo}/blobs/uploads/{'f' * 32}")

    assert response.status_code == 404
    assert error_codes(response) == ["BLOB_UPLOAD_UNKNOWN"]


def test_session_closed_after_put(client: httpx.Client, repo: str) -> None:
    data = os.urandom(100)
    location = start_upload(client, repo)
    assert client.put(location, params={"digest": digest_of(data)}, content=data).status_code == 201

    status = client.get(location)
    again = client.put(location, params={"digest": digest_of(data)})

    assert status.status_code == 404
    assert error_codes(status) == ["BLOB_UPLOAD_UNKNOWN"]
    assert again.status_code == 404


def test_sessions_independent(client: httpx.Client, repo: str) -> None:
    first_data, second_data = os.urandom(700), os.urandom(900)
    first = start_upload(client, repo)
    second = start_upload(client, repo)

    assert patch_chunk(client, first, first_data, 0).status_code == 202
    assert patch_chunk(client, second, second_data, 0).status_code == 202
    assert client.put(second, params={"digest": digest_of(second_data)}).status_code == 201
    assert client.put(first, params={"digest": digest_of(first_data)}).status_code == 201

    assert_stored(client, repo, first_data, digest_of(first_data))
    assert_stored(client, repo, second_data, digest_of(second_data))


# Cross-repository mount


def test_mount_from_repo_201(client: httpx.Client, repo: str) -> None:
    source = f"{repo}-source"
    blob = random_blob(300)
    push_blob(client, source, blob)

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": blob.digest, "from": source})

    assert response.status_code == 201
    assert response.headers["Location"] == f"/v2/{repo}/blobs/{blob.digest}"
    assert response.headers["Docker-Content-Digest"] == blob.digest
    assert_stored(client, repo, blob.data, blob.digest)


def test_mount_unknown_blob_202(client: httpx.Client, repo: str) -> None:
    source = f"{repo}-source"
    digest = digest_of(os.urandom(32))

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": source})

    assert response.status_code == 202
    assert response.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert client.get(response.headers["Location"]).status_code == 204
    assert client.head(f"/v2/{repo}/blobs/{digest}").status_code == 404


def test_mount_fallback_session_usable(client: httpx.Client, repo: str) -> None:
    data = os.urandom(400)
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest_of(data), "from": f"{repo}-source"})
    assert response.status_code == 202

    done = client.put(response.headers["Location"], params={"digest": digest_of(data)}, content=data)

    assert done.status_code == 201
    assert_stored(client, repo, data, digest_of(data))


def test_mount_wrong_source_202(client: httpx.Client, repo: str) -> None:
    holder = f"{repo}-holder"
    empty_source = f"{repo}-source"
    blob = random_blob(300)
    push_blob(client, holder, blob)

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": blob.digest, "from": empty_source})

    assert response.status_code == 202
    assert response.headers["Location"].startswith(f"/v2/{repo}/blobs/uploads/")
    assert client.head(f"/v2/{repo}/blobs/{blob.digest}").status_code == 404


def test_mount_deleted_source_202(client: httpx.Client, repo: str) -> None:
    source = f"{repo}-source"
    blob = random_blob(300)
    push_blob(client, source, blob)
    assert client.delete(f"/v2/{source}/blobs/{blob.digest}").status_code == 202

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": blob.digest, "from": source})

    assert response.status_code == 202


def test_mount_automatic_201(client: httpx.Client, repo: str) -> None:
    holder = f"{repo}-holder"
    blob = random_blob(300)
    push_blob(client, holder, blob)

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": blob.digest})

    assert response.status_code == 201
    assert response.headers["Location"] == f"/v2/{repo}/blobs/{blob.digest}"
    assert response.headers["Docker-Content-Digest"] == blob.digest
    assert_stored(client, repo, blob.data, blob.digest)


def test_mount_automatic_disabled_202(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    config = tmp_path / "docket.toml"
    config.write_text("[registry]\nautomatic_mount = false\n")
    server = start_docket("--config", str(config))
    blob = random_blob(300)

    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        push_blob(http, "holder/repo", blob)
        response = http.post("/v2/target/repo/blobs/uploads/", params={"mount": blob.digest})
        explicit = http.post("/v2/target/repo/blobs/uploads/", params={"mount": blob.digest, "from": "holder/repo"})

    assert response.status_code == 202
    assert explicit.status_code == 201


def test_mount_invalid_digest_400(client: httpx.Client, repo: str) -> None:
    params = {"mount": "sha256:totallywrong", "from": f"{repo}-source"}

    response = client.post(f"/v2/{repo}/blobs/uploads/", params=params)

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_mount_invalid_source_400(client: httpx.Client, repo: str) -> None:
    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest_of(b"x"), "from": "Bad/Name"})

    assert response.status_code == 400
    assert error_codes(response) == ["NAME_INVALID"]


def test_mount_sha512(client: httpx.Client, repo: str) -> None:
    source = f"{repo}-source"
    data = os.urandom(256)
    digest = digest_of(data, "sha512")
    assert client.post(f"/v2/{source}/blobs/uploads/", params={"digest": digest}, content=data).status_code == 201

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"mount": digest, "from": source})

    assert response.status_code == 201
    assert response.headers["Docker-Content-Digest"] == digest
    assert_stored(client, repo, data, digest)


# sha512


def test_sha512_chunked_upload(client: httpx.Client, repo: str) -> None:
    data = os.urandom(5000)
    digest = digest_of(data, "sha512")
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data[:2500], 0).status_code == 202
    assert patch_chunk(client, location, data[2500:], 2500).status_code == 202

    done = client.put(location, params={"digest": digest})

    assert done.status_code == 201
    assert done.headers["Location"] == f"/v2/{repo}/blobs/{digest}"
    assert done.headers["Docker-Content-Digest"] == digest
    assert_stored(client, repo, data, digest)


def test_sha512_single_post(client: httpx.Client, repo: str) -> None:
    data = os.urandom(5000)
    digest = digest_of(data, "sha512")

    response = client.post(f"/v2/{repo}/blobs/uploads/", params={"digest": digest}, content=data, headers=OCTET_STREAM)

    assert response.status_code == 201
    assert response.headers["Location"] == f"/v2/{repo}/blobs/{digest}"
    assert response.headers["Docker-Content-Digest"] == digest
    assert_stored(client, repo, data, digest)


def test_sha512_wrong_digest_400(client: httpx.Client, repo: str) -> None:
    data = os.urandom(500)
    # A well-formed sha512 digest of other bytes.
    claimed = digest_of(b"other", "sha512")
    location = start_upload(client, repo)

    response = client.put(location, params={"digest": claimed}, content=data)

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert client.head(f"/v2/{repo}/blobs/{claimed}").status_code == 404


def test_sha256_upload_not_under_sha512(client: httpx.Client, repo: str) -> None:
    # A blob completed with its sha256 digest is not also readable by its sha512 digest.
    data = os.urandom(800)
    location = start_upload(client, repo)
    assert patch_chunk(client, location, data, 0).status_code == 202

    done = client.put(location, params={"digest": digest_of(data)})

    assert done.status_code == 201
    assert client.head(f"/v2/{repo}/blobs/{digest_of(data, 'sha512')}").status_code == 404
