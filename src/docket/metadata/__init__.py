"""Metadata: repositories, tags, manifest records, blob links, referrers and uploads."""

from docket.metadata.base import ManifestRecord, MetadataStore
from docket.metadata.sql import SqlMetadataStore

__all__ = ["ManifestRecord", "MetadataStore", "SqlMetadataStore"]
