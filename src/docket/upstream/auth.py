"""Registry authentication: `WWW-Authenticate` challenges, bearer tokens and basic auth.

Tokens are cached per (realm, service, scope) until shortly before they expire,
and concurrent requests for the same scope share one token fetch. Configured
credentials go to a token realm only on the upstream's own host or on a host the
rule lists in `token_hosts`. Any other realm gets an anonymous token request.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import re
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
import orjson
from yarl import URL

from docket.cache.rules import Credentials
from docket.upstream.errors import UpstreamUnavailable

log = logging.getLogger(__name__)

_PARAM_RE = re.compile(r'\s*([a-zA-Z0-9_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^\s,]*))\s*,?')
# Tokens without `expires_in` live 60 seconds (the token spec's default); a margin
# keeps Docket from sending a token in its last seconds.
_DEFAULT_TOKEN_LIFETIME = 60.0
_EXPIRY_MARGIN = 5.0


@dataclass(frozen=True, slots=True)
class Challenge:
    scheme: str
    params: dict[str, str]


def parse_challenge(header: str) -> Challenge | None:
    """Parse the first challenge of a `WWW-Authenticate` header (RFC 9110, section 11.6.1)."""
    scheme, _, rest = header.strip().partition(" ")
    if not scheme:
        return None
    params: dict[str, str] = {}
    for match in _PARAM_RE.finditer(rest):
        quoted, bare = match.group(2), match.group(3)
        value = re.sub(r"\\(.)", r"\1", quoted) if quoted is not None else bare or ""
        params[match.group(1).lower()] = value
    return Challenge(scheme.lower(), params)


def basic_header(credentials: Credentials) -> str:
    raw = f"{credentials.username}:{credentials.password}".encode()
    return "Basic " + base64.b64encode(raw).decode()


class Authenticator:
    def __init__(
        self,
        upstream: str,
        upstream_host: str,
        credentials: Credentials | None,
        token_hosts: tuple[str, ...],
        session: aiohttp.ClientSession,
        timeout: aiohttp.ClientTimeout,
    ) -> None:
        self.upstream = upstream
        self.upstream_host = upstream_host
        self.credentials = credentials
        self.token_hosts = token_hosts
        self.session = session
        self.timeout = timeout
        self.challenge: Challenge | None = None
        self._tokens: dict[tuple[str, str, str], tuple[str, float]] = {}
        self._fetches: dict[tuple[str, str, str], asyncio.Future[str]] = {}
        self.token_fetches = 0

    def learn(self, header: str | None) -> bool:
        """Remember the upstream's challenge; return True if a retry with auth can help."""
        challenge = parse_challenge(header or "")
        if challenge is None or challenge.scheme not in ("bearer", "basic"):
            return False
        if challenge.scheme == "basic" and self.credentials is None:
            return False
        self.challenge = challenge
        return True

    def forget_token(self, scope: str) -> None:
        if self.challenge is not None and self.challenge.scheme == "bearer":
            key = self._token_key(scope)
            self._tokens.pop(key, None)

    def _token_key(self, scope: str) -> tuple[str, str, str]:
        assert self.challenge is not None
        return (self.challenge.params.get("realm", ""), self.challenge.params.get("service", ""), scope)

    async def authorization(self, scope: str) -> str | None:
        """Return the Authorization header for `scope`, fetching a token if needed."""
        if self.challenge is None:
            return None
        if self.challenge.scheme == "basic":
            return basic_header(self.credentials) if self.credentials else None
        key = self._token_key(scope)
        cached = self._tokens.get(key)
        if cached is not None and cached[1] > time.monotonic():
            return f"Bearer {cached[0]}"
        pending = self._fetches.get(key)
        if pending is None:
            pending = asyncio.ensure_future(self._fetch_token(key))
            self._fetches[key] = pending
            pending.add_done_callback(lambda _future: self._fetches.pop(key, None))
        token = await asyncio.shield(pending)
        return f"Bearer {token}"

    def _may_send_credentials(self, realm: URL) -> bool:
        """Tell whether the realm's host name (any port) is the upstream's or listed in token_hosts."""
        host = (realm.host or "").lower()
        return host == self.upstream_host or host in self.token_hosts

    async def _fetch_token(self, key: tuple[str, str, str]) -> str:
        realm_text, service, scope = key
        try:
            realm = URL(realm_text)
        except ValueError:
            raise UpstreamUnavailable(self.upstream, f"invalid token realm {realm_text!r}") from None
        if realm.scheme not in ("http", "https") or not realm.host:
            raise UpstreamUnavailable(self.upstream, f"invalid token realm {realm_text!r}")
        query = {"scope": scope}
        if service:
            query["service"] = service
        headers = {}
        if self.credentials is not None:
            if self._may_send_credentials(realm):
                headers["Authorization"] = basic_header(self.credentials)
            else:
                log.warning(
                    "upstream %s: token realm %s is on another host; fetching an anonymous token "
                    "(list the host in the rule's token_hosts to send credentials there)",
                    self.upstream,
                    realm.host,
                )
        self.token_fetches += 1
        try:
            async with self.session.get(
                realm.update_query(query), headers=headers, timeout=self.timeout, allow_redirects=False
            ) as response:
                body = await response.read()
                if response.status != 200:
                    raise UpstreamUnavailable(
                        self.upstream, f"token endpoint {realm.host} responded {response.status}", response.status
                    )
        except (aiohttp.ClientError, TimeoutError) as error:
            raise UpstreamUnavailable(
                self.upstream, f"token endpoint {realm.host} failed: {type(error).__name__}"
            ) from None
        try:
            document: Any = orjson.loads(body)
            token = document.get("token") or document.get("access_token")
            lifetime = float(document.get("expires_in") or _DEFAULT_TOKEN_LIFETIME)
        except (orjson.JSONDecodeError, AttributeError, TypeError, ValueError):
            token = None
        if not isinstance(token, str) or not token:
            raise UpstreamUnavailable(self.upstream, f"token endpoint {realm.host} sent no token")
        expires = time.monotonic() + max(lifetime - _EXPIRY_MARGIN, 1.0)
        self._tokens[key] = (token, expires)
        return token
