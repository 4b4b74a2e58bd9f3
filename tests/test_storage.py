"""Tests of the filesystem content store, directly and through restarts of a real server."""

from __future__ import annotations

import hashlib
import os
import socket
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import httpx
import pytest

from docket.oci.digest import Digest
from docket.storage import DigestMismatch, FilesystemStore, SizeMismatch
from tests.support.oci import image, push_manifest, random_blob
from tests.support.processes import DocketProcess

# Larger than the store's 1 MiB write batch, so that part of the data reaches the file
# before the stream ends.
LARGE = 3 * 1024 * 1024 + 17
POLL_TIMEOUT = 10.0


class ClientGone(Exception):
    """Raised by a chunk iterator to stand in for a dropped connection."""


async def chunks_of(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def chunks_then_fail(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part
    raise ClientGone("connection closed by client")


def split(data: bytes, size: int = 64 * 1024) -> list[bytes]:
    return [data[offset : offset + size] for offset in range(0, len(data), size)]


def files_under(folder: Path) -> list[Path]:
    return sorted(path for path in folder.rglob("*") if path.is_file())


@pytest.fixture
async def store(tmp_path: Path) -> FilesystemStore:
    content = FilesystemStore(tmp_path / "data")
    await content.open()
    return content


# Writes of whole blobs


async def test_write_stream_round_trip(store: FilesystemStore) -> None:
    data = os.urandom(LARGE)
    digest = Digest.of_bytes(data)

    size = await store.write_stream(digest, chunks_of(*split(data)), len(data))

    assert size == len(data)
    assert await store.size(digest) == len(data)
    assert await store.read(digest) == data
    assert b"".join([chunk async for chunk in store.read_range(digest, 10, 1_500_000)]) == data[10:1_500_001]
    assert files_under(store.root / "tmp") == []


@pytest.mark.parametrize("parts", [[], [b"x" * 100], split(os.urandom(LARGE))], ids=["empty", "small", "large"])
async def test_write_stream_wrong_digest(store: FilesystemStore, parts: list[bytes]) -> None:
    digest = Digest.of_bytes(b"something else")

    with pytest.raises(DigestMismatch) as info:
        await store.write_stream(digest, chunks_of(*parts))

    assert info.value.actual == Digest.of_bytes(b"".join(parts))
    assert await store.size(digest) is None
    assert files_under(store.root / "blobs") == []
    assert files_under(store.root / "tmp") == []


@pytest.mark.parametrize("parts", [[b"x" * 100], split(os.urandom(LARGE))], ids=["small", "large"])
async def test_write_stream_wrong_size(store: FilesystemStore, parts: list[bytes]) -> None:
    data = b"".join(parts)
    digest = Digest.of_bytes(data)

    with pytest.raises(SizeMismatch) as info:
        await store.write_stream(digest, chunks_of(*parts), len(data) + 1)

    assert info.value.actual == len(data)
    assert await store.size(digest) is None
    assert files_under(store.root / "blobs") == []
    assert files_under(store.root / "tmp") == []


@pytest.mark.parametrize("parts", [[b"x" * 100], split(os.urandom(LARGE))], ids=["small", "large"])
async def test_write_stream_broken_stream(store: FilesystemStore, parts: list[bytes]) -> None:
    digest = Digest.of_bytes(b"".join(parts) + b"rest")

    with pytest.raises(ClientGone):
        await store.write_stream(digest, chunks_then_fail(*parts))

    assert await store.size(digest) is None
    assert files_under(store.root / "blobs") == []
    assert files_under(store.root / "tmp") == []


async def test_write_stream_sha512(store: FilesystemStore) -> None:
    data = os.urandom(1000)
    digest = Digest.of_bytes(data, "sha512")

    await store.write_stream(digest, chunks_of(data))

    assert await store.read(digest) == data


async def test_pending_write_commit(store: FilesystemStore) -> None:
    data = os.urandom(2000)
    digest = Digest.of_bytes(data)
    pending_write = store.begin_write(digest)

    await pending_write.write(data[:500])
    assert pending_write.path is not None
    assert pending_write.path.read_bytes() == data[:500]
    assert await store.size(digest) is None
    await pending_write.write(data[500:])

    assert await pending_write.commit(len(data)) == len(data)
    assert await store.read(digest) == data
    assert files_under(store.root / "tmp") == []


async def test_pending_write_failed_commit(store: FilesystemStore) -> None:
    digest = Digest.of_bytes(b"expected")
    pending_write = store.begin_write(digest)
    await pending_write.write(b"actual")

    with pytest.raises(DigestMismatch):
        await pending_write.commit()
    await pending_write.abort()

    assert await store.size(digest) is None
    assert files_under(store.root / "blobs") == []
    assert files_under(store.root / "tmp") == []


async def test_write_bytes_wrong_digest(store: FilesystemStore) -> None:
    digest = Digest.of_bytes(b"expected")

    with pytest.raises(DigestMismatch):
        await store.write_bytes(digest, b"actual")

    assert await store.size(digest) is None
    assert files_under(store.root / "blobs") == []
    assert files_under(store.root / "tmp") == []


async def test_write_bytes_round_trip(store: FilesystemStore) -> None:
    data = b'{"schemaVersion":2}'
    digest = Digest.of_bytes(data)

    await store.write_bytes(digest, data)
    await store.write_bytes(digest, data)

    assert await store.read(digest) == data
    assert files_under(store.root / "tmp") == []


async def test_open_removes_tmp_leftovers(tmp_path: Path) -> None:
    root = tmp_path / "data"
    first = FilesystemStore(root)
    await first.open()
    data = b"kept"
    await first.write_bytes(Digest.of_bytes(data), data)
    (root / "tmp" / "tmpabc123").write_bytes(b"partial write")
    (root / "tmp" / "folder").mkdir()
    (root / "tmp" / "folder" / "inner").write_bytes(b"partial write")

    second = FilesystemStore(root)
    await second.open()

    assert list((root / "tmp").iterdir()) == []
    assert await second.read(Digest.of_bytes(data)) == data


# Upload sessions


async def test_upload_round_trip(store: FilesystemStore) -> None:
    upload_id = uuid.uuid4().hex
    data = os.urandom(LARGE)
    first, second = data[:1000], data[1000:]
    digest = Digest.of_bytes(data)

    await store.upload_create(upload_id)
    assert await store.upload_size(upload_id) == 0
    assert await store.upload_append(upload_id, chunks_of(first), len(first)) == len(first)
    assert await store.upload_append(upload_id, chunks_of(*split(second))) == len(data)
    assert await store.upload_ids() == [upload_id]

    assert await store.upload_commit(upload_id, digest, len(data)) == len(data)
    assert await store.read(digest) == data
    assert await store.upload_size(upload_id) is None
    assert await store.upload_ids() == []


@pytest.mark.parametrize("parts", [[b"y" * 100], split(os.urandom(LARGE))], ids=["small", "large"])
async def test_upload_append_broken_stream(store: FilesystemStore, parts: list[bytes]) -> None:
    upload_id = uuid.uuid4().hex
    head, tail = b"head", b"tail"
    await store.upload_create(upload_id)
    await store.upload_append(upload_id, chunks_of(head))

    with pytest.raises(ClientGone):
        await store.upload_append(upload_id, chunks_then_fail(*parts))

    assert await store.upload_size(upload_id) == len(head)
    await store.upload_append(upload_id, chunks_of(tail))
    digest = Digest.of_bytes(head + tail)
    assert await store.upload_commit(upload_id, digest) == len(head + tail)
    assert await store.read(digest) == head + tail


@pytest.mark.parametrize("parts", [[b"z" * 100], split(os.urandom(LARGE))], ids=["small", "large"])
async def test_upload_append_wrong_length(store: FilesystemStore, parts: list[bytes]) -> None:
    upload_id = uuid.uuid4().hex
    head = b"head"
    chunk = b"".join(parts)
    await store.upload_create(upload_id)
    await store.upload_append(upload_id, chunks_of(head))

    with pytest.raises(SizeMismatch) as info:
        await store.upload_append(upload_id, chunks_of(*parts), len(chunk) + 1)

    assert info.value.actual == len(chunk)
    assert await store.upload_size(upload_id) == len(head)
    digest = Digest.of_bytes(head + chunk)
    await store.upload_append(upload_id, chunks_of(chunk), len(chunk))
    assert await store.upload_commit(upload_id, digest) == len(head + chunk)


async def test_upload_commit_wrong_digest(store: FilesystemStore) -> None:
    upload_id = uuid.uuid4().hex
    data = os.urandom(5000)
    await store.upload_create(upload_id)
    await store.upload_append(upload_id, chunks_of(data))
    wrong = Digest.of_bytes(b"other")

    with pytest.raises(DigestMismatch):
        await store.upload_commit(upload_id, wrong)

    assert await store.upload_size(upload_id) == len(data)
    assert await store.size(wrong) is None
    digest = Digest.of_bytes(data)
    assert await store.upload_commit(upload_id, digest) == len(data)
    assert await store.read(digest) == data


async def test_upload_commit_wrong_size(store: FilesystemStore) -> None:
    upload_id = uuid.uuid4().hex
    data = os.urandom(5000)
    digest = Digest.of_bytes(data)
    await store.upload_create(upload_id)
    await store.upload_append(upload_id, chunks_of(data))

    with pytest.raises(SizeMismatch):
        await store.upload_commit(upload_id, digest, len(data) - 1)

    assert await store.upload_size(upload_id) == len(data)
    assert await store.size(digest) is None
    assert await store.upload_commit(upload_id, digest, len(data)) == len(data)


async def test_upload_commit_after_restart(tmp_path: Path) -> None:
    # A new store has no hash state for the upload and must hash the file instead.
    root = tmp_path / "data"
    upload_id = uuid.uuid4().hex
    data = os.urandom(5000)
    first = FilesystemStore(root)
    await first.open()
    await first.upload_create(upload_id)
    await first.upload_append(upload_id, chunks_of(data))

    second = FilesystemStore(root)
    await second.open()
    await second.upload_append(upload_id, chunks_of(b"more"))
    digest = Digest.of_bytes(data + b"more")

    assert await second.upload_commit(upload_id, digest) == len(data) + 4
    assert await second.read(digest) == data + b"more"


async def test_upload_commit_sha512(store: FilesystemStore) -> None:
    upload_id = uuid.uuid4().hex
    data = os.urandom(5000)
    digest = Digest.of_bytes(data, "sha512")
    await store.upload_create(upload_id)
    await store.upload_append(upload_id, chunks_of(data))

    assert await store.upload_commit(upload_id, digest) == len(data)
    assert await store.read(digest) == data


async def test_upload_commit_existing_blob(store: FilesystemStore) -> None:
    upload_id = uuid.uuid4().hex
    data = os.urandom(5000)
    digest = Digest.of_bytes(data)
    await store.write_bytes(digest, data)
    await store.upload_create(upload_id)
    await store.upload_append(upload_id, chunks_of(data))

    assert await store.upload_commit(upload_id, digest) == len(data)
    assert await store.read(digest) == data
    assert await store.upload_ids() == []


async def test_upload_delete(store: FilesystemStore) -> None:
    upload_id = uuid.uuid4().hex
    await store.upload_create(upload_id)
    await store.upload_append(upload_id, chunks_of(b"data"))

    await store.upload_delete(upload_id)

    assert await store.upload_size(upload_id) is None
    assert await store.upload_ids() == []


# Crash safety of a real server


def wait_for(condition: Callable[[], bool], description: str) -> None:
    deadline = time.monotonic() + POLL_TIMEOUT
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {POLL_TIMEOUT}s waiting for {description}")
        time.sleep(0.02)


def test_restart_after_kill_removes_tmp(start_docket: Callable[..., DocketProcess]) -> None:
    server = start_docket()
    manifest = image(layers=2)
    repository = "crash/tmp-leftover"
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        push_manifest(client, repository, manifest, "v1")
    leftover = server.data_dir / "tmp" / "tmpleftover"
    leftover.write_bytes(b"half of a blob")

    server.kill()
    restarted = start_docket(data_dir=server.data_dir)

    assert list((server.data_dir / "tmp").iterdir()) == []
    with httpx.Client(base_url=restarted.url, timeout=10.0) as client:
        response = client.get(f"/v2/{repository}/manifests/v1", headers={"Accept": manifest.media_type})
        assert response.status_code == 200
        assert response.content == manifest.data
        for blob in manifest.blobs:
            blob_response = client.get(f"/v2/{repository}/blobs/{blob.digest}")
            assert blob_response.status_code == 200
            assert blob_response.content == blob.data


def test_kill_during_blob_push(start_docket: Callable[..., DocketProcess]) -> None:
    server = start_docket()
    data = os.urandom(4096)
    digest = f"sha256:{hashlib.sha256(data).hexdigest()}"
    repository = "crash/mid-push"
    tmp_dir = server.data_dir / "tmp"
    request = (
        f"POST /v2/{repository}/blobs/uploads/?digest={digest} HTTP/1.1\r\n"
        f"Host: 127.0.0.1:{server.port}\r\n"
        "Content-Type: application/octet-stream\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode()

    with socket.create_connection(("127.0.0.1", server.port), timeout=10.0) as connection:
        connection.sendall(request + data[:1000])
        wait_for(lambda: any(tmp_dir.iterdir()), "the server to open a file in tmp/")
        server.kill()
    restarted = start_docket(data_dir=server.data_dir)

    assert list(tmp_dir.iterdir()) == []
    with httpx.Client(base_url=restarted.url, timeout=10.0) as client:
        assert client.head(f"/v2/{repository}/blobs/{digest}").status_code == 404


def test_restart_upload_data(start_docket: Callable[..., DocketProcess]) -> None:
    """Check that session data survives a crash and data without a session row is removed at start-up."""
    server = start_docket()
    repository = "crash/open-upload"
    blob = random_blob(3000)
    first, rest = blob.data[:1000], blob.data[1000:]
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        started = client.post(f"/v2/{repository}/blobs/uploads/")
        assert started.status_code == 202
        location = started.headers["Location"]
        patched = client.patch(
            location,
            content=first,
            headers={"Content-Type": "application/octet-stream", "Content-Range": f"0-{len(first) - 1}"},
        )
        assert patched.status_code == 202

    orphan = server.data_dir / "uploads" / uuid.uuid4().hex
    orphan.write_bytes(b"data of a session whose row was deleted")

    server.kill()
    restarted = start_docket(data_dir=server.data_dir)

    assert not orphan.exists()
    with httpx.Client(base_url=restarted.url, timeout=10.0) as client:
        status = client.get(location)
        assert status.status_code == 204
        assert status.headers["Range"] == f"0-{len(first) - 1}"
        finished = client.put(
            location,
            params={"digest": blob.digest},
            content=rest,
            headers={
                "Content-Type": "application/octet-stream",
                "Content-Range": f"{len(first)}-{len(blob.data) - 1}",
            },
        )
        assert finished.status_code == 201
        assert client.get(f"/v2/{repository}/blobs/{blob.digest}").content == blob.data
