"""Blob upload sessions: monolithic, chunked and single-request uploads."""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import AsyncIterable

from docket.errors import ErrorCode, RegistryError
from docket.metadata.base import MetadataStore
from docket.oci.digest import Digest
from docket.storage.base import ContentStore, DigestMismatch, SizeMismatch
from docket.storage.guard import ContentGuard

log = logging.getLogger(__name__)


class RangeMismatch(RegistryError):
    """A chunk does not start where the upload ends; the client must resume at `size`."""

    def __init__(self, upload_id: str, size: int, start: int) -> None:
        super().__init__(
            ErrorCode.RANGE_INVALID,
            f"chunk starts at byte {start} but upload {upload_id} has {size} bytes; "
            f"send the next chunk from byte {size}",
        )
        self.size = size


def _mismatch_error(error: DigestMismatch | SizeMismatch) -> RegistryError:
    if isinstance(error, DigestMismatch):
        return RegistryError(
            ErrorCode.DIGEST_INVALID, f"uploaded content has digest {error.actual}, expected {error.expected}"
        )
    return RegistryError(ErrorCode.SIZE_INVALID, f"uploaded content is {error.actual} bytes, expected {error.expected}")


class Uploads:
    def __init__(self, content: ContentStore, metadata: MetadataStore, guard: ContentGuard) -> None:
        self.content = content
        self.metadata = metadata
        self.guard = guard
        # One request at a time per session, so two chunks for the same offset
        # cannot both pass the offset check. NOTE: this serializes within one process only.
        self._locks: dict[str, asyncio.Lock] = {}

    def _lock(self, upload_id: str) -> asyncio.Lock:
        lock = self._locks.get(upload_id)
        if lock is None:
            lock = self._locks[upload_id] = asyncio.Lock()
        return lock

    async def remove_orphans(self) -> None:
        """Delete upload data whose session row is gone (a crash between the two deletes)."""
        known = await self.metadata.upload_ids()
        for upload_id in await self.content.upload_ids():
            if upload_id not in known:
                await self.content.upload_delete(upload_id)
                log.info("removed data of upload %s, which has no session", upload_id)

    async def start(self, repository: str) -> str:
        upload_id = uuid.uuid4().hex
        await self.content.upload_create(upload_id)
        await self.metadata.upload_create(upload_id, repository)
        return upload_id

    async def size(self, repository: str, upload_id: str) -> int:
        """Return the bytes received, raising BLOB_UPLOAD_UNKNOWN for a session not in `repository`."""
        owner = await self.metadata.upload_repository(upload_id) if _is_upload_id(upload_id) else None
        size = await self.content.upload_size(upload_id) if owner == repository else None
        if size is None:
            raise RegistryError(
                ErrorCode.BLOB_UPLOAD_UNKNOWN, f"upload {upload_id[:80]!r} is not known in repository {repository}"
            )
        return size

    async def append(
        self,
        repository: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        start: int | None,
        length: int | None,
    ) -> int:
        """Append one chunk; `start` is the first byte's offset from Content-Range, if sent."""
        async with self._lock(upload_id):
            return await self._append_locked(repository, upload_id, chunks, start, length)

    async def _append_locked(
        self,
        repository: str,
        upload_id: str,
        chunks: AsyncIterable[bytes],
        start: int | None,
        length: int | None,
    ) -> int:
        size = await self.size(repository, upload_id)
        if start is not None and start != size:
            raise RangeMismatch(upload_id, size, start)
        try:
            new_size = await self.content.upload_append(upload_id, chunks, length)
        except SizeMismatch as error:
            raise RegistryError(
                ErrorCode.SIZE_INVALID,
                f"chunk is {error.actual} bytes but its range or Content-Length says {error.expected}",
            ) from None
        await self.metadata.upload_touch(upload_id)
        return new_size

    async def finish(
        self,
        repository: str,
        upload_id: str,
        digest: Digest,
        chunks: AsyncIterable[bytes] | None,
        start: int | None,
        length: int | None,
    ) -> int:
        """Append the final chunk if any, verify the digest and commit the blob."""
        if chunks is not None:
            await self.append(repository, upload_id, chunks, start, length)
        else:
            await self.size(repository, upload_id)
        async with self.guard.writing():
            try:
                size = await self.content.upload_commit(upload_id, digest)
            except (DigestMismatch, SizeMismatch) as error:
                raise _mismatch_error(error) from None
            await self.metadata.blob_link(repository, str(digest), size)
        await self.metadata.upload_delete(upload_id)
        self._locks.pop(upload_id, None)
        return size

    async def cancel(self, repository: str, upload_id: str) -> None:
        await self.size(repository, upload_id)
        await self.metadata.upload_delete(upload_id)
        await self.content.upload_delete(upload_id)
        self._locks.pop(upload_id, None)

    async def put_whole(self, repository: str, digest: Digest, chunks: AsyncIterable[bytes], length: int | None) -> int:
        """Store a blob sent whole in one request (POST with `?digest=`)."""
        pending = self.content.begin_write(digest)
        try:
            async for chunk in chunks:
                await pending.write(chunk)
            async with self.guard.writing():
                size = await pending.commit(length)
                await self.metadata.blob_link(repository, str(digest), size)
        except (DigestMismatch, SizeMismatch) as error:
            await pending.abort()
            raise _mismatch_error(error) from None
        except BaseException:
            await pending.abort()
            raise
        return size


def _is_upload_id(text: str) -> bool:
    return len(text) == 32 and all(c in "0123456789abcdef" for c in text)
