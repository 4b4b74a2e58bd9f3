"""The interface every content store implements.

A content store deals in bytes and digests only. Which repository may see which
digest is metadata, kept elsewhere.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Callable
from pathlib import Path
from typing import Protocol

from docket.oci.digest import Digest


class DigestMismatch(Exception):
    def __init__(self, expected: Digest, actual: Digest) -> None:
        super().__init__(f"content has digest {actual}, expected {expected}")
        self.expected = expected
        self.actual = actual


class SizeMismatch(Exception):
    def __init__(self, expected: int, actual: int) -> None:
        super().__init__(f"content is {actual} bytes, expected {expected}")
        self.expected = expected
        self.actual = actual


class PendingWrite(Protocol):
    """Content being written; nothing is visible under the digest until `commit`."""

    @property
    def path(self) -> Path | None:
        """A file that readers may follow while it grows, or None for stores without local files."""

    @property
    def size(self) -> int:
        """Bytes accepted by `write` so far."""

    @property
    def written(self) -> int:
        """Bytes already in `path`, which readers following it may read."""

    on_written: Callable[[int], None] | None
    """Called on the event loop with the new value of `written` each time it grows."""

    async def write(self, data: bytes) -> None:
        """Accept `data` for appending. It may reach `path` after this returns."""

    async def verify(self, expected_size: int | None = None) -> None:
        """Wait for accepted data, then check size and digest; raise DigestMismatch or SizeMismatch."""

    async def commit(self, expected_size: int | None = None) -> int:
        """Verify size and digest and publish the content; raise DigestMismatch or SizeMismatch."""

    async def abort(self) -> None: ...


class ContentStore(Protocol):
    async def open(self) -> None:
        """Prepare the store and remove temporary files left by an earlier crash."""

    async def ping(self) -> None:
        """Raise if the store cannot be used."""

    async def size(self, digest: Digest) -> int | None:
        """Return the size of committed content, or None if the store does not hold it."""

    def local_path(self, digest: Digest) -> Path | None:
        """Return a file path for zero-copy serving, or None if the store has no local files."""

    async def read(self, digest: Digest) -> bytes:
        """Return the whole content; for manifests and other small objects."""

    def read_range(self, digest: Digest, start: int, end: int) -> AsyncIterator[bytes]:
        """Yield bytes `start` to `end` inclusive."""

    async def write_bytes(self, digest: Digest, data: bytes) -> None:
        """Store `data`, verifying it against `digest` first."""

    def begin_write(self, digest: Digest, name: str | None = None) -> PendingWrite:
        """Start writing content expected to have `digest`, under a fixed temporary `name` if given."""

    def fill_paths(self, key: str) -> tuple[Path, Path, Path] | None:
        """Return (lock, data, size) files for a fill shared between processes, or None if unsupported."""

    async def write_stream(self, digest: Digest, chunks: AsyncIterable[bytes], expected_size: int | None = None) -> int:
        """Store a stream, verifying digest and size before it becomes visible; return the size."""

    async def delete(self, digest: Digest) -> None: ...

    async def upload_create(self, upload_id: str) -> None: ...

    async def upload_size(self, upload_id: str) -> int | None:
        """Return the bytes received so far, or None if the upload does not exist."""

    async def upload_append(
        self, upload_id: str, chunks: AsyncIterable[bytes], expected_length: int | None = None
    ) -> int:
        """Append a chunk and return the new upload size.

        If the chunk is not `expected_length` bytes long, it is removed again and
        SizeMismatch is raised.
        """

    async def upload_commit(self, upload_id: str, digest: Digest, expected_size: int | None = None) -> int:
        """Verify the uploaded data against `digest` and commit it as content; return its size.

        On a mismatch the upload data is kept, so the client may retry the final PUT.
        """

    async def upload_delete(self, upload_id: str) -> None: ...

    async def upload_ids(self) -> list[str]: ...
