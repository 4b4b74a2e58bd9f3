"""The `require_referrers` policy against real upstreams and real Notary Project signatures.

The notation end-to-end layouts hold one image `v1`: signed in
notation-e2e-valid-signature, unsigned in notation-e2e. Each upstream kind (see
test_referrers_sync.py) contains the signed copy in `signed` and the unsigned one in
`unsigned` and `pushed`. A caching Docket requires a Notary signature, set once in its
config file and once with `--require-referrers`.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.layout import REF_NAME, OciLayout
from tests.support.oci import OCI_MANIFEST, Manifest, artifact, error_codes
from tests.support.processes import DocketProcess
from tests.test_referrers_sync import (
    UPSTREAM_KINDS,
    Upstream,
    get_manifest,
    inspect_tree,
    rule,
    write_config,
)

NOTARY = "application/vnd.cncf.notary.signature"
PREFIX = "strict"
POLICY_SOURCES = ("config", "flag")


@dataclass(frozen=True)
class Notation:
    signed: OciLayout
    unsigned: OciLayout

    @property
    def image(self) -> str:
        return str(self.unsigned.tags()["v1"]["digest"])

    @property
    def signature(self) -> str:
        """Digest of the signature in the signed layout, the only untagged manifest there."""
        entries = self.signed.index()["manifests"]
        return str(next(entry["digest"] for entry in entries if REF_NAME not in entry.get("annotations", {})))


@pytest.fixture(scope="module")
def notation(fixtures_dir: Path) -> Notation:
    return Notation(
        signed=OciLayout(fixtures_dir / "oci" / "notation-e2e-valid-signature"),
        unsigned=OciLayout(fixtures_dir / "oci" / "notation-e2e"),
    )


@pytest.fixture(scope="module", params=UPSTREAM_KINDS)
def upstream(
    request: pytest.FixtureRequest, notation: Notation, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Upstream]:
    registry = Upstream(request.param, tmp_path_factory.mktemp(f"policy-{request.param}"))
    registry.start()
    try:
        # The signed layout's tags are v1 and the fallback tag that lists the signature.
        registry.push_tags(notation.signed, "signed", list(notation.signed.tags()))
        registry.push_untagged(notation.signed, "signed", (notation.signature,))
        for repository in ("unsigned", "pushed"):
            registry.push_tags(notation.unsigned, repository, ["v1"])
        yield registry
    finally:
        registry.stop()


@pytest.fixture(scope="module", params=POLICY_SOURCES)
def cache(
    request: pytest.FixtureRequest, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[httpx.Client]:
    """A Docket whose rule for `strict` requires a Notary signature, from the config file or the flag."""
    folder = tmp_path_factory.mktemp(f"policy-{request.param}")
    if request.param == "config":
        config = write_config(folder / "docket.toml", [rule(PREFIX, upstream.url, require_referrers=[NOTARY])])
        arguments = ["--config", str(config)]
    else:
        config = write_config(folder / "docket.toml", [])
        arguments = ["--config", str(config), "--upstream", f"{PREFIX}={upstream.url}", "--require-referrers", NOTARY]
    with DocketProcess(folder / "data", *arguments) as server, httpx.Client(base_url=server.url, timeout=30.0) as http:
        yield http


def test_signed_image_served(cache: httpx.Client, notation: Notation) -> None:
    response = get_manifest(cache, f"{PREFIX}/signed", "v1")
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == notation.image


def test_signed_image_inspect_names_evidence(cache: httpx.Client, notation: Notation) -> None:
    get_manifest(cache, f"{PREFIX}/signed", "v1")
    tree = inspect_tree(cache, f"{PREFIX}/signed:v1")
    assert tree["policy"] == f"served: referrer {notation.signature} ({NOTARY})"


@pytest.mark.parametrize("reference", ["v1", "digest"])
def test_unsigned_image_denied(cache: httpx.Client, notation: Notation, reference: str) -> None:
    repository = f"{PREFIX}/unsigned"
    response = get_manifest(cache, repository, notation.image if reference == "digest" else reference)
    assert response.status_code == 403, response.text
    assert error_codes(response) == ["DENIED"]
    message = response.json()["errors"][0]["message"]
    assert f"{repository}@{notation.image}" in message
    assert NOTARY in message


def test_unsigned_image_head_denied(cache: httpx.Client) -> None:
    response = cache.head(f"/v2/{PREFIX}/unsigned/manifests/v1")
    assert response.status_code == 403


def test_pushed_signature_allows_image(cache: httpx.Client, notation: Notation) -> None:
    repository = f"{PREFIX}/pushed"
    before = get_manifest(cache, repository, "v1")
    subject = Manifest(notation.unsigned.read(notation.image), OCI_MANIFEST)
    signature = artifact(subject, NOTARY, b'{"payload": "a signature pushed to Docket"}')
    for blob in signature.blobs:
        upload = cache.post(f"/v2/{repository}/blobs/uploads/", params={"digest": blob.digest}, content=blob.data)
        assert upload.status_code == 201, upload.text
    pushed = cache.put(
        f"/v2/{repository}/manifests/{signature.digest}",
        content=signature.data,
        headers={"Content-Type": OCI_MANIFEST},
    )
    after = get_manifest(cache, repository, "v1")
    assert before.status_code == 403, before.text
    assert pushed.status_code == 201, pushed.text
    assert after.status_code == 200, after.text
    assert after.headers["Docker-Content-Digest"] == notation.image
