"""Paginated lists: tags of a repository and the catalog of repositories."""

from __future__ import annotations

from aiohttp import web

from docket.api import params
from docket.api.context import cache_of, registry_of, target_of
from docket.api.links import next_link
from docket.api.responses import json_response
from docket.cache.tags import upstream_tags


async def tags_list(request: web.Request, name: str) -> web.StreamResponse:
    registry = registry_of(request)
    limit = params.page_size(request, registry.limits.max_page_size)
    last = request.query.get("last") or None
    target = target_of(request)
    if target is not None and limit:
        cache = cache_of(request)
        page = await upstream_tags(cache.clients[target.rule.prefix], target, limit, last)
        if page is not None:
            tags, next_last = page
            headers = {}
            if next_last is not None:
                headers["Link"] = next_link(f"/v2/{name}/tags/list", {"n": limit, "last": next_last})
            return json_response({"name": name, "tags": tags}, headers=headers)
    # One extra row shows whether a next page exists.
    names = await registry.manifests.tags(name, limit + 1 if limit else 0, last)
    headers = {}
    if len(names) > limit:
        names = names[:limit]
        headers["Link"] = next_link(f"/v2/{name}/tags/list", {"n": limit, "last": names[-1]})
    return json_response({"name": name, "tags": names}, headers=headers)


async def catalog(request: web.Request) -> web.StreamResponse:
    registry = registry_of(request)
    limit = params.page_size(request, registry.limits.max_page_size)
    last = request.query.get("last") or None
    names = await registry.metadata.repository_list(limit + 1, last) if limit else []
    headers = {}
    if len(names) > limit:
        names = names[:limit]
        headers["Link"] = next_link("/v2/_catalog", {"n": limit, "last": names[-1]})
    return json_response({"repositories": names}, headers=headers)
