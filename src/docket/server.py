"""Start-up of `docket serve`."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
from collections.abc import Callable

import uvloop
from aiohttp import web
from prometheus_client import multiprocess

from docket import multiprocess_metrics
from docket.api.access_log import AccessLogger
from docket.api.app import create_app
from docket.cache.service import PullThroughCache
from docket.config import Config, build_rules
from docket.maintenance.service import Maintenance
from docket.metadata.sql import SqlMetadataStore
from docket.registry import Limits, Registry
from docket.storage.filesystem import FilesystemStore
from docket.storage.guard import ContentGuard

log = logging.getLogger(__name__)


def build_registry(config: Config, *, worker: int | None = None) -> Registry:
    """Build the registry over the data directory; `worker` is set in worker processes."""
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
        FilesystemStore(data_dir, clean_temporary=worker is None),
        SqlMetadataStore.for_sqlite_file(data_dir / "metadata.db"),
        limits,
        ContentGuard(data_dir / "content.lock"),
        generation_dir=data_dir,
    )


def build_app(config: Config, *, worker: int | None = None) -> web.Application:
    registry = build_registry(config, worker=worker)
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
        run_eviction=worker in (None, 0),
    )
    return create_app(registry, cache, maintenance, remote_admin=config.remote_admin)


async def _run_site(config: Config, site_factory: Callable[[web.AppRunner], web.BaseSite], worker: int | None) -> None:
    """Serve until SIGINT or SIGTERM."""
    app = build_app(config, worker=worker)
    runner = web.AppRunner(
        app,
        access_log=logging.getLogger("docket.access"),
        access_log_class=AccessLogger,
        handle_signals=False,
    )
    await runner.setup()
    try:
        try:
            await site_factory(runner).start()
        except OSError as error:
            raise StartupFailed(f"cannot listen on {config.listen}: {error}") from None
        if worker in (None, 0):
            for address in runner.addresses:
                host, port = address[0], address[1]
                log.info("Docket listening on http://%s:%d with data in %s", host, port, config.data_dir.resolve())
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("Docket %sshutting down", f"worker {worker} " if worker is not None else "")
    finally:
        await runner.cleanup()


class StartupFailed(Exception):
    """The server could not start: its data directory could not be prepared, or its listen address is in use."""


def serve(config: Config) -> None:
    """Serve until SIGINT or SIGTERM. The caller holds the data directory's lock."""
    _prepare_data_dir(config)
    if config.workers <= 1:
        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            runner.run(
                _run_site(
                    config, lambda app_runner: web.TCPSite(app_runner, config.listen.host, config.listen.port), None
                )
            )
    else:
        _serve_workers(config)


def _prepare_data_dir(config: Config) -> None:
    """Run migrations and empty tmp/ in a short-lived child process, before serving.

    Only the child loads Alembic, so the processes that serve never hold it in memory.
    """

    async def prepare() -> None:
        registry = build_registry(config)
        await registry.open()
        await registry.close()

    pid = os.fork()
    if pid == 0:
        code = 0
        try:
            asyncio.run(prepare())
        except BaseException:
            log.exception("preparing the data directory %s failed", config.data_dir)
            code = 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise StartupFailed(
            f"preparing the data directory {config.data_dir} failed (exit status {code}); see the error above"
        )


def _serve_workers(config: Config) -> None:
    """Fork `config.workers` processes that accept connections on one listening socket."""
    try:
        sock = socket.create_server((config.listen.host, config.listen.port), backlog=2048, reuse_port=False)
    except OSError as error:
        raise StartupFailed(f"cannot listen on {config.listen}: {error}") from None
    sock.setblocking(False)
    children: dict[int, int] = {}
    stopping = False

    def start_worker(index: int) -> None:
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            code = 0
            try:
                with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
                    runner.run(_run_site(config, lambda app_runner: web.SockSite(app_runner, sock), index))
            except BaseException:
                log.exception("worker %d failed", index)
                code = 1
            finally:
                os._exit(code)
        children[pid] = index

    def stop_all(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True
        for pid in children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)

    for index in range(config.workers):
        start_worker(index)
    host, port = sock.getsockname()[:2]
    log.info("Docket listening on http://%s:%d with %d workers", host, port, config.workers)
    signal.signal(signal.SIGINT, stop_all)
    signal.signal(signal.SIGTERM, stop_all)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid not in children:
            continue
        index = children.pop(pid)
        if multiprocess_metrics.enabled():
            # Drop the gauges that only count while their process lives, such as fills in progress.
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]  # unannotated in the library
        if not stopping:
            log.error("worker %d (pid %d) exited with status %d; starting it again", index, pid, status)
            start_worker(index)
    sock.close()
    log.info("Docket shutting down")
