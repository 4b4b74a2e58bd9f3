"""Requests to one upstream registry.

All network I/O to an upstream goes through `UpstreamClient.request`, which adds
authentication, limits concurrency, follows redirects without leaking the
Authorization header to other hosts, and retries idempotent requests that failed
before any byte reached a client.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime

import aiohttp
from yarl import URL

from docket import metrics
from docket.cache.rules import Rule
from docket.oci import mediatypes
from docket.upstream.auth import Authenticator
from docket.upstream.errors import (
    UpstreamDenied,
    UpstreamError,
    UpstreamNotFound,
    UpstreamRateLimited,
    UpstreamUnavailable,
)

log = logging.getLogger(__name__)

# Every manifest type, so the upstream sends what it stores instead of converting.
MANIFEST_ACCEPT = ", ".join(
    [
        mediatypes.OCI_INDEX,
        mediatypes.OCI_MANIFEST,
        mediatypes.DOCKER_MANIFEST_LIST,
        mediatypes.DOCKER_MANIFEST,
        mediatypes.DOCKER_MANIFEST_V1_SIGNED,
        mediatypes.DOCKER_MANIFEST_V1,
    ]
)
_RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
_MAX_REDIRECTS = 5
_READ_BUFFER = 1 << 20
_BACKOFF_BASE = 0.2


@dataclass(slots=True)
class UpstreamHealth:
    """The outcome of the latest requests to an upstream, for `docket status`."""

    last_status: str | None = None
    last_success: float | None = None
    last_failure: float | None = None
    last_error: str | None = None

    def record(self, status: str, error: str | None = None) -> None:
        self.last_status = status
        if error is None:
            self.last_success = time.time()
        else:
            self.last_failure = time.time()
            self.last_error = error


@dataclass(frozen=True, slots=True)
class ManifestHead:
    digest: str | None
    media_type: str | None
    size: int | None


@dataclass(frozen=True, slots=True)
class FetchedManifest:
    data: bytes
    media_type: str | None
    digest: str | None
    """The upstream's Docker-Content-Digest header, if it sent one."""


def retry_after_seconds(value: str | None) -> float | None:
    """Parse `Retry-After` as seconds or an HTTP date (RFC 9110, section 10.2.3)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max((when - datetime.now(UTC)).total_seconds(), 0.0)


class UpstreamClient:
    def __init__(self, rule: Rule) -> None:
        self.rule = rule
        self.name = rule.prefix
        self.base = URL(rule.url.rstrip("/"))
        self._semaphore = asyncio.Semaphore(rule.max_connections)
        self._timeout = aiohttp.ClientTimeout(
            total=None, connect=rule.connect_timeout, sock_connect=rule.connect_timeout, sock_read=rule.read_timeout
        )
        self._session: aiohttp.ClientSession | None = None
        self._auth: Authenticator | None = None
        self.health = UpstreamHealth()

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(limit=self.rule.max_connections, ttl_dns_cache=60)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=self._timeout,
                auto_decompress=False,
                trust_env=False,
                # A larger buffer than aiohttp's 64 KiB default means fewer, larger reads of blob bodies.
                read_bufsize=_READ_BUFFER,
            )
            # aiohttp (3.14) silently resends an idempotent request once when the
            # server drops the connection. Docket counts and logs its own retries
            # (and must send exactly one HEAD when revalidating), so it turns that off.
            # NOTE: a private attribute; aiohttp has no public switch for it.
            if hasattr(self._session, "_retry_connection"):
                self._session._retry_connection = False
            self._auth = Authenticator(
                self.name,
                (self.base.host or "").lower(),
                self.rule.credentials,
                tuple(host.lower() for host in self.rule.token_hosts),
                self._session,
                self._timeout,
            )
        return self._session

    @property
    def auth(self) -> Authenticator:
        _ = self.session
        assert self._auth is not None
        return self._auth

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    @asynccontextmanager
    async def request(
        self,
        method: str,
        path: str,
        *,
        repository: str,
        headers: dict[str, str] | None = None,
        retries: int | None = None,
        follow_redirects: bool = True,
    ) -> AsyncIterator[aiohttp.ClientResponse]:
        """Send a request and yield a successful (2xx) response with its body unread.

        Raises UpstreamNotFound for 404, UpstreamRateLimited for 429 that cannot be
        waited out, UpstreamDenied for 401/403 after authentication and
        UpstreamUnavailable for everything else that went wrong.
        """
        attempts = 1 + (self.rule.retries if retries is None else retries)
        scope = f"repository:{repository}:pull"
        last_error: UpstreamError | None = None
        async with self._semaphore:
            for attempt in range(attempts):
                if attempt:
                    delay = self._retry_delay(attempt, last_error)
                    log.warning(
                        "upstream %s: retrying %s %s in %.1fs (attempt %d of %d) after: %s",
                        self.name,
                        method,
                        path,
                        delay,
                        attempt + 1,
                        attempts,
                        last_error,
                    )
                    await asyncio.sleep(delay)
                try:
                    response = await self._send(method, path, scope, headers or {}, follow_redirects)
                except UpstreamError as error:
                    last_error = error
                    if isinstance(error, UpstreamRateLimited) and (
                        error.retry_after is None or error.retry_after > self.rule.max_retry_after
                    ):
                        raise
                    if not isinstance(error, UpstreamUnavailable | UpstreamRateLimited):
                        raise
                    if isinstance(error, UpstreamUnavailable) and error.status is not None and error.status < 500:
                        raise  # a redirect or client error would come back the same on every retry
                    continue
                try:
                    yield response
                finally:
                    response.release()
                return
        assert last_error is not None
        raise last_error

    def _retry_delay(self, attempt: int, error: UpstreamError | None) -> float:
        if isinstance(error, UpstreamRateLimited) and error.retry_after is not None:
            return error.retry_after
        return float(_BACKOFF_BASE * 2 ** (attempt - 1) * (0.5 + random.random()))

    async def _send(
        self, method: str, path: str, scope: str, headers: dict[str, str], follow_redirects: bool
    ) -> aiohttp.ClientResponse:
        """Send once, meeting one authentication challenge and following redirects."""
        url = self.base.join(URL(path))
        authorization = await self.auth.authorization(scope)
        for _challenge_round in range(2):
            response = await self._send_following_redirects(method, url, headers, authorization, follow_redirects)
            if response.status != 401:
                break
            challenge = response.headers.get("WWW-Authenticate")
            response.release()
            if _challenge_round or not self.auth.learn(challenge):
                raise UpstreamDenied(self.name, f"{method} {path} failed with 401 after authenticating", 401)
            self.auth.forget_token(scope)
            authorization = await self.auth.authorization(scope)
        status = response.status
        metrics.UPSTREAM_REQUESTS.labels(self.name, method, str(status)).inc()
        failed = status >= 500 or status == 429
        self.health.record(str(status), f"{method} {path} responded {status}" if failed else None)
        if 200 <= status < 300:
            return response
        response.release()
        if status == 404:
            raise UpstreamNotFound(self.name, f"{method} {path} responded 404", 404)
        if status == 429:
            retry_after = retry_after_seconds(response.headers.get("Retry-After"))
            raise UpstreamRateLimited(self.name, f"{method} {path} responded 429", retry_after)
        if status in (401, 403):
            raise UpstreamDenied(self.name, f"{method} {path} responded {status}", status)
        raise UpstreamUnavailable(self.name, f"{method} {path} responded {status}", status)

    async def _send_following_redirects(
        self, method: str, url: URL, headers: dict[str, str], authorization: str | None, follow_redirects: bool
    ) -> aiohttp.ClientResponse:
        origin = url.origin()
        for _hop in range(_MAX_REDIRECTS + 1):
            request_headers = dict(headers)
            if authorization and url.origin() == origin:
                request_headers["Authorization"] = authorization
            try:
                response = await self.session.request(
                    method, url, headers=request_headers, allow_redirects=False, timeout=self._timeout
                )
            except TimeoutError:
                metrics.UPSTREAM_REQUESTS.labels(self.name, method, "timeout").inc()
                self.health.record("timeout", f"{method} {url.path} timed out")
                raise UpstreamUnavailable(self.name, f"{method} {url.path} timed out") from None
            except aiohttp.ClientError as error:
                metrics.UPSTREAM_REQUESTS.labels(self.name, method, "error").inc()
                self.health.record("error", f"{method} {url.path} failed: {type(error).__name__}")
                raise UpstreamUnavailable(
                    self.name, f"{method} {url.path} failed: {type(error).__name__}: {error}"
                ) from None
            if (
                not follow_redirects
                or response.status not in (301, 302, 303, 307, 308)
                or "Location" not in response.headers
            ):
                return response
            location = response.headers["Location"]
            response.release()
            url = url.join(URL(location))
            if url.scheme not in ("http", "https"):
                raise UpstreamUnavailable(self.name, f"redirect to unsupported URL scheme {url.scheme!r}")
        raise UpstreamUnavailable(self.name, f"more than {_MAX_REDIRECTS} redirects for {method} {url.path}")

    # Registry operations

    async def manifest_head(self, repository: str, reference: str, *, retries: int | None = None) -> ManifestHead:
        async with self.request(
            "HEAD",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            headers={"Accept": MANIFEST_ACCEPT},
            retries=retries,
        ) as response:
            return ManifestHead(
                digest=response.headers.get("Docker-Content-Digest"),
                media_type=_media_type(response.headers.get("Content-Type")),
                size=response.content_length,
            )

    async def manifest_get(self, repository: str, reference: str, max_size: int) -> FetchedManifest:
        async with self.request(
            "GET",
            f"/v2/{repository}/manifests/{reference}",
            repository=repository,
            headers={"Accept": MANIFEST_ACCEPT},
        ) as response:
            if response.content_length is not None and response.content_length > max_size:
                raise UpstreamUnavailable(
                    self.name, f"manifest {repository}:{reference} is larger than {max_size} bytes"
                )
            try:
                data = await response.content.read(max_size + 1)
                while len(data) <= max_size and not response.content.at_eof():
                    more = await response.content.read(max_size + 1 - len(data))
                    if not more:
                        break
                    data += more
            except (aiohttp.ClientError, TimeoutError) as error:
                raise UpstreamUnavailable(
                    self.name, f"reading manifest {repository}:{reference} failed: {type(error).__name__}"
                ) from None
            if len(data) > max_size:
                raise UpstreamUnavailable(
                    self.name, f"manifest {repository}:{reference} is larger than {max_size} bytes"
                )
            metrics.UPSTREAM_BYTES.labels(self.name).inc(len(data))
            return FetchedManifest(
                data=data,
                media_type=_media_type(response.headers.get("Content-Type")),
                digest=response.headers.get("Docker-Content-Digest"),
            )

    async def blob_head(self, repository: str, digest: str) -> int | None:
        async with self.request("HEAD", f"/v2/{repository}/blobs/{digest}", repository=repository) as response:
            return response.content_length

    def blob_get(self, repository: str, digest: str) -> AbstractAsyncContextManager[aiohttp.ClientResponse]:
        """Open a blob download; use as `async with client.blob_get(...) as response`."""
        return self.request("GET", f"/v2/{repository}/blobs/{digest}", repository=repository)

    async def ping(self) -> int:
        """Send `GET /v2/` and return the status, for health checks."""
        async with self.request("GET", "/v2/", repository="", retries=0) as response:
            return response.status


def _media_type(content_type: str | None) -> str | None:
    if not content_type:
        return None
    return content_type.split(";", 1)[0].strip() or None
