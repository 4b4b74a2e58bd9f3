"""Syncing the referrers of cached subjects from their upstream into the cache.

A sync discovers the referrers of one subject, stores each referrer manifest or
index byte-for-byte with its blobs (digests verified), recurses into referrers of
referrers up to the rule's depth, caches cosign signature tags, and records the
upstream's list. Syncs of the same subject are coalesced; failures are logged and
counted and never reach the client that triggered them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from docket import metrics
from docket.cache.coalesce import Coalescer
from docket.cache.rules import CacheTarget
from docket.errors import RegistryError
from docket.metadata.base import UpstreamReferrer
from docket.oci.digest import Digest
from docket.oci.manifest import parse_manifest
from docket.referrers.discovery import SOURCE_COSIGN_TAG, FoundReferrer, ReferrerDiscovery

if TYPE_CHECKING:
    from docket.cache.service import PullThroughCache

log = logging.getLogger(__name__)

# Subjects pulled within this window are re-synced periodically to pick up
# signatures added upstream after the image was cached.
RECENT_WINDOW = 24 * 3600.0


class ReferrerSync:
    def __init__(self, cache: PullThroughCache) -> None:
        self.cache = cache
        self.discovery = ReferrerDiscovery()
        self._syncs: Coalescer[None] = Coalescer()
        self._background: set[asyncio.Task[None]] = set()
        self._recent: dict[tuple[str, str], tuple[CacheTarget, float]] = {}
        self._periodic: asyncio.Task[None] | None = None

    # Triggers

    def schedule(self, target: CacheTarget, subject: Digest) -> None:
        """Sync in the background, e.g. right after a manifest was cached."""
        self._recent[(target.repository, str(subject))] = (target, time.monotonic())
        task = asyncio.create_task(self.sync(target, subject), name=f"referrers {target.repository}@{subject}")
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    def touch(self, target: CacheTarget, subject: str) -> None:
        """Note that a client pulled the subject, so periodic syncs keep it fresh."""
        self._recent[(target.repository, subject)] = (target, time.monotonic())

    async def ensure_fresh(self, target: CacheTarget, subject: Digest) -> None:
        """Sync if the last sync is older than the rule's referrers TTL, waiting at most `referrers_wait`."""
        synced = await self.cache.registry.metadata.referrer_sync_time(target.repository, str(subject))
        if synced is not None:
            age = (datetime.now(UTC) - synced).total_seconds()
            if age < target.rule.referrers_ttl:
                return
        task = asyncio.ensure_future(self.sync(target, subject))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=target.rule.referrers_wait)
        except TimeoutError:
            log.warning(
                "referrer sync of %s@%s takes longer than %.0fs; responding with what is cached",
                target.repository,
                subject,
                target.rule.referrers_wait,
            )
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    async def resync(self, target: CacheTarget, subject: Digest) -> None:
        """Sync now whatever the TTL, waiting at most `referrers_wait`, e.g. for `docket refresh`."""
        task = asyncio.ensure_future(self.sync(target, subject))
        try:
            await asyncio.wait_for(asyncio.shield(task), timeout=target.rule.referrers_wait)
        except TimeoutError:
            self._background.add(task)
            task.add_done_callback(self._background.discard)

    def start_periodic(self, interval: float) -> None:
        if self._periodic is None and interval > 0:
            self._periodic = asyncio.create_task(self._resync_loop(interval), name="referrer resync")

    async def _resync_loop(self, interval: float) -> None:
        while True:
            await asyncio.sleep(interval)
            now = time.monotonic()
            for key, (target, seen) in list(self._recent.items()):
                if now - seen > RECENT_WINDOW:
                    del self._recent[key]
                    continue
                try:
                    await self.ensure_fresh(target, Digest.parse(key[1]))
                except Exception:
                    log.exception("periodic referrer sync of %s@%s failed", key[0], key[1])

    async def close(self) -> None:
        tasks = [*self._background]
        if self._periodic is not None:
            tasks.append(self._periodic)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # The sync itself

    async def sync(self, target: CacheTarget, subject: Digest) -> None:
        await self._syncs.run(
            (target.repository, str(subject)), lambda: self._sync_tree(target, subject, target.rule.referrers_depth)
        )

    async def _sync_tree(self, target: CacheTarget, subject: Digest, depth: int) -> None:
        visited: set[str] = set()
        pending = [(subject, depth)]
        while pending:
            current, remaining = pending.pop()
            if str(current) in visited:
                continue  # a cycle such as an index that lists its own subject
            visited.add(str(current))
            try:
                # cosign signs images, so its tags are looked up for the image, not for its referrers.
                children = await self._sync_subject(target, current, cosign_tags=current == subject)
            except Exception:
                metrics.REFERRER_SYNC_FAILURES.labels(target.rule.prefix).inc()
                log.exception("referrer sync of %s@%s failed", target.repository, current)
                continue
            if remaining > 0:
                pending.extend((child, remaining - 1) for child in children)

    async def _sync_subject(self, target: CacheTarget, subject: Digest, *, cosign_tags: bool) -> list[Digest]:
        """Sync one subject's referrers; return the digests whose content was stored."""
        client = self.cache.clients[target.rule.prefix]
        found = await self.discovery.discover(client, target, subject, cosign_tags=cosign_tags)
        stored: list[UpstreamReferrer] = []
        synced: list[Digest] = []
        for referrer in found.referrers:
            content_synced = await self._store_referrer(target, subject, referrer)
            stored.append(
                UpstreamReferrer(
                    digest=referrer.digest,
                    media_type=referrer.media_type,
                    size=referrer.size,
                    artifact_type=referrer.artifact_type,
                    annotations=referrer.annotations,
                    source=referrer.source,
                    content_synced=content_synced,
                )
            )
            if content_synced:
                synced.append(Digest.parse(referrer.digest))
        for cosign in found.cosign_tags:
            content_synced = await self._store_cosign_tag(target, cosign.tag, cosign.digest)
            stored.append(
                UpstreamReferrer(
                    digest=cosign.digest,
                    media_type="",
                    size=0,
                    artifact_type=None,
                    annotations=None,
                    source=SOURCE_COSIGN_TAG,
                    content_synced=content_synced,
                    tag=cosign.tag,
                )
            )
        metadata = self.cache.registry.metadata
        if found.complete or not await metadata.upstream_referrers_get(target.repository, str(subject)):
            await metadata.upstream_referrers_replace(target.repository, str(subject), stored, datetime.now(UTC))
        else:
            log.warning(
                "kept the earlier referrer list of %s@%s because discovery was incomplete", target.repository, subject
            )
        return synced

    async def _store_referrer(self, target: CacheTarget, subject: Digest, referrer: FoundReferrer) -> bool:
        """Fetch a referrer's manifest (or index) and blobs unless a filter skips it."""
        reason = target.rule.syncs_content_of(referrer.artifact_type, referrer.size)
        if reason is None:
            return await self._store_manifest_tree(target, Digest.parse(referrer.digest), referrer, depth=2)
        log.info(
            "listing referrer %s of %s@%s without its content: %s",
            referrer.digest,
            target.repository,
            subject,
            reason,
        )
        return False

    async def _store_manifest_tree(
        self, target: CacheTarget, digest: Digest, referrer: FoundReferrer, depth: int
    ) -> bool:
        try:
            stored = await self.cache.manifests.get(target, digest, notify=False)
            parsed = parse_manifest(stored.data, None)
        except RegistryError as error:
            log.warning("could not sync referrer %s of %s: %s", digest, target.repository, error.message)
            return False
        total = len(stored.data) + sum(blob.size for blob in parsed.blobs)
        reason = target.rule.syncs_content_of(referrer.artifact_type, total)
        if reason is not None:
            log.info("not syncing the blobs of referrer %s in %s: %s", digest, target.repository, reason)
            return False
        complete = True
        for blob in parsed.blobs:
            complete &= await self.cache.blobs.ensure(target, blob.digest)
        if depth > 0:
            for child in parsed.manifests:
                complete &= await self._store_manifest_tree(target, child.digest, referrer, depth - 1)
        if complete:
            metrics.REFERRERS_SYNCED.labels(referrer.source, referrer.artifact_type or "").inc()
        return complete

    async def _store_cosign_tag(self, target: CacheTarget, tag: str, digest: str) -> bool:
        try:
            stored = await self.cache.manifests.store_tag(target, tag, Digest.parse(digest))
            parsed = parse_manifest(stored.data, None)
        except RegistryError as error:
            log.warning("could not sync cosign tag %s of %s: %s", tag, target.repository, error.message)
            return False
        complete = True
        for blob in parsed.blobs:
            complete &= await self.cache.blobs.ensure(target, blob.digest)
        if complete:
            metrics.REFERRERS_SYNCED.labels(SOURCE_COSIGN_TAG, tag.rsplit(".", 1)[-1]).inc()
        return complete
