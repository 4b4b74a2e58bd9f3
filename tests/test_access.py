"""Tests of the access tracker: read times reach the metadata database, even for blobs stored after the read."""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from docket.maintenance.access import MISSING_KEPT, AccessTracker
from docket.metadata.sql import SqlMetadataStore

DIGEST = "sha256:" + "ab" * 32


@pytest.fixture
async def metadata(tmp_path: Path) -> AsyncIterator[SqlMetadataStore]:
    store = SqlMetadataStore.for_sqlite_file(tmp_path / "metadata.db")
    await store.open()
    yield store
    await store.close()


async def last_access(metadata: SqlMetadataStore, digest: str) -> datetime | None:
    graph = await metadata.content_graph()
    return graph.blobs[digest].last_access


async def test_touch_recorded(metadata: SqlMetadataStore) -> None:
    await metadata.blob_link("team/app", DIGEST, 10)
    tracker = AccessTracker(metadata)

    tracker.touch(DIGEST)
    await tracker.flush()

    assert await last_access(metadata, DIGEST) is not None


async def test_touch_before_record_kept(metadata: SqlMetadataStore) -> None:
    tracker = AccessTracker(metadata)
    touched = datetime.now(UTC)
    tracker.touch(DIGEST, touched)

    # The blob is read while its download is still being committed, and recorded after the first flush.
    await tracker.flush()
    await metadata.blob_link("team/app", DIGEST, 10)
    await tracker.flush()

    recorded = await last_access(metadata, DIGEST)
    assert recorded is not None
    assert recorded.replace(tzinfo=UTC) == touched


async def test_touch_of_missing_blob_expires(metadata: SqlMetadataStore) -> None:
    tracker = AccessTracker(metadata)
    tracker.touch(DIGEST, datetime.now(UTC) - timedelta(seconds=MISSING_KEPT + 1))

    await tracker.flush()
    await metadata.blob_link("team/app", DIGEST, 10)
    await tracker.flush()

    assert await last_access(metadata, DIGEST) is None
