"""Operator endpoints outside the OCI API: metrics and health checks. None needs auth."""

from __future__ import annotations

import logging

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from docket.api.context import REGISTRY
from docket.api.responses import json_response

log = logging.getLogger(__name__)


async def metrics(request: web.Request) -> web.StreamResponse:
    response = web.Response(body=generate_latest())
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def healthz(request: web.Request) -> web.StreamResponse:
    """The process is alive and answering."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """The content store and the metadata database can be used."""
    registry = request.app[REGISTRY]
    problems = []
    try:
        await registry.metadata.ping()
    except Exception as error:
        problems.append(f"metadata: {type(error).__name__}: {error}")
    try:
        await registry.content.ping()
    except Exception as error:
        problems.append(f"content store: {type(error).__name__}: {error}")
    if problems:
        log.warning("not ready: %s", "; ".join(problems))
        return json_response({"status": "unavailable", "problems": problems}, status=503)
    return json_response({"status": "ok"})
