"""The referrers of a subject in a hosted repository."""

from __future__ import annotations

from docket.metadata.base import ManifestRecord, MetadataStore
from docket.oci.descriptor import Descriptor
from docket.oci.digest import Digest


def referrer_descriptor(record: ManifestRecord) -> Descriptor:
    return Descriptor(
        media_type=record.media_type,
        digest=Digest.parse(record.digest),
        size=record.size,
        artifact_type=record.artifact_type,
        annotations=record.annotations,
    )


class Referrers:
    def __init__(self, metadata: MetadataStore) -> None:
        self.metadata = metadata

    async def list(
        self, repository: str, subject: Digest, artifact_type: str | None, limit: int, last: str | None
    ) -> list[Descriptor]:
        """Return up to `limit` referrer descriptors ordered by digest, starting after `last`."""
        records = await self.metadata.referrer_list(repository, str(subject), artifact_type, limit, last)
        return [referrer_descriptor(record) for record in records]
