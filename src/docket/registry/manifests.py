"""Manifests and tags of hosted repositories."""

from __future__ import annotations

import logging
from collections import OrderedDict
from dataclasses import dataclass
from typing import TYPE_CHECKING

from docket.errors import ErrorCode, RegistryError
from docket.metadata.base import ManifestPut, ManifestRecord, MetadataStore
from docket.oci import mediatypes
from docket.oci.digest import Digest
from docket.oci.manifest import ParsedManifest, parse_manifest
from docket.registry.generation import Observer, SharedGeneration
from docket.storage.base import ContentStore
from docket.storage.guard import ContentGuard

if TYPE_CHECKING:
    from docket.registry import Limits

log = logging.getLogger(__name__)

# The OCI empty descriptor's content, `{}`. Artifact manifests use it as config and
# some clients do not push it, so the registry stores it itself when referenced.
EMPTY_JSON = b"{}"
EMPTY_JSON_DIGEST = Digest.of_bytes(EMPTY_JSON)


@dataclass(frozen=True, slots=True)
class StoredManifest:
    record: ManifestRecord
    data: bytes


def manifest_unknown(repository: str, reference: str | Digest) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference} is not known in repository {repository}")


class ManifestCache:
    """A byte-bounded LRU of manifests by (repository, digest).

    Digest-addressed content never changes, so an entry goes stale only when the
    manifest is deleted or evicted. `discard` bumps the shared generation, and every
    process empties its cache when it reads a new generation value.
    An entry that a read started before the bump puts back is dropped at the next `get`.
    """

    def __init__(self, max_bytes: int, generation: SharedGeneration | None = None) -> None:
        self.max_bytes = max_bytes
        self.generation = generation or SharedGeneration()
        self._observer = Observer(self.generation)
        self._entries: OrderedDict[tuple[str, str], StoredManifest] = OrderedDict()
        self._bytes = 0

    def get(self, repository: str, digest: str) -> StoredManifest | None:
        if self._observer.changed():
            self._entries.clear()
            self._bytes = 0
        key = (repository, digest)
        entry = self._entries.get(key)
        if entry is not None:
            self._entries.move_to_end(key)
        return entry

    def put(self, repository: str, entry: StoredManifest) -> None:
        if len(entry.data) > self.max_bytes:
            return
        key = (repository, entry.record.digest)
        old = self._entries.pop(key, None)
        if old is not None:
            self._bytes -= len(old.data)
        self._entries[key] = entry
        self._bytes += len(entry.data)
        while self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.data)

    def discard(self, repository: str, digest: str) -> None:
        """Drop an entry here and, through the shared generation, in every other process."""
        old = self._entries.pop((repository, digest), None)
        if old is not None:
            self._bytes -= len(old.data)
        self.generation.bump()


class Manifests:
    def __init__(
        self,
        content: ContentStore,
        metadata: MetadataStore,
        limits: Limits,
        guard: ContentGuard,
        generation: SharedGeneration | None = None,
    ) -> None:
        self.content = content
        self.metadata = metadata
        self.limits = limits
        self.guard = guard
        self.cache = ManifestCache(limits.manifest_cache_bytes, generation)

    async def resolve(self, repository: str, reference: str | Digest) -> str:
        """Return the digest a reference names, raising MANIFEST_UNKNOWN for an unknown tag."""
        if isinstance(reference, Digest):
            return str(reference)
        digest = await self.metadata.tag_resolve(repository, reference)
        if digest is None:
            raise manifest_unknown(repository, reference)
        return digest

    async def get(self, repository: str, reference: str | Digest) -> StoredManifest:
        digest = await self.resolve(repository, reference)
        cached = self.cache.get(repository, digest)
        if cached is not None:
            return cached
        record = await self.metadata.manifest_get(repository, digest)
        if record is None:
            raise manifest_unknown(repository, reference)
        data = await self.content.read(Digest.parse(digest))
        stored = StoredManifest(record, data)
        self.cache.put(repository, stored)
        return stored

    async def put(
        self, repository: str, reference: str | Digest, content_type: str | None, data: bytes
    ) -> tuple[Digest, ParsedManifest]:
        """Validate and store a pushed manifest, tagging it when `reference` is a tag."""
        if len(data) > self.limits.max_manifest_size:
            raise RegistryError(
                ErrorCode.MANIFEST_INVALID,
                f"manifest is larger than the maximum of {self.limits.max_manifest_size} bytes",
                status=413,
            )
        parsed = parse_manifest(data, content_type)
        if isinstance(reference, Digest):
            digest = Digest.of_bytes(data, reference.algorithm)
            if digest != reference:
                raise RegistryError(
                    ErrorCode.DIGEST_INVALID, f"manifest has digest {digest}, but was pushed as {reference}"
                )
            tag = None
        else:
            digest = Digest.of_bytes(data)
            tag = reference

        async with self.guard.writing():
            await self._check_references(repository, parsed)
            await self.content.write_bytes(digest, data)
            await self._record(repository, digest, parsed, data, tag)
        log.info("stored manifest %s in %s%s", digest, repository, f" as tag {tag}" if tag else "")
        return digest, parsed

    async def _record(
        self, repository: str, digest: Digest, parsed: ParsedManifest, data: bytes, tag: str | None
    ) -> None:
        record = ManifestRecord(
            digest=str(digest),
            media_type=parsed.media_type,
            size=len(data),
            subject=str(parsed.subject.digest) if parsed.subject else None,
            artifact_type=parsed.artifact_type,
            annotations=parsed.annotations,
        )
        await self.metadata.manifest_put(
            ManifestPut(
                repository=repository,
                record=record,
                blob_digests=frozenset(str(blob.digest) for blob in parsed.blobs),
                child_manifest_digests=frozenset(str(child.digest) for child in parsed.manifests),
                tag=tag,
            )
        )
        self.cache.put(repository, StoredManifest(record, data))

    async def _check_references(self, repository: str, parsed: ParsedManifest) -> None:
        """Reject a manifest whose blobs or child manifests the repository does not hold."""
        wanted_blobs = {
            str(blob.digest) for blob in parsed.blobs if blob.media_type not in mediatypes.NON_DISTRIBUTABLE_LAYER_TYPES
        }
        empty_json = str(EMPTY_JSON_DIGEST)
        linked = await self.metadata.blob_linked_digests(repository, wanted_blobs)
        missing = wanted_blobs - linked - {empty_json}
        wanted_children = {str(child.digest) for child in parsed.manifests}
        missing |= wanted_children - await self.metadata.manifest_existing_digests(repository, wanted_children)
        if missing:
            raise RegistryError(
                ErrorCode.MANIFEST_BLOB_UNKNOWN,
                f"manifest references {len(missing)} blob(s) or manifest(s) not in repository "
                f"{repository}: {', '.join(sorted(missing)[:5])}",
                detail={"missing": sorted(missing)},
            )
        if empty_json in wanted_blobs and empty_json not in linked:
            await self.content.write_bytes(EMPTY_JSON_DIGEST, EMPTY_JSON)
            await self.metadata.blob_link(repository, empty_json, len(EMPTY_JSON))

    async def delete(self, repository: str, reference: str | Digest) -> None:
        """Delete a manifest by digest (with the tags that point to it), or only a tag."""
        if isinstance(reference, Digest):
            deleted = await self.metadata.manifest_delete(repository, str(reference))
            self.cache.discard(repository, str(reference))
        else:
            deleted = await self.metadata.tag_delete(repository, reference)
        if not deleted:
            raise manifest_unknown(repository, reference)
        log.info("deleted manifest %s from %s", reference, repository)

    async def tags(self, repository: str, limit: int, last: str | None) -> list[str]:
        names = await self.metadata.tag_list(repository, limit, last)
        if names is None:
            raise RegistryError(ErrorCode.NAME_UNKNOWN, f"repository {repository} is not known")
        return names
