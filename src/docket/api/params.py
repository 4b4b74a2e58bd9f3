"""Parsing of path and query parameters into spec types, with OCI errors for bad input."""

from __future__ import annotations

from aiohttp import web

from docket.errors import ErrorCode, RegistryError
from docket.oci.digest import Digest
from docket.oci.reference import validate_repository


def repository(name: str) -> str:
    return validate_repository(name)


def digest_param(request: web.Request, key: str = "digest") -> Digest | None:
    text = request.query.get(key)
    if text is None:
        return None
    return Digest.parse(text)


def page_size(request: web.Request, maximum: int) -> int:
    """Return `n` from the query, clamped to `maximum`; absent means the maximum."""
    text = request.query.get("n")
    if text is None or text == "":
        return maximum
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value < 0:
        raise RegistryError(
            ErrorCode.UNSUPPORTED,
            f"invalid page size n={text[:40]!r}: expected a non-negative integer",
            status=400,
        )
    return min(value, maximum)


def content_length(request: web.Request) -> int | None:
    return request.content_length
