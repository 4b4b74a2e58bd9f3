"""Start-up of `docket serve`."""

from __future__ import annotations

import asyncio
import logging
import os
import signal

import uvloop
from aiohttp import web

from docket.api.access_log import AccessLogger
from docket.api.app import create_app
from docket.cache.service import PullThroughCache
from docket.config import Config, build_rules
from docket.maintenance.service import Maintenance
from docket.metadata.sql import SqlMetadataStore
from docket.registry import Limits, Registry
from docket.storage.filesystem import FilesystemStore
from docket.storage.lock import hold

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


def build_app(config: Config) -> web.Application:
    registry = build_registry(config)
    rules = build_rules(config)
    cache = PullThroughCache(rules, registry) if rules else None
    for rule in rules.rules:
        log.info(
            "pull-through rule %s -> %s%s (tag TTL %.0fs)",
            rule.prefix,
            rule.url,
            f"/{rule.upstream_prefix}" if rule.upstream_prefix else "",
            rule.tag_ttl,
        )
    storage = config.storage
    maintenance = Maintenance(
        registry,
        max_size=storage.max_size,
        max_age=storage.max_age,
        eviction_interval=storage.eviction_interval,
        gc_grace=storage.gc_grace,
        upload_expiry=storage.upload_expiry,
    )
    return create_app(registry, cache, maintenance)


async def _serve(config: Config) -> None:
    lock = hold(config.data_dir, exclusive=False)
    app = build_app(config)
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger("docket.access"),
        access_log_class=AccessLogger,
        handle_signals=False,
    )
    await runner.setup()
    site = web.TCPSite(runner, host=config.listen.host, port=config.listen.port)
    try:
        await site.start()
        for address in runner.addresses:
            host, port = address[0], address[1]
            log.info("Docket listening on http://%s:%d with data in %s", host, port, config.data_dir.resolve())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("Docket shutting down")
    finally:
        await runner.cleanup()
        os.close(lock)


def serve(config: Config) -> None:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_serve(config))
