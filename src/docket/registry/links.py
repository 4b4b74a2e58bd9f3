"""A short-lived memory of which repository links which blob, and its size.

A blob GET would otherwise ask the database whether the repository links the
blob on every request. `discard` bumps the shared generation, so every worker
process drops its entries when a link is removed. Entries also expire after
`TTL` seconds, which bounds how long a link removed without `discard` is served.
"""

from __future__ import annotations

import time

from docket.registry.generation import Observer, SharedGeneration

TTL = 5.0
MAX_ENTRIES = 100_000


class LinkCache:
    def __init__(self, ttl: float = TTL, generation: SharedGeneration | None = None) -> None:
        self.ttl = ttl
        self.generation = generation or SharedGeneration()
        self._observer = Observer(self.generation)
        self._entries: dict[tuple[str, str], tuple[int, float]] = {}

    def get(self, repository: str, digest: str) -> int | None:
        """Return the size of a linked blob, or None if unknown here."""
        if self._observer.changed():
            self._entries.clear()
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
        """Drop an entry here and, through the shared generation, in every other process."""
        self._entries.pop((repository, digest), None)
        self.generation.bump()

    def clear(self) -> None:
        """Drop every entry here and, through the shared generation, in every other process."""
        self._entries.clear()
        self.generation.bump()
