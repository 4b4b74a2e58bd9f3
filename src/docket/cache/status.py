"""The `Cache-Status` response header (RFC 9211) for requests the cache served.

Cache decisions happen deep in the cache, sometimes in a task shared by several
requests; each request keeps a small mutable record in a context variable, which
tasks started on its behalf inherit, and the API copies it into the header.
"""

from __future__ import annotations

import contextvars

_DECISION: contextvars.ContextVar[dict[str, str] | None] = contextvars.ContextVar("docket_cache_decision", default=None)

# RFC 9211 parameters for each decision; "docket" is the cache's name in the header.
_HEADER_VALUES = {
    "hit": "docket; hit",
    "revalidated": "docket; hit; detail=revalidated",
    "stale": "docket; hit; detail=stale",
    "miss": "docket; fwd=uri-miss; stored",
    "coalesced": "docket; fwd=uri-miss; collapsed",
}


def start_request() -> dict[str, str]:
    record: dict[str, str] = {}
    _DECISION.set(record)
    return record


def record_decision(decision: str, upstream_status: str | None = None) -> None:
    """Remember the first cache decision made for the current request."""
    record = _DECISION.get()
    if record is not None and "decision" not in record:
        record["decision"] = decision
        if upstream_status is not None and upstream_status != "-":
            record["upstream_status"] = upstream_status


def header_value(record: dict[str, str]) -> str | None:
    decision = record.get("decision")
    return _HEADER_VALUES.get(decision) if decision else None
