"""GET, HEAD, PUT and DELETE of manifests."""

from __future__ import annotations

from aiohttp import web

from docket.api.context import cache_of, registry_of, target_of, touch
from docket.api.negotiation import is_acceptable
from docket.api.responses import empty_response
from docket.cache.rules import CacheTarget
from docket.errors import ErrorCode, RegistryError
from docket.metadata.base import SOURCE_PUSH, ManifestRecord
from docket.oci import mediatypes
from docket.oci.digest import Digest
from docket.oci.manifest import parse_manifest
from docket.oci.reference import parse_reference
from docket.referrers import policy
from docket.referrers.listing import COSIGN_TAG_RE, cached_referrers, fallback_tag_subject, referrers_index
from docket.registry.manifests import StoredManifest


async def manifest_get(request: web.Request, name: str, reference_text: str) -> web.StreamResponse:
    reference = parse_reference(reference_text)
    target = target_of(request)
    if target is not None:
        stored = await _cached_manifest(request, target, reference)
    else:
        stored = await registry_of(request).manifests.get(name, reference)
    record = stored.record
    touch(request, record.digest)
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


async def _cached_manifest(request: web.Request, target: CacheTarget, reference: str | Digest) -> StoredManifest:
    cache = cache_of(request)
    subject = fallback_tag_subject(reference) if isinstance(reference, str) else None
    if subject is not None:
        # The referrers tag schema, served from the same list as the referrers API.
        await cache.referrers.ensure_fresh(target, subject)
        entries = await cached_referrers(cache.registry.metadata, target.repository, subject)
        data = referrers_index([descriptor for descriptor, _source in entries])
        digest = Digest.of_bytes(data)
        return StoredManifest(ManifestRecord(str(digest), mediatypes.OCI_INDEX, len(data)), data)
    stored = await cache.manifests.get(target, reference)
    cache.referrers.touch(target, stored.record.digest)
    if not (isinstance(reference, str) and COSIGN_TAG_RE.fullmatch(reference)):
        await policy.check(cache, target, stored)
    return stored


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
    content_type = request.headers.get("Content-Type")
    if target_of(request) is not None:
        _check_push_to_cache(name, reference, data, content_type)
    digest, parsed = await registry.manifests.put(name, reference, content_type, data)
    headers = {"Location": f"/v2/{name}/manifests/{digest}", "Docker-Content-Digest": str(digest)}
    if parsed.subject is not None:
        headers["OCI-Subject"] = str(parsed.subject.digest)
    return empty_response(201, headers)


def _check_push_to_cache(name: str, reference: str | Digest, data: bytes, content_type: str | None) -> None:
    """Allow only referrers (manifests with a subject, pushed by digest) into a cached repository.

    Tags in a cached repository belong to the upstream, so a pushed tag could
    shadow one. Referrers attached locally (scan results, attestations) are kept
    beside the cached image.
    """
    if isinstance(reference, str):
        raise RegistryError(
            ErrorCode.DENIED,
            f"{name} is a pull-through cache; tags come from the upstream. "
            "Push referrers (manifests with a subject) by digest instead",
        )
    if parse_manifest(data, content_type).subject is None:
        raise RegistryError(
            ErrorCode.DENIED,
            f"{name} is a pull-through cache; only referrers (manifests with a subject) may be pushed to it",
        )


async def manifest_delete(request: web.Request, name: str, reference_text: str) -> web.StreamResponse:
    reference = parse_reference(reference_text)
    registry = registry_of(request)
    if target_of(request) is not None:
        record = None
        if isinstance(reference, Digest):
            record = await registry.metadata.manifest_get(name, str(reference))
        if record is None or record.source != SOURCE_PUSH:
            raise RegistryError(
                ErrorCode.DENIED,
                f"{name} is a pull-through cache; only referrers pushed to Docket can be deleted, by digest",
            )
    await registry.manifests.delete(name, reference)
    return empty_response(202, {})
