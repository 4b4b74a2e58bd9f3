"""The referrers of a cached subject as clients receive them.

The referrers API of a cached repository lists the union of what was synced
from the upstream (including referrers a filter kept out of the cache) and what
clients pushed to Docket directly. The same list, as an image index, is served for the
fallback tag `sha256-<hex>` for clients that use the referrers tag schema.
"""

from __future__ import annotations

import re

import orjson

from docket.metadata.base import SOURCE_PUSH, MetadataStore
from docket.oci import mediatypes
from docket.oci.descriptor import Descriptor
from docket.oci.digest import Digest
from docket.referrers.discovery import SOURCE_COSIGN_TAG

FALLBACK_TAG_RE = re.compile(r"(sha256|sha512)-([a-f0-9]{64}|[a-f0-9]{128})")
# cosign's signature, attestation and SBOM tags of a subject.
COSIGN_TAG_RE = re.compile(r"sha256-[a-f0-9]{64}\.(sig|att|sbom)")


def fallback_tag_subject(tag: str) -> Digest | None:
    """Return the subject a referrers fallback tag names, or None for any other tag."""
    match = FALLBACK_TAG_RE.fullmatch(tag)
    if match is None or not Digest.is_valid(f"{match.group(1)}:{match.group(2)}"):
        return None
    return Digest.parse(f"{match.group(1)}:{match.group(2)}")


async def cached_referrers(metadata: MetadataStore, repository: str, subject: Digest) -> list[tuple[Descriptor, str]]:
    """Return (descriptor, source) for every referrer of `subject`, ordered by digest.

    The source is "push" for local pushes, else the discovery source of the upstream
    listing ("api" or "tag_schema"). Manifests cached from the upstream without a
    listing entry count as "api".
    """
    entries: dict[str, tuple[Descriptor, str]] = {}
    for upstream in await metadata.upstream_referrers_get(repository, str(subject)):
        if upstream.source == SOURCE_COSIGN_TAG:
            continue
        descriptor = Descriptor(
            media_type=upstream.media_type,
            digest=Digest.parse(upstream.digest),
            size=upstream.size,
            artifact_type=upstream.artifact_type,
            annotations=upstream.annotations,
        )
        entries[upstream.digest] = (descriptor, upstream.source)
    for record in await metadata.referrer_list_all(repository, str(subject)):
        if record.digest in entries and record.source != SOURCE_PUSH:
            continue
        descriptor = Descriptor(
            media_type=record.media_type,
            digest=Digest.parse(record.digest),
            size=record.size,
            artifact_type=record.artifact_type,
            annotations=record.annotations,
        )
        entries[record.digest] = (descriptor, SOURCE_PUSH if record.source == SOURCE_PUSH else "api")
    return [entries[digest] for digest in sorted(entries)]


def referrers_index(descriptors: list[Descriptor]) -> bytes:
    return orjson.dumps(
        {
            "schemaVersion": 2,
            "mediaType": mediatypes.OCI_INDEX,
            "manifests": [descriptor.to_json() for descriptor in descriptors],
        }
    )
