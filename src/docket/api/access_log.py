"""One log line per request, in access-log form with structured fields."""

from __future__ import annotations

import logging
import re
import uuid

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger

from docket.api.context import TARGET_KEY

REQUEST_ID_KEY = "docket.request_id"
CACHE_STATUS_KEY = "docket.cache_status"
_REQUEST_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,64}")
_REFERENCE_RE = re.compile(r"^/v2/(?P<name>.+)/(?:manifests|blobs|referrers)/(?P<reference>[^/]+)$")

log = logging.getLogger("docket.access")


def request_id(request: web.BaseRequest) -> str:
    """Return the request's id: the client's `X-Request-Id` if it is sane, else a new one."""
    existing: str | None = request.get(REQUEST_ID_KEY)
    if existing is None:
        offered = request.headers.get("X-Request-Id", "")
        existing = offered if _REQUEST_ID_RE.fullmatch(offered) else uuid.uuid4().hex[:16]
        request[REQUEST_ID_KEY] = existing
    return existing


class AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        if not self.logger.isEnabledFor(logging.INFO):
            return
        match = _REFERENCE_RE.match(request.path)
        target = request.get(TARGET_KEY)
        repository = match["name"] if match else None
        if target is not None:
            repository = target.repository
        cache_status = request.get(CACHE_STATUS_KEY) or {}
        size = response.content_length if response.content_length is not None else response.body_length
        self.logger.info(
            '%s "%s %s HTTP/%d.%d" %d %d %.4fs',
            request.remote,
            request.method,
            request.path_qs,
            request.version.major,
            request.version.minor,
            response.status,
            size,
            time,
            extra={
                "fields": {
                    "request_id": request.get(REQUEST_ID_KEY),
                    "repository": repository,
                    "reference": match["reference"] if match else None,
                    "cache": cache_status.get("decision"),
                    "upstream_status": cache_status.get("upstream_status"),
                    "duration_ms": round(time * 1000, 2),
                }
            },
        )
