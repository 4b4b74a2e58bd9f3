"""Repository names and tags, with the grammar of the OCI distribution spec."""

from __future__ import annotations

import re

from docket.errors import ErrorCode, RegistryError
from docket.oci.digest import Digest

_NAME_COMPONENT = r"[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*"
_NAME_RE = re.compile(rf"^{_NAME_COMPONENT}(?:/{_NAME_COMPONENT})*$")
_TAG_RE = re.compile(r"^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$")

# CNCF distribution limits a name to 255 characters including the registry host;
# Docket applies the same limit to the repository name alone.
MAX_NAME_LENGTH = 255


def validate_repository(name: str) -> str:
    """Return `name` if it is a valid repository name, else raise NAME_INVALID."""
    if len(name) > MAX_NAME_LENGTH:
        raise RegistryError(
            ErrorCode.NAME_INVALID,
            f"repository name is {len(name)} characters long; the maximum is {MAX_NAME_LENGTH}",
        )
    if _NAME_RE.fullmatch(name) is None:
        raise RegistryError(
            ErrorCode.NAME_INVALID,
            f"invalid repository name {name[:300]!r}: use lowercase path components "
            "separated by '/', each made of letters, digits and single separators",
        )
    return name


def is_valid_tag(tag: str) -> bool:
    return _TAG_RE.fullmatch(tag) is not None


def parse_reference(reference: str, *, for_push: bool = False) -> str | Digest:
    """Parse the `<reference>` of a manifest URL: a tag string or a Digest.

    A reference containing ':' can only be a digest, so a malformed one raises
    DIGEST_INVALID. A string that is not a valid tag cannot name a stored manifest:
    reads get MANIFEST_UNKNOWN (404), and a push gets MANIFEST_INVALID (400), since
    the spec has no dedicated tag code.
    """
    if ":" in reference:
        return Digest.parse(reference)
    if is_valid_tag(reference):
        return reference
    rule = "a tag is 1 to 128 characters of letters, digits, '_', '.' and '-', not starting with '.' or '-'"
    if for_push:
        raise RegistryError(ErrorCode.MANIFEST_INVALID, f"invalid tag {reference[:200]!r}: {rule}")
    raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, f"manifest {reference[:200]!r} is not known: {rule}")
