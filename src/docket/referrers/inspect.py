"""The cached tree of an image for `docket inspect`: index, platform manifests, referrers.

Only what the cache contains is shown; nothing is fetched from the upstream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from docket.cache.rules import CacheTarget
from docket.errors import RegistryError
from docket.metadata.base import SOURCE_PUSH
from docket.oci.digest import Digest
from docket.oci.manifest import parse_manifest
from docket.referrers import policy
from docket.referrers.discovery import SOURCE_COSIGN_TAG
from docket.referrers.listing import cached_referrers
from docket.registry import Registry

if TYPE_CHECKING:
    from docket.cache.service import PullThroughCache

_MAX_DEPTH = 4


async def manifest_tree(
    registry: Registry,
    cache: PullThroughCache | None,
    target: CacheTarget | None,
    repository: str,
    digest: str,
    depth: int = 0,
) -> dict[str, Any]:
    """Describe one cached manifest with its children and referrers, recursively."""
    node: dict[str, Any] = {"digest": digest}
    record = await registry.metadata.manifest_get(repository, digest)
    if record is None:
        node["cached"] = False
        return node
    node.update(
        cached=True,
        mediaType=record.media_type,
        size=record.size,
        artifactType=record.artifact_type,
        source="local push" if record.source == SOURCE_PUSH else "upstream",
    )
    data = await registry.content.read(Digest.parse(digest))
    parsed = parse_manifest(data, None)
    if depth < _MAX_DEPTH:
        node["children"] = []
        for child in parsed.manifests:
            child_node = await manifest_tree(registry, cache, target, repository, str(child.digest), depth + 1)
            if child.platform:
                child_node["platform"] = child.platform
            node["children"].append(child_node)
        node["referrers"] = await _referrers(registry, cache, target, repository, Digest.parse(digest), depth)
    if cache is not None and target is not None and record.subject is None and target.rule.require_referrers:
        try:
            found = await policy.evidence(cache, target, Digest.parse(digest))
            if found:
                node["policy"] = f"served: {found[0]}"
            else:
                node["policy"] = "denied unless an index that lists it is signed"
        except RegistryError as error:
            node["policy"] = f"unknown: {error.message}"
    return node


async def _referrers(
    registry: Registry,
    cache: PullThroughCache | None,
    target: CacheTarget | None,
    repository: str,
    subject: Digest,
    depth: int,
) -> list[dict[str, Any]]:
    metadata = registry.metadata
    upstream = {entry.digest: entry for entry in await metadata.upstream_referrers_get(repository, str(subject))}
    nodes = []
    for descriptor, source in await cached_referrers(metadata, repository, subject):
        entry = upstream.get(str(descriptor.digest))
        node = await manifest_tree(registry, cache, target, repository, str(descriptor.digest), depth + 1)
        node.update(
            artifactType=descriptor.artifact_type,
            size=descriptor.size,
            discoveredVia={"api": "referrers API", "tag_schema": "referrers tag schema", "push": "local push"}.get(
                source, source
            ),
        )
        if entry is not None:
            node["syncedAt"] = entry.synced_at.isoformat() if entry.synced_at else None
            node["contentSynced"] = entry.content_synced
        nodes.append(node)
    for entry in upstream.values():
        if entry.source == SOURCE_COSIGN_TAG:
            nodes.append(
                {
                    "digest": entry.digest,
                    "tag": entry.tag,
                    "discoveredVia": "cosign tag",
                    "syncedAt": entry.synced_at.isoformat() if entry.synced_at else None,
                    "contentSynced": entry.content_synced,
                }
            )
    return nodes
