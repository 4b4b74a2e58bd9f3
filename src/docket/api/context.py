"""Typed keys for objects the aiohttp application and its requests carry."""

from __future__ import annotations

from aiohttp import web

from docket.cache.rules import CacheTarget
from docket.cache.service import PullThroughCache
from docket.maintenance.service import Maintenance
from docket.registry import Registry

REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
CACHE: web.AppKey[PullThroughCache] = web.AppKey("cache", PullThroughCache)
MAINTENANCE: web.AppKey[Maintenance] = web.AppKey("maintenance", Maintenance)
REMOTE_ADMIN: web.AppKey[bool] = web.AppKey("remote_admin", bool)

# Request keys set by the router.
TARGET_KEY = "docket.target"
NAMESPACE_KEY = "docket.namespace"


def registry_of(request: web.Request) -> Registry:
    return request.app[REGISTRY]


def cache_of(request: web.Request) -> PullThroughCache:
    return request.app[CACHE]


def touch(request: web.Request, digest: str) -> None:
    """Record that content was read, for LRU eviction."""
    maintenance = request.app.get(MAINTENANCE)
    if maintenance is not None:
        maintenance.access.touch(digest)


def target_of(request: web.Request) -> CacheTarget | None:
    """Return the cache target of the request's repository, or None for a hosted repository."""
    target: CacheTarget | None = request.get(TARGET_KEY)
    return target
