"""Coalescing of concurrent identical work into one task."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalescer(Generic[T]):
    """Run one task per key; callers that arrive while it runs await the same result.

    Callers are shielded from each other: a caller that is cancelled (a client that
    disconnects) does not cancel the shared task.
    NOTE: this coordinates one process only; several worker processes each fetch once.
    """

    def __init__(self) -> None:
        self._tasks: dict[Hashable, asyncio.Future[T]] = {}
        self.coalesced = 0

    async def run(self, key: Hashable, work: Callable[[], Awaitable[T]]) -> T:
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.ensure_future(work())
            self._tasks[key] = task
            task.add_done_callback(lambda done: self._forget(key, done))
        else:
            self.coalesced += 1
        return await asyncio.shield(task)

    def _forget(self, key: Hashable, task: asyncio.Future[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # mark retrieved so an unawaited failure is not logged as lost

    def in_progress(self, key: Hashable) -> bool:
        return key in self._tasks
