"""SQLAlchemy Core tables of the metadata database.

Digests are stored as their string form. Only portable types are used so the same
schema runs on SQLite and PostgreSQL.
"""

from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

DIGEST = String(150)  # "sha512:" plus 128 hex digits is the longest supported digest

repositories = Table(
    "repositories",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("name", String(255), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Every committed blob, whichever repositories link it.
blobs = Table(
    "blobs",
    metadata,
    Column("digest", DIGEST, primary_key=True),
    Column("size", BigInteger, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Last time a client read it (manifest or blob, any repository), for LRU eviction.
    Column("last_access", DateTime(timezone=True), nullable=True),
)
Index("ix_blobs_last_access", blobs.c.last_access)

# A repository may serve a blob only through a link: pushed, mounted or referenced.
repository_blobs = Table(
    "repository_blobs",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", DIGEST, primary_key=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # "push" for uploads and mounts, which eviction never removes; "cache" for links
    # made because a cached manifest references the blob or it was fetched upstream.
    Column("source", String(16), nullable=False, server_default="push"),
)
Index("ix_repository_blobs_digest", repository_blobs.c.digest)

manifests = Table(
    "manifests",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("digest", DIGEST, primary_key=True),
    Column("media_type", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("subject", DIGEST, nullable=True),
    Column("artifact_type", String(255), nullable=True),
    Column("annotations", Text, nullable=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # "push" for content pushed to Docket, "cache" for content fetched from an upstream.
    Column("source", String(16), nullable=False, server_default="push"),
)
Index("ix_manifests_subject", manifests.c.repository_id, manifests.c.subject)

# Blobs and child manifests each manifest references, for garbage collection.
manifest_references = Table(
    "manifest_references",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("manifest_digest", DIGEST, primary_key=True),
    Column("child_digest", DIGEST, primary_key=True),
    Column("child_is_manifest", Integer, nullable=False),
)
Index("ix_manifest_references_child", manifest_references.c.child_digest)

tags = Table(
    "tags",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("name", String(128), primary_key=True),
    Column("digest", DIGEST, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("source", String(16), nullable=False, server_default="push"),
    # When a cached tag was last confirmed upstream; NULL for pushed tags.
    Column("checked_at", DateTime(timezone=True), nullable=True),
)
Index("ix_tags_digest", tags.c.repository_id, tags.c.digest)

uploads = Table(
    "uploads",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)

# Referrers an upstream listed for a cached subject, including those whose content a
# rule's filter skipped (content_synced = 0), and cosign signature tags (source
# "cosign_tag", never listed by the referrers API).
upstream_referrers = Table(
    "upstream_referrers",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("subject", DIGEST, primary_key=True),
    Column("digest", DIGEST, primary_key=True),
    Column("media_type", String(255), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("artifact_type", String(255), nullable=True),
    Column("annotations", Text, nullable=True),
    Column("source", String(16), nullable=False),
    Column("content_synced", Integer, nullable=False),
    Column("tag", String(128), nullable=True),
    Column("synced_at", DateTime(timezone=True), nullable=False),
)

# When the referrers of a cached subject were last synced from the upstream.
referrer_syncs = Table(
    "referrer_syncs",
    metadata,
    Column("repository_id", Integer, ForeignKey("repositories.id", ondelete="CASCADE"), primary_key=True),
    Column("subject", DIGEST, primary_key=True),
    Column("synced_at", DateTime(timezone=True), nullable=False),
)
