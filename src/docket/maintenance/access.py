"""Recording when content was last read, cheaply enough for every request.

Reads only set a time in memory; a background task writes them to the metadata
database every `FLUSH_INTERVAL` seconds, and eviction flushes before it plans.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from docket.metadata.base import MetadataStore

log = logging.getLogger(__name__)

FLUSH_INTERVAL = 10.0
# Seconds a read time waits for its blob's record before it is dropped.
MISSING_KEPT = 600.0


class AccessTracker:
    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata
        self._pending: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None
        # A flush that finds another in progress waits for it. The caller that flushes
        # next (an eviction pass) then reads a database that contains every earlier touch.
        self._flushing = asyncio.Lock()

    def touch(self, digest: str, when: datetime | None = None) -> None:
        """Note a read of `digest` at `when` (default: now)."""
        self._pending[digest] = when or datetime.now(UTC)

    async def flush(self) -> None:
        async with self._flushing:
            pending, self._pending = self._pending, {}
            if not pending:
                return
            missing = await self.metadata.content_touch(pending)
            # A blob read while its download was still being committed has no record yet.
            # Keep its read time for the next flush, unless it is so old that the blob never arrived.
            oldest = datetime.now(UTC) - timedelta(seconds=MISSING_KEPT)
            for digest in missing:
                when = pending[digest]
                if when >= oldest and digest not in self._pending:
                    self._pending[digest] = when

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._flush_loop(), name="access flush")

    async def _flush_loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_INTERVAL)
            try:
                await self.flush()
            except Exception:
                log.exception("recording content access times failed")

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        await self.flush()
