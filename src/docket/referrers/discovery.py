"""Finding what refers to a subject at an upstream registry.

Three sources, tried in this order:

1. The OCI 1.1 referrers API, following `Link` pagination on the upstream's own
   host. Whether an upstream supports it is probed once and remembered for
   `PROBE_TTL`. A 404, 405, any redirect, an HTML body or anything that is not
   an image index means "not supported".
2. The referrers tag schema: the tag `sha256-<hex>` holding an index of referrers,
   read when the API is not supported.
3. cosign's tags `sha256-<hex>.sig`, `.att` and `.sbom`, found with one HEAD each,
   never by listing the upstream's tags.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Any

import orjson
from yarl import URL

from docket import metrics
from docket.api.links import parse_links
from docket.cache.rules import CacheTarget
from docket.oci import mediatypes
from docket.oci.digest import Digest
from docket.upstream.client import UpstreamClient
from docket.upstream.errors import UpstreamError, UpstreamNotFound

log = logging.getLogger(__name__)

PROBE_TTL = 3600.0
COSIGN_SUFFIXES = (".sig", ".att", ".sbom")
SOURCE_API = "api"
SOURCE_TAG_SCHEMA = "tag_schema"
SOURCE_COSIGN_TAG = "cosign_tag"
_MAX_PAGES = 100


@dataclass(frozen=True, slots=True)
class FoundReferrer:
    digest: str
    media_type: str
    size: int
    artifact_type: str | None
    annotations: dict[str, str] | None
    source: str


@dataclass(frozen=True, slots=True)
class CosignTag:
    tag: str
    digest: str


@dataclass
class Discovery:
    referrers: list[FoundReferrer] = field(default_factory=list)
    cosign_tags: list[CosignTag] = field(default_factory=list)
    complete: bool = True
    """False when an upstream error left the list possibly incomplete."""


class ApiNotSupported(Exception):
    pass


@dataclass
class _Support:
    supported: bool
    checked: float


def fallback_tag(subject: Digest) -> str:
    return f"{subject.algorithm}-{subject.encoded}"


class ReferrerDiscovery:
    def __init__(self) -> None:
        self._support: dict[str, _Support] = {}
        self.probes = 0

    def api_supported(self, upstream: str) -> bool | None:
        known = self._support.get(upstream)
        if known is None or time.monotonic() - known.checked > PROBE_TTL:
            return None
        return known.supported

    def _remember(self, upstream: str, supported: bool) -> None:
        self._support[upstream] = _Support(supported, time.monotonic())
        log.info("upstream %s %s the referrers API", upstream, "supports" if supported else "does not support")

    async def discover(
        self, client: UpstreamClient, target: CacheTarget, subject: Digest, *, cosign_tags: bool = True
    ) -> Discovery:
        """List the subject's referrers and cosign tags at the upstream; upstream errors are logged, not raised."""
        found = Discovery()
        upstream = str(client.base)
        supported = self.api_supported(upstream)
        if supported is not False:
            try:
                found.referrers = await self.list_from_api(client, target, subject)
                if supported is None:
                    self.probes += 1
                    self._remember(upstream, True)
            except ApiNotSupported as reason:
                self.probes += 1
                log.info("referrers API of %s not usable: %s", client.name, reason)
                self._remember(upstream, False)
                supported = False
            except UpstreamError as error:
                self._failed(found, client, target, subject, "referrers API", error)
        if supported is False:
            try:
                found.referrers = await self._from_tag_schema(client, target, subject)
            except UpstreamError as error:
                self._failed(found, client, target, subject, "referrers tag", error)
        if cosign_tags:
            found.cosign_tags = await self._cosign_tags(client, target, subject, found)
        for referrer in found.referrers:
            metrics.REFERRERS_DISCOVERED.labels(referrer.source, referrer.artifact_type or "").inc()
        return found

    def _failed(
        self,
        found: Discovery,
        client: UpstreamClient,
        target: CacheTarget,
        subject: Digest,
        what: str,
        error: Exception,
    ) -> None:
        found.complete = False
        metrics.REFERRER_SYNC_FAILURES.labels(client.name).inc()
        log.warning("discovering referrers of %s@%s via %s failed: %s", target.repository, subject, what, error)

    async def list_from_api(self, client: UpstreamClient, target: CacheTarget, subject: Digest) -> list[FoundReferrer]:
        """List referrers with the referrers API; raise ApiNotSupported if the upstream lacks it."""
        path: str | None = f"/v2/{target.upstream_repository}/referrers/{subject}"
        referrers: list[FoundReferrer] = []
        pages = 0
        while path is not None and pages < _MAX_PAGES:
            pages += 1
            try:
                async with client.request(
                    "GET",
                    path,
                    repository=target.upstream_repository,
                    headers={"Accept": mediatypes.OCI_INDEX},
                    follow_redirects=False,
                ) as response:
                    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip()
                    body = await response.read()
                    link = response.headers.get("Link")
                metrics.UPSTREAM_BYTES.labels(client.name).inc(len(body))
            except UpstreamNotFound:
                raise ApiNotSupported("the upstream responded 404") from None
            except UpstreamError as error:
                if error.status in (301, 302, 303, 307, 308):
                    raise ApiNotSupported(f"the upstream redirected ({error.status})") from None
                if error.status in (400, 405, 406, 501):
                    raise ApiNotSupported(f"the upstream responded {error.status}") from None
                raise
            if content_type.startswith("text/html"):
                raise ApiNotSupported("the upstream responded with an HTML page")
            index = _parse_index(body)
            if index is None:
                raise ApiNotSupported("the response is not an OCI image index")
            referrers += _descriptors(index, SOURCE_API)
            path = _next_page(client, link)
        return referrers

    async def _from_tag_schema(
        self, client: UpstreamClient, target: CacheTarget, subject: Digest
    ) -> list[FoundReferrer]:
        try:
            fetched = await client.manifest_get(target.upstream_repository, fallback_tag(subject), 4 * 1024 * 1024)
        except UpstreamNotFound:
            return []
        index = _parse_index(fetched.data)
        if index is None:
            log.info("tag %s in %s is not an image index; ignoring it", fallback_tag(subject), target.repository)
            return []
        return _descriptors(index, SOURCE_TAG_SCHEMA)

    async def _cosign_tags(
        self, client: UpstreamClient, target: CacheTarget, subject: Digest, found: Discovery
    ) -> list[CosignTag]:
        tags = []
        for suffix in COSIGN_SUFFIXES:
            tag = fallback_tag(subject) + suffix
            try:
                head = await client.manifest_head(target.upstream_repository, tag, retries=0)
            except UpstreamNotFound:
                continue
            except UpstreamError as error:
                self._failed(found, client, target, subject, f"cosign tag {tag}", error)
                continue
            if head.digest and Digest.is_valid(head.digest):
                tags.append(CosignTag(tag, head.digest))
                metrics.REFERRERS_DISCOVERED.labels(SOURCE_COSIGN_TAG, suffix.lstrip(".")).inc()
        return tags


def _parse_index(body: bytes) -> dict[str, Any] | None:
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(document, dict) or not isinstance(document.get("manifests"), list):
        return None
    if document.get("mediaType", mediatypes.OCI_INDEX) != mediatypes.OCI_INDEX:
        return None
    return document


def _descriptors(index: dict[str, Any], source: str) -> list[FoundReferrer]:
    found = []
    for entry in index["manifests"]:
        if not isinstance(entry, dict):
            continue
        digest, media_type, size = entry.get("digest"), entry.get("mediaType"), entry.get("size")
        if not (isinstance(digest, str) and Digest.is_valid(digest) and isinstance(media_type, str)):
            continue
        if not isinstance(size, int) or isinstance(size, bool) or size < 0:
            continue
        artifact_type = entry.get("artifactType")
        annotations = entry.get("annotations")
        found.append(
            FoundReferrer(
                digest=digest,
                media_type=media_type,
                size=size,
                artifact_type=artifact_type if isinstance(artifact_type, str) else None,
                annotations=annotations if isinstance(annotations, dict) else None,
                source=source,
            )
        )
    return found


def _next_page(client: UpstreamClient, link: str | None) -> str | None:
    """Return the path of the next page if the `Link` stays on the upstream's host."""
    if not link:
        return None
    target = parse_links(link).get("next")
    if not target:
        return None
    url = client.base.join(URL(target))
    if url.origin() != client.base.origin():
        log.warning("upstream %s: not following a referrers page link to %s", client.name, url.host)
        return None
    return url.raw_path_qs
