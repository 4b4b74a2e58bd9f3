"""Tests of the metadata migrations run at start-up, and of start-up when they fail."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import httpx
from alembic import command
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine

from docket.metadata import migrate
from docket.metadata.sql import SqlMetadataStore
from tests.support.oci import push_blob, random_blob
from tests.support.processes import DocketProcess

COMMAND_TIMEOUT = 60.0


def revision_of(path: Path) -> str | None:
    engine = create_engine(f"sqlite:///{path}")
    try:
        with engine.connect() as connection:
            return migrate.current_revision(connection)
    finally:
        engine.dispose()


def test_head_revision_matches_scripts() -> None:
    heads = ScriptDirectory.from_config(migrate.alembic_config()).get_heads()

    assert heads == [migrate.HEAD_REVISION]


async def test_open_creates_schema(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    store = SqlMetadataStore.for_sqlite_file(path)
    await store.open()
    await store.close()

    assert revision_of(path) == migrate.HEAD_REVISION


async def test_open_upgrades_older_schema(tmp_path: Path) -> None:
    path = tmp_path / "metadata.db"
    engine = create_engine(f"sqlite:///{path}")
    with engine.begin() as connection:
        command.upgrade(migrate.alembic_config(connection), "0003")
    engine.dispose()
    assert revision_of(path) == "0003"

    store = SqlMetadataStore.for_sqlite_file(path)
    await store.open()
    await store.close()

    assert revision_of(path) == migrate.HEAD_REVISION


def test_current_schema_skips_alembic(tmp_path: Path) -> None:
    script = textwrap.dedent(
        """
        import asyncio, sys
        from pathlib import Path
        from docket.metadata.sql import SqlMetadataStore

        async def main() -> None:
            store = SqlMetadataStore.for_sqlite_file(Path(sys.argv[1]))
            await store.open()
            await store.close()

        asyncio.run(main())
        print(sorted(name for name in sys.modules if name.split(".")[0] == "alembic"))
        """
    )
    path = str(tmp_path / "metadata.db")
    runs = [
        subprocess.run([sys.executable, "-c", script, path], capture_output=True, text=True, timeout=COMMAND_TIMEOUT)
        for _ in range(2)
    ]

    assert [run.returncode for run in runs] == [0, 0], [run.stderr for run in runs]
    # The first open creates the schema with Alembic. The second finds it current and never imports it.
    assert runs[0].stdout.strip() != "[]"
    assert runs[1].stdout.strip() == "[]"


def test_serve_corrupt_metadata_fails(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    (data_dir / "metadata.db").write_bytes(b"this is not an SQLite database" * 100)

    result = subprocess.run(
        [sys.executable, "-m", "docket", "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data_dir)],
        capture_output=True,
        text=True,
        timeout=COMMAND_TIMEOUT,
    )

    assert result.returncode == 1
    assert f"docket: cannot serve: preparing the data directory {data_dir} failed" in result.stderr
    assert "not a database" in result.stderr


def test_workers_serve_after_migration(tmp_path: Path, start_docket: Callable[..., DocketProcess]) -> None:
    server = start_docket("--workers", "2", data_dir=tmp_path / "data")
    blob = random_blob(512)
    with httpx.Client(base_url=server.url, timeout=10.0) as client:
        push_blob(client, "migrations/workers", blob)
        response = client.get(f"/v2/migrations/workers/blobs/{blob.digest}")

    assert response.status_code == 200
    assert response.content == blob.data
    assert revision_of(tmp_path / "data" / "metadata.db") == migrate.HEAD_REVISION
