"""The maintenance tasks of a running server, started and stopped with it."""

from __future__ import annotations

from docket.maintenance.access import AccessTracker
from docket.maintenance.eviction import Evictor
from docket.maintenance.gc import GcReport, collect_garbage
from docket.registry import Registry


class Maintenance:
    def __init__(
        self,
        registry: Registry,
        *,
        max_size: int | None,
        max_age: float | None,
        eviction_interval: float,
        gc_grace: float,
        upload_expiry: float,
        run_eviction: bool = True,
    ) -> None:
        self.run_eviction = run_eviction
        self.registry = registry
        self.access = AccessTracker(registry.metadata)
        self.evictor = Evictor(registry, self.access, max_size, max_age, eviction_interval)
        self.gc_grace = gc_grace
        self.upload_expiry = upload_expiry

    def start(self) -> None:
        self.access.start()
        if self.run_eviction:
            self.evictor.start()

    async def close(self) -> None:
        await self.evictor.close()
        await self.access.close()

    async def collect_garbage(self, dry_run: bool) -> GcReport:
        return await collect_garbage(
            self.registry, dry_run=dry_run, grace=self.gc_grace, upload_expiry=self.upload_expiry
        )
