"""Queries for eviction and garbage collection, kept apart from the request path."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, delete, exists, or_, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from docket.metadata.base import SOURCE_CACHE, SOURCE_PUSH, as_utc
from docket.metadata.tables import (
    blobs,
    manifest_references,
    manifests,
    referrer_syncs,
    repositories,
    repository_blobs,
    tags,
    uploads,
    upstream_referrers,
)


@dataclass(frozen=True, slots=True)
class ManifestNode:
    repository: str
    digest: str
    subject: str | None
    source: str


@dataclass(frozen=True, slots=True)
class BlobInfo:
    size: int
    last_access: datetime | None
    created_at: datetime


@dataclass
class ContentGraph:
    """Every manifest with what it references, and every stored blob's size and last use."""

    manifests: list[ManifestNode]
    references: dict[tuple[str, str], list[str]]
    """(repository, manifest digest) -> digests of its blobs and child manifests."""
    blobs: dict[str, BlobInfo]


def _unreferenced(digest_column: Any, created_before: datetime) -> Any:
    """SQL condition: no pushed link, no manifest references the digest, and it is no manifest itself."""
    return and_(
        blobs.c.created_at < created_before,
        ~exists().where(repository_blobs.c.digest == digest_column, repository_blobs.c.source == SOURCE_PUSH),
        ~exists().where(manifest_references.c.child_digest == digest_column),
        ~exists().where(manifests.c.digest == digest_column),
    )


class MaintenanceQueries(ABC):
    """Mixed into the SQL metadata store; every method opens its own transaction."""

    @abstractmethod
    def _writing(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """Open a transaction under the store's write lock."""

    @abstractmethod
    def _reading(self) -> AbstractAsyncContextManager[AsyncConnection]:
        """Open a connection for reading."""

    async def content_touch(self, accesses: dict[str, datetime]) -> set[str]:
        """Record reads: raise `last_access` of each digest to the given time.

        Returns the digests that have no record yet, such as a blob whose download
        is still being committed, so the caller can record them later.
        """
        if not accesses:
            return set()
        unchanged = []
        async with self._writing() as connection:
            for digest, when in accesses.items():
                result = await connection.execute(
                    update(blobs)
                    .where(blobs.c.digest == digest, or_(blobs.c.last_access.is_(None), blobs.c.last_access < when))
                    .values(last_access=when)
                )
                if result.rowcount == 0:
                    unchanged.append(digest)
            if not unchanged:
                return set()
            stored = await connection.execute(select(blobs.c.digest).where(blobs.c.digest.in_(unchanged)))
            return set(unchanged) - {row[0] for row in stored}

    async def content_graph(self) -> ContentGraph:
        async with self._reading() as connection:
            manifest_rows = await connection.execute(
                select(repositories.c.name, manifests.c.digest, manifests.c.subject, manifests.c.source).join(
                    repositories, repositories.c.id == manifests.c.repository_id
                )
            )
            nodes = [ManifestNode(*row) for row in manifest_rows]
            reference_rows = await connection.execute(
                select(
                    repositories.c.name, manifest_references.c.manifest_digest, manifest_references.c.child_digest
                ).join(repositories, repositories.c.id == manifest_references.c.repository_id)
            )
            references: dict[tuple[str, str], list[str]] = {}
            for repository, manifest_digest, child in reference_rows:
                references.setdefault((repository, manifest_digest), []).append(child)
            blob_rows = await connection.execute(
                select(blobs.c.digest, blobs.c.size, blobs.c.last_access, blobs.c.created_at)
            )
            blob_info = {row[0]: BlobInfo(row[1], as_utc(row[2]), as_utc(row[3]) or row[3]) for row in blob_rows}
        return ContentGraph(nodes, references, blob_info)

    async def manifests_evict(self, repository: str, digests: Iterable[str]) -> int:
        """Forget cached manifests of a repository with their tags and referrer records."""
        wanted = sorted(set(digests))
        if not wanted:
            return 0
        async with self._writing() as connection:
            repository_id = await _repository_id(connection, repository)
            if repository_id is None:
                return 0
            result = await connection.execute(
                delete(manifests).where(
                    manifests.c.repository_id == repository_id,
                    manifests.c.digest.in_(wanted),
                    manifests.c.source == SOURCE_CACHE,
                )
            )
            await connection.execute(
                delete(tags).where(tags.c.repository_id == repository_id, tags.c.digest.in_(wanted))
            )
            await connection.execute(
                delete(manifest_references).where(
                    manifest_references.c.repository_id == repository_id,
                    manifest_references.c.manifest_digest.in_(wanted),
                )
            )
            for table in (upstream_referrers, referrer_syncs):
                await connection.execute(
                    delete(table).where(table.c.repository_id == repository_id, table.c.subject.in_(wanted))
                )
            return int(result.rowcount)

    async def blobs_unreferenced(self, created_before: datetime) -> list[tuple[str, int]]:
        """Digests and sizes of stored blobs that nothing keeps: candidates for deletion."""
        async with self._reading() as connection:
            result = await connection.execute(
                select(blobs.c.digest, blobs.c.size).where(_unreferenced(blobs.c.digest, created_before))
            )
            return [(row[0], int(row[1])) for row in result]

    async def blob_forget_if_unreferenced(self, digest: str, created_before: datetime) -> bool:
        """Delete the blob's record and cache links if it is still unreferenced; return whether it was."""
        async with self._writing() as connection:
            result = await connection.execute(
                delete(blobs).where(blobs.c.digest == digest, _unreferenced(blobs.c.digest, created_before))
            )
            if result.rowcount == 0:
                return False
            await connection.execute(delete(repository_blobs).where(repository_blobs.c.digest == digest))
            return True

    async def uploads_older_than(self, updated_before: datetime) -> list[str]:
        async with self._reading() as connection:
            result = await connection.execute(select(uploads.c.id).where(uploads.c.updated_at < updated_before))
            return [row[0] for row in result]

    async def repositories_forget_empty(self) -> int:
        """Delete repository rows that hold nothing any more; return how many."""
        async with self._writing() as connection:
            empty = and_(
                ~exists().where(manifests.c.repository_id == repositories.c.id),
                ~exists().where(repository_blobs.c.repository_id == repositories.c.id),
                ~exists().where(tags.c.repository_id == repositories.c.id),
                ~exists().where(uploads.c.repository_id == repositories.c.id),
                ~exists().where(upstream_referrers.c.repository_id == repositories.c.id),
            )
            result = await connection.execute(delete(repositories).where(empty))
            return int(result.rowcount)

    async def cache_links_orphaned(self) -> int:
        """Delete cache links of blobs whose record is gone."""
        async with self._writing() as connection:
            result = await connection.execute(
                delete(repository_blobs).where(
                    repository_blobs.c.source == SOURCE_CACHE,
                    ~exists().where(blobs.c.digest == repository_blobs.c.digest),
                )
            )
            return int(result.rowcount)


async def _repository_id(connection: AsyncConnection, name: str) -> int | None:
    result = await connection.execute(select(repositories.c.id).where(repositories.c.name == name))
    return result.scalar_one_or_none()
