"""GET, HEAD and DELETE of blobs."""

from __future__ import annotations

from aiohttp import web

from docket.api.context import registry_of
from docket.api.ranges import ByteRange, RangeNotSatisfiable, parse_range
from docket.api.responses import empty_response
from docket.api.sendfile import FileRangeResponse
from docket.errors import ErrorCode, RegistryError
from docket.oci.digest import Digest


async def blob_get(request: web.Request, name: str, digest_text: str) -> web.StreamResponse:
    registry = registry_of(request)
    digest = Digest.parse(digest_text)
    size = await registry.blobs.size(name, digest)
    headers = {
        "Docker-Content-Digest": str(digest),
        "Accept-Ranges": "bytes",
        "Content-Type": "application/octet-stream",
        "ETag": f'"{digest}"',
        "Cache-Control": "max-age=31536000, immutable",
    }
    if request.method == "HEAD":
        response = web.Response(status=200, headers=headers)
        response.headers["Content-Length"] = str(size)
        return response

    try:
        byte_range = parse_range(request.headers.get("Range"), size)
    except RangeNotSatisfiable as error:
        raise RegistryError(
            ErrorCode.RANGE_INVALID,
            f"range {request.headers.get('Range')!r} is outside blob {digest} of {size} bytes",
            headers={"Content-Range": error.content_range()},
        ) from None

    path = registry.blobs.local_path(digest)
    if path is None:
        return await _stream_blob(request, digest, size, byte_range, headers)
    if byte_range is None:
        return FileRangeResponse(path, 0, size, headers=headers)
    headers["Content-Range"] = byte_range.content_range()
    return FileRangeResponse(path, byte_range.start, byte_range.length, status=206, headers=headers)


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
    await registry_of(request).blobs.delete(name, digest)
    return empty_response(202, {"Docker-Content-Digest": str(digest)})
