"""The referrers API: an image index of the manifests whose subject is a digest."""

from __future__ import annotations

from aiohttp import web

from docket.api.context import cache_of, registry_of, target_of
from docket.api.links import next_link
from docket.api.responses import json_response
from docket.cache.rules import CacheTarget
from docket.oci import mediatypes
from docket.oci.descriptor import Descriptor
from docket.oci.digest import Digest
from docket.referrers.listing import cached_referrers


async def _cached_referrers(
    request: web.Request,
    target: CacheTarget,
    subject: Digest,
    artifact_type: str | None,
    limit: int,
    last: str | None,
) -> list[Descriptor]:
    """List synced and locally pushed referrers, syncing first if the list is older than the TTL."""
    cache = cache_of(request)
    await cache.referrers.ensure_fresh(target, subject)
    entries = await cached_referrers(cache.registry.metadata, target.repository, subject)
    descriptors = [
        descriptor
        for descriptor, _source in entries
        if (artifact_type is None or descriptor.artifact_type == artifact_type)
        and (last is None or str(descriptor.digest) > last)
    ]
    return descriptors[:limit]


async def referrers_get(request: web.Request, name: str, digest_text: str) -> web.StreamResponse:
    registry = registry_of(request)
    subject = Digest.parse(digest_text)
    artifact_type = request.query.get("artifactType") or None
    last = request.query.get("last") or None
    limit = registry.limits.max_page_size
    target = target_of(request)
    if target is not None:
        descriptors = await _cached_referrers(request, target, subject, artifact_type, limit + 1, last)
    else:
        descriptors = await registry.referrers.list(name, subject, artifact_type, limit + 1, last)
    headers = {}
    if artifact_type is not None:
        headers["OCI-Filters-Applied"] = "artifactType"
    if len(descriptors) > limit:
        descriptors = descriptors[:limit]
        query: dict[str, str | int] = {"last": str(descriptors[-1].digest)}
        if artifact_type is not None:
            query["artifactType"] = artifact_type
        headers["Link"] = next_link(f"/v2/{name}/referrers/{subject}", query)
    index = {
        "schemaVersion": 2,
        "mediaType": mediatypes.OCI_INDEX,
        "manifests": [descriptor.to_json() for descriptor in descriptors],
    }
    return json_response(index, content_type=mediatypes.OCI_INDEX, headers=headers)
