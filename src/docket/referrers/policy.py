"""The presence gate `require_referrers`: serve only images that something vouches for.

A rule may list artifact types (cosign signatures, Sigstore bundles, Notary
signatures, SBOMs). An image manifest or index is served only if a referrer of
one of those types refers to it or to an index that lists it, or a cosign
`.sig` tag exists for it. Referrers synced from the upstream and pushed to
Docket count alike. This checks presence only; it does not verify signatures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from docket import metrics
from docket.cache.rules import CacheTarget
from docket.errors import ErrorCode, RegistryError
from docket.oci.digest import Digest
from docket.referrers.discovery import SOURCE_COSIGN_TAG, fallback_tag
from docket.referrers.listing import cached_referrers
from docket.registry.manifests import StoredManifest

if TYPE_CHECKING:
    from docket.cache.service import PullThroughCache


async def evidence(cache: PullThroughCache, target: CacheTarget, subject: Digest) -> list[str]:
    """Return what vouches for `subject`: matching artifact types and cosign .sig tags."""
    required = set(target.rule.require_referrers)
    metadata = cache.registry.metadata
    found = [
        f"referrer {descriptor.digest} ({descriptor.artifact_type})"
        for descriptor, _source in await cached_referrers(metadata, target.repository, subject)
        if descriptor.artifact_type in required
    ]
    signature_tag = fallback_tag(subject) + ".sig"
    for upstream in await metadata.upstream_referrers_get(target.repository, str(subject)):
        if upstream.source == SOURCE_COSIGN_TAG and upstream.tag == signature_tag:
            found.append(f"cosign tag {signature_tag}")
    if not found and await metadata.tag_resolve(target.repository, signature_tag) is not None:
        found.append(f"cosign tag {signature_tag}")
    return found


async def check(cache: PullThroughCache, target: CacheTarget, stored: StoredManifest) -> None:
    """Raise DENIED unless the manifest may be served under the rule's require_referrers."""
    required = target.rule.require_referrers
    if not required or stored.record.subject is not None:
        return  # no policy, or the manifest is itself a referrer
    digest = stored.record.digest
    subjects = [digest, *await cache.registry.metadata.manifest_parents(target.repository, digest)]
    for subject_text in subjects:
        subject = Digest.parse(subject_text)
        await cache.referrers.ensure_fresh(target, subject)
        if await evidence(cache, target, subject):
            return
    metrics.POLICY_DENIALS.labels(target.rule.prefix).inc()
    raise RegistryError(
        ErrorCode.DENIED,
        f"image {target.repository}@{digest} is not served: the rule for {target.rule.prefix} requires a "
        f"referrer of type {', '.join(required)} or a cosign .sig tag, and none refers to it"
        + (" or to an index that lists it" if len(subjects) > 1 else ""),
    )
