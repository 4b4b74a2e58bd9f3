"""Content storage: blobs and manifests addressed by digest, and upload data."""

from docket.storage.base import ContentStore, DigestMismatch, SizeMismatch
from docket.storage.filesystem import FilesystemStore

__all__ = ["ContentStore", "DigestMismatch", "FilesystemStore", "SizeMismatch"]
