"""Content store on a local filesystem.

Layout under the data directory::

    blobs/<algorithm>/<first two hex digits>/<encoded digest>   committed content, never rewritten
    uploads/<upload id>                                         data of an upload session
    tmp/<random name>                                           writes in flight, emptied at start-up

A write goes to `tmp/` (same filesystem), is hashed while written, verified, fsynced
and only then renamed into `blobs/`, so a reader never sees partial content.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path

from docket.oci.digest import Digest
from docket.storage.base import DigestMismatch, SizeMismatch
from docket.storage.pipeline import WritePipeline, write_all

log = logging.getLogger(__name__)

# Chunks are gathered up to this size before one write call in the thread pool,
# so a stream of small network reads costs few executor round trips.
_WRITE_BATCH = 1 << 20
_READ_CHUNK = 1 << 20
# Writes from this size on go through a WritePipeline. Smaller content is not worth two threads.
_PIPELINE_MIN = 256 << 10


class FilesystemStore:
    def __init__(self, root: Path, *, clean_temporary: bool = True) -> None:
        self.root = root
        # Worker processes share tmp/ with the processes that are already serving, so
        # only the process that starts first (the parent) may empty it.
        self.clean_temporary = clean_temporary
        self._blobs = root / "blobs"
        self._uploads = root / "uploads"
        self._tmp = root / "tmp"
        # Hash state of uploads received by this process: upload id -> (size hashed, sha256).
        # A miss (another worker or a restart) falls back to hashing the file at commit.
        self._upload_hashers: dict[str, tuple[int, hashlib._Hash]] = {}

    async def open(self) -> None:
        for folder in (self._blobs, self._uploads, self._tmp):
            folder.mkdir(parents=True, exist_ok=True)
        if not self.clean_temporary:
            return
        removed = 0
        for leftover in self._tmp.iterdir():
            if leftover.is_dir():
                shutil.rmtree(leftover, ignore_errors=True)
            else:
                leftover.unlink(missing_ok=True)
            removed += 1
        if removed:
            log.info("removed %d temporary files left by an earlier run in %s", removed, self._tmp)

    async def ping(self) -> None:
        """Check that the data directory exists and a file can be created in it."""
        await asyncio.to_thread(self._ping_sync)

    def _ping_sync(self) -> None:
        fd, name = tempfile.mkstemp(dir=self._tmp, prefix="ping-")
        os.close(fd)
        os.unlink(name)
        if not self._blobs.is_dir():
            raise FileNotFoundError(f"{self._blobs} is missing")

    def _path(self, digest: Digest) -> Path:
        return self._blobs / digest.algorithm / digest.encoded[:2] / digest.encoded

    async def size(self, digest: Digest) -> int | None:
        try:
            return os.stat(self._path(digest)).st_size
        except FileNotFoundError:
            return None

    def local_path(self, digest: Digest) -> Path | None:
        return self._path(digest)

    async def read(self, digest: Digest) -> bytes:
        return await asyncio.to_thread(self._path(digest).read_bytes)

    async def read_range(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]:
        handle = await asyncio.to_thread(open, self._path(digest), "rb")
        try:
            handle.seek(start)
            remaining = end - start + 1
            while remaining > 0:
                chunk = await asyncio.to_thread(handle.read, min(_READ_CHUNK, remaining))
                if not chunk:
                    raise OSError(f"{digest} ended {remaining} bytes early")
                remaining -= len(chunk)
                yield chunk
        finally:
            handle.close()

    async def write_bytes(self, digest: Digest, data: bytes) -> None:
        actual = Digest.of_bytes(data, digest.algorithm)
        if actual != digest:
            raise DigestMismatch(digest, actual)
        if await self.size(digest) is not None:
            return
        await asyncio.to_thread(self._write_file_sync, digest, data)

    def _write_file_sync(self, digest: Digest, data: bytes) -> None:
        fd, tmp_name = tempfile.mkstemp(dir=self._tmp)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            self._publish(Path(tmp_name), digest)
        except BaseException:
            Path(tmp_name).unlink(missing_ok=True)
            raise

    def begin_write(self, digest: Digest, name: str | None = None) -> FilesystemPendingWrite:
        return FilesystemPendingWrite(self, digest, name)

    def fill_paths(self, key: str) -> tuple[Path, Path, Path]:
        """Return the lock file, data file and size file that worker processes share for one fill."""
        base = self._tmp / f"fill-{key}"
        return base.with_suffix(".lock"), base, base.with_suffix(".size")

    async def write_stream(self, digest: Digest, chunks: AsyncIterable[bytes], expected_size: int | None = None) -> int:
        pending_write = self.begin_write(digest)
        try:
            batch: list[bytes] = []
            batch_size = 0
            async for chunk in chunks:
                batch.append(chunk)
                batch_size += len(chunk)
                if batch_size >= _WRITE_BATCH:
                    await pending_write.write(b"".join(batch))
                    batch, batch_size = [], 0
            if batch:
                await pending_write.write(b"".join(batch))
            return await pending_write.commit(expected_size)
        except BaseException:
            await pending_write.abort()
            raise

    def _publish(self, tmp_path: Path, digest: Digest) -> None:
        """Rename verified, synced content into place and sync the directory entry."""
        final = self._path(digest)
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(tmp_path, final)
        dir_fd = os.open(final.parent, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)

    async def delete(self, digest: Digest) -> None:
        self._path(digest).unlink(missing_ok=True)

    # Uploads

    def _upload_path(self, upload_id: str) -> Path:
        return self._uploads / upload_id

    async def upload_create(self, upload_id: str) -> None:
        self._upload_path(upload_id).touch(exist_ok=False)
        self._upload_hashers[upload_id] = (0, hashlib.sha256())

    async def upload_size(self, upload_id: str) -> int | None:
        try:
            return os.stat(self._upload_path(upload_id)).st_size
        except FileNotFoundError:
            return None

    async def upload_append(
        self, upload_id: str, chunks: AsyncIterable[bytes], expected_length: int | None = None
    ) -> int:
        path = self._upload_path(upload_id)
        handle = await asyncio.to_thread(open, path, "ab")
        try:
            start = handle.tell()
            hashed = self._upload_hashers.pop(upload_id, None)
            hasher = hashed[1] if hashed is not None and hashed[0] == start else None
            size = start
            pending: list[bytes] = []
            pending_size = 0
            async for chunk in chunks:
                if hasher is not None:
                    hasher.update(chunk)
                size += len(chunk)
                pending.append(chunk)
                pending_size += len(chunk)
                if pending_size >= _WRITE_BATCH:
                    await asyncio.to_thread(handle.write, b"".join(pending))
                    pending, pending_size = [], 0
            if pending:
                await asyncio.to_thread(handle.write, b"".join(pending))
            if expected_length is not None and size - start != expected_length:
                raise SizeMismatch(expected_length, size - start)
            await asyncio.to_thread(handle.flush)
        except BaseException:
            # A broken chunk leaves the file longer than the session records. Cut it back,
            # so the client can resend the chunk from the last acknowledged offset.
            handle.truncate(start)
            raise
        finally:
            handle.close()
        if hasher is not None:
            self._upload_hashers[upload_id] = (size, hasher)
        return size

    async def upload_commit(self, upload_id: str, digest: Digest, expected_size: int | None = None) -> int:
        path = self._upload_path(upload_id)
        hashed = self._upload_hashers.get(upload_id)
        size = os.stat(path).st_size
        if expected_size is not None and size != expected_size:
            raise SizeMismatch(expected_size, size)
        if digest.algorithm == "sha256" and hashed is not None and hashed[0] == size:
            actual = Digest("sha256", hashed[1].hexdigest())
        else:
            actual = await asyncio.to_thread(_hash_file, path, digest.algorithm)
        if actual != digest:
            raise DigestMismatch(digest, actual)
        await asyncio.to_thread(_sync_file, path)
        if await self.size(digest) is None:
            await asyncio.to_thread(self._publish, path, digest)
        else:
            path.unlink(missing_ok=True)
        self._upload_hashers.pop(upload_id, None)
        return size

    async def upload_delete(self, upload_id: str) -> None:
        self._upload_hashers.pop(upload_id, None)
        self._upload_path(upload_id).unlink(missing_ok=True)

    async def upload_ids(self) -> list[str]:
        return [path.name for path in self._uploads.iterdir()]


class FilesystemPendingWrite:
    """Content being written to a temporary file, hashed as it arrives.

    `path` may be opened for reading while the write goes on, which is how readers
    follow a blob that is still being fetched from an upstream. `written` counts the
    bytes already in that file, and `on_written` receives each new count.
    """

    def __init__(self, store: FilesystemStore, digest: Digest, name: str | None = None) -> None:
        self.store = store
        self.digest = digest
        self._hasher = digest.hasher()
        if name is None:
            fd, path = tempfile.mkstemp(dir=store._tmp)
        else:
            # A fixed name that other processes can follow; the caller holds a lock on it.
            path = str(store._tmp / name)
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        self._fd: int | None = fd
        self._pipeline: WritePipeline | None = None
        self._pipeline_start = 0
        self.path = Path(path)
        self.size = 0
        self.written = 0
        self.on_written: Callable[[int], None] | None = None

    def _write_sync(self, data: bytes) -> None:
        assert self._fd is not None
        write_all(self._fd, data)
        self._hasher.update(data)

    def _count_written(self, written: int) -> None:
        self.written = written
        if self.on_written is not None:
            self.on_written(written)

    async def write(self, data: bytes) -> None:
        """Append `data`, waiting only while the writing and hashing threads are behind.

        Small content is written in one thread hand-off per call. From the first large
        chunk on, a `WritePipeline` writes and hashes on two threads of its own, so this
        returns before the bytes reach the file: `written` and `on_written` report them.
        """
        if self._pipeline is None and len(data) < _PIPELINE_MIN:
            await asyncio.to_thread(self._write_sync, data)
            self.size += len(data)
            self._count_written(self.size)
            return
        if self._pipeline is None:
            assert self._fd is not None
            self._pipeline_start = self.size
            self._pipeline = WritePipeline(self._fd, self._hasher, self._on_pipeline_written)
        await self._pipeline.submit(data)
        self.size += len(data)

    def _on_pipeline_written(self, written_by_pipeline: int) -> None:
        self._count_written(self._pipeline_start + written_by_pipeline)

    async def verify(self, expected_size: int | None = None) -> None:
        """Wait for pending writes, then check size and digest; raise DigestMismatch or SizeMismatch."""
        if self._pipeline is not None:
            await self._pipeline.drain()
        if expected_size is not None and self.size != expected_size:
            raise SizeMismatch(expected_size, self.size)
        actual = Digest(self.digest.algorithm, self._hasher.hexdigest())
        if actual != self.digest:
            raise DigestMismatch(self.digest, actual)

    async def commit(self, expected_size: int | None = None) -> int:
        """Verify size and digest, sync, and make the content visible under its digest."""
        await self.verify(expected_size)
        await self._stop_pipeline()
        fd = self._fd
        assert fd is not None
        await asyncio.to_thread(os.fsync, fd)
        os.close(fd)
        self._fd = None
        await asyncio.to_thread(self.store._publish, self.path, self.digest)
        return self.size

    async def abort(self) -> None:
        await self._stop_pipeline()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        self.path.unlink(missing_ok=True)

    async def _stop_pipeline(self) -> None:
        # The writing thread must stop before the descriptor closes, or it could write to a reused descriptor number.
        if self._pipeline is not None:
            await self._pipeline.close()


def _sync_file(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _hash_file(path: Path, algorithm: str) -> Digest:
    hasher = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(_READ_CHUNK):
            hasher.update(chunk)
    return Digest(algorithm, hasher.hexdigest())
