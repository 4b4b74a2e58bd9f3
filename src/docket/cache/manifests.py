"""Manifests of cached repositories: tag TTLs, revalidation, faithful bytes.

Manifests are stored exactly as the upstream sent them, under the upstream's
media type and digest. A tag is served from the cache while it is younger than
the rule's tag TTL; after that, one HEAD checks with the upstream whether it still
points to the same digest. Digests are immutable and never revalidated.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

from docket import metrics
from docket.cache.coalesce import Coalescer
from docket.cache.errors import client_error
from docket.cache.rules import TAG_DELETED_FORGET, CacheTarget
from docket.cache.status import record_decision
from docket.errors import ErrorCode, RegistryError
from docket.metadata.base import SOURCE_CACHE, ManifestPut, ManifestRecord, MetadataStore, TagRecord
from docket.oci import mediatypes
from docket.oci.digest import Digest
from docket.oci.manifest import ParsedManifest, parse_manifest
from docket.registry.manifests import Manifests, StoredManifest, manifest_unknown
from docket.storage.base import ContentStore
from docket.upstream.client import UpstreamClient
from docket.upstream.errors import UpstreamError, UpstreamNotFound, UpstreamUnavailable

log = logging.getLogger(__name__)

# Called after a manifest was cached from upstream, e.g. to start a referrer sync.
CachedHook = Callable[[CacheTarget, StoredManifest, ParsedManifest], Awaitable[None] | None]


def _now() -> datetime:
    return datetime.now(UTC)


class CachedManifests:
    def __init__(
        self,
        content: ContentStore,
        metadata: MetadataStore,
        local: Manifests,
        clients: dict[str, UpstreamClient],
    ) -> None:
        self.content = content
        self.metadata = metadata
        self.local = local
        self.clients = clients
        self.fetches: Coalescer[StoredManifest] = Coalescer()
        self.on_cached: list[CachedHook] = []
        # Fresh tags of this process: (repository, tag) -> (digest, monotonic expiry).
        # Lets a pull within the TTL skip the database; the TTL bounds how long
        # another worker's revalidation can go unseen here.
        self._fresh_tags: dict[tuple[str, str], tuple[str, float]] = {}

    def _decision(self, target: CacheTarget, decision: str, reference: str, status: str = "-") -> None:
        metrics.CACHE_DECISIONS.labels(target.rule.prefix, "manifest", decision).inc()
        record_decision(decision, status)
        level = logging.WARNING if decision in ("stale", "upstream_error") else logging.INFO
        log.log(
            level,
            "cache %s: manifest %s:%s (upstream %s, status %s)",
            decision,
            target.repository,
            reference,
            target.rule.prefix,
            status,
        )

    async def get(self, target: CacheTarget, reference: str | Digest, *, notify: bool = True) -> StoredManifest:
        """Return a manifest from the cache or the upstream.

        With `notify`, a manifest fetched from the upstream is passed to the
        `on_cached` hooks (the referrer sync); syncs themselves fetch without it.
        """
        if isinstance(reference, Digest):
            return await self._get_by_digest(target, reference, notify)
        tag = reference
        fresh = self._fresh_tags.get((target.repository, tag))
        if fresh is not None and fresh[1] > time.monotonic():
            stored = self.local.cache.get(target.repository, fresh[0])
            if stored is not None:
                self._decision(target, "hit", tag)
                return stored
        record = await self.metadata.tag_get(target.repository, tag)
        if record is None or record.source != SOURCE_CACHE:
            return await self.fetches.run((target.repository, "tag", tag), lambda: self._fetch(target, tag, tag=tag))
        age = (_now() - record.checked_at).total_seconds() if record.checked_at else None
        if age is not None and age < target.rule.tag_ttl:
            stored = await self._local(target, record.digest)
            if stored is not None:
                self._remember_tag(target, tag, record.digest, target.rule.tag_ttl - age)
                self._decision(target, "hit", tag)
                return stored
        return await self.fetches.run(
            (target.repository, "revalidate", tag), lambda: self._revalidate(target, tag, record)
        )

    def _remember_tag(self, target: CacheTarget, tag: str, digest: str, lifetime: float) -> None:
        if lifetime > 0:
            if len(self._fresh_tags) > 100_000:
                self._fresh_tags.clear()
            self._fresh_tags[(target.repository, tag)] = (digest, time.monotonic() + lifetime)

    def _forget_tag(self, target: CacheTarget, tag: str) -> None:
        self._fresh_tags.pop((target.repository, tag), None)

    async def refresh(self, target: CacheTarget, tag: str) -> tuple[str, StoredManifest]:
        """Revalidate a tag now, whatever its age; return the decision and the manifest."""
        self._forget_tag(target, tag)
        record = await self.metadata.tag_get(target.repository, tag)
        if record is None or record.source != SOURCE_CACHE:
            stored = await self.fetches.run((target.repository, "tag", tag), lambda: self._fetch(target, tag, tag=tag))
            return "miss", stored
        before = record.digest
        stored = await self.fetches.run(
            (target.repository, "refresh", tag), lambda: self._revalidate(target, tag, record, strict=True)
        )
        if stored.record.digest == before:
            return "unchanged", stored
        # Other worker processes may remember the tag's old digest until its TTL ends. Discarding
        # that manifest from memory makes each of them look the tag up in the database again.
        self.local.cache.discard(target.repository, before)
        return "changed", stored

    async def _local(self, target: CacheTarget, digest: str) -> StoredManifest | None:
        try:
            return await self.local.get(target.repository, Digest.parse(digest))
        except RegistryError as error:
            if error.code is ErrorCode.MANIFEST_UNKNOWN:
                return None
            raise

    async def _get_by_digest(self, target: CacheTarget, digest: Digest, notify: bool) -> StoredManifest:
        stored = await self._local(target, str(digest))
        if stored is not None:
            self._decision(target, "hit", str(digest))
            return stored
        return await self.fetches.run(
            (target.repository, "digest", str(digest)),
            lambda: self._fetch(target, str(digest), tag=None, notify=notify),
        )

    async def store_tag(self, target: CacheTarget, tag: str, digest: Digest) -> StoredManifest:
        """Cache `tag` as pointing to `digest`, fetching the manifest if it is not stored yet."""
        record = await self.metadata.tag_get(target.repository, tag)
        if record is not None and record.digest == str(digest):
            stored = await self._local(target, str(digest))
            if stored is not None:
                await self.metadata.tag_mark_checked(target.repository, tag, _now())
                return stored
        return await self.fetches.run(
            (target.repository, "digest", str(digest)),
            lambda: self._fetch(target, str(digest), tag=tag, notify=False),
        )

    async def _revalidate(
        self, target: CacheTarget, tag: str, record: TagRecord, *, strict: bool = False
    ) -> StoredManifest:
        """Ask the upstream whether a cached tag moved; serve the cached manifest if it cannot tell.

        With `strict` (an explicit refresh), an upstream failure is raised instead.
        """
        client = self.clients[target.rule.prefix]
        try:
            # No retries: on any failure the cached manifest is served at once.
            head = await client.manifest_head(target.upstream_repository, tag, retries=0)
        except UpstreamNotFound:
            self._forget_tag(target, tag)
            if target.rule.upstream_tag_deleted == TAG_DELETED_FORGET:
                await self.metadata.tag_delete(target.repository, tag)
                # Other workers may remember the tag until its TTL ends; this makes them look it up again.
                self.local.cache.discard(target.repository, record.digest)
                self._decision(target, "deleted_upstream", tag, "404")
                raise manifest_unknown(target.repository, tag) from None
            stored = await self._local(target, record.digest)
            if stored is None:
                raise manifest_unknown(target.repository, tag) from None
            self._decision(target, "stale", tag, "404 (kept by rule)")
            return stored
        except UpstreamError as error:
            if strict:
                raise client_error(error, ErrorCode.MANIFEST_UNKNOWN, f"manifest {target.repository}:{tag}") from None
            stored = await self._local(target, record.digest)
            if stored is None:
                self._decision(target, "upstream_error", tag, str(error.status or "failed"))
                raise client_error(error, ErrorCode.MANIFEST_UNKNOWN, f"manifest {target.repository}:{tag}") from None
            self._decision(target, "stale", tag, f"{error.status or 'failed'}: {error}")
            return stored

        if head.digest is None or not Digest.is_valid(head.digest):
            # The upstream sent no usable digest on HEAD, so only a GET can tell.
            return await self._fetch(target, tag, tag=tag)
        if head.digest == record.digest:
            stored = await self._local(target, record.digest)
            if stored is not None:
                await self.metadata.tag_mark_checked(target.repository, tag, _now())
                self._remember_tag(target, tag, record.digest, target.rule.tag_ttl)
                self._decision(target, "revalidated", tag, "200")
                return stored
        return await self._fetch(target, head.digest, tag=tag)

    async def _fetch(
        self, target: CacheTarget, reference: str, *, tag: str | None, notify: bool = True
    ) -> StoredManifest:
        """GET a manifest from the upstream, verify it and store it byte-for-byte."""
        client = self.clients[target.rule.prefix]
        what = f"manifest {target.repository}:{tag or reference}"
        try:
            fetched = await client.manifest_get(
                target.upstream_repository, reference, self.local.limits.max_manifest_size
            )
            digest = _verified_digest(client.name, reference, fetched.data, fetched.digest)
            parsed = _parse_upstream(client.name, fetched.data)
        except UpstreamError as error:
            status = "404" if isinstance(error, UpstreamNotFound) else str(error.status or "failed")
            self._decision(target, "upstream_error" if status != "404" else "not_found", tag or reference, status)
            raise client_error(error, ErrorCode.MANIFEST_UNKNOWN, what) from None

        media_type = fetched.media_type if fetched.media_type in mediatypes.MANIFEST_TYPES else parsed.media_type
        record = ManifestRecord(
            digest=str(digest),
            media_type=media_type,
            size=len(fetched.data),
            subject=str(parsed.subject.digest) if parsed.subject else None,
            artifact_type=parsed.artifact_type,
            annotations=parsed.annotations,
            source=SOURCE_CACHE,
        )
        async with self.local.guard.writing():
            await self.content.write_bytes(digest, fetched.data)
            await self.metadata.manifest_put(
                ManifestPut(
                    repository=target.repository,
                    record=record,
                    blob_digests=frozenset(str(blob.digest) for blob in parsed.blobs),
                    child_manifest_digests=frozenset(str(child.digest) for child in parsed.manifests),
                    tag=tag,
                    link_blobs=True,
                    checked_at=_now() if tag else None,
                )
            )
        stored = StoredManifest(record, fetched.data)
        self.local.cache.put(target.repository, stored)
        if tag is not None:
            self._remember_tag(target, tag, str(digest), target.rule.tag_ttl)
        self._decision(target, "miss", tag or reference, "200")
        if notify:
            for hook in self.on_cached:
                result = hook(target, stored, parsed)
                if result is not None:
                    await result
        return stored


def _verified_digest(upstream: str, reference: str, data: bytes, header: str | None) -> Digest:
    """Compute the manifest's digest and check it against the reference and the upstream's header."""
    expected = Digest.parse(reference) if ":" in reference else None
    header_digest = Digest.parse(header) if header and Digest.is_valid(header) else None
    algorithm = (expected or header_digest or Digest("sha256", "")).algorithm
    digest = Digest.of_bytes(data, algorithm)
    if expected is not None and digest != expected:
        raise UpstreamUnavailable(upstream, f"manifest {reference} arrived with digest {digest}", 502)
    if header_digest is not None and header_digest.algorithm == algorithm and header_digest != digest:
        raise UpstreamUnavailable(
            upstream, f"manifest {reference} has digest {digest} but the upstream said {header_digest}", 502
        )
    return digest


def _parse_upstream(upstream: str, data: bytes) -> ParsedManifest:
    try:
        return parse_manifest(data, None)
    except RegistryError as error:
        raise UpstreamUnavailable(upstream, f"sent an invalid manifest: {error.message}", 502) from None
