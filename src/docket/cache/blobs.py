"""Blobs of cached repositories: served from the store, or filled from the upstream."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from docket import metrics
from docket.cache.errors import client_error
from docket.cache.fills import BlobFill, FillManager
from docket.cache.rules import CacheTarget
from docket.cache.status import record_decision
from docket.errors import ErrorCode, RegistryError
from docket.metadata.base import SOURCE_CACHE, MetadataStore
from docket.oci.digest import Digest
from docket.registry.links import LinkCache
from docket.storage.base import ContentStore
from docket.storage.guard import ContentGuard
from docket.upstream.client import UpstreamClient
from docket.upstream.errors import UpstreamError

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LocalBlob:
    path: Path
    size: int


class CachedBlobs:
    def __init__(
        self,
        content: ContentStore,
        metadata: MetadataStore,
        clients: dict[str, UpstreamClient],
        guard: ContentGuard,
        links: LinkCache,
    ) -> None:
        self.links = links
        self.content = content
        self.metadata = metadata
        self.clients = clients
        self.fills = FillManager(guard)
        self.stored_hooks: list[Callable[[], None]] = []
        """Called after a fill stored a blob, e.g. to let eviction check the size limit."""

    def _decision(self, target: CacheTarget, decision: str, digest: Digest, status: str = "-") -> None:
        metrics.CACHE_DECISIONS.labels(target.rule.prefix, "blob", decision).inc()
        record_decision(decision, status)
        log.info(
            "cache %s: blob %s in %s (upstream %s, status %s)",
            decision,
            digest,
            target.repository,
            target.rule.prefix,
            status,
        )

    async def _local_size(self, target: CacheTarget, digest: Digest) -> tuple[bool, int | None]:
        cached = self.links.get(target.repository, str(digest))
        if cached is not None:
            return True, cached
        linked = await self.metadata.blob_is_linked(target.repository, str(digest))
        size = await self.content.size(digest)
        if linked and size is not None:
            self.links.put(target.repository, str(digest), size)
        return linked, size

    def forget(self, target: CacheTarget, digest: Digest) -> None:
        """Drop what this process remembers about the blob, e.g. after it was evicted."""
        self.links.discard(target.repository, str(digest))

    async def size(self, target: CacheTarget, digest: Digest) -> int:
        """Return the size for a HEAD: the local size, else the upstream's (without fetching the body)."""
        linked, size = await self._local_size(target, digest)
        if linked and size is not None:
            self._decision(target, "hit", digest)
            return size
        fill = self.fills.get(target.repository, digest)
        if fill is not None:
            await fill.started.wait()
            if fill.size is not None and fill.error is None:
                return fill.size
        client = self.clients[target.rule.prefix]
        try:
            upstream_size = await client.blob_head(target.upstream_repository, str(digest))
        except UpstreamError as error:
            self._decision(target, "upstream_error", digest, str(error.status or "failed"))
            raise client_error(error, ErrorCode.BLOB_UNKNOWN, f"blob {digest} in {target.repository}") from None
        if size is not None:
            # The store has these bytes from another repository and the upstream
            # confirmed this repository has them too, so link instead of refetching.
            await self.metadata.blob_link(target.repository, str(digest), size, SOURCE_CACHE)
            self._decision(target, "hit", digest, "200")
            return size
        if upstream_size is None:
            raise RegistryError(
                ErrorCode.UNAVAILABLE, f"upstream {client.name} sent no size for blob {digest}", status=502
            )
        self._decision(target, "miss", digest, "200")
        return upstream_size

    async def open(self, target: CacheTarget, digest: Digest) -> LocalBlob | BlobFill:
        """Return the stored blob, or a fill that streams it from the upstream."""
        linked, size = await self._local_size(target, digest)
        path = self.content.local_path(digest)
        if size is not None and path is not None:
            if not linked:
                await self.size(target, digest)  # confirms upstream, links, or raises
            else:
                self._decision(target, "hit", digest)
            return LocalBlob(path, size)
        fill = self.fills.get(target.repository, digest)
        if fill is None:
            fill = self.fills.start(
                self.clients[target.rule.prefix],
                target,
                digest,
                self.content,
                lambda received: self._stored(target, digest, received),
            )
            decision = "miss"
        else:
            decision = "coalesced"
            metrics.FILL_WAITERS.inc()
        await fill.started.wait()
        if fill.followed:
            decision = "coalesced"  # another worker process downloads it
        if fill.error is not None:
            error = fill.error
            self._decision(target, "upstream_error", digest, str(getattr(error, "status", None) or "failed"))
            if isinstance(error, UpstreamError):
                raise client_error(error, ErrorCode.BLOB_UNKNOWN, f"blob {digest} in {target.repository}")
            raise RegistryError(ErrorCode.UNAVAILABLE, f"blob {digest} could not be fetched: {error}", status=502)
        if fill.verified:
            local_size = await self.content.size(digest)
            if path is not None and local_size is not None:
                self._decision(target, "hit", digest)
                return LocalBlob(path, local_size)
        self._decision(target, decision, digest, "200")
        return fill

    async def _stored(self, target: CacheTarget, digest: Digest, size: int) -> None:
        await self.metadata.blob_link(target.repository, str(digest), size, SOURCE_CACHE)
        for hook in self.stored_hooks:
            hook()

    async def ensure(self, target: CacheTarget, digest: Digest) -> bool:
        """Make sure the blob is stored and linked, fetching it if needed; return False on failure."""
        linked, size = await self._local_size(target, digest)
        if linked and size is not None:
            return True
        try:
            source = await self.open(target, digest)
        except RegistryError as error:
            log.warning("could not fetch blob %s for %s: %s", digest, target.repository, error.message)
            return False
        if isinstance(source, LocalBlob):
            return True
        await source.finished.wait()
        return source.verified

    async def close(self) -> None:
        await self.fills.close()
