"""A short-lived memory of which repository links which blob, and its size.

A blob GET would otherwise ask the database whether the repository links the
blob on every request. Entries live `TTL` seconds, so a link removed by another
worker process is honoured within that time. This process drops entries itself
when it unlinks or evicts.
"""

from __future__ import annotations

import time

TTL = 5.0
MAX_ENTRIES = 100_000


class LinkCache:
    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._entries: dict[tuple[str, str], tuple[int, float]] = {}

    def get(self, repository: str, digest: str) -> int | None:
        """Return the size of a linked blob, or None if unknown here."""
        entry = self._entries.get((repository, digest))
        if entry is None:
            return None
        size, expires = entry
        if expires < time.monotonic():
            del self._entries[(repository, digest)]
            return None
        return size

    def put(self, repository: str, digest: str, size: int) -> None:
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[(repository, digest)] = (size, time.monotonic() + self.ttl)

    def discard(self, repository: str, digest: str) -> None:
        self._entries.pop((repository, digest), None)

    def clear(self) -> None:
        self._entries.clear()
