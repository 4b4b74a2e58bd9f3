"""The interface the registry uses to read and write metadata."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from docket.metadata.maintenance import ContentGraph

SOURCE_PUSH = "push"
SOURCE_CACHE = "cache"


def as_utc(value: datetime | None) -> datetime | None:
    """Restore the zone SQLite drops; every stored time is UTC."""
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


@dataclass(frozen=True, slots=True)
class ManifestRecord:
    digest: str
    media_type: str
    size: int
    subject: str | None = None
    artifact_type: str | None = None
    annotations: dict[str, str] | None = None
    source: str = SOURCE_PUSH


@dataclass(frozen=True, slots=True)
class TagRecord:
    digest: str
    source: str
    checked_at: datetime | None


@dataclass(frozen=True, slots=True)
class UpstreamReferrer:
    """A referrer the upstream listed for a subject, and where Docket learnt of it."""

    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None
    source: str
    """"api", "tag_schema" or "cosign_tag"."""
    content_synced: bool
    tag: str | None = None
    synced_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class ManifestPut:
    """Everything stored for one manifest push, written in one transaction."""

    repository: str
    record: ManifestRecord
    blob_digests: frozenset[str]
    child_manifest_digests: frozenset[str]
    tag: str | None
    link_blobs: bool = False
    """Link the referenced blobs to the repository (cached manifests, whose blobs are fetched later)."""
    checked_at: datetime | None = None
    """For a cached tag: when the upstream confirmed it."""


class MetadataStore(Protocol):
    async def open(self) -> None:
        """Connect and bring the schema up to date."""

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise if the database cannot be reached."""

    async def count_rows(self) -> dict[str, int]:
        """Return row counts per table and `blob_bytes`, the total size of stored blobs."""

    # Blobs

    async def blob_link(self, repository: str, digest: str, size: int, source: str = SOURCE_PUSH) -> None:
        """Record committed content and link it to `repository`; a push link is never evicted."""

    async def blob_is_linked(self, repository: str, digest: str) -> bool: ...

    async def blob_linked_digests(self, repository: str, digests: Iterable[str]) -> set[str]: ...

    async def blob_unlink(self, repository: str, digest: str) -> bool:
        """Remove the link; return False if there was none."""

    async def blob_is_linked_anywhere(self, digest: str) -> bool: ...

    # Manifests and tags

    async def manifest_put(self, put: ManifestPut) -> None: ...

    async def manifest_get(self, repository: str, digest: str) -> ManifestRecord | None: ...

    async def manifest_existing_digests(self, repository: str, digests: Iterable[str]) -> set[str]: ...

    async def manifest_delete(self, repository: str, digest: str) -> bool:
        """Delete the manifest and every tag that points to it."""

    async def tag_resolve(self, repository: str, tag: str) -> str | None: ...

    async def tag_get(self, repository: str, tag: str) -> TagRecord | None: ...

    async def tag_mark_checked(self, repository: str, tag: str, checked_at: datetime | None) -> None:
        """Record when the upstream last confirmed a cached tag; None forces a check on next use."""

    async def tag_delete(self, repository: str, tag: str) -> bool: ...

    async def tag_list(self, repository: str, limit: int, last: str | None) -> list[str] | None:
        """Return up to `limit` tags after `last` in lexical order, or None for an unknown repository."""

    async def repository_list(self, limit: int, last: str | None) -> list[str]: ...

    async def referrer_list(
        self,
        repository: str,
        subject: str,
        artifact_type: str | None,
        limit: int,
        last: str | None,
    ) -> list[ManifestRecord]:
        """Return manifests whose subject is `subject`, ordered by digest, after `last`."""

    async def referrer_list_all(self, repository: str, subject: str) -> list[ManifestRecord]:
        """Return every manifest in the repository whose subject is `subject`."""

    # Referrers synced from upstreams

    async def upstream_referrers_replace(
        self, repository: str, subject: str, referrers: list[UpstreamReferrer], synced_at: datetime
    ) -> None:
        """Store what the upstream lists for a subject now, replacing the earlier list."""

    async def upstream_referrers_get(self, repository: str, subject: str) -> list[UpstreamReferrer]: ...

    async def referrer_sync_time(self, repository: str, subject: str) -> datetime | None: ...

    async def manifest_parents(self, repository: str, digest: str) -> list[str]:
        """Return the digests of indexes in the repository that list `digest` as a child."""

    # Maintenance (see docket.metadata.maintenance)

    async def content_touch(self, accesses: dict[str, datetime]) -> set[str]:
        """Record read times; return the digests that have no record yet."""

    async def content_graph(self) -> ContentGraph: ...

    async def manifests_evict(self, repository: str, digests: Iterable[str]) -> int: ...

    async def blobs_unreferenced(self, created_before: datetime) -> list[tuple[str, int]]: ...

    async def blob_forget_if_unreferenced(self, digest: str, created_before: datetime) -> bool: ...

    async def uploads_older_than(self, updated_before: datetime) -> list[str]: ...

    async def repositories_forget_empty(self) -> int: ...

    async def cache_links_orphaned(self) -> int: ...

    # Uploads

    async def upload_create(self, upload_id: str, repository: str) -> None: ...

    async def upload_repository(self, upload_id: str) -> str | None: ...

    async def upload_touch(self, upload_id: str) -> None: ...

    async def upload_delete(self, upload_id: str) -> None: ...

    async def upload_ids(self) -> set[str]: ...
