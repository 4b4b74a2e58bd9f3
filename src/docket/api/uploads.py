"""Blob uploads: POST (start, mount, single request), PATCH, PUT, GET status and DELETE."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web

from docket.api import params
from docket.api.context import registry_of
from docket.api.ranges import parse_upload_range
from docket.api.responses import empty_response
from docket.errors import ErrorCode, RegistryError
from docket.registry.uploads import RangeMismatch


def _body(request: web.Request) -> AsyncIterator[bytes]:
    return request.content.iter_any()


def _upload_headers(name: str, upload_id: str, size: int) -> dict[str, str]:
    # The end of the range is inclusive; an empty upload reports 0-0, as CNCF distribution does.
    return {
        "Location": f"/v2/{name}/blobs/uploads/{upload_id}",
        "Range": f"0-{max(size - 1, 0)}",
        "Docker-Upload-UUID": upload_id,
    }


def _created_headers(name: str, digest: str) -> dict[str, str]:
    return {"Location": f"/v2/{name}/blobs/{digest}", "Docker-Content-Digest": digest}


def _chunk_start(request: web.Request) -> tuple[int | None, int | None]:
    """Return the chunk's start offset and length from Content-Range and Content-Length."""
    header = request.headers.get("Content-Range")
    length = request.content_length
    if header is None:
        return None, length
    parsed = parse_upload_range(header)
    if parsed is None:
        raise RegistryError(
            ErrorCode.BLOB_UPLOAD_INVALID,
            f"invalid Content-Range {header[:80]!r}: expected '<start>-<end>' with inclusive byte offsets",
        )
    start, end = parsed
    if length is not None and length != end - start + 1:
        raise RegistryError(
            ErrorCode.BLOB_UPLOAD_INVALID,
            f"Content-Range {header!r} covers {end - start + 1} bytes but Content-Length is {length}",
            status=416,
        )
    return start, end - start + 1


async def upload_start(request: web.Request, name: str) -> web.StreamResponse:
    registry = registry_of(request)
    mount = params.digest_param(request, "mount")
    if mount is not None:
        source = request.query.get("from")
        if source is not None:
            params.repository(source)
        if await registry.blobs.mount(name, mount, source):
            return empty_response(201, _created_headers(name, str(mount)))
        # Spec: when the mount cannot be done, fall back to a normal upload session.

    digest = params.digest_param(request)
    if digest is not None:
        await registry.uploads.put_whole(name, digest, _body(request), request.content_length)
        return empty_response(201, _created_headers(name, str(digest)))

    upload_id = await registry.uploads.start(name)
    return empty_response(202, _upload_headers(name, upload_id, 0))


async def upload_status(request: web.Request, name: str, upload_id: str) -> web.StreamResponse:
    size = await registry_of(request).uploads.size(name, upload_id)
    return empty_response(204, _upload_headers(name, upload_id, size))


async def upload_patch(request: web.Request, name: str, upload_id: str) -> web.StreamResponse:
    registry = registry_of(request)
    start, length = _chunk_start(request)
    try:
        size = await registry.uploads.append(name, upload_id, _body(request), start, length)
    except RangeMismatch as error:
        error.headers.update(_upload_headers(name, upload_id, error.size))
        raise
    return empty_response(202, _upload_headers(name, upload_id, size))


async def upload_finish(request: web.Request, name: str, upload_id: str) -> web.StreamResponse:
    registry = registry_of(request)
    digest = params.digest_param(request)
    if digest is None:
        raise RegistryError(ErrorCode.DIGEST_INVALID, "the digest query parameter is required to finish an upload")
    chunks = None
    start, length = None, None
    if request.body_exists:
        start, length = _chunk_start(request)
        chunks = _body(request)
    try:
        await registry.uploads.finish(name, upload_id, digest, chunks, start, length)
    except RangeMismatch as error:
        error.headers.update(_upload_headers(name, upload_id, error.size))
        raise
    return empty_response(201, _created_headers(name, str(digest)))


async def upload_cancel(request: web.Request, name: str, upload_id: str) -> web.StreamResponse:
    await registry_of(request).uploads.cancel(name, upload_id)
    return empty_response(204, {})
