"""GET, HEAD, PUT and DELETE of manifests."""

from __future__ import annotations

from aiohttp import web

from docket.api.context import registry_of
from docket.api.negotiation import is_acceptable
from docket.api.responses import empty_response
from docket.errors import ErrorCode, RegistryError
from docket.oci.reference import parse_reference


async def manifest_get(request: web.Request, name: str, reference_text: str) -> web.StreamResponse:
    reference = parse_reference(reference_text)
    stored = await registry_of(request).manifests.get(name, reference)
    record = stored.record
    if not is_acceptable(request.headers.getall("Accept", []), record.media_type):
        raise RegistryError(
            ErrorCode.MANIFEST_UNKNOWN,
            f"manifest {reference} in {name} has media type {record.media_type}, "
            "which the request's Accept header does not include",
        )
    headers = {
        "Content-Type": record.media_type,
        "Docker-Content-Digest": record.digest,
        "ETag": f'"{record.digest}"',
    }
    if request.method == "HEAD":
        response = web.Response(status=200, headers=headers)
        response.headers["Content-Length"] = str(record.size)
        return response
    return web.Response(body=stored.data, headers=headers)


async def _read_body(request: web.Request, limit: int) -> bytes:
    """Read a manifest body, raising 413 as soon as it exceeds `limit` bytes."""
    too_large = RegistryError(
        ErrorCode.MANIFEST_INVALID, f"manifest is larger than the maximum of {limit} bytes", status=413
    )
    if request.content_length is not None and request.content_length > limit:
        raise too_large
    parts = []
    received = 0
    async for chunk in request.content.iter_any():
        received += len(chunk)
        if received > limit:
            raise too_large
        parts.append(chunk)
    return b"".join(parts)


async def manifest_put(request: web.Request, name: str, reference_text: str) -> web.StreamResponse:
    registry = registry_of(request)
    reference = parse_reference(reference_text, for_push=True)
    data = await _read_body(request, registry.limits.max_manifest_size)
    digest, parsed = await registry.manifests.put(name, reference, request.headers.get("Content-Type"), data)
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": str(digest)}
    if parsed.subject is not None:
        headers["OCI-Subject"] = str(parsed.subject.digest)
    return empty_response(201, headers)


async def manifest_delete(request: web.Request, name: str, reference_text: str) -> web.StreamResponse:
    reference = parse_reference(reference_text)
    await registry_of(request).manifests.delete(name, reference)
    return empty_response(202, {})
