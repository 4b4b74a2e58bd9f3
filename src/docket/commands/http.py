"""HTTP helpers shared by the client commands."""

from __future__ import annotations

import sys
from typing import Any

import aiohttp
import orjson

DEFAULT_SERVER = "http://127.0.0.1:5000"
MANIFEST_ACCEPT = ", ".join(
    [
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)


def server_url(server: str) -> str:
    """Accept `HOST:PORT` as well as a URL for --server."""
    server = server.rstrip("/")
    return server if "://" in server else f"http://{server}"


class CommandError(Exception):
    """A failure to report on stderr with exit status 1."""


def split_reference(text: str) -> tuple[str, str]:
    """Split `repository:tag` or `repository@digest`; a bare repository means tag `latest`."""
    if "@" in text:
        name, _, digest = text.partition("@")
        return name, digest
    name, separator, tag = text.rpartition(":")
    if not separator or "/" in tag:
        return text, "latest"
    return name, tag


def describe_error(status: int, body: bytes) -> str:
    try:
        errors = orjson.loads(body).get("errors") or []
        return "; ".join(f"{error.get('code')}: {error.get('message')}" for error in errors) or f"HTTP {status}"
    except (orjson.JSONDecodeError, AttributeError):
        return f"HTTP {status}"


async def get_json(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
    async with session.get(url, **kwargs) as response:
        body = await response.read()
        if response.status != 200:
            raise CommandError(f"GET {url}: {describe_error(response.status, body)}")
        return orjson.loads(body)


def report(error: Exception, command: str) -> int:
    print(f"docket {command}: {error}", file=sys.stderr)
    return 1
