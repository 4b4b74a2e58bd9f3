"""GET, HEAD and DELETE of blobs."""

from __future__ import annotations

import logging
import os
from pathlib import Path

from aiohttp import web

from docket.api.context import cache_of, registry_of, target_of, touch
from docket.api.ranges import ByteRange, RangeNotSatisfiable, parse_range
from docket.api.responses import empty_response
from docket.api.sendfile import FileRangeResponse, send_file_range
from docket.cache.blobs import LocalBlob
from docket.cache.fills import BlobFill, FillFailed, FillGone
from docket.cache.rules import CacheTarget
from docket.errors import ErrorCode, RegistryError
from docket.oci.digest import Digest
from docket.registry.blobs import blob_unknown

log = logging.getLogger(__name__)


def _blob_headers(digest: Digest) -> dict[str, str]:
    return {
        "Docker-Content-Digest": str(digest),
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000, immutable",
    }


def _requested_range(request: web.Request, digest: Digest, size: int) -> ByteRange | None:
    try:
        return parse_range(request.headers.get("Range"), size)
    except RangeNotSatisfiable as error:
        raise RegistryError(
            ErrorCode.RANGE_INVALID,
            f"range {request.headers.get('Range')!r} is outside blob {digest} of {size} bytes",
            headers={"Content-Range": error.content_range()},
        ) from None


def _file_response(path: Path, size: int, byte_range: ByteRange | None, headers: dict[str, str]) -> web.StreamResponse:
    """Build a sendfile response; raises FileNotFoundError if the blob was deleted meanwhile."""
    if byte_range is None:
        return FileRangeResponse.open(path, 0, size, headers=headers)
    headers["Content-Range"] = byte_range.content_range()
    return FileRangeResponse.open(path, byte_range.start, byte_range.length, status=206, headers=headers)


async def blob_get(request: web.Request, name: str, digest_text: str) -> web.StreamResponse:
    digest = Digest.parse(digest_text)
    touch(request, str(digest))
    target = target_of(request)
    if target is not None:
        return await _cached_blob_get(request, target, digest)
    registry = registry_of(request)
    size = await registry.blobs.size(name, digest)
    headers = _blob_headers(digest)
    if request.method == "HEAD":
        response = web.Response(status=200, headers=headers)
        response.headers["Content-Length"] = str(size)
        return response

    byte_range = _requested_range(request, digest, size)
    path = registry.blobs.local_path(digest)
    if path is None:
        return await _stream_blob(request, digest, size, byte_range, headers)
    try:
        return _file_response(path, size, byte_range, headers)
    except FileNotFoundError:
        registry.blobs.forget(name, digest)
        raise blob_unknown(name, digest) from None


async def _cached_blob_get(request: web.Request, target: CacheTarget, digest: Digest) -> web.StreamResponse:
    cache = cache_of(request)
    headers = _blob_headers(digest)
    if request.method == "HEAD":
        size = await cache.blobs.size(target, digest)
        response = web.Response(status=200, headers=headers)
        response.headers["Content-Length"] = str(size)
        return response
    for _attempt in range(2):
        source = await cache.blobs.open(target, digest)
        try:
            if not isinstance(source, LocalBlob):
                return await _serve_fill(request, source, digest, dict(headers))
            byte_range = _requested_range(request, digest, source.size)
            return _file_response(source.path, source.size, byte_range, dict(headers))
        except (FileNotFoundError, FillGone):
            # Evicted between the lookup and the open: fetch it again.
            cache.blobs.forget(target, digest)
    raise RegistryError(ErrorCode.UNAVAILABLE, f"blob {digest} keeps disappearing from the store", status=503)


async def _serve_fill(
    request: web.Request, fill: BlobFill, digest: Digest, headers: dict[str, str]
) -> web.StreamResponse:
    """Stream a blob from a fill in progress; cut the connection if the fill fails.

    Raises FileNotFoundError or FillGone, before any header is sent, if the blob left the store.
    """
    if fill.size is None:
        # The upstream sent no Content-Length: wait for the whole verified blob.
        await fill.finished.wait()
        path = fill.content.local_path(digest)
        size = await fill.content.size(digest)
        if not fill.verified or path is None or size is None:
            raise RegistryError(ErrorCode.UNAVAILABLE, f"fetching blob {digest} failed: {fill.error}", status=502)
        return _file_response(path, size, _requested_range(request, digest, size), headers)
    size = fill.size
    byte_range = _requested_range(request, digest, size)
    start, end, status = 0, size - 1, 200
    if byte_range is not None:
        start, end, status = byte_range.start, byte_range.end, 206
        headers["Content-Range"] = byte_range.content_range()
    try:
        file_fd = fill.open_reader()
    except FillGone:
        raise
    except FillFailed as error:
        raise RegistryError(ErrorCode.UNAVAILABLE, f"fetching blob {digest} failed: {error}", status=502) from None
    try:
        response = web.StreamResponse(status=status, headers=headers)
        response.content_length = end - start + 1
        writer = await response.prepare(request)
        assert writer is not None
        try:
            async for span_fd, offset, count in fill.spans(file_fd, start, end):
                await send_file_range(request, writer, span_fd, offset, count)
        except FillFailed as error:
            # Cutting the connection is the only way to tell the client that the body
            # it is receiving is wrong; it gets fewer bytes than Content-Length.
            log.warning("aborted response for blob %s after the fill failed: %s", digest, error)
            if request.transport is not None:
                request.transport.abort()
            return response
        await response.write_eof()
        return response
    finally:
        os.close(file_fd)


async def _stream_blob(
    request: web.Request, digest: Digest, size: int, byte_range: ByteRange | None, headers: dict[str, str]
) -> web.StreamResponse:
    """Send a blob from a store without local files, such as object storage."""
    registry = registry_of(request)
    start, end = (0, size - 1)
    status = 200
    if byte_range is not None:
        start, end, status = byte_range.start, byte_range.end, 206
        headers["Content-Range"] = byte_range.content_range()
    response = web.StreamResponse(status=status, headers=headers)
    response.content_length = end - start + 1
    await response.prepare(request)
    if end >= start:
        async for chunk in registry.content.read_range(digest, start, end):
            await response.write(chunk)
    await response.write_eof()
    return response


async def blob_delete(request: web.Request, name: str, digest_text: str) -> web.StreamResponse:
    digest = Digest.parse(digest_text)
    if target_of(request) is not None:
        raise RegistryError(ErrorCode.DENIED, f"{name} is a pull-through cache; its blobs cannot be deleted")
    await registry_of(request).blobs.delete(name, digest)
    return empty_response(202, {"Docker-Content-Digest": str(digest)})
