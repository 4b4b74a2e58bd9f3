"""Tag lists of cached repositories: the upstream's list, or the cached tags when it fails."""

from __future__ import annotations

import logging
from urllib.parse import parse_qs, urlsplit

import orjson

from docket.api.links import parse_links
from docket.cache.errors import client_error
from docket.cache.rules import CacheTarget
from docket.errors import ErrorCode
from docket.upstream.client import UpstreamClient
from docket.upstream.errors import UpstreamError, UpstreamNotFound

log = logging.getLogger(__name__)


async def upstream_tags(
    client: UpstreamClient, target: CacheTarget, limit: int, last: str | None
) -> tuple[list[str], str | None] | None:
    """Return one page of the upstream's tags and the `last` of the next page, or None if it failed.

    An upstream 404 is passed on to the client as NAME_UNKNOWN.
    """
    query = f"?n={limit}" + (f"&last={last}" if last else "")
    path = f"/v2/{target.upstream_repository}/tags/list"
    try:
        async with client.request("GET", path + query, repository=target.upstream_repository, retries=0) as response:
            body = await response.read()
            link = response.headers.get("Link")
    except UpstreamNotFound as error:
        raise client_error(error, ErrorCode.NAME_UNKNOWN, f"repository {target.repository}") from None
    except UpstreamError as error:
        log.warning(
            "tag list of %s from upstream %s failed, listing cached tags: %s", target.repository, client.name, error
        )
        return None
    try:
        tags = orjson.loads(body).get("tags") or []
    except (orjson.JSONDecodeError, AttributeError):
        log.warning("upstream %s sent an invalid tag list for %s; listing cached tags", client.name, target.repository)
        return None
    tags = [tag for tag in tags if isinstance(tag, str)]
    next_last = None
    if link:
        target_url = parse_links(link).get("next")
        if target_url:
            values = parse_qs(urlsplit(target_url).query).get("last")
            next_last = values[0] if values else None
        if next_last is None and tags:
            next_last = tags[-1]
    return tags, next_last
