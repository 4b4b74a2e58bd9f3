"""Translation of upstream failures into the errors the cache returns to its clients."""

from __future__ import annotations

from docket.errors import ErrorCode, RegistryError
from docket.upstream.errors import (
    UpstreamDenied,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamUnavailable,
)


def client_error(error: UpstreamError, not_found: ErrorCode, what: str) -> RegistryError:
    """Map an upstream failure for `what` (e.g. "manifest team/app:v1") to a client error.

    Only an upstream 404 becomes a 404. A 429 keeps its Retry-After; outages are 502
    when the upstream responded badly and 503 when it could not be reached.
    """
    if isinstance(error, UpstreamNotFound):
        return RegistryError(not_found, f"{what} is not known upstream ({error.upstream})")
    if isinstance(error, UpstreamRateLimited):
        headers = {}
        if error.retry_after is not None:
            headers["Retry-After"] = str(max(int(error.retry_after + 0.999), 1))
        return RegistryError(
            ErrorCode.TOOMANYREQUESTS,
            f"upstream {error.upstream} is rate-limiting Docket; {what} is not cached yet, retry later",
            headers=headers,
        )
    if isinstance(error, UpstreamDenied):
        return RegistryError(
            ErrorCode.DENIED,
            f"upstream {error.upstream} denied access to {what} (status {error.status}); "
            "check that the repository exists and the rule's credentials may pull it",
        )
    assert isinstance(error, UpstreamUnavailable)
    status = 502 if error.status is not None else 503
    return RegistryError(ErrorCode.UNAVAILABLE, f"{what} is not cached and the upstream failed: {error}", status=status)
