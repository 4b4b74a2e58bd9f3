"""Record where manifests and tags come from and when cached tags were checked upstream.

Revision ID: 0002
Revises: 0001
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("manifests") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="push"))
    with op.batch_alter_table("tags") as batch:
        batch.add_column(sa.Column("source", sa.String(16), nullable=False, server_default="push"))
        batch.add_column(sa.Column("checked_at", sa.DateTime(timezone=True), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("tags") as batch:
        batch.drop_column("checked_at")
        batch.drop_column("source")
    with op.batch_alter_table("manifests") as batch:
        batch.drop_column("source")
