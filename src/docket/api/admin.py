"""Administrative endpoints under `/_docket/`, outside the OCI API."""

from __future__ import annotations

from aiohttp import web

from docket.api.context import CACHE
from docket.api.responses import json_response
from docket.errors import ErrorCode, RegistryError
from docket.oci.reference import is_valid_tag, validate_repository


def split_reference(text: str) -> tuple[str, str]:
    """Split `repository:tag` into its parts, raising a 400 for anything else."""
    name, separator, tag = text.rpartition(":")
    if not separator or "/" in tag or not is_valid_tag(tag):
        raise RegistryError(
            ErrorCode.NAME_INVALID, f"invalid reference {text[:200]!r}; expected REPOSITORY:TAG", status=400
        )
    return validate_repository(name), tag


async def refresh(request: web.Request) -> web.StreamResponse:
    """Revalidate a cached tag against its upstream now, whatever its TTL."""
    reference = request.query.get("reference", "")
    name, tag = split_reference(reference)
    cache = request.app.get(CACHE)
    target = cache.resolve(name) if cache is not None else None
    if cache is None or target is None:
        raise RegistryError(ErrorCode.NAME_UNKNOWN, f"{name} is not under any pull-through rule", status=404)
    decision, stored = await cache.manifests.refresh(target, tag)
    return json_response({"reference": f"{name}:{tag}", "digest": stored.record.digest, "result": decision})
