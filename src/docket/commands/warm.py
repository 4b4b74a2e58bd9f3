"""`docket warm`: pull images and their referrers into the cache through a running Docket."""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import orjson

from docket.commands.http import MANIFEST_ACCEPT, CommandError, describe_error, get_json, split_reference

INDEX_TYPES = {
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
}


@dataclass
class Summary:
    manifests: dict[str, int] = field(default_factory=dict)
    blobs: dict[str, int] = field(default_factory=dict)
    blob_bytes: int = 0
    referrers: int = 0

    def count(self, table: dict[str, int], cache_status: str | None) -> None:
        origin = _origin(cache_status)
        table[origin] = table.get(origin, 0) + 1

    def render(self) -> str:
        def part(table: dict[str, int]) -> str:
            return ", ".join(f"{count} from {origin}" for origin, count in sorted(table.items())) or "none"

        return (
            f"{sum(self.manifests.values())} manifests ({part(self.manifests)}); "
            f"{sum(self.blobs.values())} blobs, {format_size(self.blob_bytes)} ({part(self.blobs)}); "
            f"{self.referrers} referrers"
        )


def _origin(cache_status: str | None) -> str:
    if not cache_status:
        return "local store"
    return "upstream" if "fwd=" in cache_status else "cache"


def _matches(platform: dict[str, Any] | None, wanted: str | None) -> bool:
    if wanted is None:
        return True
    if not platform:
        return False
    parts = wanted.split("/")
    actual = [platform.get("os"), platform.get("architecture"), platform.get("variant")]
    return all(want == have for want, have in zip(parts, actual, strict=False))


class Warmer:
    def __init__(self, server: str, session: aiohttp.ClientSession, platform: str | None) -> None:
        self.server = server.rstrip("/")
        self.session = session
        self.platform = platform
        self.summary = Summary()
        self.seen_blobs: set[str] = set()
        self.interactive = sys.stderr.isatty()

    async def manifest(self, name: str, reference: str) -> tuple[dict[str, Any], str, str]:
        url = f"{self.server}/v2/{name}/manifests/{reference}"
        async with self.session.get(url, headers={"Accept": MANIFEST_ACCEPT}) as response:
            body = await response.read()
            if response.status != 200:
                raise CommandError(f"{name}:{reference}: {describe_error(response.status, body)}")
            self.summary.count(self.summary.manifests, response.headers.get("Cache-Status"))
            digest = response.headers.get("Docker-Content-Digest", reference)
            media_type = response.headers.get("Content-Type", "")
        return orjson.loads(body), digest, media_type

    async def blob(self, name: str, descriptor: dict[str, Any]) -> None:
        digest = descriptor["digest"]
        if digest in self.seen_blobs:
            return
        self.seen_blobs.add(digest)
        size = int(descriptor.get("size") or 0)
        received = 0
        started = time.monotonic()
        async with self.session.get(f"{self.server}/v2/{name}/blobs/{digest}") as response:
            if response.status != 200:
                raise CommandError(f"blob {digest}: {describe_error(response.status, await response.read())}")
            origin = _origin(response.headers.get("Cache-Status"))
            async for chunk in response.content.iter_chunked(1 << 20):
                received += len(chunk)
                if self.interactive:
                    self._progress(digest, received, size)
            self.summary.count(self.summary.blobs, response.headers.get("Cache-Status"))
        self.summary.blob_bytes += received
        elapsed = max(time.monotonic() - started, 1e-6)
        line = f"    {digest[:19]}  {format_size(received):>10}  {format_size(received / elapsed):>10}/s  from {origin}"
        print(("\r" if self.interactive else "") + line, file=sys.stderr)

    def _progress(self, digest: str, received: int, size: int) -> None:
        width = 30
        done = int(width * received / size) if size else width
        bar = "#" * done + "." * (width - done)
        print(
            f"\r    {digest[:19]}  [{bar}] {received / 1048576:.1f}/{size / 1048576:.1f} MiB", end="", file=sys.stderr
        )

    async def referrers(self, name: str, digest: str, indent: str) -> None:
        index = await get_json(self.session, f"{self.server}/v2/{name}/referrers/{digest}")
        for entry in index.get("manifests", []):
            self.summary.referrers += 1
            print(f"{indent}referrer {entry['digest'][:19]}  {entry.get('artifactType', '')}", file=sys.stderr)
            document, referrer_digest, _media_type = await self.manifest(name, entry["digest"])
            for blob in _blobs(document):
                await self.blob(name, blob)

    async def image(self, reference: str) -> None:
        name, ref = split_reference(reference)
        document, digest, media_type = await self.manifest(name, ref)
        print(f"{name}:{ref} -> {digest} ({media_type})", file=sys.stderr)
        subjects = [digest]
        if media_type in INDEX_TYPES or "manifests" in document:
            children = [
                child for child in document.get("manifests", []) if _matches(child.get("platform"), self.platform)
            ]
            if self.platform is not None and not children:
                available = sorted({_platform_label(child.get("platform") or {}) for child in document["manifests"]})
                raise CommandError(
                    f"{name}:{ref} has no platform {self.platform}; it has: {', '.join(available) or 'none'}"
                )
            for child in children:
                label = _platform_label(child.get("platform") or {})
                print(f"  {label or 'manifest'} {child['digest']}", file=sys.stderr)
                child_document, child_digest, _type = await self.manifest(name, child["digest"])
                for blob in _blobs(child_document):
                    await self.blob(name, blob)
                subjects.append(child_digest)
        else:
            for blob in _blobs(document):
                await self.blob(name, blob)
        for subject in subjects:
            await self.referrers(name, subject, "  ")


def _platform_label(platform: dict[str, Any]) -> str:
    return "/".join(str(platform[key]) for key in ("os", "architecture", "variant") if platform.get(key))


def format_size(size: float) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.2f} GiB"


def _blobs(document: dict[str, Any]) -> list[dict[str, Any]]:
    blobs = list(document.get("layers") or []) + list(document.get("blobs") or [])
    if isinstance(document.get("config"), dict):
        blobs.insert(0, document["config"])
    return [blob for blob in blobs if isinstance(blob, dict) and "digest" in blob and not blob.get("urls")]


async def warm(server: str, references: list[str], platform: str | None) -> str:
    timeout = aiohttp.ClientTimeout(total=None, sock_read=300)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        warmer = Warmer(server, session, platform)
        for reference in references:
            await warmer.image(reference)
    return warmer.summary.render()
