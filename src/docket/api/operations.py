"""Operator endpoints outside the OCI API: metrics and health checks. None needs auth."""

from __future__ import annotations

import logging
import os
from datetime import UTC, datetime

import prometheus_client
from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest, multiprocess
from prometheus_client.metrics_core import Metric

from docket import metrics as counters
from docket import multiprocess_metrics
from docket.api.context import CACHE, REGISTRY
from docket.api.responses import json_response
from docket.logs import RECENT_PROBLEMS

log = logging.getLogger(__name__)


async def metrics(request: web.Request) -> web.StreamResponse:
    counts = await request.app[REGISTRY].metadata.count_rows()
    counters.STORE_BYTES.set(counts.get("blob_bytes", 0))
    counters.STORE_OBJECTS.set(counts.get("blobs", 0))
    response = web.Response(body=generate_latest(_server_registry()))
    response.headers["Content-Type"] = CONTENT_TYPE_LATEST
    return response


async def healthz(request: web.Request) -> web.StreamResponse:
    """Report that the process is alive and serving requests."""
    return json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.StreamResponse:
    """Report whether the content store and the metadata database can be used."""
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


def _server_registry() -> CollectorRegistry:
    """Return the metrics of the whole server: with several workers, the sum of every worker's files."""
    if not multiprocess_metrics.enabled():
        return prometheus_client.REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]  # unannotated in the library
    return registry


def _families() -> list[Metric]:
    return list(_server_registry().collect())


def _hit_ratio(families: list[Metric]) -> float | None:
    hits = misses = 0.0
    for family in families:
        if family.name != "docket_cache_decisions":
            continue
        for sample in family.samples:
            if not sample.name.endswith("_total"):
                continue
            decision = sample.labels.get("decision")
            if decision in ("hit", "revalidated", "stale"):
                hits += sample.value
            elif decision in ("miss", "coalesced"):
                misses += sample.value
    total = hits + misses
    return hits / total if total else None


def _fills_in_progress(families: list[Metric]) -> int:
    return int(
        sum(
            sample.value
            for family in families
            if family.name == "docket_blob_fills_in_progress"
            for sample in family.samples
        )
    )


async def status(request: web.Request) -> web.StreamResponse:
    """Summarize the store, the cache's hit ratio, upstream health and recent problems."""
    registry = request.app[REGISTRY]
    cache = request.app.get(CACHE)
    counts = await registry.metadata.count_rows()
    upstreams = []
    if cache is not None:
        for prefix, client in sorted(cache.clients.items()):
            health = client.health
            upstreams.append(
                {
                    "rule": prefix,
                    "url": client.rule.url,
                    "last_status": health.last_status,
                    "last_success": _iso(health.last_success),
                    "last_failure": _iso(health.last_failure),
                    "last_error": health.last_error,
                }
            )
    families = _families()
    body = {
        "store": {"bytes": counts.pop("blob_bytes", 0), "objects": counts},
        "hit_ratio": _hit_ratio(families),
        "fills_in_progress": _fills_in_progress(families),
        # Each worker process keeps its own upstream health and recent problems. These are the ones of this process.
        "worker_pid": os.getpid(),
        "upstreams": upstreams,
        "recent_problems": list(RECENT_PROBLEMS.entries),
    }
    return json_response(body)


def _iso(timestamp: float | None) -> str | None:
    return datetime.fromtimestamp(timestamp, UTC).isoformat() if timestamp is not None else None
