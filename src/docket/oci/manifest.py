"""Parsing of pushed manifests and indexes into the facts the registry stores.

The bytes are never re-serialized: parsing only validates them and extracts the
descriptors a manifest references, its subject and its artifact type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from docket.errors import ErrorCode, RegistryError
from docket.oci import mediatypes
from docket.oci.descriptor import Descriptor
from docket.oci.digest import Digest


@dataclass(frozen=True, slots=True)
class ParsedManifest:
    media_type: str
    blobs: tuple[Descriptor, ...]
    """Config and layers (image manifests) or blobs of an artifact manifest."""
    manifests: tuple[Descriptor, ...]
    """Child manifests of an index."""
    subject: Descriptor | None
    artifact_type: str | None
    annotations: dict[str, str] | None

    @property
    def is_index(self) -> bool:
        return self.media_type in mediatypes.INDEX_TYPES


# Content types some clients send for any JSON body; they carry no information about the manifest type.
_GENERIC_CONTENT_TYPES = frozenset({"application/json", "application/octet-stream", "text/plain"})


def _invalid(message: str) -> RegistryError:
    return RegistryError(ErrorCode.MANIFEST_INVALID, message)


def _parse_descriptor(value: Any, where: str) -> Descriptor:
    if not isinstance(value, dict):
        raise _invalid(f"{where} is not a JSON object")
    media_type = value.get("mediaType")
    digest_text = value.get("digest")
    size = value.get("size")
    if not isinstance(media_type, str) or not media_type:
        raise _invalid(f"{where}.mediaType is missing or not a string")
    if not isinstance(digest_text, str):
        raise _invalid(f"{where}.digest is missing or not a string")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _invalid(f"{where}.size is missing or not a non-negative integer")
    try:
        digest = Digest.parse(digest_text)
    except RegistryError as error:
        raise _invalid(f"{where}.digest: {error.message}") from None
    artifact_type = value.get("artifactType")
    annotations = value.get("annotations")
    platform = value.get("platform")
    return Descriptor(
        media_type=media_type,
        digest=digest,
        size=size,
        artifact_type=artifact_type if isinstance(artifact_type, str) else None,
        annotations=annotations if isinstance(annotations, dict) else None,
        platform=platform if isinstance(platform, dict) else None,
    )


def _parse_descriptor_list(value: Any, where: str) -> tuple[Descriptor, ...]:
    if value is None:
        return ()
    if not isinstance(value, list):
        raise _invalid(f"{where} is not a JSON array")
    return tuple(_parse_descriptor(item, f"{where}[{i}]") for i, item in enumerate(value))


def parse_manifest(data: bytes, content_type: str | None) -> ParsedManifest:
    """Validate manifest bytes and extract what the registry indexes.

    The media type comes from the `mediaType` field when present, else from the
    request's Content-Type. When both are present they must agree.
    """
    try:
        document = orjson.loads(data)
    except orjson.JSONDecodeError as error:
        raise _invalid(f"manifest is not valid JSON: {error}") from None
    if not isinstance(document, dict):
        raise _invalid("manifest is not a JSON object")

    declared = document.get("mediaType")
    if declared is not None and not isinstance(declared, str):
        raise _invalid("mediaType is not a string")
    content_type = (content_type or "").split(";")[0].strip() or None
    if content_type in _GENERIC_CONTENT_TYPES:
        content_type = None
    if declared and content_type and declared != content_type:
        raise _invalid(f"manifest mediaType {declared!r} does not match Content-Type {content_type!r}")
    media_type = declared or content_type
    if media_type is None:
        media_type = _guess_media_type(document)

    if media_type in (mediatypes.DOCKER_MANIFEST_V1, mediatypes.DOCKER_MANIFEST_V1_SIGNED):
        return ParsedManifest(media_type, (), (), None, None, None)

    if "manifests" in document and "layers" not in document and "config" not in document:
        if media_type not in mediatypes.INDEX_TYPES and media_type in mediatypes.MANIFEST_TYPES:
            raise _invalid(f"an index cannot have mediaType {media_type!r}")
        manifests = _parse_descriptor_list(document.get("manifests"), "manifests")
        blobs: tuple[Descriptor, ...] = ()
    else:
        if media_type in mediatypes.INDEX_TYPES:
            raise _invalid("an index must have a 'manifests' array")
        manifests = ()
        blobs = _parse_descriptor_list(document.get("layers"), "layers")
        if "config" in document:
            blobs = (_parse_descriptor(document["config"], "config"), *blobs)
        elif media_type in mediatypes.IMAGE_MANIFEST_TYPES:
            raise _invalid("an image manifest must have a 'config' descriptor")
        blobs += _parse_descriptor_list(document.get("blobs"), "blobs")

    subject = None
    if document.get("subject") is not None:
        subject = _parse_descriptor(document["subject"], "subject")

    artifact_type = document.get("artifactType")
    if artifact_type is not None and not isinstance(artifact_type, str):
        raise _invalid("artifactType is not a string")
    if not artifact_type and not manifests and "config" in document:
        # The referrers API reports the config media type when artifactType is absent.
        artifact_type = blobs[0].media_type
    annotations = document.get("annotations")
    if annotations is not None and not isinstance(annotations, dict):
        raise _invalid("annotations is not a JSON object")
    return ParsedManifest(
        media_type=media_type,
        blobs=blobs,
        manifests=manifests,
        subject=subject,
        artifact_type=artifact_type or None,
        annotations=annotations or None,
    )


def _guess_media_type(document: dict[str, Any]) -> str:
    """Pick a media type for a manifest that declares none (allowed for OCI content)."""
    if document.get("schemaVersion") == 1:
        return mediatypes.DOCKER_MANIFEST_V1_SIGNED if "signatures" in document else mediatypes.DOCKER_MANIFEST_V1
    if "manifests" in document:
        return mediatypes.OCI_INDEX
    return mediatypes.OCI_MANIFEST
