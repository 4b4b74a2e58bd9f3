"""Track when content was last used, and whether a blob link came from a push or the cache.

Revision ID: 0004
Revises: 0003
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("blobs") as batch:
        batch.add_column(sa.Column("last_access", sa.DateTime(timezone=True), nullable=True))
    op.create_index("ix_blobs_last_access", "blobs", ["last_access"])
    with op.batch_alter_table("repository_blobs") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="push"))
    op.create_index("ix_manifest_references_child", "manifest_references", ["child_digest"])


def downgrade() -> None:
    op.drop_index("ix_manifest_references_child", "manifest_references")
    with op.batch_alter_table("repository_blobs") as batch:
        batch.drop_column("source")
    op.drop_index("ix_blobs_last_access", "blobs")
    with op.batch_alter_table("blobs") as batch:
        batch.drop_column("last_access")
