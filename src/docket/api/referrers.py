"""The referrers API: an image index of the manifests whose subject is a digest."""

from __future__ import annotations

from aiohttp import web

from docket.api.context import registry_of
from docket.api.links import next_link
from docket.api.responses import json_response
from docket.oci import mediatypes
from docket.oci.digest import Digest


async def referrers_get(request: web.Request, name: str, digest_text: str) -> web.StreamResponse:
    registry = registry_of(request)
    subject = Digest.parse(digest_text)
    artifact_type = request.query.get("artifactType") or None
    last = request.query.get("last") or None
    limit = registry.limits.max_page_size
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
