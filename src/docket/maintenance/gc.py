"""Garbage collection: delete blobs nothing references, expired uploads and empty records.

A blob is kept while a pushed link names it (an upload or mount that no DELETE
undid) or while any manifest in any repository references it. It is also kept
while it is younger than the grace period, so content a push is still
assembling survives.
The collector runs inside the server (or with the server stopped) and holds the
content guard while it re-checks and deletes, so it cannot race a writer.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from docket import metrics
from docket.oci.digest import Digest
from docket.registry import Registry

log = logging.getLogger(__name__)

DEFAULT_GRACE = 600.0
DEFAULT_UPLOAD_EXPIRY = 86400.0


@dataclass
class GcReport:
    dry_run: bool
    blobs: list[str] = field(default_factory=list)
    bytes: int = 0
    uploads: list[str] = field(default_factory=list)
    repositories: int = 0

    def summary(self) -> str:
        verb = "would delete" if self.dry_run else "deleted"
        text = (
            f"{verb} {len(self.blobs)} unreferenced blobs ({self.bytes / 1048576:.1f} MiB) "
            f"and {len(self.uploads)} expired upload sessions"
        )
        if not self.dry_run:
            text += f"; forgot {self.repositories} empty repositories"
        return text


async def collect_garbage(
    registry: Registry,
    *,
    dry_run: bool = False,
    grace: float = DEFAULT_GRACE,
    upload_expiry: float = DEFAULT_UPLOAD_EXPIRY,
) -> GcReport:
    now = datetime.now(UTC)
    metadata = registry.metadata
    report = GcReport(dry_run)
    created_before = now - timedelta(seconds=grace)

    for upload_id in await metadata.uploads_older_than(now - timedelta(seconds=upload_expiry)):
        report.uploads.append(upload_id)
        if not dry_run:
            await metadata.upload_delete(upload_id)
            await registry.content.upload_delete(upload_id)
            log.info("deleted upload session %s, idle for more than %.0fs", upload_id, upload_expiry)

    for digest, size in await metadata.blobs_unreferenced(created_before):
        if dry_run:
            report.blobs.append(digest)
            report.bytes += size
            continue
        async with registry.content_guard.collecting():
            if not await metadata.blob_forget_if_unreferenced(digest, created_before):
                continue
            await registry.content.delete(Digest.parse(digest))
            registry.blobs.links.clear()
        report.blobs.append(digest)
        report.bytes += size
        log.info("deleted unreferenced blob %s (%d bytes)", digest, size)

    if not dry_run:
        await metadata.cache_links_orphaned()
        report.repositories = await metadata.repositories_forget_empty()
        metrics.GC_BLOBS.inc(len(report.blobs))
        metrics.GC_BYTES.inc(report.bytes)
    log.info("garbage collection: %s", report.summary())
    return report
