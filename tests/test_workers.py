"""Several worker processes sharing one data directory."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fake_upstream import FakeUpstream
from tests.support.oci import image
from tests.support.processes import DocketProcess


def write_config(path: Path, upstream: FakeUpstream) -> Path:
    path.write_text(
        f"""
[cache]
embedded_rules = false
tag_ttl = "1h"

[[rules]]
prefix = "up"
url = "{upstream.url}"
"""
    )
    return path


def decisions(text: str, kind: str) -> dict[str, float]:
    """Return the cache decisions on one kind of object, summed over rules."""
    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == "docket_cache_decisions_total" and sample.labels["kind"] == kind:
                decision = sample.labels["decision"]
                counts[decision] = counts.get(decision, 0.0) + sample.value
    return counts


def gauge(text: str, name: str) -> float:
    return sum(
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name
    )


def test_workers_share_one_blob_fill(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    data = os.urandom(24 * 1024 * 1024)
    with FakeUpstream() as upstream:
        digest = upstream.add_blob("team/app", data)
        config = write_config(tmp_path / "docket.toml", upstream)
        docket = start_docket("--config", str(config), "--workers", "2")

        def fetch(_index: int) -> str:
            # A new connection each time, so the kernel spreads requests over both workers.
            with httpx.Client(base_url=docket.url, timeout=60.0) as client:
                response = client.get(f"/v2/up/team/app/blobs/{digest}")
                response.raise_for_status()
                return hashlib.sha256(response.content).hexdigest()

        with ThreadPoolExecutor(max_workers=10) as pool:
            results = list(pool.map(fetch, range(10)))

        metrics = httpx.get(f"{docket.url}/metrics", timeout=10.0).text

        assert results == [digest.removeprefix("sha256:")] * 10
        assert upstream.count(method="GET", path_contains=f"/blobs/{digest}") == 1
        assert list((docket.data_dir / "tmp").iterdir()) == []
        # One download, so one miss: a worker following the other's download counts as coalesced.
        blob_decisions = decisions(metrics, "blob")
        assert blob_decisions["miss"] == 1.0
        # A request that arrives after the download ended is a hit instead.
        assert blob_decisions.get("coalesced", 0.0) + blob_decisions.get("hit", 0.0) == 9.0
        assert gauge(metrics, "docket_blob_fills_in_progress") == 0.0


def test_workers_serve_manifests_and_stop(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    manifest = image(layers=1)
    with FakeUpstream() as upstream:
        upstream.add_image("team/app", manifest, tags=["v1"])
        config = write_config(tmp_path / "docket.toml", upstream)
        docket = start_docket("--config", str(config), "--workers", "2")
        for _ in range(20):
            with httpx.Client(base_url=docket.url, timeout=30.0) as client:
                response = client.get("/v2/up/team/app/manifests/v1")
            assert response.status_code == 200
            assert response.content == manifest.data
        docket.stop()
        assert docket.process is None


def get_spread(url: str, paths: list[str], headers: dict[str, str] | None = None) -> list[httpx.Response]:
    """GET each path on a new connection, four at a time, so the kernel spreads the requests over the workers."""

    def get(path: str) -> httpx.Response:
        with httpx.Client(base_url=url, timeout=30.0) as client:
            return client.get(path, headers=headers)

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(get, paths))


def test_workers_follow_refreshed_tag(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    first, second = image(layers=1), image(layers=1)
    accept = {"Accept": first.media_type}
    with FakeUpstream() as upstream:
        upstream.add_image("team/app", first, tags=["v1"])
        upstream.add_image("team/app", second)
        config = write_config(tmp_path / "docket.toml", upstream)
        docket = start_docket("--config", str(config), "--workers", "2")

        before = get_spread(docket.url, ["/v2/up/team/app/manifests/v1"] * 24, accept)
        upstream.tag("team/app", "v1", second.digest)
        refreshed = subprocess.run(
            [sys.executable, "-m", "docket", "refresh", "up/team/app:v1", "--server", docket.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        after = get_spread(docket.url, ["/v2/up/team/app/manifests/v1"] * 24, accept)

    assert [response.headers.get("Docker-Content-Digest") for response in before] == [first.digest] * 24
    assert refreshed.returncode == 0, refreshed.stderr
    # The tag TTL is an hour, so only the refresh can have moved the tag in both workers.
    assert [response.headers.get("Docker-Content-Digest") for response in after] == [second.digest] * 24


def test_workers_first_pulls_race(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    manifests = {f"team/app{number}": image(layers=1) for number in range(8)}
    with FakeUpstream() as upstream:
        for repository, manifest in manifests.items():
            upstream.add_image(repository, manifest, tags=["v1"])
        config = write_config(tmp_path / "docket.toml", upstream)
        docket = start_docket("--config", str(config), "--workers", "2")

        # Both workers record each new repository at about the same time.
        requests = [repository for repository in manifests for _ in range(4)]
        responses = get_spread(
            docket.url, [f"/v2/up/{repository}/manifests/v1" for repository in requests], {"Accept": image().media_type}
        )

    assert [(response.status_code, response.headers.get("Docker-Content-Digest")) for response in responses] == [
        (200, manifests[repository].digest) for repository in requests
    ]


def test_workers_metrics_cover_all(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    manifest = image(layers=1)
    accept = {"Accept": manifest.media_type}
    with FakeUpstream() as upstream:
        upstream.add_image("team/app", manifest, tags=["v1"])
        config = write_config(tmp_path / "docket.toml", upstream)
        docket = start_docket("--config", str(config), "--workers", "2", data_dir=tmp_path / "data")

        first = httpx.get(f"{docket.url}/v2/up/team/app/manifests/v1", headers=accept, timeout=30.0)
        pulls = get_spread(docket.url, ["/v2/up/team/app/manifests/v1"] * 24, accept)
        scrapes = get_spread(docket.url, ["/metrics"] * 12)

    assert first.status_code == 200
    assert [response.status_code for response in pulls] == [200] * 24
    assert [response.status_code for response in scrapes] == [200] * 12
    # Every pull after the first is a hit, and the scrape reports all of them, whichever worker serves it.
    assert [decisions(response.text, "manifest").get("hit") for response in scrapes] == [24.0] * 12
    assert list((tmp_path / "data" / "metrics").glob("*.db")) != []


def test_workers_forget_tag_deleted_upstream(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    manifest = image(layers=1)
    accept = {"Accept": manifest.media_type}
    with FakeUpstream() as upstream:
        upstream.add_image("team/app", manifest, tags=["v1"])
        config = write_config(tmp_path / "docket.toml", upstream)
        docket = start_docket("--config", str(config), "--workers", "2")

        before = get_spread(docket.url, ["/v2/up/team/app/manifests/v1"] * 24, accept)
        upstream.delete_tag("team/app", "v1")
        refreshed = httpx.post(f"{docket.url}/_docket/refresh", params={"reference": "up/team/app:v1"}, timeout=30.0)
        after = get_spread(docket.url, ["/v2/up/team/app/manifests/v1"] * 24, accept)

    assert [response.status_code for response in before] == [200] * 24
    assert refreshed.status_code == 404
    # The tag TTL is an hour, so only the refresh can have made both workers forget the tag.
    assert [response.status_code for response in after] == [404] * 24


def test_workers_status_covers_all(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    manifest = image(layers=1)
    accept = {"Accept": manifest.media_type}
    with FakeUpstream() as upstream:
        upstream.add_image("team/app", manifest, tags=["v1"])
        config = write_config(tmp_path / "docket.toml", upstream)
        docket = start_docket("--config", str(config), "--workers", "2")

        first = httpx.get(f"{docket.url}/v2/up/team/app/manifests/v1", headers=accept, timeout=30.0)
        pulls = get_spread(docket.url, ["/v2/up/team/app/manifests/v1"] * 9, accept)
        statuses = get_spread(docket.url, ["/_docket/status"] * 12)

    assert first.status_code == 200
    assert [response.status_code for response in pulls] == [200] * 9
    # One miss and nine hits, whichever worker reports them.
    assert [response.json()["hit_ratio"] for response in statuses] == [0.9] * 12
