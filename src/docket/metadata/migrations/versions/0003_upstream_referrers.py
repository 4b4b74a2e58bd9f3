"""Remember the referrers an upstream lists for each cached subject, and when they were synced.

Revision ID: 0003
Revises: 0002
Create Date: 2026-12-04
"""

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

DIGEST = sa.String(150)


def upgrade() -> None:
    op.create_table(
        "upstream_referrers",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("subject", DIGEST, primary_key=True),
        sa.Column("digest", DIGEST, primary_key=True),
        sa.Column("media_type", sa.String(255), nullable=False),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("artifact_type", sa.String(255), nullable=True),
        sa.Column("annotations", sa.Text, nullable=True),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("content_synced", sa.Integer, nullable=False),
        sa.Column("tag", sa.String(128), nullable=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "referrer_syncs",
        sa.Column("repository_id", sa.Integer, sa.ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("subject", DIGEST, primary_key=True),
        sa.Column("synced_at", sa.DateTime(timezone=True), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("referrer_syncs")
    op.drop_table("upstream_referrers")
