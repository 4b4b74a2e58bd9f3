"""Tests of the shared generation that lets worker processes drop deleted manifests and links from memory."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from docket.config import Config
from docket.errors import ErrorCode, RegistryError
from docket.oci.digest import Digest
from docket.registry import Registry
from docket.registry.generation import Observer, SharedGeneration
from docket.server import build_registry
from tests.support.oci import Manifest, image, push_manifest
from tests.support.processes import DocketProcess

# New connections for each request, so the kernel spreads them over the worker processes.
REQUESTS = 24


def test_generation_shared_through_file(tmp_path: Path) -> None:
    first = SharedGeneration(tmp_path / "test.generation")
    second = SharedGeneration(tmp_path / "test.generation")
    observer = Observer(second)

    assert not observer.changed()
    first.bump()
    assert second.current() == first.current()
    assert observer.changed()
    assert not observer.changed()


def test_generation_without_file() -> None:
    generation = SharedGeneration()
    observer = Observer(generation)

    generation.bump()

    assert generation.current() == 1
    assert observer.changed()


async def chunks(data: bytes) -> AsyncIterator[bytes]:
    yield data


async def push(registry: Registry, repository: str, manifest: Manifest) -> Digest:
    for blob in manifest.blobs:
        digest = Digest.parse(blob.digest)
        await registry.uploads.put_whole(repository, digest, chunks(blob.data), len(blob.data))
    digest, _ = await registry.manifests.put(repository, "v1", manifest.media_type, manifest.data)
    return digest


@pytest.fixture
async def two_registries(tmp_path: Path) -> AsyncIterator[tuple[Registry, Registry]]:
    """Two registries over one data directory, as two worker processes have them."""
    config = Config(data_dir=tmp_path / "data")
    registries = (build_registry(config), build_registry(config, worker=1))
    for registry in registries:
        await registry.open()
    yield registries
    for registry in registries:
        await registry.close()


async def test_manifest_delete_reaches_other_registry(two_registries: tuple[Registry, Registry]) -> None:
    deleting, serving = two_registries
    digest = await push(deleting, "gen/app", image())
    assert (await serving.manifests.get("gen/app", digest)).record.digest == str(digest)

    await deleting.manifests.delete("gen/app", digest)

    with pytest.raises(RegistryError) as raised:
        await serving.manifests.get("gen/app", digest)
    assert raised.value.code is ErrorCode.MANIFEST_UNKNOWN


async def test_blob_delete_reaches_other_registry(two_registries: tuple[Registry, Registry]) -> None:
    deleting, serving = two_registries
    manifest = image()
    await push(deleting, "gen/app", manifest)
    layer = Digest.parse(manifest.blobs[1].digest)
    assert await serving.blobs.size("gen/app", layer) == len(manifest.blobs[1].data)

    await deleting.blobs.delete("gen/app", layer)

    with pytest.raises(RegistryError) as raised:
        await serving.blobs.size("gen/app", layer)
    assert raised.value.code is ErrorCode.BLOB_UNKNOWN


def test_workers_forget_deleted_manifest(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    docket = start_docket("--workers", "2", data_dir=tmp_path / "data")
    manifest = image()
    path = f"/v2/gen/app/manifests/{manifest.digest}"
    headers = {"Accept": manifest.media_type}

    def get(_index: int) -> int:
        with httpx.Client(base_url=docket.url, timeout=10.0) as client:
            return client.get(path, headers=headers).status_code

    with httpx.Client(base_url=docket.url, timeout=10.0) as client:
        push_manifest(client, "gen/app", manifest, "v1")
    with ThreadPoolExecutor(max_workers=4) as pool:
        before = list(pool.map(get, range(REQUESTS)))
    with httpx.Client(base_url=docket.url, timeout=10.0) as client:
        deleted = client.delete(path)
    with ThreadPoolExecutor(max_workers=4) as pool:
        after = list(pool.map(get, range(REQUESTS)))

    assert before == [200] * REQUESTS
    assert deleted.status_code == 202
    assert after == [404] * REQUESTS
