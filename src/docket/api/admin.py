"""Administrative endpoints under `/_docket/`, outside the OCI API."""

from __future__ import annotations

from aiohttp import web

from docket.api.context import CACHE, MAINTENANCE, REGISTRY
from docket.api.responses import json_response
from docket.errors import ErrorCode, RegistryError
from docket.oci.digest import Digest
from docket.oci.reference import is_valid_tag, validate_repository
from docket.referrers.inspect import manifest_tree


def split_reference(text: str) -> tuple[str, str]:
    """Split `repository:tag` into its parts, raising a 400 for anything else."""
    name, separator, tag = text.rpartition(":")
    if not separator or "/" in tag or not is_valid_tag(tag):
        raise RegistryError(
            ErrorCode.NAME_INVALID,
            f"invalid reference {text[:200]!r}; expected REPOSITORY:TAG or REPOSITORY@DIGEST",
            status=400,
        )
    return validate_repository(name), tag


async def refresh(request: web.Request) -> web.StreamResponse:
    """Revalidate a cached tag against its upstream now, whatever its TTL, and re-sync its referrers."""
    reference = request.query.get("reference", "")
    if "@" in reference:
        raise RegistryError(
            ErrorCode.NAME_INVALID,
            f"{reference[:200]!r} names a digest; digests never change, so only tags can be refreshed",
            status=400,
        )
    name, tag = split_reference(reference)
    cache = request.app.get(CACHE)
    target = cache.resolve(name) if cache is not None else None
    if cache is None or target is None:
        raise RegistryError(ErrorCode.NAME_UNKNOWN, f"{name} is not under any pull-through rule", status=404)
    decision, stored = await cache.manifests.refresh(target, tag)
    await cache.referrers.resync(target, Digest.parse(stored.record.digest))
    return json_response({"reference": f"{name}:{tag}", "digest": stored.record.digest, "result": decision})


def split_any_reference(text: str) -> tuple[str, str]:
    """Split `repository:tag` or `repository@digest`."""
    if "@" in text:
        name, _, digest = text.partition("@")
        Digest.parse(digest)
        return validate_repository(name), digest
    return split_reference(text)


async def inspect(request: web.Request) -> web.StreamResponse:
    """Describe the cached tree of an image: manifests, platform children, referrers, policy."""
    name, reference = split_any_reference(request.query.get("reference", ""))
    registry = request.app[REGISTRY]
    cache = request.app.get(CACHE)
    target = cache.resolve(name) if cache is not None else None
    repository = target.repository if target is not None else name
    digest = reference if ":" in reference else await registry.metadata.tag_resolve(repository, reference)
    if digest is None:
        raise RegistryError(ErrorCode.MANIFEST_UNKNOWN, f"{name}:{reference} is not in the cache")
    tree = await manifest_tree(registry, cache, target, repository, digest)
    return json_response(
        {
            "reference": f"{name}{'@' if ':' in reference else ':'}{reference}",
            "rule": target.rule.prefix if target is not None else None,
            "upstream": target.rule.url if target is not None else None,
            "manifest": tree,
        }
    )


async def gc(request: web.Request) -> web.StreamResponse:
    """Delete unreferenced blobs and expired uploads now; `?dry_run=true` only reports them."""
    maintenance = request.app.get(MAINTENANCE)
    if maintenance is None:
        raise RegistryError(ErrorCode.UNSUPPORTED, "this server runs without maintenance tasks", status=404)
    dry_run = request.query.get("dry_run", "false").lower() in ("1", "true", "yes")
    report = await maintenance.collect_garbage(dry_run)
    return json_response(
        {
            "dry_run": report.dry_run,
            "blobs": report.blobs,
            "bytes": report.bytes,
            "uploads": report.uploads,
            "repositories": report.repositories,
            "summary": report.summary(),
        }
    )


async def evict(request: web.Request) -> web.StreamResponse:
    """Run an eviction pass now."""
    maintenance = request.app.get(MAINTENANCE)
    if maintenance is None:
        raise RegistryError(ErrorCode.UNSUPPORTED, "this server runs without maintenance tasks", status=404)
    report = await maintenance.evictor.enforce()
    return json_response(
        {
            "images": report.units,
            "manifests": report.manifests,
            "blobs": report.blobs,
            "bytes": report.bytes,
            "store_bytes": report.store_bytes,
        }
    )
