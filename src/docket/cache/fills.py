"""Blob fills: one upstream download per missing blob, read by every waiting client.

A fill streams the upstream body into a temporary file of the content store.
Clients read that file as it grows, so they get bytes as soon as they arrive
instead of waiting for the whole blob, and any number of clients share one
upstream request. The final byte of every response is held back until the
digest and size are verified: when verification fails the client's connection
is cut short, so it gets an error rather than wrong bytes.

The fill runs in its own task, independent of the clients: a client that
disconnects does not cancel it. A failed fill removes its temporary file and
leaves nothing behind; the next request starts a new one.

Worker processes share fills too. The process that takes the fill's file lock
downloads into a temporary file with a fixed name. The others follow that file's
growth until the lock is released, then take the stored blob (or fail).
"""

from __future__ import annotations

import asyncio
import fcntl
import hashlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path

import aiohttp

from docket import metrics
from docket.cache.rules import CacheTarget
from docket.oci.digest import Digest
from docket.storage.base import ContentStore, PendingWrite
from docket.storage.guard import ContentGuard
from docket.upstream.client import UpstreamClient
from docket.upstream.errors import UpstreamError, UpstreamUnavailable

log = logging.getLogger(__name__)

_READ_CHUNK = 1 << 20
_UPSTREAM_CHUNK = 1 << 20
# How often a process following another worker's download looks for new bytes.
_FOLLOW_POLL_MIN = 0.002
_FOLLOW_POLL_MAX = 0.05


def _open_lock(path: Path) -> tuple[int, bool]:
    """Open the fill's lock file and try to take it; return the descriptor and whether it is held.

    A leader deletes the lock file when it is done, so a lock taken on a file that
    is no longer at `path` is worthless: open the path again.
    """
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        if not _try_lock(fd):
            return fd, False
        try:
            same = os.stat(path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd, True
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


class FillFailed(Exception):
    """The fill a client was reading from failed; the client's response must be aborted."""


class FillGone(FillFailed):
    """The fill's file is gone: it was committed and then evicted or collected. Opening the blob again works."""


class BlobFill:
    def __init__(
        self,
        client: UpstreamClient,
        target: CacheTarget,
        digest: Digest,
        content: ContentStore,
        on_commit: Callable[[int], Awaitable[None]],
        guard: ContentGuard,
    ) -> None:
        self.guard = guard
        self.client = client
        self.target = target
        self.digest = digest
        self.content = content
        self.on_commit = on_commit
        self.size: int | None = None
        self.received = 0
        self.committed = False
        """The verified content is stored under its digest."""
        self.content_verified = False
        """Size and digest checked: readers may send the final byte."""
        self.verified = False
        """Stored and linked: the next request is a cache hit."""
        self.error: BaseException | None = None
        self.started = asyncio.Event()
        """Set once the upstream responded (or failed), so `size` is known."""
        self.finished = asyncio.Event()
        self._progress = asyncio.Event()
        self._pending: PendingWrite | None = None
        self._read_path: Path | None = None
        self.readers = 0
        self.followed = False
        """Another worker process downloads the blob, and this fill follows its file."""
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.create_task(self._run(), name=f"fill {self.target.repository}@{self.digest}")

    def _notify(self) -> None:
        self._progress.set()
        self._progress = asyncio.Event()

    async def _run(self) -> None:
        paths = self.content.fill_paths(self._key())
        try:
            if paths is None:
                await self._lead(None)
                return
            for _election in range(3):
                lock_fd, leading = _open_lock(paths[0])
                try:
                    if leading:
                        await self._lead(paths)
                        # Remove the lock file while still holding it; followers keep
                        # their descriptors and see the lock released when it closes.
                        paths[0].unlink(missing_ok=True)
                        return
                    # Another worker process is downloading this blob: follow its file.
                    if await self._follow(lock_fd, paths[1], paths[2]):
                        return
                    self.followed = False  # the other process never started, so this one leads after all
                finally:
                    os.close(lock_fd)
            self._fail(UpstreamUnavailable(self.client.name, "could not coordinate the download between workers"))
        finally:
            self.started.set()
            self.finished.set()
            self._notify()

    def _key(self) -> str:
        return hashlib.sha256(f"{self.target.repository}\0{self.digest}".encode()).hexdigest()[:40]

    async def _lead(self, paths: tuple[Path, Path, Path] | None) -> None:
        """Download the blob from the upstream, as the only process doing so."""
        upstream_repository = self.target.upstream_repository
        size_path = paths[2] if paths is not None else None
        metrics.FILLS_IN_PROGRESS.inc()
        try:
            async with self.client.blob_get(upstream_repository, str(self.digest)) as response:
                self.size = response.content_length
                self._pending = self.content.begin_write(self.digest, paths[1].name if paths is not None else None)
                self._read_path = self._pending.path
                if size_path is not None:
                    size_path.write_text(str(-1 if self.size is None else self.size))
                self.started.set()
                await self._receive(response, self._pending)
            # Clients may finish as soon as the bytes are verified; making the file
            # durable (fsync) and visible under its digest follows without them.
            await self._pending.verify(self.size)
            self.content_verified = True
            self._notify()
            async with self.guard.writing():
                await self._pending.commit(self.size)
                self.committed = True
                # Link before releasing the final byte, so a client that got the whole
                # blob finds it cached on its next request.
                await self.on_commit(self.received)
            self.verified = True
            self._notify()
            log.info(
                "cached blob %s in %s from upstream %s (%d bytes)",
                self.digest,
                self.target.repository,
                self.client.name,
                self.received,
            )
        except (aiohttp.ClientError, TimeoutError) as error:
            self._fail(UpstreamUnavailable(self.client.name, f"blob body failed: {type(error).__name__}: {error}"))
        except UpstreamError as error:
            self._fail(error)
        except Exception as error:  # DigestMismatch, SizeMismatch, OSError, metadata errors
            self._fail(error)
        except asyncio.CancelledError:
            self._fail(UpstreamUnavailable(self.client.name, "fill cancelled at shutdown"))
            raise
        finally:
            metrics.FILLS_IN_PROGRESS.dec()
            if not self.committed and self._pending is not None:
                await self._pending.abort()
            if size_path is not None:
                size_path.unlink(missing_ok=True)

    async def _receive(self, response: aiohttp.ClientResponse, pending: PendingWrite) -> None:
        """Copy the upstream body into the temporary file.

        The store writes and hashes in threads while the next chunks arrive, and
        reports each new file size, which wakes the readers.
        """
        pending.on_written = self._on_written
        async for chunk in response.content.iter_chunked(_UPSTREAM_CHUNK):
            metrics.UPSTREAM_BYTES.labels(self.client.name).inc(len(chunk))
            await pending.write(chunk)

    def _on_written(self, written: int) -> None:
        self.received = written
        self._notify()

    async def _follow(self, lock_fd: int, data_path: Path, size_path: Path) -> bool:
        """Serve the download another process leads; return False if this process must lead instead."""
        metrics.FILL_WAITERS.inc()
        self.followed = True
        final = self.content.local_path(self.digest)
        delay = _FOLLOW_POLL_MIN
        while not size_path.exists():
            if _try_lock(lock_fd):
                # The leader finished (or failed) before this process looked.
                return await self._adopt_result(final)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _FOLLOW_POLL_MAX)
        try:
            announced = int(size_path.read_text() or "-1")
        except (OSError, ValueError):
            announced = -1
        self.size = announced if announced >= 0 else None
        self._read_path = data_path
        self.started.set()
        delay = _FOLLOW_POLL_MIN
        while True:
            try:
                received = os.stat(data_path).st_size
            except FileNotFoundError:
                received = self.received
            if received != self.received:
                self.received = received
                self._notify()
                delay = _FOLLOW_POLL_MIN
            if _try_lock(lock_fd):
                return await self._adopt_result(final)
            await asyncio.sleep(delay)
            delay = min(delay * 2, _FOLLOW_POLL_MAX)

    async def _adopt_result(self, final: Path | None) -> bool:
        """After the leading process let go: take its stored blob, or report that it failed."""
        size = await self.content.size(self.digest)
        if size is None or final is None:
            if self._read_path is None:
                return False  # it never started; lead the download here
            self._fail(UpstreamUnavailable(self.client.name, "the worker process downloading the blob failed"))
            return True
        self.received = size
        self.size = size if self.size is None else self.size
        self._read_path = final
        self.committed = True
        self.content_verified = True
        await self.on_commit(size)
        self.verified = True
        self.started.set()
        self._notify()
        return True

    def _fail(self, error: BaseException) -> None:
        self.error = error
        log.warning(
            "discarded fill of blob %s for %s after %d bytes from upstream %s: %s",
            self.digest,
            self.target.repository,
            self.received,
            self.client.name,
            error,
        )

    def open_reader(self) -> int:
        """Open the file a reader follows, before any response header is sent.

        Raises FillFailed if the fill already failed, and FillGone if its file no longer exists.
        """
        if self.error is not None:
            raise FillFailed(str(self.error))
        return self._open_for_reading()

    async def spans(self, fd: int, start: int, end: int) -> AsyncIterator[tuple[int, int, int]]:
        """Yield (descriptor, offset, length) spans covering bytes `start` to `end` as they arrive.

        `fd` comes from `open_reader` and stays the caller's to close. The final byte is
        released only once the digest is verified.
        """
        self.readers += 1
        try:
            position = start
            while position <= end:
                if self.error is not None:
                    raise FillFailed(str(self.error))
                readable_end = min(end + 1, self.received)
                if not self.content_verified and readable_end == end + 1:
                    readable_end = end  # hold back the final byte until the digest is verified
                if readable_end <= position:
                    if self.finished.is_set() and not self.content_verified:
                        raise FillFailed(str(self.error or "fill ended early"))
                    if self.finished.is_set() and self.received <= position:
                        raise FillFailed(f"blob has {self.received} bytes; byte {position} was requested")
                    await self._progress.wait()
                    continue
                yield fd, position, readable_end - position
                position = readable_end
        finally:
            self.readers -= 1

    def _open_for_reading(self) -> int:
        if self._read_path is None:
            raise FillFailed("the fill has no readable file")
        try:
            return os.open(self._read_path, os.O_RDONLY)
        except FileNotFoundError:
            pass
        # The temporary file was renamed to the stored blob, which happens only after the
        # digest was verified, so the stored file is safe to read even before `committed` is set.
        path = self.content.local_path(self.digest)
        if path is None:
            raise FillFailed("the fill's file disappeared")
        try:
            return os.open(Path(path), os.O_RDONLY)
        except FileNotFoundError:
            if self.committed:
                raise FillGone(f"blob {self.digest} was removed from the store after its fill") from None
            raise FillFailed("the fill's file disappeared") from None


class FillManager:
    """The fills in progress in this process, one per repository and digest."""

    def __init__(self, guard: ContentGuard) -> None:
        self.guard = guard
        self._fills: dict[tuple[str, str], BlobFill] = {}

    def get(self, repository: str, digest: Digest) -> BlobFill | None:
        return self._fills.get((repository, str(digest)))

    def start(
        self,
        client: UpstreamClient,
        target: CacheTarget,
        digest: Digest,
        content: ContentStore,
        on_commit: Callable[[int], Awaitable[None]],
    ) -> BlobFill:
        """Return the fill in progress for this blob, or start one."""
        key = (target.repository, str(digest))
        fill = self._fills.get(key)
        if fill is not None:
            metrics.FILL_WAITERS.inc()
            return fill
        fill = BlobFill(client, target, digest, content, on_commit, self.guard)
        self._fills[key] = fill
        fill.start()
        assert fill.task is not None
        fill.task.add_done_callback(lambda _task: self._fills.pop(key, None))
        return fill

    async def close(self) -> None:
        tasks = [fill.task for fill in self._fills.values() if fill.task is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
