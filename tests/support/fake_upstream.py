"""A programmable fake upstream OCI registry for testing Docket's pull-through cache.

`FakeUpstream` serves blobs, manifests, tag lists and referrers from memory on
127.0.0.1 and records every request. It also injects faults that a real registry
cannot be configured to produce: error statuses, delays, wrong or truncated
bodies, slow or stalled bodies and dropped connections. It can require basic credentials or
bearer tokens, and the tokens come from a second listener on its own port.

Both listeners run in one background thread with its own event loop, so
synchronous tests can drive them with httpx or a `docket serve` process:

    with FakeUpstream(auth=RequireBearerToken()) as upstream:
        digest = upstream.add_blob("library/alpine", b"layer")
        upstream.add_fault(Status(503), method="GET", path="/blobs/", times=2)
        ...
        assert upstream.count("GET", "/blobs/") == 3
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import hashlib
import json
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import aiohttp
from aiohttp import web
from multidict import CIMultiDictProxy, MultiMapping

if TYPE_CHECKING:
    from tests.support.oci import Manifest

logger = logging.getLogger(__name__)

OCI_INDEX = "application/vnd.oci.image.index.v1+json"
SERVICE = "fake"
CHUNK_SIZE = 64 * 1024
# How long stop() lets the aiohttp runners wait for handlers before they are cancelled.
SHUTDOWN_TIMEOUT = 2.0

ReferrersMode = Literal["index", "not_found", "redirect"]

_DIGEST = re.compile(r"^[a-z0-9]+(?:[+._-][a-z0-9]+)*:[a-zA-Z0-9=_-]+$")
_RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")
_INVERTED = bytes(255 - value for value in range(256))
_ERROR_CODES = {401: "UNAUTHORIZED", 403: "DENIED", 429: "TOOMANYREQUESTS"}
_LOGIN_PAGE = b"<!doctype html><html><head><title>Sign in</title></head><body><form>Sign in</form></body></html>"


# Faults. Each one changes how the server responds to one matched request.


class Fault:
    """Base class of the faults that `FakeUpstream.add_fault` accepts."""


@dataclass(frozen=True)
class Status(Fault):
    """Respond with `status` and an OCI JSON error body (or `body`), e.g. 429, 500, 502 or 503."""

    status: int
    retry_after: int | str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes | None = None


@dataclass(frozen=True)
class Delay(Fault):
    """Wait `seconds` before sending the headers, then apply the `then` fault or respond normally."""

    seconds: float
    then: Fault | None = None


@dataclass(frozen=True)
class WrongBytes(Fault):
    """Serve other content under the normal headers, so the bytes do not match the digest.

    Without `data`, every byte is inverted and the length stays the same (an empty body
    becomes one byte). With `data`, those bytes are sent with their own Content-Length.
    """

    data: bytes | None = None


@dataclass(frozen=True)
class ShortBody(Fault):
    """Send the headers with the full Content-Length and `sent_bytes` of the body, then close.

    The connection is closed after the sent bytes are flushed, so the client receives
    exactly `sent_bytes` before the end of the stream.
    """

    sent_bytes: int

    def __post_init__(self) -> None:
        if self.sent_bytes < 0:
            raise ValueError(f"sent_bytes must not be negative, got {self.sent_bytes}")


@dataclass(frozen=True)
class SlowBody(Fault):
    """Send the body in `chunk_size` pieces with `interval` seconds between them."""

    interval: float
    chunk_size: int = 1024

    def __post_init__(self) -> None:
        if self.chunk_size < 1:
            raise ValueError(f"chunk_size must be at least 1 byte, got {self.chunk_size}")


@dataclass(frozen=True)
class Hang(Fault):
    """Send nothing (or the headers and `after_bytes` of the body) until the server stops."""

    after_bytes: int | None = None


@dataclass(frozen=True)
class CloseConnection(Fault):
    """Close the connection without sending a response."""


@dataclass(frozen=True)
class OmitDigestHeader(Fault):
    """Respond normally but without the Docker-Content-Digest header (match it to HEAD requests)."""


@dataclass
class FaultRule:
    """A fault with the requests it applies to. `remaining` is None for a rule that never runs out."""

    fault: Fault
    method: str | None
    path: str | re.Pattern[str] | None
    remaining: int | None
    hits: int = 0

    def matches(self, method: str, path: str) -> bool:
        if self.remaining == 0:
            return False
        if self.method is not None and self.method != method:
            return False
        if self.path is None:
            return True
        if isinstance(self.path, str):
            return self.path in path
        return self.path.search(path) is not None


class FaultPlan:
    """Fault rules of one listener, tried in the order they were added. Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: list[FaultRule] = []

    def add(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        path: str | re.Pattern[str] | None = None,
        times: int | None = 1,
    ) -> FaultRule:
        """Apply `fault` to the next `times` requests that match (None: to all of them).

        `path` matches the decoded request path as a substring, or with `re.search` when
        it is a compiled pattern. `method` is compared case-insensitively.
        """
        if times is not None and times < 1:
            raise ValueError(f"times must be at least 1 or None, got {times}")
        rule = FaultRule(fault, method.upper() if method else None, path, times)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear(self) -> None:
        """Remove every rule, used up or not."""
        with self._lock:
            self._rules.clear()

    @property
    def rules(self) -> list[FaultRule]:
        with self._lock:
            return list(self._rules)

    def take(self, method: str, path: str) -> Fault | None:
        """Use up one application of the first rule that matches, and return its fault."""
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path):
                    rule.hits += 1
                    if rule.remaining is not None:
                        rule.remaining -= 1
                    return rule.fault
        return None


# Request log.


@dataclass
class RecordedRequest:
    """One request as it arrived, with `time` taken from `time.monotonic()` on arrival.

    `status` is the status that was sent, or None while no headers have been sent
    (a request still in progress, a hung one, or one whose connection was closed).
    """

    method: str
    path: str
    query: MultiMapping[str]
    headers: CIMultiDictProxy[str]
    time: float
    status: int | None = None
    fault: Fault | None = None

    @property
    def authorization(self) -> str | None:
        return self.headers.get("Authorization")


class RequestLog:
    """Every request one listener received, in arrival order. Thread-safe."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._entries: list[RecordedRequest] = []

    def record(self, request: web.BaseRequest) -> RecordedRequest:
        entry = RecordedRequest(request.method, request.path, request.query, request.headers, time.monotonic())
        with self._changed:
            self._entries.append(entry)
            self._changed.notify_all()
        return entry

    def entries(self, method: str | None = None, path_contains: str | None = None) -> list[RecordedRequest]:
        """Return the recorded requests with this method and a path containing `path_contains`."""
        with self._changed:
            return [entry for entry in self._entries if _selected(entry, method, path_contains)]

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        return len(self.entries(method, path_contains))

    def clear(self) -> None:
        with self._changed:
            self._entries.clear()

    def wait_for(
        self, count: int, method: str | None = None, path_contains: str | None = None, timeout: float = 5.0
    ) -> list[RecordedRequest]:
        """Block until at least `count` matching requests arrived; raise TimeoutError after `timeout` seconds."""

        def enough() -> bool:
            return sum(_selected(entry, method, path_contains) for entry in self._entries) >= count

        with self._changed:
            if not self._changed.wait_for(enough, timeout):
                seen = sum(_selected(entry, method, path_contains) for entry in self._entries)
                raise TimeoutError(
                    f"expected {count} requests matching method={method} path_contains={path_contains!r}"
                    f" within {timeout}s, received {seen}"
                )
        return self.entries(method, path_contains)


def _selected(entry: RecordedRequest, method: str | None, path_contains: str | None) -> bool:
    if method is not None and entry.method != method.upper():
        return False
    return path_contains is None or path_contains in entry.path


# Authentication modes.


@dataclass(frozen=True)
class RequireBasicAuth:
    """Require HTTP basic credentials on every registry request."""

    username: str
    password: str


@dataclass(frozen=True)
class RequireBearerToken:
    """Require a bearer token from the token listener with pull scope for the repository.

    With `username`, the token listener itself requires these basic credentials.
    With `expires_in`, tokens stop working after that many seconds and the token
    response carries the value.
    """

    username: str | None = None
    password: str | None = None
    expires_in: int | None = None


@dataclass(frozen=True)
class _Grant:
    repositories: frozenset[str]
    expires_at: float | None


# Content.


@dataclass(frozen=True)
class _StoredManifest:
    data: bytes
    media_type: str
    document: dict[str, Any] | None


@dataclass
class _Repository:
    blobs: dict[str, bytes] = field(default_factory=dict)
    manifests: dict[str, _StoredManifest] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


@dataclass
class _Reply:
    status: int
    headers: dict[str, str]
    body: bytes | memoryview = b""


def _sha256(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> _Reply:
    body = json.dumps({"errors": [{"code": code, "message": message, "detail": None}]}).encode()
    return _Reply(status, {"Content-Type": "application/json", **(headers or {})}, body)


def _json(document: Any, headers: Mapping[str, str] | None = None) -> _Reply:
    return _Reply(200, {"Content-Type": "application/json", **(headers or {})}, json.dumps(document).encode())


def _parse_range(header: str, size: int) -> tuple[int, int] | None | Literal["unsatisfiable"]:
    """Parse a single `bytes=` range into inclusive offsets, or None to serve the whole body."""
    match = _RANGE.match(header.strip())
    if match is None:
        return None
    first, last = match.group(1), match.group(2)
    if not first and not last:
        return None
    if not first:
        length = int(last)
        if length == 0 or size == 0:
            return "unsatisfiable"
        return max(size - length, 0), size - 1
    start = int(first)
    end = int(last) if last else size - 1
    if start > end or start >= size:
        return "unsatisfiable"
    return start, min(end, size - 1)


_ROUTES: tuple[tuple[str, re.Pattern[str]], ...] = (
    ("ping", re.compile(r"^/v2/?$")),
    ("tags", re.compile(r"^/v2/(?P<name>.+)/tags/list$")),
    ("manifest", re.compile(r"^/v2/(?P<name>.+)/manifests/(?P<reference>[^/]+)$")),
    ("blob", re.compile(r"^/v2/(?P<name>.+)/blobs/(?P<digest>[^/]+)$")),
    ("referrers", re.compile(r"^/v2/(?P<name>.+)/referrers/(?P<digest>[^/]+)$")),
    ("login", re.compile(r"^/login$")),
)


class FakeUpstream:
    """A fake OCI registry on 127.0.0.1 with a separate token listener, both in a background thread.

    Use it as a context manager, or call `start()` and `stop()`. `stop()` is safe to
    call twice and also ends hung and slow responses. Content, faults, the
    authentication mode and the referrers mode can be changed while it runs.
    """

    def __init__(
        self,
        *,
        auth: RequireBasicAuth | RequireBearerToken | None = None,
        referrers: ReferrersMode = "index",
        chunk_size: int = CHUNK_SIZE,
    ) -> None:
        self.auth = auth
        self.referrers: ReferrersMode = referrers
        self.chunk_size = chunk_size
        self.log = RequestLog()
        self.token_log = RequestLog()
        self.faults = FaultPlan()
        self.token_faults = FaultPlan()
        self.port = 0
        self.token_port = 0
        self._lock = threading.Lock()
        self._repositories: dict[str, _Repository] = {}
        self._tokens: dict[str, _Grant] = {}
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stopping: asyncio.Event | None = None

    # Lifecycle.

    @property
    def url(self) -> str:
        """Base URL of the registry listener, e.g. http://127.0.0.1:40123."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def host(self) -> str:
        """host:port of the registry listener, as an image reference names it."""
        return f"127.0.0.1:{self.port}"

    @property
    def token_url(self) -> str:
        """The token endpoint that bearer challenges name as their realm."""
        return f"http://127.0.0.1:{self.token_port}/token"

    def start(self) -> FakeUpstream:
        """Bind both listeners to free loopback ports and serve them until `stop()`."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream is already started")
        sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(2)]
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        self.port = sockets[0].getsockname()[1]
        self.token_port = sockets[1].getsockname()[1]
        started: concurrent.futures.Future[None] = concurrent.futures.Future()
        self._thread = threading.Thread(
            target=self._serve, args=(sockets, started), name=f"fake-upstream-{self.port}", daemon=True
        )
        self._thread.start()
        try:
            started.result(timeout=10)
        except BaseException:
            self.stop()
            for sock in sockets:
                sock.close()
            raise
        logger.debug("fake upstream started on %s, tokens on %s", self.url, self.token_url)
        return self

    def stop(self) -> None:
        """End every response in progress, close both listeners and join the thread."""
        thread, loop, stopping = self._thread, self._loop, self._stopping
        if thread is None:
            return
        if loop is not None and stopping is not None and not loop.is_closed():
            # The loop may close between the check and the call, which raises RuntimeError.
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(stopping.set)
        thread.join(timeout=SHUTDOWN_TIMEOUT + 10)
        if thread.is_alive():
            raise RuntimeError(f"fake upstream thread {thread.name} did not stop")
        self._thread = self._loop = self._stopping = None
        logger.debug("fake upstream on %s stopped", self.url)

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def _serve(self, sockets: list[socket.socket], started: concurrent.futures.Future[None]) -> None:
        asyncio.run(self._main(sockets, started))

    async def _main(self, sockets: list[socket.socket], started: concurrent.futures.Future[None]) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = asyncio.Event()
        runners: list[web.AppRunner] = []
        try:
            for sock, handler in zip(sockets, (self._handle_registry, self._handle_token), strict=True):
                app = web.Application()
                app.router.add_route("*", "/{tail:.*}", handler)
                runner = web.AppRunner(app, access_log=None, shutdown_timeout=SHUTDOWN_TIMEOUT)
                runners.append(runner)
                await runner.setup()
                await web.SockSite(runner, sock).start()
        except BaseException as error:
            started.set_exception(error)
            for runner in runners:
                await runner.cleanup()
            return
        started.set_result(None)
        await self._stopping.wait()
        for runner in runners:
            await runner.cleanup()

    # Content.

    def add_blob(self, repository: str, data: bytes) -> str:
        """Store a blob in `repository` and return its sha256 digest."""
        digest = _sha256(data)
        with self._lock:
            self._repository(repository).blobs[digest] = bytes(data)
        return digest

    def add_manifest(self, repository: str, data: bytes, media_type: str, tags: Iterable[str] = ()) -> str:
        """Store a manifest whose exact bytes are served with `media_type`, tag it, and return its digest.

        The bytes need not be valid JSON, but only a JSON object with a `subject` shows up in referrers.
        """
        digest = _sha256(data)
        try:
            parsed = json.loads(data)
        except ValueError:
            parsed = None
        document = parsed if isinstance(parsed, dict) else None
        with self._lock:
            stored = self._repository(repository)
            stored.manifests[digest] = _StoredManifest(bytes(data), media_type, document)
            for tag in tags:
                stored.tags[tag] = digest
        return digest

    def add_image(self, repository: str, manifest: Manifest, tags: Iterable[str] = ()) -> str:
        """Store a `tests.support.oci.Manifest` with its blobs and child manifests, and return its digest."""
        for child in manifest.children:
            self.add_image(repository, child)
        for blob in manifest.blobs:
            self.add_blob(repository, blob.data)
        return self.add_manifest(repository, manifest.data, manifest.media_type, tags)

    def tag(self, repository: str, tag: str, digest: str) -> None:
        """Point `tag` at a manifest already stored in `repository`, or raise KeyError if it is not there."""
        with self._lock:
            stored = self._repositories.get(repository)
            if stored is None or digest not in stored.manifests:
                raise KeyError(f"manifest {digest} is not in repository {repository!r}; add it first")
            stored.tags[tag] = digest

    def delete_tag(self, repository: str, tag: str) -> None:
        """Remove `tag` (the manifest stays reachable by digest); raise KeyError if it does not exist."""
        with self._lock:
            stored = self._repositories.get(repository)
            if stored is None or tag not in stored.tags:
                raise KeyError(f"tag {tag!r} is not in repository {repository!r}")
            del stored.tags[tag]

    def _repository(self, name: str) -> _Repository:
        return self._repositories.setdefault(name, _Repository())

    # Request log and faults.

    def requests(self, method: str | None = None, path_contains: str | None = None) -> list[RecordedRequest]:
        """Return the registry requests with this method and a path containing `path_contains`."""
        return self.log.entries(method, path_contains)

    def count(self, method: str | None = None, path_contains: str | None = None) -> int:
        """Count the registry requests with this method and a path containing `path_contains`."""
        return self.log.count(method, path_contains)

    def clear_log(self) -> None:
        """Forget the requests recorded by both the registry and the token listener."""
        self.log.clear()
        self.token_log.clear()

    def add_fault(
        self,
        fault: Fault,
        *,
        method: str | None = None,
        path: str | re.Pattern[str] | None = None,
        times: int | None = 1,
    ) -> FaultRule:
        """Inject `fault` into the next `times` matching registry requests (None: all of them).

        Rules are tried in the order they were added. A request that the authentication
        check rejects with 401 uses up no rule. See `FaultPlan.add` for matching.
        """
        return self.faults.add(fault, method=method, path=path, times=times)

    def add_token_fault(self, fault: Fault, *, times: int | None = 1) -> FaultRule:
        """Inject `fault` into the next `times` token requests, e.g. `Status(500)`."""
        return self.token_faults.add(fault, times=times)

    def expire_tokens(self) -> None:
        """Invalidate every token issued so far, as if each had expired."""
        with self._lock:
            self._tokens.clear()

    # Registry listener.

    async def _handle_registry(self, request: web.Request) -> web.StreamResponse:
        record = self.log.record(request)
        route, arguments = self._route(request.path)
        if route == "login":
            return await self._send(request, record, _Reply(200, {"Content-Type": "text/html"}, _LOGIN_PAGE), None)
        challenge = self._authenticate(request, arguments.get("name"))
        if challenge is not None:
            return await self._send(request, record, challenge, None)
        fault = self.faults.take(request.method, request.path)
        reply = self._answer(request, route, arguments)
        return await self._send(request, record, reply, fault)

    @staticmethod
    def _route(path: str) -> tuple[str | None, dict[str, str]]:
        for route, pattern in _ROUTES:
            match = pattern.match(path)
            if match is not None:
                return route, match.groupdict()
        return None, {}

    def _answer(self, request: web.Request, route: str | None, arguments: dict[str, str]) -> _Reply:
        allowed = ("GET",) if route in ("tags", "referrers", "login") else ("GET", "HEAD")
        if route is None:
            return _error(404, "UNSUPPORTED", f"no route for {request.path}")
        if request.method not in allowed:
            return _error(
                405,
                "UNSUPPORTED",
                f"the fake upstream is read-only and rejects {request.method}",
                {"Allow": ", ".join(allowed)},
            )
        if route == "ping":
            return _json({})
        name = arguments["name"]
        if route == "tags":
            return self._tags_list(request, name)
        if route == "manifest":
            return self._manifest(name, arguments["reference"])
        if route == "blob":
            return self._blob(request, name, arguments["digest"])
        return self._referrers(request, name, arguments["digest"])

    def _authenticate(self, request: web.Request, repository: str | None) -> _Reply | None:
        """Return the 401 reply for a request without valid credentials, or None."""
        auth = self.auth
        header = request.headers.get("Authorization", "")
        if isinstance(auth, RequireBasicAuth):
            if _basic_matches(header, auth.username, auth.password):
                return None
            return _error(
                401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": f'Basic realm="{SERVICE}"'}
            )
        if isinstance(auth, RequireBearerToken):
            token = header[7:].strip() if header[:7].lower() == "bearer " else None
            with self._lock:
                grant = self._tokens.get(token) if token else None
            expired = grant is not None and grant.expires_at is not None and time.monotonic() >= grant.expires_at
            if grant is not None and not expired and (repository is None or repository in grant.repositories):
                return None
            challenge = f'Bearer realm="{self.token_url}",service="{SERVICE}"'
            if repository is not None:
                challenge += f',scope="repository:{repository}:pull"'
            if token is not None:
                problem = "insufficient_scope" if grant is not None and not expired else "invalid_token"
                challenge += f',error="{problem}"'
            return _error(401, "UNAUTHORIZED", "authentication required", {"WWW-Authenticate": challenge})
        return None

    def _manifest(self, name: str, reference: str) -> _Reply:
        with self._lock:
            stored = self._repositories.get(name)
            manifest = None
            digest: str | None = reference
            if stored is not None and ":" not in reference:
                digest = stored.tags.get(reference)
            if stored is not None and digest is not None:
                manifest = stored.manifests.get(digest)
        if manifest is None or digest is None:
            return _error(404, "MANIFEST_UNKNOWN", f"manifest {reference} is not in repository {name}")
        headers = {"Content-Type": manifest.media_type, "Docker-Content-Digest": digest}
        return _Reply(200, headers, manifest.data)

    def _blob(self, request: web.Request, name: str, digest: str) -> _Reply:
        with self._lock:
            stored = self._repositories.get(name)
            data = stored.blobs.get(digest) if stored is not None else None
        if data is None:
            return _error(404, "BLOB_UNKNOWN", f"blob {digest} is not in repository {name}")
        headers = {
            "Content-Type": "application/octet-stream",
            "Docker-Content-Digest": digest,
            "Accept-Ranges": "bytes",
        }
        requested = request.headers.get("Range")
        span = _parse_range(requested, len(data)) if requested else None
        if span == "unsatisfiable":
            return _Reply(416, {"Content-Range": f"bytes */{len(data)}"})
        if span is None:
            return _Reply(200, headers, data)
        start, end = span
        headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        return _Reply(206, headers, memoryview(data)[start : end + 1])

    def _tags_list(self, request: web.Request, name: str) -> _Reply:
        with self._lock:
            stored = self._repositories.get(name)
            tags = sorted(stored.tags) if stored is not None else None
        if tags is None:
            return _error(404, "NAME_UNKNOWN", f"repository {name} is not known")
        last = request.query.get("last")
        if last:
            tags = [tag for tag in tags if tag > last]
        headers: dict[str, str] = {}
        limit_text = request.query.get("n")
        if limit_text is not None:
            if not limit_text.isdigit():
                return _error(400, "PAGINATION_NUMBER_INVALID", f"n must be a non-negative integer, got {limit_text}")
            limit = int(limit_text)
            if len(tags) > limit:
                tags = tags[:limit]
                if tags:
                    headers["Link"] = f'</v2/{name}/tags/list?n={limit}&last={tags[-1]}>; rel="next"'
        return _json({"name": name, "tags": tags}, headers)

    def _referrers(self, request: web.Request, name: str, subject: str) -> _Reply:
        if self.referrers == "not_found":
            return _error(404, "UNSUPPORTED", "this registry has no referrers API")
        if self.referrers == "redirect":
            return _Reply(303, {"Location": f"{self.url}/login", "Content-Type": "text/html"}, _LOGIN_PAGE)
        if not _DIGEST.match(subject):
            return _error(400, "DIGEST_INVALID", f"invalid digest {subject}")
        artifact_type_filter = request.query.get("artifactType")
        with self._lock:
            stored = self._repositories.get(name)
            manifests = list(stored.manifests.items()) if stored is not None else []
        descriptors = []
        for digest, manifest in manifests:
            document = manifest.document
            if document is None or (document.get("subject") or {}).get("digest") != subject:
                continue
            artifact_type = document.get("artifactType") or (document.get("config") or {}).get("mediaType")
            if artifact_type_filter and artifact_type != artifact_type_filter:
                continue
            descriptor: dict[str, Any] = {
                "mediaType": manifest.media_type,
                "digest": digest,
                "size": len(manifest.data),
            }
            if artifact_type:
                descriptor["artifactType"] = artifact_type
            if document.get("annotations"):
                descriptor["annotations"] = document["annotations"]
            descriptors.append(descriptor)
        headers = {"Content-Type": OCI_INDEX}
        if artifact_type_filter:
            headers["OCI-Filters-Applied"] = "artifactType"
        index = {"schemaVersion": 2, "mediaType": OCI_INDEX, "manifests": descriptors}
        return _Reply(200, headers, json.dumps(index).encode())

    # Token listener.

    async def _handle_token(self, request: web.Request) -> web.StreamResponse:
        record = self.token_log.record(request)
        auth = self.auth
        if request.path != "/token":
            return await self._send(request, record, _error(404, "UNSUPPORTED", "only /token exists here"), None)
        if request.method != "GET":
            reply = _error(405, "UNSUPPORTED", f"the token endpoint takes GET, not {request.method}", {"Allow": "GET"})
            return await self._send(request, record, reply, None)
        if (
            isinstance(auth, RequireBearerToken)
            and auth.username is not None
            and not _basic_matches(request.headers.get("Authorization", ""), auth.username, auth.password or "")
        ):
            reply = _error(
                401,
                "UNAUTHORIZED",
                "invalid or missing credentials for the token service",
                {"WWW-Authenticate": f'Basic realm="{SERVICE} token service"'},
            )
            return await self._send(request, record, reply, None)
        fault = self.token_faults.take(request.method, request.path)
        return await self._send(request, record, self._issue_token(request), fault)

    def _issue_token(self, request: web.Request) -> _Reply:
        """Grant pull on each repository scope requested with the pull (or *) action."""
        repositories = set()
        for scope in request.query.getall("scope", []):
            for item in scope.split():
                kind, _, rest = item.partition(":")
                name, _, actions = rest.rpartition(":")
                if kind == "repository" and name and {"pull", "*"} & set(actions.split(",")):
                    repositories.add(name)
        expires_in = self.auth.expires_in if isinstance(self.auth, RequireBearerToken) else None
        token = secrets.token_urlsafe(24)
        expires_at = time.monotonic() + expires_in if expires_in is not None else None
        with self._lock:
            self._tokens[token] = _Grant(frozenset(repositories), expires_at)
        body: dict[str, Any] = {
            "token": token,
            "access_token": token,
            "issued_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        }
        if expires_in is not None:
            body["expires_in"] = expires_in
        return _json(body)

    # Sending, with faults applied.

    async def _send(
        self, request: web.Request, record: RecordedRequest, reply: _Reply, fault: Fault | None
    ) -> web.StreamResponse:
        record.fault = fault
        while isinstance(fault, Delay):
            if not await self._pause(fault.seconds):
                return self._drop(request)
            fault = fault.then
        if isinstance(fault, CloseConnection):
            return self._drop(request)
        if isinstance(fault, Hang) and fault.after_bytes is None:
            await self._until_stopped()
            return self._drop(request)
        if isinstance(fault, Status):
            reply = _fault_reply(fault)
        elif isinstance(fault, OmitDigestHeader):
            reply.headers.pop("Docker-Content-Digest", None)
        elif isinstance(fault, WrongBytes) and fault.data is not None:
            reply.body = fault.data
        elif isinstance(fault, WrongBytes):
            reply.body = bytes(reply.body).translate(_INVERTED) or b"\0"

        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        response.content_length = len(reply.body)
        record.status = reply.status
        try:
            await response.prepare(request)
            if request.method == "HEAD":
                return response
            return await self._write_body(request, response, memoryview(reply.body), fault)
        except ConnectionError as error:
            # The client closed the connection, and aiohttp ends the response without logging.
            logger.debug("fake upstream: client left during %s %s: %s", request.method, request.path, error)
            return response

    async def _write_body(
        self, request: web.Request, response: web.StreamResponse, body: memoryview, fault: Fault | None
    ) -> web.StreamResponse:
        limit, chunk_size, interval = len(body), self.chunk_size, 0.0
        if isinstance(fault, ShortBody):
            limit = min(fault.sent_bytes, limit)
        elif isinstance(fault, Hang) and fault.after_bytes is not None:
            limit = min(fault.after_bytes, limit)
        elif isinstance(fault, SlowBody):
            chunk_size, interval = fault.chunk_size, fault.interval
        offset = 0
        while offset < limit:
            end = min(offset + chunk_size, limit)
            await response.write(body[offset:end])  # waits for the client when the send buffer is full
            offset = end
            if interval and offset < limit and not await self._pause(interval):
                return self._drop(request, response)
        if isinstance(fault, ShortBody):
            return self._drop(request, response)
        if isinstance(fault, Hang):
            await self._until_stopped()
            return self._drop(request, response)
        await response.write_eof()
        return response

    @staticmethod
    def _drop(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
        """Close the connection after flushing what was written, so aiohttp sends nothing more."""
        transport = request.transport
        if transport is not None:
            transport.close()
        return response if response is not None else web.StreamResponse()

    async def _pause(self, seconds: float) -> bool:
        """Sleep for `seconds` and return True, or return False early when the server is stopping."""
        assert self._stopping is not None
        try:
            await asyncio.wait_for(self._stopping.wait(), seconds)
        except TimeoutError:
            return True
        return False

    async def _until_stopped(self) -> None:
        assert self._stopping is not None
        await self._stopping.wait()


def _basic_matches(header: str, username: str, password: str) -> bool:
    try:
        credentials = aiohttp.BasicAuth.decode(header)
    except ValueError:
        return False
    login: str = credentials.login
    secret: str = credentials.password
    return login == username and secret == password


def _fault_reply(fault: Status) -> _Reply:
    if fault.body is None:
        code = _ERROR_CODES.get(fault.status, "UNKNOWN")
        reply = _error(fault.status, code, f"injected fault: status {fault.status}")
    else:
        reply = _Reply(fault.status, {"Content-Type": "text/plain; charset=utf-8"}, fault.body)
    if fault.retry_after is not None:
        reply.headers["Retry-After"] = str(fault.retry_after)
    reply.headers.update(fault.headers)
    return reply
