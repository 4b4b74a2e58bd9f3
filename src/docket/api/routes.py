"""Dispatch of `/v2/` paths.

Repository names contain slashes, so routes are matched here with regular
expressions on the decoded path, and the name is validated afterwards so an
invalid one gets NAME_INVALID instead of a bare 404.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from docket.api import admin, blobs, listing, manifests, operations, referrers, uploads
from docket.api.context import CACHE, NAMESPACE_KEY, REMOTE_ADMIN, TARGET_KEY
from docket.api.responses import json_response
from docket.errors import ErrorCode, RegistryError
from docket.oci.reference import validate_repository

Handler = Callable[..., Awaitable[web.StreamResponse]]


@dataclass(frozen=True, slots=True)
class Route:
    pattern: re.Pattern[str]
    methods: dict[str, Handler]


async def api_version(request: web.Request) -> web.StreamResponse:
    return json_response({})


ROUTES = (
    Route(re.compile(r"^/v2/?$"), {"GET": api_version, "HEAD": api_version}),
    Route(re.compile(r"^/v2/_catalog$"), {"GET": listing.catalog}),
    Route(re.compile(r"^/v2/(?P<name>.+)/tags/list$"), {"GET": listing.tags_list}),
    Route(
        re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference_text>[^/]+)$"),
        {
            "GET": manifests.manifest_get,
            "HEAD": manifests.manifest_get,
            "PUT": manifests.manifest_put,
            "DELETE": manifests.manifest_delete,
        },
    ),
    Route(re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/?$"), {"POST": uploads.upload_start}),
    Route(
        re.compile(r"^/v2/(?P<name>.+)/blobs/uploads/(?P<upload_id>[^/]+)$"),
        {
            "GET": uploads.upload_status,
            "PATCH": uploads.upload_patch,
            "PUT": uploads.upload_finish,
            "DELETE": uploads.upload_cancel,
        },
    ),
    Route(
        re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest_text>[^/]+)$"),
        {"GET": blobs.blob_get, "HEAD": blobs.blob_get, "DELETE": blobs.blob_delete},
    ),
    Route(re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest_text>[^/]+)$"), {"GET": referrers.referrers_get}),
    Route(re.compile(r"^/_docket/refresh$"), {"POST": admin.refresh}),
    Route(re.compile(r"^/_docket/inspect$"), {"GET": admin.inspect}),
    Route(re.compile(r"^/_docket/gc$"), {"POST": admin.gc}),
    Route(re.compile(r"^/_docket/evict$"), {"POST": admin.evict}),
    Route(re.compile(r"^/metrics$"), {"GET": operations.metrics}),
    Route(re.compile(r"^/_docket/status$"), {"GET": operations.status}),
    Route(re.compile(r"^/healthz$"), {"GET": operations.healthz, "HEAD": operations.healthz}),
    Route(re.compile(r"^/readyz$"), {"GET": operations.readyz, "HEAD": operations.readyz}),
)


def _resolve_repository(request: web.Request, name: str) -> str:
    """Validate the name and decide whether it is hosted or served from a pull-through rule.

    A mirror request names the upstream registry in the `ns` query parameter; the
    repository is then stored under that rule's prefix.
    """
    validate_repository(name)
    namespace = request.query.get("ns")
    cache = request.app.get(CACHE)
    if cache is None:
        if namespace is not None:
            raise RegistryError(
                ErrorCode.DENIED,
                f"Docket has no pull-through rule for registry {namespace[:200]!r}; it mirrors no registries",
            )
        return name
    target = cache.resolve(name, namespace)
    if target is None:
        return name
    request[TARGET_KEY] = target
    if namespace is not None:
        request[NAMESPACE_KEY] = namespace
    return target.repository


def _check_admin_client(request: web.Request) -> None:
    """Allow the `/_docket/` endpoints, which have no authentication, only from loopback unless configured."""
    if request.app.get(REMOTE_ADMIN, False):
        return
    try:
        loopback = ipaddress.ip_address(request.remote or "").is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise RegistryError(
            ErrorCode.DENIED,
            "the /_docket/ endpoints answer only clients on this machine; set remote_admin = true to allow others",
        )


async def dispatch(request: web.Request) -> web.StreamResponse:
    path = request.path
    if path.startswith("/_docket/"):
        _check_admin_client(request)
    for route in ROUTES:
        match = route.pattern.match(path)
        if match is None:
            continue
        handler = route.methods.get(request.method)
        if handler is None:
            raise RegistryError(
                ErrorCode.UNSUPPORTED,
                f"method {request.method} is not allowed on {path[:200]}",
                headers={"Allow": ", ".join(route.methods)},
            )
        arguments: dict[str, Any] = match.groupdict()
        if "name" in arguments:
            arguments["name"] = _resolve_repository(request, arguments["name"])
        return await handler(request, **arguments)
    raise RegistryError(ErrorCode.UNSUPPORTED, f"no API endpoint at {path[:200]}", status=404)
