"""Tests of the write pipeline: large pending writes written and hashed on two threads."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
from pathlib import Path

import pytest

from docket.oci.digest import Digest
from docket.storage import DigestMismatch, FilesystemStore
from docket.storage.pipeline import BACKLOG, WritePipeline

CHUNK = 1 << 20
# Bound on waits, so a stuck thread fails the test instead of hanging it.
HANG_GUARD = 20.0


@pytest.fixture
async def store(tmp_path: Path) -> FilesystemStore:
    content = FilesystemStore(tmp_path / "data")
    await content.open()
    return content


class BlockingHasher:
    """A hasher whose `update` waits until the test opens the gate."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.inner = hashlib.sha256()

    def update(self, data: bytes) -> None:
        self.gate.wait(HANG_GUARD)
        self.inner.update(data)


async def test_pending_write_large_chunks(store: FilesystemStore) -> None:
    data = os.urandom(5 * CHUNK + 123)
    digest = Digest.of_bytes(data)
    pending_write = store.begin_write(digest)
    counts: list[int] = []
    pending_write.on_written = counts.append

    for offset in range(0, len(data), CHUNK):
        await pending_write.write(data[offset : offset + CHUNK])
    await pending_write.verify(len(data))

    assert pending_write.written == len(data)
    assert counts == sorted(counts)
    assert counts[-1] == len(data)
    assert pending_write.path is not None
    assert pending_write.path.read_bytes() == data
    assert await pending_write.commit(len(data)) == len(data)
    assert await store.read(digest) == data


async def test_pending_write_small_then_large(store: FilesystemStore) -> None:
    data = os.urandom(3 * CHUNK)
    digest = Digest.of_bytes(data)
    pending_write = store.begin_write(digest)
    counts: list[int] = []
    pending_write.on_written = counts.append

    await pending_write.write(data[:1000])
    assert counts == [1000]
    await pending_write.write(data[1000:CHUNK])
    await pending_write.write(data[CHUNK:])

    assert await pending_write.commit(len(data)) == len(data)
    assert counts[-1] == len(data)
    assert await store.read(digest) == data


async def test_pending_write_large_wrong_digest(store: FilesystemStore) -> None:
    digest = Digest.of_bytes(b"expected")
    pending_write = store.begin_write(digest)
    await pending_write.write(os.urandom(2 * CHUNK))

    with pytest.raises(DigestMismatch):
        await pending_write.commit()
    await pending_write.abort()

    assert await store.size(digest) is None
    assert [path for path in (store.root / "tmp").rglob("*") if path.is_file()] == []


async def test_pending_write_abort_midway(store: FilesystemStore) -> None:
    pending_write = store.begin_write(Digest.of_bytes(b"never finished"))
    for _ in range(4):
        await pending_write.write(os.urandom(CHUNK))
    path = pending_write.path
    assert path is not None

    await pending_write.abort()

    assert not path.exists()


async def test_pipeline_backlog_bound(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "file", os.O_WRONLY | os.O_CREAT, 0o600)
    hasher = BlockingHasher()
    pipeline = WritePipeline(fd, hasher)  # type: ignore[arg-type]
    try:
        for _ in range(BACKLOG):
            await asyncio.wait_for(pipeline.submit(b"x" * 1024), HANG_GUARD)
        blocked = asyncio.ensure_future(pipeline.submit(b"y" * 1024))
        await asyncio.sleep(0.2)
        assert not blocked.done()

        hasher.gate.set()
        await asyncio.wait_for(blocked, HANG_GUARD)
        await asyncio.wait_for(pipeline.drain(), HANG_GUARD)
        assert pipeline.written == (BACKLOG + 1) * 1024
        assert hasher.inner.hexdigest() == hashlib.sha256(b"x" * 1024 * BACKLOG + b"y" * 1024).hexdigest()
    finally:
        hasher.gate.set()
        await pipeline.close()
        os.close(fd)


async def test_pipeline_write_error(tmp_path: Path) -> None:
    path = tmp_path / "file"
    path.write_bytes(b"")
    read_only = os.open(path, os.O_RDONLY)
    pipeline = WritePipeline(read_only, hashlib.sha256())
    try:
        await pipeline.submit(b"data")
        with pytest.raises(OSError):
            await asyncio.wait_for(pipeline.drain(), HANG_GUARD)
        with pytest.raises(OSError):
            await pipeline.submit(b"more")
        assert pipeline.written == 0
    finally:
        await pipeline.close()
        os.close(read_only)
