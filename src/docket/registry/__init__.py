"""Operations of hosted repositories, independent of HTTP.

The API layer calls these; they raise `RegistryError` for anything the client
must hear about and work only through the content and metadata interfaces.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from docket.metadata.base import MetadataStore
from docket.registry.blobs import Blobs
from docket.registry.generation import SharedGeneration
from docket.registry.manifests import Manifests
from docket.registry.referrers import Referrers
from docket.registry.uploads import Uploads
from docket.storage.base import ContentStore
from docket.storage.guard import ContentGuard


@dataclass(frozen=True, slots=True)
class Limits:
    max_manifest_size: int = 4 * 1024 * 1024
    max_page_size: int = 1000
    manifest_cache_bytes: int = 64 * 1024 * 1024
    automatic_mount: bool = True


class Registry:
    def __init__(
        self,
        content: ContentStore,
        metadata: MetadataStore,
        limits: Limits | None = None,
        guard: ContentGuard | None = None,
        generation_dir: Path | None = None,
    ) -> None:
        """Build the registry. With `generation_dir`, worker processes sharing it tell each other of deletions."""
        self.content = content
        self.metadata = metadata
        self.limits = limits or Limits()
        self.content_guard = guard or ContentGuard()
        self.blobs = Blobs(
            content,
            metadata,
            self.content_guard,
            automatic_mount=self.limits.automatic_mount,
            generation=SharedGeneration(generation_dir / "links.generation" if generation_dir else None),
        )
        self.uploads = Uploads(content, metadata, self.content_guard)
        self.manifests = Manifests(
            content,
            metadata,
            self.limits,
            self.content_guard,
            SharedGeneration(generation_dir / "manifests.generation" if generation_dir else None),
        )
        self.referrers = Referrers(metadata)

    async def open(self) -> None:
        await self.content.open()
        await self.metadata.open()
        await self.uploads.remove_orphans()

    async def close(self) -> None:
        await self.metadata.close()


__all__ = ["Limits", "Registry"]
