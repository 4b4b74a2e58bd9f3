"""Response helpers shared by the API handlers."""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from docket.errors import RegistryError

API_VERSION_HEADER = ("Docker-Distribution-API-Version", "registry/2.0")


def json_response(
    data: Any, *, status: int = 200, content_type: str = "application/json", headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type=content_type, headers=headers)


def error_response(error: RegistryError, *, head: bool = False) -> web.Response:
    body = b"" if head else orjson.dumps(error.to_json())
    response = web.Response(body=body, status=error.status, content_type="application/json", headers=error.headers)
    return response


def empty_response(status: int, headers: dict[str, str]) -> web.Response:
    response = web.Response(status=status, headers=headers)
    response.headers["Content-Length"] = "0"
    return response
