"""Generate random images locally and push them to the upstream registry."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

CHUNK = 4 << 20
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
# An uncompressed layer, so its digest is also its diff ID in the config. The bytes are
# random, not a tar archive, which no client in the benchmark unpacks.
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
# Accept header value for any single-platform or multi-platform manifest.
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_MANIFEST,
        "application/vnd.oci.image.index.v1+json",
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
    ]
)


@dataclass
class Blob:
    digest: str
    size: int
    path: Path


@dataclass
class Image:
    """An OCI image in files: a config blob, layer blobs and the manifest that lists them."""

    repository: str
    tag: str
    config: Blob
    layers: list[Blob]
    manifest: bytes
    manifest_digest: str = field(init=False)

    def __post_init__(self) -> None:
        self.manifest_digest = "sha256:" + hashlib.sha256(self.manifest).hexdigest()


def write_random_blob(path: Path, size: int) -> Blob:
    """Write `size` bytes from os.urandom to `path` and return its descriptor."""
    digest = hashlib.sha256()
    remaining = size
    with path.open("wb") as file:
        while remaining > 0:
            chunk = os.urandom(min(CHUNK, remaining))
            digest.update(chunk)
            file.write(chunk)
            remaining -= len(chunk)
    return Blob("sha256:" + digest.hexdigest(), size, path)


def write_bytes_blob(path: Path, data: bytes) -> Blob:
    path.write_bytes(data)
    return Blob("sha256:" + hashlib.sha256(data).hexdigest(), len(data), path)


def make_image(directory: Path, repository: str, tag: str, layer_sizes: list[int]) -> Image:
    """Write an image with one random layer of each size into `directory`."""
    directory.mkdir(parents=True, exist_ok=True)
    layers = [write_random_blob(directory / f"layer{index}", size) for index, size in enumerate(layer_sizes)]
    config_document = {
        "architecture": "amd64",
        "os": "linux",
        "rootfs": {"type": "layers", "diff_ids": [layer.digest for layer in layers]},
    }
    config = write_bytes_blob(directory / "config.json", json.dumps(config_document).encode())
    manifest_document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {"mediaType": OCI_CONFIG, "digest": config.digest, "size": config.size},
        "layers": [{"mediaType": OCI_LAYER, "digest": layer.digest, "size": layer.size} for layer in layers],
    }
    manifest = json.dumps(manifest_document).encode()
    return Image(repository, tag, config, layers, manifest)


class PushError(RuntimeError):
    """The upstream registry rejected an upload; the message has its status and body."""


async def push_blob(session: aiohttp.ClientSession, registry_url: str, repository: str, blob: Blob) -> None:
    """Upload with POST then one PUT that carries the whole blob, which distribution 2.8 supports."""
    async with session.post(f"{registry_url}/v2/{repository}/blobs/uploads/") as started:
        if started.status != 202:
            raise PushError(f"starting an upload to {repository} failed: {started.status} {await started.text()}")
        location = started.headers["Location"]
    if location.startswith("/"):
        location = registry_url + location
    separator = "&" if "?" in location else "?"
    with blob.path.open("rb") as file:
        async with session.put(
            f"{location}{separator}digest={blob.digest}",
            data=file,
            headers={"Content-Type": "application/octet-stream", "Content-Length": str(blob.size)},
        ) as finished:
            if finished.status != 201:
                raise PushError(
                    f"uploading {blob.digest} to {repository} failed: {finished.status} {await finished.text()}"
                )


async def push_image(session: aiohttp.ClientSession, registry_url: str, image: Image) -> None:
    for blob in [image.config, *image.layers]:
        await push_blob(session, registry_url, image.repository, blob)
    async with session.put(
        f"{registry_url}/v2/{image.repository}/manifests/{image.tag}",
        data=image.manifest,
        headers={"Content-Type": OCI_MANIFEST},
    ) as response:
        if response.status != 201:
            raise PushError(f"pushing {image.repository}:{image.tag} failed: {response.status} {await response.text()}")
