"""Mutual exclusion between writers of content and the garbage collector.

Writing content and recording it in the metadata are two steps. Without a guard,
the collector could find a blob unreferenced between them (or delete a file that
a writer is about to claim as already stored) and lose pushed data. Writers hold
the guard shared for both steps. The collector holds it exclusively while it
re-checks references and deletes, in small batches so writers wait only briefly.
With a lock file, the guard also covers the worker processes of one server: each
holder takes a shared or exclusive `flock` on it. `docket gc` runs inside the
server (or with the server stopped), never beside it as a separate process.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

_POLL_MIN = 0.001
_POLL_MAX = 0.05


class ContentGuard:
    def __init__(self, lock_path: Path | None = None) -> None:
        self.lock_path = lock_path
        self._condition = asyncio.Condition()
        self._writers = 0
        self._collecting = False

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        async with self._condition:
            await self._condition.wait_for(lambda: not self._collecting)
            self._writers += 1
        try:
            async with self._file_lock(fcntl.LOCK_SH):
                yield
        finally:
            async with self._condition:
                self._writers -= 1
                self._condition.notify_all()

    @asynccontextmanager
    async def collecting(self) -> AsyncIterator[None]:
        async with self._condition:
            await self._condition.wait_for(lambda: not self._collecting and self._writers == 0)
            self._collecting = True
        try:
            async with self._file_lock(fcntl.LOCK_EX):
                yield
        finally:
            async with self._condition:
                self._collecting = False
                self._condition.notify_all()

    @asynccontextmanager
    async def _file_lock(self, mode: int) -> AsyncIterator[None]:
        """Hold `flock(mode)` on the lock file, polling so the event loop never blocks."""
        if self.lock_path is None:
            yield
            return
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            delay = _POLL_MIN
            while True:
                try:
                    fcntl.flock(fd, mode | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _POLL_MAX)
            yield
        finally:
            os.close(fd)
