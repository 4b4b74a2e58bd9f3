"""Mutual exclusion between writers of content and the garbage collector.

Writing content and recording it in the metadata are two steps. Without a guard,
the collector could find a blob unreferenced between them (or delete a file that
a writer is about to claim as already stored) and lose pushed data. Writers hold
the guard shared for both steps. The collector holds it exclusively while it
re-checks references and deletes, in small batches so writers wait only briefly.

A waiting collector goes before writers that arrive after it. Without that rule,
a steady stream of pushes keeps the shared hold alive and the collector never
runs. Inside one process a counter of waiting collectors enforces the order.
Across the worker processes of one server a second lock file, the turnstile,
enforces it: a writer passes the turnstile (a brief shared `flock`) before it
takes the content lock shared, and a collector holds the turnstile exclusively
while it waits for the content lock, so no new writer gets past it.
`docket gc` runs inside the server (or with the server stopped), never beside it
as a separate process.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path

_POLL_MIN = 0.001
_POLL_MAX = 0.05


class ContentGuard:
    def __init__(self, lock_path: Path | None = None) -> None:
        self.lock_path = lock_path
        self.turnstile_path = lock_path.with_name(lock_path.name + ".turnstile") if lock_path else None
        self._condition = asyncio.Condition()
        self._writers = 0
        self._collectors_waiting = 0
        self._collecting = False

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        async with self._condition:
            await self._condition.wait_for(lambda: not self._collecting and self._collectors_waiting == 0)
            self._writers += 1
        try:
            async with AsyncExitStack() as held:
                async with self._file_lock(self.turnstile_path, fcntl.LOCK_SH):
                    await held.enter_async_context(self._file_lock(self.lock_path, fcntl.LOCK_SH))
                yield
        finally:
            async with self._condition:
                self._writers -= 1
                self._condition.notify_all()

    @asynccontextmanager
    async def collecting(self) -> AsyncIterator[None]:
        async with self._condition:
            self._collectors_waiting += 1
            try:
                await self._condition.wait_for(lambda: not self._collecting and self._writers == 0)
            finally:
                self._collectors_waiting -= 1
                self._condition.notify_all()
            self._collecting = True
        try:
            async with (
                self._file_lock(self.turnstile_path, fcntl.LOCK_EX),
                self._file_lock(self.lock_path, fcntl.LOCK_EX),
            ):
                yield
        finally:
            async with self._condition:
                self._collecting = False
                self._condition.notify_all()

    @asynccontextmanager
    async def _file_lock(self, path: Path | None, mode: int) -> AsyncIterator[None]:
        """Hold `flock(mode)` on a lock file, polling with non-blocking attempts so the event loop keeps running."""
        if path is None:
            yield
            return
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
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
