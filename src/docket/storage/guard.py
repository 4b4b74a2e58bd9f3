"""Mutual exclusion between writers of content and the garbage collector.

Writing content and recording it in the metadata are two steps. Without a guard,
the collector could find a blob unreferenced between them (or delete a file that
a writer is about to claim as already stored) and lose pushed data. Writers hold
the guard shared for both steps; the collector holds it exclusively while it
re-checks references and deletes, in small batches so writers wait only briefly.
NOTE: the guard covers one process; `docket gc` therefore runs inside the server
(or with the server stopped), never beside it as a separate process.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager


class ContentGuard:
    def __init__(self) -> None:
        self._condition = asyncio.Condition()
        self._writers = 0
        self._collecting = False

    @asynccontextmanager
    async def writing(self) -> AsyncIterator[None]:
        async with self._condition:
            await self._condition.wait_for(lambda: not self._collecting)
            self._writers += 1
        try:
            yield
        finally:
            async with self._condition:
                self._writers -= 1
                self._condition.notify_all()

    @asynccontextmanager
    async def collecting(self) -> AsyncIterator[None]:
        async with self._condition:
            await self._condition.wait_for(lambda: not self._collecting and self._writers == 0)
            self._collecting = True
        try:
            yield
        finally:
            async with self._condition:
                self._collecting = False
                self._condition.notify_all()
