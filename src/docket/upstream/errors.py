"""Failures of upstream requests, kept distinct so absence is never confused with an outage."""

from __future__ import annotations


class UpstreamError(Exception):
    """An upstream request failed; `status` is the upstream's HTTP status if one arrived."""

    def __init__(self, upstream: str, message: str, status: int | None = None) -> None:
        super().__init__(f"upstream {upstream}: {message}")
        self.upstream = upstream
        self.status = status


class UpstreamNotFound(UpstreamError):
    """The upstream responded 404: the content does not exist there."""


class UpstreamRateLimited(UpstreamError):
    def __init__(self, upstream: str, message: str, retry_after: float | None) -> None:
        super().__init__(upstream, message, 429)
        self.retry_after = retry_after


class UpstreamDenied(UpstreamError):
    """The upstream refused access (401 or 403) even after authentication."""


class UpstreamUnavailable(UpstreamError):
    """The upstream could not be reached, timed out, failed (5xx) or sent something invalid."""
