"""Alembic migrations, run programmatically at start-up.

Alembic is imported only when a migration has to run. A database already at
`HEAD_REVISION` is recognised with one query, so serving processes never load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from sqlalchemy import inspect, text
from sqlalchemy.engine import Connection

if TYPE_CHECKING:
    from alembic.config import Config

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision under migrations/versions. A test checks it against Alembic's own view.
HEAD_REVISION = "0004"


def alembic_config(connection: Connection | None = None) -> Config:
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    if connection is not None:
        config.attributes["connection"] = connection
    return config


def current_revision(connection: Connection) -> str | None:
    """Return the database's Alembic revision, or None for a database without one."""
    if not inspect(connection).has_table("alembic_version"):
        return None
    revision: str | None = connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
    return revision


def upgrade_to_head(connection: Connection) -> None:
    """Apply every migration not yet applied, on an open connection."""
    if current_revision(connection) == HEAD_REVISION:
        return
    from alembic import command

    command.upgrade(alembic_config(connection), "head")
