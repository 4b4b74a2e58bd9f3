"""The aiohttp application: middlewares, the catch-all route and lifecycle hooks."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from docket.api.access_log import CACHE_STATUS_KEY, request_id
from docket.api.context import CACHE, MAINTENANCE, NAMESPACE_KEY, REGISTRY, REMOTE_ADMIN
from docket.api.responses import API_VERSION_HEADER, error_response
from docket.api.routes import dispatch
from docket.cache import status as cache_status
from docket.cache.service import PullThroughCache
from docket.errors import RegistryError
from docket.maintenance.service import Maintenance
from docket.registry import Registry

log = logging.getLogger(__name__)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id(request)
    request[CACHE_STATUS_KEY] = cache_status.start_request()
    try:
        return await handler(request)
    except RegistryError as error:
        if error.status >= 500:
            log.warning("%s %s failed: %s", request.method, request.path, error.message)
        return error_response(error, head=request.method == "HEAD")
    except web.HTTPException:
        raise
    except (ConnectionResetError, TimeoutError):
        raise
    except Exception:
        log.exception("unexpected error in %s %s", request.method, request.path)
        body = {"errors": [{"code": "UNKNOWN", "message": "internal server error; see the server log"}]}
        return web.json_response(body, status=500)


async def _add_headers(request: web.Request, response: web.StreamResponse) -> None:
    response.headers.setdefault(*API_VERSION_HEADER)
    response.headers["X-Request-Id"] = request_id(request)
    record = request.get(CACHE_STATUS_KEY)
    value = cache_status.header_value(record) if record else None
    if value is not None:
        response.headers["Cache-Status"] = value
    namespace = request.get(NAMESPACE_KEY)
    if namespace is not None:
        response.headers["OCI-Namespace"] = namespace


def create_app(
    registry: Registry,
    cache: PullThroughCache | None = None,
    maintenance: Maintenance | None = None,
    *,
    remote_admin: bool = False,
) -> web.Application:
    app = web.Application(middlewares=[error_middleware], handler_args={"max_field_size": 65536})
    app[REGISTRY] = registry
    app[REMOTE_ADMIN] = remote_admin
    if cache is not None:
        app[CACHE] = cache
    if maintenance is not None:
        app[MAINTENANCE] = maintenance
        if cache is not None:
            cache.blobs.stored_hooks.append(maintenance.evictor.request)
    app.router.add_route("*", "/{tail:.*}", dispatch)
    app.on_response_prepare.append(_add_headers)

    async def open_registry(_app: web.Application) -> None:
        await registry.open()
        if cache is not None:
            await cache.start()
        if maintenance is not None:
            maintenance.start()

    async def close_registry(_app: web.Application) -> None:
        if maintenance is not None:
            await maintenance.close()
        if cache is not None:
            await cache.close()
        await registry.close()

    app.on_startup.append(open_registry)
    app.on_cleanup.append(close_registry)
    return app
