"""Prometheus counters of cache decisions and upstream traffic."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

CACHE_DECISIONS = Counter(
    "docket_cache_decisions_total",
    "Cache decisions by rule, object kind and decision (hit, miss, revalidated, stale, upstream_error)",
    ["rule", "kind", "decision"],
)
UPSTREAM_REQUESTS = Counter(
    "docket_upstream_requests_total",
    "Requests sent to upstream registries by rule, method and status (or timeout, error)",
    ["upstream", "method", "status"],
)
UPSTREAM_BYTES = Counter("docket_upstream_bytes_total", "Bytes received from upstream registries", ["upstream"])
# With several workers, gauges combine the workers' values: live fills add up, and the
# store size is the value set most recently by any worker.
FILLS_IN_PROGRESS = Gauge(
    "docket_blob_fills_in_progress", "Blob downloads from upstream in progress", multiprocess_mode="livesum"
)
FILL_WAITERS = Counter(
    "docket_blob_fill_coalesced_total", "Blob requests served from a download another request started"
)
REFERRERS_DISCOVERED = Counter(
    "docket_referrers_discovered_total",
    "Referrers found at upstreams, by source (api, tag_schema, cosign_tag) and artifact type",
    ["source", "artifact_type"],
)
REFERRERS_SYNCED = Counter(
    "docket_referrers_synced_total",
    "Referrers whose content was stored in the cache, by source and artifact type",
    ["source", "artifact_type"],
)
REFERRER_SYNC_FAILURES = Counter(
    "docket_referrer_sync_failures_total", "Failed referrer discoveries and syncs by upstream", ["upstream"]
)
POLICY_DENIALS = Counter("docket_policy_denials_total", "Manifests refused by require_referrers, by rule", ["rule"])
STORE_BYTES = Gauge(
    "docket_store_bytes", "Bytes of content in the store, as of the last eviction pass", multiprocess_mode="mostrecent"
)
STORE_OBJECTS = Gauge(
    "docket_store_objects",
    "Blobs and manifests in the store, as of the last eviction pass",
    multiprocess_mode="mostrecent",
)
EVICTED_UNITS = Counter("docket_evicted_images_total", "Cached images (with their referrers) evicted")
EVICTED_BYTES = Counter("docket_evicted_bytes_total", "Bytes of blobs deleted by eviction")
GC_BLOBS = Counter("docket_gc_blobs_total", "Unreferenced blobs deleted by garbage collection")
GC_BYTES = Counter("docket_gc_bytes_total", "Bytes deleted by garbage collection")
