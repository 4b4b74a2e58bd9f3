"""`docket refresh`: revalidate a cached tag against its upstream now."""

from __future__ import annotations

import aiohttp
import orjson

from docket.commands.http import CommandError, describe_error


async def refresh(server: str, reference: str) -> str:
    url = f"{server.rstrip('/')}/_docket/refresh"
    async with aiohttp.ClientSession() as session, session.post(url, params={"reference": reference}) as response:
        body = await response.read()
        if response.status != 200:
            raise CommandError(f"{reference}: {describe_error(response.status, body)}")
    result = orjson.loads(body)
    return f"{result['reference']} -> {result['digest']} ({result['result']})"
