"""A counter shared by the worker processes of one server, bumped when memory goes stale.

Each worker keeps manifests and blob links in memory. A worker that deletes a
manifest or unlinks a blob bumps the counter after the database change, and every
worker compares the counter with the value it last saw before it trusts its memory.
Reading the counter is one read of a shared memory page, so checking it on every
request costs far less than asking the database.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

_SIZE = 8


class SharedGeneration:
    """A 64-bit counter in a memory-mapped file, or in private memory without a path."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path
        if path is None:
            self._memory: mmap.mmap | bytearray = bytearray(_SIZE)
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < _SIZE:
                os.ftruncate(fd, _SIZE)
            self._memory = mmap.mmap(fd, _SIZE)
        finally:
            os.close(fd)

    def current(self) -> int:
        return int.from_bytes(self._memory[:_SIZE], "little")

    def bump(self) -> None:
        """Change the counter, so every process drops what it remembers.

        Two processes that bump at once may write the same value. That is harmless:
        each of them has dropped its own entries, and the value still differs from
        the one every other process saw before both changes.
        """
        self._memory[:_SIZE] = ((self.current() + 1) % (1 << 64)).to_bytes(_SIZE, "little")


class Observer:
    """The last value of a `SharedGeneration` that one cache has seen."""

    def __init__(self, generation: SharedGeneration) -> None:
        self.generation = generation
        self._seen = generation.current()

    def changed(self) -> bool:
        """Return whether the counter changed since the last call, however many times it changed."""
        current = self.generation.current()
        if current == self._seen:
            return False
        self._seen = current
        return True
