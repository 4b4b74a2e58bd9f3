"""`docket gc`: delete unreferenced blobs and expired uploads."""

from __future__ import annotations

import os

import aiohttp
import orjson

from docket.commands.http import CommandError, describe_error
from docket.config import Config
from docket.maintenance.gc import collect_garbage
from docket.server import build_registry
from docket.storage.lock import MAINTENANCE, DataDirectoryBusy, hold


async def gc_on_server(server: str, dry_run: bool) -> str:
    url = f"{server.rstrip('/')}/_docket/gc"
    params = {"dry_run": "true" if dry_run else "false"}
    async with aiohttp.ClientSession() as session, session.post(url, params=params) as response:
        body = await response.read()
        if response.status != 200:
            raise CommandError(describe_error(response.status, body))
    result = orjson.loads(body)
    lines = [result["summary"]]
    lines += [f"  {digest}" for digest in result["blobs"]]
    return "\n".join(lines)


async def gc_offline(config: Config, dry_run: bool) -> str:
    """Collect garbage in a data directory no server is using."""
    try:
        lock = hold(config.data_dir, MAINTENANCE)
    except DataDirectoryBusy as error:
        raise CommandError(f"{error}; run `docket gc --server URL` to collect inside it") from None
    registry = build_registry(config)
    await registry.open()
    try:
        report = await collect_garbage(
            registry, dry_run=dry_run, grace=config.storage.gc_grace, upload_expiry=config.storage.upload_expiry
        )
    finally:
        await registry.close()
        os.close(lock)
    return "\n".join([report.summary(), *(f"  {digest}" for digest in report.blobs)])
