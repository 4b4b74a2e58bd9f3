"""Start-up of `docket serve`."""

from __future__ import annotations

import asyncio
import logging

import uvloop
from aiohttp import web

from docket.api.app import create_app
from docket.config import Config
from docket.metadata.sql import SqlMetadataStore
from docket.registry import Limits, Registry
from docket.storage.filesystem import FilesystemStore

log = logging.getLogger(__name__)


def build_registry(config: Config) -> Registry:
    data_dir = config.data_dir
    data_dir.mkdir(parents=True, exist_ok=True)
    settings = config.registry
    limits = Limits(
        max_manifest_size=settings.max_manifest_size,
        max_page_size=settings.max_page_size,
        manifest_cache_bytes=settings.manifest_cache_size,
        automatic_mount=settings.automatic_mount,
    )
    return Registry(
        FilesystemStore(data_dir),
        SqlMetadataStore.for_sqlite_file(data_dir / "metadata.db"),
        limits,
    )


def serve(config: Config) -> None:
    registry = build_registry(config)
    app = create_app(registry)
    loop = uvloop.new_event_loop()
    asyncio.set_event_loop(loop)
    log.info("Docket listening on http://%s with data in %s", config.listen, config.data_dir.resolve())
    web.run_app(
        app,
        host=config.listen.host,
        port=config.listen.port,
        loop=loop,
        print=None,
        access_log=logging.getLogger("docket.access"),
        access_log_format='%a "%r" %s %b %Tfs',
    )
