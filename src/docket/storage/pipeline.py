"""Writing and hashing a stream of chunks on two threads, beside the event loop.

Handing each chunk to a thread pool and awaiting it costs an event loop round trip
per chunk, and a busy loop (many readers of the same file) makes those trips slow.
A pipeline instead keeps one thread writing and one thread hashing, fed through
queues. The event loop only learns, by a callback, how many bytes the file holds.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import os
import queue
import threading
from collections.abc import Callable

# Chunks accepted but not yet hashed. This bounds the memory a slow disk or hasher can pin.
BACKLOG = 8


def write_all(fd: int, data: bytes) -> None:
    """Write all of `data` to `fd`, continuing after short writes."""
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


class WritePipeline:
    """Two threads that append chunks to a file and hash them, in submission order.

    `written` counts the bytes in the file and `on_written` receives each new count on
    the event loop. Callers must `close` the pipeline before they close `fd`.
    """

    def __init__(
        self,
        fd: int,
        hasher: hashlib._Hash,
        on_written: Callable[[int], None] | None = None,
        backlog: int = BACKLOG,
    ) -> None:
        self._fd = fd
        self._hasher = hasher
        self._on_written = on_written
        self._loop = asyncio.get_running_loop()
        self._space = asyncio.Semaphore(backlog)
        self._drained = asyncio.Event()
        self._drained.set()
        self._to_write: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._to_hash: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
        self._error: OSError | None = None
        self._submitted = 0
        self._hashed = 0
        self.written = 0
        self._threads = [
            threading.Thread(target=self._write_loop, name="docket-write", daemon=True),
            threading.Thread(target=self._hash_loop, name="docket-hash", daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    async def submit(self, data: bytes) -> None:
        """Queue `data` for writing and hashing; wait only while the backlog is full."""
        self.raise_error()
        if not data:
            return
        await self._space.acquire()
        self._submitted += len(data)
        self._drained.clear()
        self._to_write.put(data)

    async def drain(self) -> None:
        """Wait until every submitted byte is written and hashed; raise the first write error."""
        await self._drained.wait()
        self.raise_error()

    def raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    async def close(self) -> None:
        """Stop both threads once the queued chunks are done."""
        self._to_write.put(None)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)

    # The two threads. Results reach the event loop through call_soon_threadsafe.

    def _write_loop(self) -> None:
        while (data := self._to_write.get()) is not None:
            error: OSError | None = None
            if self._error is None:
                try:
                    write_all(self._fd, data)
                except OSError as failure:
                    error = failure
            self._call_on_loop(self._wrote, len(data), error)
            self._to_hash.put(data)
        self._to_hash.put(None)

    def _hash_loop(self) -> None:
        while (data := self._to_hash.get()) is not None:
            self._hasher.update(data)
            self._call_on_loop(self._hashed_chunk, len(data))

    def _call_on_loop(self, callback: Callable[..., None], *arguments: object) -> None:
        # A closed event loop raises RuntimeError. No coroutine waits for the result then, so it is dropped.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *arguments)

    # Callbacks on the event loop.

    def _wrote(self, count: int, error: OSError | None) -> None:
        if error is not None:
            if self._error is None:
                self._error = error
            return
        if self._error is None:
            self.written += count
            if self._on_written is not None:
                self._on_written(self.written)

    def _hashed_chunk(self, count: int) -> None:
        self._hashed += count
        self._space.release()
        if self._hashed == self._submitted:
            self._drained.set()
