"""Interoperability with skopeo on third-party OCI content with referrers."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import httpx
import pytest

from tests.support.layout import OciLayout
from tests.support.processes import DocketProcess

TAGS = ("v1", "v2", "v3", "a1", "a2", "loop")
pytestmark = pytest.mark.skipif(shutil.which("skopeo") is None, reason="skopeo is not installed; run scripts/test")


def skopeo_copy(source: str, destination: str) -> None:
    result = subprocess.run(
        [
            "skopeo",
            "copy",
            "--all",
            "--preserve-digests",
            "--src-tls-verify=false",
            "--dest-tls-verify=false",
            source,
            destination,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, f"skopeo copy {source} {destination} failed:\n{result.stderr}"


@pytest.fixture(scope="module")
def testrepo(fixtures_dir: Path) -> OciLayout:
    return OciLayout(fixtures_dir / "oci" / "regclient-testrepo")


@pytest.fixture(scope="module")
def loaded(docket: DocketProcess, testrepo: OciLayout) -> str:
    """Copy every tested tag of the fixture into Docket with skopeo; return the repository."""
    host = docket.url.removeprefix("http://")
    for tag in TAGS:
        skopeo_copy(f"oci:{testrepo.path}:{tag}", f"docker://{host}/fixtures/testrepo:{tag}")
    return "fixtures/testrepo"


def test_copy_out_preserves_digests(docket: DocketProcess, testrepo: OciLayout, loaded: str, tmp_path: Path) -> None:
    host = docket.url.removeprefix("http://")
    out = OciLayout(tmp_path / "out")
    original_tags = testrepo.tags()
    for tag in TAGS:
        skopeo_copy(f"docker://{host}/{loaded}:{tag}", f"oci:{out.path}:{tag}")

    copied_tags = out.tags()
    for tag in TAGS:
        expected = original_tags[tag]["digest"]
        assert copied_tags[tag]["digest"] == expected, tag
        assert out.reachable(expected) == testrepo.reachable(expected), tag


def test_tags_listed(client: httpx.Client, loaded: str) -> None:
    response = client.get(f"/v2/{loaded}/tags/list")
    assert response.status_code == 200
    assert response.json()["tags"] == sorted(TAGS)


def test_referrers_of_v2_index(client: httpx.Client, testrepo: OciLayout, loaded: str) -> None:
    tags = testrepo.tags()
    response = client.get(f"/v2/{loaded}/referrers/{tags['v2']['digest']}")
    assert response.status_code == 200
    listed = {entry["digest"]: entry.get("artifactType") for entry in response.json()["manifests"]}
    assert listed == {
        tags["a1"]["digest"]: "application/example.sbom",
        tags["a2"]["digest"]: "application/example.signature",
    }


def test_fallback_tags_pushed_over_http(client: httpx.Client, testrepo: OciLayout) -> None:
    """Pushing the tag-schema indexes makes the untagged platform referrers listable."""
    repository = "fixtures/fallback"
    tags = testrepo.tags()
    testrepo.push(client, repository, tags["v2"], "v2")
    v2_children = [child["digest"] for child in json.loads(testrepo.read(tags["v2"]["digest"]))["manifests"]]
    # The tag schema names the index of a subject's referrers sha256-<hex of the subject>.
    for subject in [tags["v2"]["digest"], *v2_children]:
        fallback_tag = subject.replace(":", "-")
        testrepo.push(client, repository, tags[fallback_tag], fallback_tag)

    for child in v2_children:
        response = client.get(f"/v2/{repository}/referrers/{child}")
        assert response.status_code == 200
        types = [entry.get("artifactType") for entry in response.json()["manifests"]]
        assert types == ["application/example.arms"], child
