"""Zero-copy file responses that work on any event loop.

uvloop, which Docket runs on for its request rate, does not implement
`loop.sendfile`, so aiohttp's FileResponse falls back to reading the file into
memory. This response instead calls `os.sendfile` from a dedicated thread pool:
the socket stays non-blocking, the thread waits for it to become writable with
`poll`, and the kernel copies file pages straight to the socket.
"""

from __future__ import annotations

import asyncio
import errno
import os
import select
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from aiohttp import web
from aiohttp.abc import AbstractStreamWriter

# Threads mostly sleep in poll() or sendfile() with the GIL released. The pool size
# bounds how many blob bodies are in flight at once, not CPU use.
SENDFILE_THREADS = 64
# A client that accepts no bytes for this long is dropped, freeing the thread.
CLIENT_STALL_TIMEOUT = 120.0
_CHUNK = 1 << 20
# Bodies up to this size are read and written directly instead of with sendfile.
SMALL_BODY = 64 * 1024

_executor: ThreadPoolExecutor | None = None


def _pool() -> ThreadPoolExecutor:
    global _executor
    if _executor is None:
        _executor = ThreadPoolExecutor(max_workers=SENDFILE_THREADS, thread_name_prefix="docket-sendfile")
    return _executor


def _sendfile_blocking(socket_fd: int, file_fd: int, offset: int, count: int) -> None:
    poller = select.poll()
    poller.register(socket_fd, select.POLLOUT)
    while count > 0:
        try:
            sent = os.sendfile(socket_fd, file_fd, offset, min(count, 1 << 30))
        except BlockingIOError:
            if not poller.poll(CLIENT_STALL_TIMEOUT * 1000):
                raise TimeoutError(f"client accepted no data for {CLIENT_STALL_TIMEOUT:.0f}s") from None
            continue
        except OSError as error:
            if error.errno == errno.EINTR:
                continue
            raise
        if sent == 0:
            raise ConnectionResetError("file ended before the announced length was sent")
        offset += sent
        count -= sent


class FileRangeResponse(web.StreamResponse):
    """Send `count` bytes of an open file starting at `offset`; headers are set by the caller.

    The file is opened when the response is created (`FileRangeResponse.open`), so a
    file deleted afterwards is still sent whole, and a missing one is known before
    any header goes out.
    """

    def __init__(self, file_fd: int, offset: int, count: int, *, status: int = 200, headers: dict[str, str]) -> None:
        super().__init__(status=status, headers=headers)
        self.file_fd: int | None = file_fd
        self.offset = offset
        self.count = count
        self.content_length = count

    @classmethod
    def open(
        cls, path: Path, offset: int, count: int, *, status: int = 200, headers: dict[str, str]
    ) -> FileRangeResponse:
        """Open `path` and build the response; raises FileNotFoundError if it is gone."""
        return cls(os.open(path, os.O_RDONLY), offset, count, status=status, headers=headers)

    def __del__(self) -> None:
        if self.file_fd is not None:
            os.close(self.file_fd)
            self.file_fd = None

    async def prepare(self, request: web.BaseRequest) -> AbstractStreamWriter | None:
        if self.prepared or self.file_fd is None:
            return await super().prepare(request)
        file_fd = self.file_fd
        try:
            writer = await super().prepare(request)
            assert writer is not None
            if request.method != "HEAD" and self.count:
                await self._send_body(request, writer, file_fd)
            await super().write_eof()
            return writer
        finally:
            self.file_fd = None
            os.close(file_fd)

    async def _send_body(self, request: web.BaseRequest, writer: AbstractStreamWriter, file_fd: int) -> None:
        await send_file_range(request, writer, file_fd, self.offset, self.count)


async def send_file_range(
    request: web.BaseRequest, writer: AbstractStreamWriter, file_fd: int, offset: int, count: int
) -> None:
    """Send `count` bytes of `file_fd` from `offset` on a prepared response, with sendfile where possible."""
    transport = request.transport
    if transport is None:
        raise ConnectionResetError("connection lost")
    if count <= SMALL_BODY:
        # A thread hand-off costs more than copying a few pages from the page cache.
        await writer.write(os.pread(file_fd, count, offset))
        return
    sock = transport.get_extra_info("socket")
    if sock is None or not hasattr(os, "sendfile"):
        await _send_by_reading(writer, file_fd, offset, count)
        return
    # Headers and earlier writes sit in the transport's buffer; they must reach the socket first.
    await writer.drain()
    while transport.get_write_buffer_size():
        await asyncio.sleep(0.001)
    # The event loop closes its descriptor when the client goes away. A duplicate
    # keeps the socket itself alive, so the thread can never write into a
    # descriptor number that was reused for another connection.
    socket_fd = os.dup(sock.fileno())
    loop = asyncio.get_running_loop()
    try:
        await loop.run_in_executor(_pool(), _sendfile_blocking, socket_fd, file_fd, offset, count)
    except (BrokenPipeError, TimeoutError) as error:
        raise ConnectionResetError(f"client connection ended during the body: {error}") from None
    finally:
        os.close(socket_fd)


async def _send_by_reading(writer: AbstractStreamWriter, file_fd: int, offset: int, remaining: int) -> None:
    while remaining > 0:
        chunk = await asyncio.to_thread(os.pread, file_fd, min(_CHUNK, remaining), offset)
        if not chunk:
            raise ConnectionResetError("file ended before the announced length was sent")
        await writer.write(chunk)
        offset += len(chunk)
        remaining -= len(chunk)
