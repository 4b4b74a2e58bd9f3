"""Metadata store on SQLAlchemy Core: SQLite now, kept portable for PostgreSQL."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import Table, and_, delete, event, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from docket.metadata import migrate
from docket.metadata.base import (
    SOURCE_CACHE,
    SOURCE_PUSH,
    ManifestPut,
    ManifestRecord,
    TagRecord,
    UpstreamReferrer,
    as_utc,
)
from docket.metadata.maintenance import MaintenanceQueries
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

log = logging.getLogger(__name__)

# SQLite in WAL mode: readers never block the writer. A busy timeout lets a second
# process (or connection) wait for the write lock instead of failing at once.
_SQLITE_PRAGMAS = (
    "PRAGMA journal_mode=WAL",
    "PRAGMA synchronous=NORMAL",
    "PRAGMA busy_timeout=10000",
    "PRAGMA foreign_keys=ON",
)


def _now() -> datetime:
    return datetime.now(UTC)


def _set_sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    for pragma in _SQLITE_PRAGMAS:
        cursor.execute(pragma)
    cursor.close()


class SqlMetadataStore(MaintenanceQueries):
    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: AsyncEngine | None = None
        # SQLite allows one writer; serializing writes in the process avoids
        # lock-upgrade failures between this process's own connections.
        self._write_lock = asyncio.Lock()

    @classmethod
    def for_sqlite_file(cls, path: Path) -> SqlMetadataStore:
        return cls(f"sqlite+aiosqlite:///{path}")

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("metadata store is not open")
        return self._engine

    async def open(self) -> None:
        self._engine = create_async_engine(self.url, pool_size=8, max_overflow=8)
        if self._engine.dialect.name == "sqlite":
            event.listen(self._engine.sync_engine, "connect", _set_sqlite_pragmas)
        async with self._engine.begin() as connection:
            await connection.run_sync(migrate.upgrade_to_head)

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None

    async def ping(self) -> None:
        async with self.engine.connect() as connection:
            await connection.execute(select(1))

    # Helpers

    @asynccontextmanager
    async def _writing(self) -> AsyncIterator[AsyncConnection]:
        """Run one write transaction, committed when the block ends without an exception.

        On SQLite the transaction starts with BEGIN IMMEDIATE, which takes the database's
        write lock at once. Worker processes sharing the database then run their
        read-then-write transactions one after another. With a deferred BEGIN, two
        processes could both find a row missing and the second insert would fail.
        """
        async with self._write_lock, self.engine.connect() as connection:
            if connection.dialect.name == "sqlite":
                await connection.exec_driver_sql("BEGIN IMMEDIATE")
            try:
                yield connection
            except BaseException:
                await connection.rollback()
                raise
            await connection.commit()

    @asynccontextmanager
    async def _reading(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as connection:
            yield connection

    async def _repository_id(self, connection: AsyncConnection, name: str) -> int | None:
        result = await connection.execute(select(repositories.c.id).where(repositories.c.name == name))
        return result.scalar_one_or_none()

    async def _ensure_repository(self, connection: AsyncConnection, name: str) -> int:
        repository_id = await self._repository_id(connection, name)
        if repository_id is not None:
            return repository_id
        result = await connection.execute(
            insert(repositories).values(name=name, created_at=_now()).returning(repositories.c.id)
        )
        return int(result.scalar_one())

    async def _ensure_blob(self, connection: AsyncConnection, digest: str, size: int) -> None:
        exists = await connection.execute(select(blobs.c.digest).where(blobs.c.digest == digest))
        if exists.first() is None:
            await connection.execute(insert(blobs).values(digest=digest, size=size, created_at=_now()))

    # Blobs

    async def blob_link(self, repository: str, digest: str, size: int, source: str = SOURCE_PUSH) -> None:
        async with self._writing() as connection:
            repository_id = await self._ensure_repository(connection, repository)
            await self._ensure_blob(connection, digest, size)
            linked = await connection.execute(
                select(repository_blobs.c.source).where(
                    repository_blobs.c.repository_id == repository_id,
                    repository_blobs.c.digest == digest,
                )
            )
            existing = linked.first()
            if existing is None:
                await connection.execute(
                    insert(repository_blobs).values(
                        repository_id=repository_id, digest=digest, created_at=_now(), source=source
                    )
                )
            elif source == SOURCE_PUSH and existing[0] != SOURCE_PUSH:
                # A push makes the link permanent: eviction never removes pushed content.
                await connection.execute(
                    update(repository_blobs)
                    .where(repository_blobs.c.repository_id == repository_id, repository_blobs.c.digest == digest)
                    .values(source=SOURCE_PUSH)
                )

    async def blob_is_linked(self, repository: str, digest: str) -> bool:
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(repository_blobs.c.digest)
                .join(repositories, repositories.c.id == repository_blobs.c.repository_id)
                .where(repositories.c.name == repository, repository_blobs.c.digest == digest)
            )
            return result.first() is not None

    async def _present_digests(self, table: Table, repository: str, digests: Iterable[str]) -> set[str]:
        """Return which of `digests` have a row in `table` (manifests or blob links) for the repository."""
        wanted = list(set(digests))
        if not wanted:
            return set()
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(table.c.digest)
                .join(repositories, repositories.c.id == table.c.repository_id)
                .where(repositories.c.name == repository, table.c.digest.in_(wanted))
            )
            return {row[0] for row in result}

    async def blob_linked_digests(self, repository: str, digests: Iterable[str]) -> set[str]:
        return await self._present_digests(repository_blobs, repository, digests)

    async def blob_unlink(self, repository: str, digest: str) -> bool:
        async with self._writing() as connection:
            repository_id = await self._repository_id(connection, repository)
            if repository_id is None:
                return False
            result = await connection.execute(
                delete(repository_blobs).where(
                    repository_blobs.c.repository_id == repository_id, repository_blobs.c.digest == digest
                )
            )
            return result.rowcount > 0

    async def blob_is_linked_anywhere(self, digest: str) -> bool:
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(repository_blobs.c.digest).where(repository_blobs.c.digest == digest).limit(1)
            )
            return result.first() is not None

    # Manifests and tags

    async def manifest_put(self, put: ManifestPut) -> None:
        record = put.record
        async with self._writing() as connection:
            repository_id = await self._ensure_repository(connection, put.repository)
            await self._ensure_blob(connection, record.digest, record.size)
            existing = await connection.execute(
                select(manifests.c.digest).where(
                    manifests.c.repository_id == repository_id, manifests.c.digest == record.digest
                )
            )
            if existing.first() is None:
                await connection.execute(
                    insert(manifests).values(
                        repository_id=repository_id,
                        digest=record.digest,
                        media_type=record.media_type,
                        size=record.size,
                        subject=record.subject,
                        artifact_type=record.artifact_type,
                        annotations=orjson.dumps(record.annotations).decode() if record.annotations else None,
                        created_at=_now(),
                        source=record.source,
                    )
                )
                children = [(digest, 0) for digest in sorted(put.blob_digests)]
                children += [(digest, 1) for digest in sorted(put.child_manifest_digests - put.blob_digests)]
                if children:
                    await connection.execute(
                        insert(manifest_references),
                        [
                            {
                                "repository_id": repository_id,
                                "manifest_digest": record.digest,
                                "child_digest": child,
                                "child_is_manifest": is_manifest,
                            }
                            for child, is_manifest in children
                        ],
                    )
            if put.link_blobs and put.blob_digests:
                linked = await connection.execute(
                    select(repository_blobs.c.digest).where(
                        repository_blobs.c.repository_id == repository_id,
                        repository_blobs.c.digest.in_(sorted(put.blob_digests)),
                    )
                )
                new_links = put.blob_digests - {row[0] for row in linked}
                if new_links:
                    await connection.execute(
                        insert(repository_blobs),
                        [
                            {
                                "repository_id": repository_id,
                                "digest": digest,
                                "created_at": _now(),
                                "source": SOURCE_CACHE,
                            }
                            for digest in sorted(new_links)
                        ],
                    )
            if put.tag is not None:
                values = {
                    "digest": record.digest,
                    "updated_at": _now(),
                    "source": record.source,
                    "checked_at": put.checked_at,
                }
                updated = await connection.execute(
                    update(tags).where(tags.c.repository_id == repository_id, tags.c.name == put.tag).values(**values)
                )
                if updated.rowcount == 0:
                    await connection.execute(insert(tags).values(repository_id=repository_id, name=put.tag, **values))

    async def manifest_get(self, repository: str, digest: str) -> ManifestRecord | None:
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(
                    manifests.c.digest,
                    manifests.c.media_type,
                    manifests.c.size,
                    manifests.c.subject,
                    manifests.c.artifact_type,
                    manifests.c.annotations,
                    manifests.c.source,
                )
                .join(repositories, repositories.c.id == manifests.c.repository_id)
                .where(repositories.c.name == repository, manifests.c.digest == digest)
            )
            row = result.first()
        return _manifest_record(row) if row is not None else None

    async def manifest_existing_digests(self, repository: str, digests: Iterable[str]) -> set[str]:
        return await self._present_digests(manifests, repository, digests)

    async def manifest_delete(self, repository: str, digest: str) -> bool:
        async with self._writing() as connection:
            repository_id = await self._repository_id(connection, repository)
            if repository_id is None:
                return False
            result = await connection.execute(
                delete(manifests).where(manifests.c.repository_id == repository_id, manifests.c.digest == digest)
            )
            if result.rowcount == 0:
                return False
            await connection.execute(delete(tags).where(tags.c.repository_id == repository_id, tags.c.digest == digest))
            await connection.execute(
                delete(manifest_references).where(
                    manifest_references.c.repository_id == repository_id,
                    manifest_references.c.manifest_digest == digest,
                )
            )
            return True

    async def tag_resolve(self, repository: str, tag: str) -> str | None:
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(tags.c.digest)
                .join(repositories, repositories.c.id == tags.c.repository_id)
                .where(repositories.c.name == repository, tags.c.name == tag)
            )
            return result.scalar_one_or_none()

    async def tag_get(self, repository: str, tag: str) -> TagRecord | None:
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(tags.c.digest, tags.c.source, tags.c.checked_at)
                .join(repositories, repositories.c.id == tags.c.repository_id)
                .where(repositories.c.name == repository, tags.c.name == tag)
            )
            row = result.first()
        if row is None:
            return None
        return TagRecord(digest=row[0], source=row[1], checked_at=as_utc(row[2]))

    async def tag_mark_checked(self, repository: str, tag: str, checked_at: datetime | None) -> None:
        async with self._writing() as connection:
            repository_id = await self._repository_id(connection, repository)
            if repository_id is None:
                return
            await connection.execute(
                update(tags)
                .where(tags.c.repository_id == repository_id, tags.c.name == tag, tags.c.source == SOURCE_CACHE)
                .values(checked_at=checked_at)
            )

    async def tag_delete(self, repository: str, tag: str) -> bool:
        async with self._writing() as connection:
            repository_id = await self._repository_id(connection, repository)
            if repository_id is None:
                return False
            result = await connection.execute(
                delete(tags).where(tags.c.repository_id == repository_id, tags.c.name == tag)
            )
            return result.rowcount > 0

    async def tag_list(self, repository: str, limit: int, last: str | None) -> list[str] | None:
        async with self.engine.connect() as connection:
            repository_id = await self._repository_id(connection, repository)
            if repository_id is None:
                return None
            query = select(tags.c.name).where(tags.c.repository_id == repository_id)
            if last is not None:
                query = query.where(tags.c.name > last)
            result = await connection.execute(query.order_by(tags.c.name).limit(limit))
            return [row[0] for row in result]

    async def repository_list(self, limit: int, last: str | None) -> list[str]:
        # A repository is listed while it contains a manifest or a blob link.
        has_content = select(manifests.c.repository_id).union(select(repository_blobs.c.repository_id))
        query = select(repositories.c.name).where(repositories.c.id.in_(has_content))
        if last is not None:
            query = query.where(repositories.c.name > last)
        async with self.engine.connect() as connection:
            result = await connection.execute(query.order_by(repositories.c.name).limit(limit))
            return [row[0] for row in result]

    async def referrer_list(
        self,
        repository: str,
        subject: str,
        artifact_type: str | None,
        limit: int,
        last: str | None,
    ) -> list[ManifestRecord]:
        conditions = [repositories.c.name == repository, manifests.c.subject == subject]
        if artifact_type is not None:
            conditions.append(manifests.c.artifact_type == artifact_type)
        if last is not None:
            conditions.append(manifests.c.digest > last)
        query = (
            select(
                manifests.c.digest,
                manifests.c.media_type,
                manifests.c.size,
                manifests.c.subject,
                manifests.c.artifact_type,
                manifests.c.annotations,
                manifests.c.source,
            )
            .join(repositories, repositories.c.id == manifests.c.repository_id)
            .where(and_(*conditions))
            .order_by(manifests.c.digest)
            .limit(limit)
        )
        async with self.engine.connect() as connection:
            result = await connection.execute(query)
            return [_manifest_record(row) for row in result]

    async def referrer_list_all(self, repository: str, subject: str) -> list[ManifestRecord]:
        return await self.referrer_list(repository, subject, None, 1_000_000, None)

    # Referrers synced from upstreams

    async def upstream_referrers_replace(
        self, repository: str, subject: str, referrers: list[UpstreamReferrer], synced_at: datetime
    ) -> None:
        async with self._writing() as connection:
            repository_id = await self._ensure_repository(connection, repository)
            await connection.execute(
                delete(upstream_referrers).where(
                    upstream_referrers.c.repository_id == repository_id, upstream_referrers.c.subject == subject
                )
            )
            unique = {referrer.digest: referrer for referrer in referrers}
            if unique:
                await connection.execute(
                    insert(upstream_referrers),
                    [
                        {
                            "repository_id": repository_id,
                            "subject": subject,
                            "digest": referrer.digest,
                            "media_type": referrer.media_type,
                            "size": referrer.size,
                            "artifact_type": referrer.artifact_type,
                            "annotations": orjson.dumps(referrer.annotations).decode()
                            if referrer.annotations
                            else None,
                            "source": referrer.source,
                            "content_synced": int(referrer.content_synced),
                            "tag": referrer.tag,
                            "synced_at": synced_at,
                        }
                        for referrer in unique.values()
                    ],
                )
            updated = await connection.execute(
                update(referrer_syncs)
                .where(referrer_syncs.c.repository_id == repository_id, referrer_syncs.c.subject == subject)
                .values(synced_at=synced_at)
            )
            if updated.rowcount == 0:
                await connection.execute(
                    insert(referrer_syncs).values(repository_id=repository_id, subject=subject, synced_at=synced_at)
                )

    async def upstream_referrers_get(self, repository: str, subject: str) -> list[UpstreamReferrer]:
        columns = upstream_referrers.c
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(
                    columns.digest,
                    columns.media_type,
                    columns.size,
                    columns.artifact_type,
                    columns.annotations,
                    columns.source,
                    columns.content_synced,
                    columns.tag,
                    columns.synced_at,
                )
                .join(repositories, repositories.c.id == columns.repository_id)
                .where(repositories.c.name == repository, columns.subject == subject)
                .order_by(columns.digest)
            )
            return [
                UpstreamReferrer(
                    digest=row[0],
                    media_type=row[1],
                    size=row[2],
                    artifact_type=row[3],
                    annotations=orjson.loads(row[4]) if row[4] else None,
                    source=row[5],
                    content_synced=bool(row[6]),
                    tag=row[7],
                    synced_at=as_utc(row[8]),
                )
                for row in result
            ]

    async def referrer_sync_time(self, repository: str, subject: str) -> datetime | None:
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(referrer_syncs.c.synced_at)
                .join(repositories, repositories.c.id == referrer_syncs.c.repository_id)
                .where(repositories.c.name == repository, referrer_syncs.c.subject == subject)
            )
            return as_utc(result.scalar_one_or_none())

    async def manifest_parents(self, repository: str, digest: str) -> list[str]:
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(manifest_references.c.manifest_digest)
                .join(repositories, repositories.c.id == manifest_references.c.repository_id)
                .where(
                    repositories.c.name == repository,
                    manifest_references.c.child_digest == digest,
                    manifest_references.c.child_is_manifest == 1,
                )
            )
            return [row[0] for row in result]

    # Uploads

    async def upload_create(self, upload_id: str, repository: str) -> None:
        async with self._writing() as connection:
            repository_id = await self._ensure_repository(connection, repository)
            now = _now()
            await connection.execute(
                insert(uploads).values(id=upload_id, repository_id=repository_id, created_at=now, updated_at=now)
            )

    async def upload_repository(self, upload_id: str) -> str | None:
        async with self.engine.connect() as connection:
            result = await connection.execute(
                select(repositories.c.name)
                .join(uploads, uploads.c.repository_id == repositories.c.id)
                .where(uploads.c.id == upload_id)
            )
            return result.scalar_one_or_none()

    async def upload_touch(self, upload_id: str) -> None:
        async with self._writing() as connection:
            await connection.execute(update(uploads).where(uploads.c.id == upload_id).values(updated_at=_now()))

    async def upload_delete(self, upload_id: str) -> None:
        async with self._writing() as connection:
            await connection.execute(delete(uploads).where(uploads.c.id == upload_id))

    async def upload_ids(self) -> set[str]:
        async with self.engine.connect() as connection:
            result = await connection.execute(select(uploads.c.id))
            return {row[0] for row in result}

    async def count_rows(self) -> dict[str, int]:
        """Return row counts per table, for status output and tests."""
        counts = {}
        async with self.engine.connect() as connection:
            for table in (repositories, blobs, manifests, tags, uploads):
                result = await connection.execute(select(func.count()).select_from(table))
                counts[str(table.name)] = int(result.scalar_one())
            result = await connection.execute(select(func.coalesce(func.sum(blobs.c.size), 0)))
            counts["blob_bytes"] = int(result.scalar_one())
        return counts


def _manifest_record(row: Any) -> ManifestRecord:
    digest, media_type, size, subject, artifact_type, annotations, source = row
    return ManifestRecord(
        digest=digest,
        media_type=media_type,
        size=size,
        subject=subject,
        artifact_type=artifact_type,
        annotations=orjson.loads(annotations) if annotations else None,
        source=source,
    )
