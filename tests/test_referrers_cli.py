"""`docket warm` and `docket inspect` against a caching Docket in front of real upstreams.

The upstreams are those of test_referrers_sync.py, loaded from the regclient test
repository. Each test warms or inspects its own upstream repository.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import DocketProcess
from tests.test_referrers_sync import (
    ARMS,
    PLAIN,
    SBOM,
    SIGNATURE,
    UPSTREAM_KINDS,
    Env,
    RegclientRepo,
    Upstream,
    digest_of,
    get_manifest,
    inspect_tree,
    load_repository,
    load_testrepo,
    rule,
    write_config,
)

UPSTREAM_REPOSITORIES = ("warm", "platform", "inspect")


def docket_command(*arguments: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docket", *arguments], capture_output=True, text=True, timeout=120, check=False
    )


@pytest.fixture(scope="module")
def testrepo(fixtures_dir: Path) -> RegclientRepo:
    return load_testrepo(fixtures_dir)


@pytest.fixture(scope="module", params=UPSTREAM_KINDS)
def env(
    request: pytest.FixtureRequest, testrepo: RegclientRepo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    kind: str = request.param
    folder = tmp_path_factory.mktemp(f"cli-{kind}")
    upstream = Upstream(kind, folder / "upstream")
    upstream.start()
    try:
        for repository in UPSTREAM_REPOSITORIES:
            load_repository(upstream, testrepo, repository)
        config = write_config(folder / "docket.toml", [rule(PLAIN, upstream.url)])
        with (
            DocketProcess(folder / "cache", "--config", str(config)) as cache,
            httpx.Client(base_url=cache.url, timeout=30.0) as http,
        ):
            yield Env(upstream, cache, http)
    finally:
        upstream.stop()


def test_warm_caches_image_and_referrers(env: Env, testrepo: RegclientRepo) -> None:
    repository = f"{PLAIN}/warm"
    result = docket_command("warm", "--server", env.cache.url, f"{repository}:v2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("; 5 referrers"), result.stdout

    manifests = [*testrepo.platforms.values(), *testrepo.v2_referrers, *testrepo.arms.values()]
    blobs = {blob for digest in manifests for blob in testrepo.blobs(digest)}
    with env.upstream.stopped():
        manifest_responses = {digest: get_manifest(env.http, repository, digest) for digest in manifests}
        blob_responses = {digest: env.http.get(f"/v2/{repository}/blobs/{digest}") for digest in sorted(blobs)}
    for digest, response in manifest_responses.items():
        assert response.status_code == 200, f"manifest {digest}: {response.status_code} {response.text}"
    for digest, response in blob_responses.items():
        assert response.status_code == 200, f"blob {digest}: {response.status_code} {response.text}"
        assert digest_of(response.content) == digest


def test_warm_platform_limits_children(env: Env, testrepo: RegclientRepo) -> None:
    repository = f"{PLAIN}/platform"
    amd64 = testrepo.platforms["linux/amd64"]
    others = [digest for label, digest in testrepo.platforms.items() if label != "linux/amd64"]
    result = docket_command("warm", "--server", env.cache.url, "--platform", "linux/amd64", f"{repository}:v2")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("; 3 referrers"), result.stdout
    cached = {child["digest"]: child["cached"] for child in inspect_tree(env.http, f"{repository}:v2")["children"]}
    assert cached == {amd64: True, **dict.fromkeys(others, False)}
    for digest in others:
        assert env.upstream.requests("GET", f"/v2/platform/manifests/{digest}") == []
    assert f"  linux/amd64 {amd64}" in result.stderr
    for digest in others:
        assert digest not in result.stderr


def test_inspect_names_referrers(env: Env, testrepo: RegclientRepo) -> None:
    reference = f"{PLAIN}/inspect:v2"
    warmed = docket_command("warm", "--server", env.cache.url, reference)
    assert warmed.returncode == 0, warmed.stderr
    result = docket_command("inspect", "--server", env.cache.url, reference)
    assert result.returncode == 0, result.stderr
    source = "via referrers API" if env.upstream.has_referrers_api else "via referrers tag schema"
    lines = result.stdout.splitlines()
    assert lines[0] == f"{reference}  (rule {PLAIN}, upstream {env.upstream.url})"
    expected = {
        testrepo.a1: SBOM,
        testrepo.a2: SIGNATURE,
        **dict.fromkeys(testrepo.arms.values(), ARMS),
    }
    for digest, artifact_type in expected.items():
        matching = [line for line in lines if line.strip().startswith(digest)]
        assert len(matching) == 1, f"{digest} in:\n{result.stdout}"
        assert f"artifactType {artifact_type}" in matching[0]
        assert source in matching[0]
        assert "synced " in matching[0]


def test_inspect_uncached_reference_fails(env: Env) -> None:
    result = docket_command("inspect", "--server", env.cache.url, f"{PLAIN}/inspect:missing")
    assert result.returncode == 1
    assert "is not in the cache" in result.stderr
