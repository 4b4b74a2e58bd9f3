"""LRU eviction of cached content under a size limit and a maximum age.

The unit of eviction is a cached image: a manifest or index that nothing else in
its repository contains, with its platform manifests and every referrer of any of
them, recursively. A unit's last use is the latest read of any of its manifests
or blobs, in any repository. Eviction drops whole units, least recently used
first, then deletes the blobs nothing references any more. Pushed content, pushed
blob links and locally pushed referrers are never evicted.

Deleting a file never cuts a response short: readers hold an open descriptor, and
a later request for evicted content is fetched from the upstream again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from docket import metrics
from docket.maintenance.access import AccessTracker
from docket.metadata.base import SOURCE_CACHE
from docket.metadata.maintenance import ContentGraph
from docket.oci.digest import Digest
from docket.registry import Registry

log = logging.getLogger(__name__)

# Eviction frees space down to this share of max_size, so the next fills do not
# trigger it again at once.
LOW_WATER = 0.9


@dataclass
class Unit:
    repository: str
    root: str
    members: set[str] = field(default_factory=set)
    last_access: datetime | None = None


@dataclass
class EvictionReport:
    units: int = 0
    manifests: int = 0
    blobs: int = 0
    bytes: int = 0
    store_bytes: int = 0


def plan_units(graph: ContentGraph) -> list[Unit]:
    """Group cached manifests into units and compute each unit's last use."""
    by_repository: dict[str, dict[str, str | None]] = {}
    for node in graph.manifests:
        if node.source == SOURCE_CACHE:
            by_repository.setdefault(node.repository, {})[node.digest] = node.subject
    units = []
    for repository, subjects in by_repository.items():
        children: dict[str, list[str]] = {}
        contained: set[str] = set()
        for digest in subjects:
            kids = [child for child in graph.references.get((repository, digest), []) if child in subjects]
            children[digest] = kids
            contained.update(kids)
        referrers: dict[str, list[str]] = {}
        for digest, subject in subjects.items():
            if subject is not None and subject in subjects:
                referrers.setdefault(subject, []).append(digest)
        roots = [
            digest
            for digest, subject in subjects.items()
            if digest not in contained and (subject is None or subject not in subjects)
        ]
        assigned: set[str] = set()
        for root in sorted(roots) + sorted(subjects):
            if root in assigned:
                continue
            unit = Unit(repository, root)
            pending = [root]
            while pending:
                digest = pending.pop()
                if digest in unit.members:
                    continue
                unit.members.add(digest)
                pending += children.get(digest, []) + referrers.get(digest, [])
            assigned |= unit.members
            unit.last_access = _last_access(graph, repository, unit.members)
            units.append(unit)
    return units


def _last_access(graph: ContentGraph, repository: str, members: set[str]) -> datetime | None:
    latest: datetime | None = None
    for digest in members:
        for used in [digest, *graph.references.get((repository, digest), [])]:
            info = graph.blobs.get(used)
            if info is None:
                continue
            when = info.last_access or info.created_at
            if latest is None or when > latest:
                latest = when
    return latest


class Evictor:
    def __init__(
        self,
        registry: Registry,
        access: AccessTracker,
        max_size: int | None,
        max_age: float | None,
        interval: float,
    ) -> None:
        self.registry = registry
        self.access = access
        self.max_size = max_size
        self.max_age = max_age
        self.interval = interval
        self._task: asyncio.Task[None] | None = None
        self._running = asyncio.Lock()
        self._requested = asyncio.Event()

    @property
    def enabled(self) -> bool:
        return self.max_size is not None or self.max_age is not None

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._loop(), name="eviction")

    def request(self) -> None:
        """Ask for an eviction pass soon, e.g. after new content was stored."""
        self._requested.set()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._requested.wait(), timeout=self.interval)
            self._requested.clear()
            try:
                await self.enforce()
            except Exception:
                log.exception("eviction pass failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def enforce(self) -> EvictionReport:
        """Evict least recently used cached images until the store is within its limits."""
        async with self._running:
            return await self._enforce(datetime.now(UTC))

    async def _enforce(self, now: datetime) -> EvictionReport:
        await self.access.flush()
        metadata = self.registry.metadata
        graph = await metadata.content_graph()
        report = EvictionReport(store_bytes=sum(info.size for info in graph.blobs.values()))
        metrics.STORE_BYTES.set(report.store_bytes)
        metrics.STORE_OBJECTS.set(len(graph.blobs))
        too_old = now - timedelta(seconds=self.max_age) if self.max_age is not None else None
        target = int(self.max_size * LOW_WATER) if self.max_size is not None else None
        over = target is not None and self.max_size is not None and report.store_bytes > self.max_size

        units = sorted(plan_units(graph), key=lambda unit: unit.last_access or now)
        projected = report.store_bytes
        evicted: list[Unit] = []
        for unit in units:
            expired = too_old is not None and (unit.last_access or now) < too_old
            if not expired and not (over and target is not None and projected > target):
                continue
            evicted.append(unit)
            projected -= self._unit_bytes(graph, unit)
        kept = {(unit.repository, digest) for unit in units if unit not in evicted for digest in unit.members}
        for unit in evicted:
            members = {digest for digest in unit.members if (unit.repository, digest) not in kept}
            report.manifests += await metadata.manifests_evict(unit.repository, members)
            for digest in members:
                self.registry.manifests.cache.discard(unit.repository, digest)
            report.units += 1
            log.info(
                "evicted cached image %s@%s (%d manifests, last used %s)",
                unit.repository,
                unit.root,
                len(members),
                unit.last_access.isoformat() if unit.last_access else "never",
            )
        if evicted or over or too_old is not None:
            await self._sweep(report, now, too_old, target)
        metrics.EVICTED_UNITS.inc(report.units)
        metrics.EVICTED_BYTES.inc(report.bytes)
        metrics.STORE_BYTES.set(report.store_bytes)
        return report

    def _unit_bytes(self, graph: ContentGraph, unit: Unit) -> int:
        digests = set(unit.members)
        for digest in unit.members:
            digests.update(graph.references.get((unit.repository, digest), []))
        return sum(graph.blobs[digest].size for digest in digests if digest in graph.blobs)

    async def _sweep(self, report: EvictionReport, now: datetime, too_old: datetime | None, target: int | None) -> None:
        """Delete unreferenced blobs, oldest use first, until within the limits."""
        metadata = self.registry.metadata
        graph = await metadata.content_graph()
        candidates = await metadata.blobs_unreferenced(now)
        candidates.sort(key=lambda item: _used(graph, item[0], now))
        for digest, size in candidates:
            expired = too_old is not None and _used(graph, digest, now) < too_old
            if not expired and not (target is not None and report.store_bytes > target):
                continue
            async with self.registry.content_guard.collecting():
                if not await metadata.blob_forget_if_unreferenced(digest, now):
                    continue
                await self.registry.content.delete(Digest.parse(digest))
            report.blobs += 1
            report.bytes += size
            report.store_bytes -= size
            self.registry.blobs.links.clear()
        if report.blobs:
            log.info(
                "evicted %d blobs (%.1f MiB); the store now contains %.1f MiB",
                report.blobs,
                report.bytes / 1048576,
                report.store_bytes / 1048576,
            )


def _used(graph: ContentGraph, digest: str, now: datetime) -> datetime:
    info = graph.blobs.get(digest)
    if info is None:
        return now
    return info.last_access or info.created_at
