"""Blobs as seen through a repository's links."""

from __future__ import annotations

import logging
from pathlib import Path

from docket.errors import ErrorCode, RegistryError
from docket.metadata.base import MetadataStore
from docket.oci.digest import Digest
from docket.registry.generation import SharedGeneration
from docket.registry.links import LinkCache
from docket.storage.base import ContentStore
from docket.storage.guard import ContentGuard

log = logging.getLogger(__name__)


def blob_unknown(repository: str, digest: Digest) -> RegistryError:
    return RegistryError(ErrorCode.BLOB_UNKNOWN, f"blob {digest} is not known in repository {repository}")


class Blobs:
    def __init__(
        self,
        content: ContentStore,
        metadata: MetadataStore,
        guard: ContentGuard,
        *,
        automatic_mount: bool,
        generation: SharedGeneration | None = None,
    ) -> None:
        self.content = content
        self.metadata = metadata
        self.guard = guard
        self.automatic_mount = automatic_mount
        self.links = LinkCache(generation=generation)

    async def size(self, repository: str, digest: Digest) -> int:
        """Return the size of a blob the repository links, else raise BLOB_UNKNOWN."""
        cached = self.links.get(repository, str(digest))
        if cached is not None:
            return cached
        if not await self.metadata.blob_is_linked(repository, str(digest)):
            raise blob_unknown(repository, digest)
        size = await self.content.size(digest)
        if size is None:
            log.error("blob %s is linked in %s but missing from the content store", digest, repository)
            raise blob_unknown(repository, digest)
        self.links.put(repository, str(digest), size)
        return size

    def forget(self, repository: str, digest: Digest) -> None:
        """Drop what this process remembers about the link, e.g. after the file vanished."""
        self.links.discard(repository, str(digest))

    def local_path(self, digest: Digest) -> Path | None:
        return self.content.local_path(digest)

    async def delete(self, repository: str, digest: Digest) -> None:
        """Unlink the blob from the repository; the content stays for other links until GC."""
        self.links.discard(repository, str(digest))
        if not await self.metadata.blob_unlink(repository, str(digest)):
            raise blob_unknown(repository, digest)

    async def mount(self, repository: str, digest: Digest, source: str | None) -> bool:
        """Link an existing blob into `repository`; return False if it cannot be mounted.

        With a source repository the blob must be linked there. Without one, and with
        automatic mount enabled, any repository's link will do, as the spec allows.
        """
        if source is not None:
            found = await self.metadata.blob_is_linked(source, str(digest))
        elif self.automatic_mount:
            found = await self.metadata.blob_is_linked_anywhere(str(digest))
        else:
            found = False
        if not found:
            return False
        async with self.guard.writing():
            size = await self.content.size(digest)
            if size is None:
                return False
            await self.metadata.blob_link(repository, str(digest), size)
        return True
