"""Referrers API over HTTP: listing, artifactType filter, OCI-Subject and pagination."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.oci import (
    OCI_CONFIG,
    OCI_EMPTY,
    OCI_INDEX,
    OCI_MANIFEST,
    Blob,
    Manifest,
    artifact,
    canonical,
    digest_of,
    error_codes,
    image,
    index,
    push_blob,
    push_manifest,
)
from tests.support.processes import DocketProcess

NEXT_LINK_RE = re.compile(r'^<([^<>]+)>; *rel="next"$')
ANNOTATION = "org.opencontainers.conformance.test"
TYPE_A = "application/vnd.nhl.peanut.butter.bagel"
TYPE_B = "application/vnd.nba.strawberry.jam.croissant"
TYPE_INDEX = "application/vnd.food.stand"


def referrers(client: httpx.Client, repository: str, subject: str, **query: str) -> httpx.Response:
    response = client.get(f"/v2/{repository}/referrers/{subject}", params=query)
    assert response.status_code == 200, response.text
    return response


def by_digest(response: httpx.Response) -> dict[str, dict[str, Any]]:
    return {descriptor["digest"]: descriptor for descriptor in response.json()["manifests"]}


def next_link(response: httpx.Response) -> str | None:
    header = response.headers.get("Link")
    if header is None:
        return None
    match = NEXT_LINK_RE.match(header)
    assert match is not None, f"malformed Link header {header!r}"
    return match.group(1)


def config_typed(subject: Manifest, config_type: str, annotations: dict[str, str]) -> Manifest:
    """An artifact without `artifactType` whose type is its config media type, as in the OCI conformance suite."""
    config = Blob(b"NHL Peanut Butter on my NHL bagel " + os.urandom(8).hex().encode(), config_type)
    empty = Blob(b"{}", OCI_EMPTY)
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [empty.descriptor()],
        "subject": subject.descriptor(),
        "annotations": annotations,
    }
    return Manifest(canonical(document), OCI_MANIFEST, [config, empty])


def index_referrer(
    subject: Manifest, children: list[Manifest], artifact_type: str | None, annotations: dict[str, str] | None
) -> Manifest:
    document: dict[str, Any] = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [child.descriptor() for child in children],
        "subject": subject.descriptor(),
    }
    if artifact_type is not None:
        document["artifactType"] = artifact_type
    if annotations is not None:
        document["annotations"] = annotations
    return Manifest(canonical(document), OCI_INDEX, [], children)


def assert_empty_index(response: httpx.Response) -> None:
    assert response.status_code == 200
    assert response.headers["Content-Type"] == OCI_INDEX
    body = response.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    assert body["manifests"] == []


@pytest.fixture
def subject(client: httpx.Client, repo: str) -> Manifest:
    manifest = image()
    push_manifest(client, repo, manifest, "subject")
    return manifest


@pytest.fixture
def small_pages(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> Iterator[httpx.Client]:
    """A client for a fresh server whose `max_page_size` is 3."""
    config = tmp_path / "small-pages.toml"
    config.write_text("[registry]\nmax_page_size = 3\n")
    server = start_docket("--config", str(config))
    http = httpx.Client(base_url=server.url, timeout=30.0)
    yield http
    http.close()


# Listing


def test_referrers_list_artifacts(client: httpx.Client, repo: str, subject: Manifest) -> None:
    first = artifact(subject, TYPE_A, annotations={ANNOTATION: "first"})
    second = artifact(subject, TYPE_B, annotations={ANNOTATION: "second", "org.example.extra": "x"})
    for manifest in (first, second):
        push_manifest(client, repo, manifest)

    response = referrers(client, repo, subject.digest)

    assert response.headers["Content-Type"] == OCI_INDEX
    body = response.json()
    assert body["schemaVersion"] == 2
    assert body["mediaType"] == OCI_INDEX
    assert "OCI-Filters-Applied" not in response.headers
    listed = by_digest(response)
    assert len(body["manifests"]) == 2
    assert set(listed) == {first.digest, second.digest}
    for manifest, artifact_type, annotations in (
        (first, TYPE_A, {ANNOTATION: "first"}),
        (second, TYPE_B, {ANNOTATION: "second", "org.example.extra": "x"}),
    ):
        descriptor = listed[manifest.digest]
        assert descriptor["mediaType"] == OCI_MANIFEST
        assert descriptor["size"] == len(manifest.data)
        assert descriptor["artifactType"] == artifact_type
        assert descriptor["annotations"] == annotations


def test_referrers_config_type_fallback(client: httpx.Client, repo: str, subject: Manifest) -> None:
    custom = config_typed(subject, TYPE_A, {ANNOTATION: "config"})
    plain = image(subject=subject)
    push_manifest(client, repo, custom)
    push_manifest(client, repo, plain)

    listed = by_digest(referrers(client, repo, subject.digest))

    assert listed[custom.digest]["artifactType"] == TYPE_A
    assert listed[custom.digest]["annotations"] == {ANNOTATION: "config"}
    assert listed[plain.digest]["artifactType"] == OCI_CONFIG
    assert "annotations" not in listed[plain.digest]


def test_referrers_list_index(client: httpx.Client, repo: str, subject: Manifest) -> None:
    children = [artifact(None, TYPE_A), artifact(None, TYPE_B)]
    stand = index_referrer(subject, children, TYPE_INDEX, {ANNOTATION: "index"})

    put = push_manifest(client, repo, stand, "stand")
    listed = by_digest(referrers(client, repo, subject.digest))

    assert put.headers["OCI-Subject"] == subject.digest
    assert list(listed) == [stand.digest]
    assert listed[stand.digest]["mediaType"] == OCI_INDEX
    assert listed[stand.digest]["size"] == len(stand.data)
    assert listed[stand.digest]["artifactType"] == TYPE_INDEX
    assert listed[stand.digest]["annotations"] == {ANNOTATION: "index"}


def test_referrers_index_without_artifact_type(client: httpx.Client, repo: str, subject: Manifest) -> None:
    plain = index_referrer(subject, [image()], None, None)
    push_manifest(client, repo, plain)

    listed = by_digest(referrers(client, repo, subject.digest))

    assert listed[plain.digest]["mediaType"] == OCI_INDEX
    assert listed[plain.digest].get("artifactType", "") == ""


def test_referrers_of_index_subject(client: httpx.Client, repo: str) -> None:
    parent = index([image(), image()])
    push_manifest(client, repo, parent, "index")
    referrer = index_referrer(parent, [artifact(None, TYPE_A)], TYPE_INDEX, {ANNOTATION: "on index"})
    push_manifest(client, repo, referrer, "tagged-artifact")

    listed = by_digest(referrers(client, repo, parent.digest))

    assert list(listed) == [referrer.digest]
    assert listed[referrer.digest]["artifactType"] == TYPE_INDEX


def test_referrers_pushed_twice_listed_once(client: httpx.Client, repo: str, subject: Manifest) -> None:
    signature = artifact(subject, TYPE_A)
    push_manifest(client, repo, signature)
    push_manifest(client, repo, signature, "sig")

    listed = referrers(client, repo, subject.digest).json()["manifests"]

    assert [descriptor["digest"] for descriptor in listed] == [signature.digest]


# Filter


def test_referrers_filter(client: httpx.Client, repo: str, subject: Manifest) -> None:
    a_config = config_typed(subject, TYPE_A, {ANNOTATION: "a config"})
    a_layer = artifact(subject, TYPE_A, annotations={ANNOTATION: "a layer"})
    b_layer = artifact(subject, TYPE_B, annotations={ANNOTATION: "b layer"})
    stand = index_referrer(subject, [artifact(None, TYPE_A)], TYPE_INDEX, {ANNOTATION: "index"})
    for manifest in (a_config, a_layer, b_layer, stand):
        push_manifest(client, repo, manifest)

    filtered = referrers(client, repo, subject.digest, artifactType=TYPE_A)
    index_only = referrers(client, repo, subject.digest, artifactType=TYPE_INDEX)
    nothing = referrers(client, repo, subject.digest, artifactType="application/vnd.example.none")

    assert filtered.headers["OCI-Filters-Applied"] == "artifactType"
    assert filtered.headers["Content-Type"] == OCI_INDEX
    assert set(by_digest(filtered)) == {a_config.digest, a_layer.digest}
    assert list(by_digest(index_only)) == [stand.digest]
    assert nothing.headers["OCI-Filters-Applied"] == "artifactType"
    assert nothing.json()["manifests"] == []


def test_referrers_no_filter_header(client: httpx.Client, repo: str, subject: Manifest) -> None:
    push_manifest(client, repo, artifact(subject, TYPE_A))

    response = referrers(client, repo, subject.digest)

    assert "OCI-Filters-Applied" not in response.headers
    assert len(response.json()["manifests"]) == 1


# Unknown subjects and repositories


def test_referrers_unknown_subject(client: httpx.Client, repo: str, subject: Manifest) -> None:
    push_manifest(client, repo, artifact(subject, TYPE_A))

    response = client.get(f"/v2/{repo}/referrers/{digest_of(b'hello world')}")

    assert_empty_index(response)


def test_referrers_unknown_repository(client: httpx.Client, repo: str) -> None:
    response = client.get(f"/v2/{repo}/referrers/{digest_of(os.urandom(16))}")

    assert_empty_index(response)


def test_referrers_subject_without_referrers(client: httpx.Client, repo: str, subject: Manifest) -> None:
    response = client.get(f"/v2/{repo}/referrers/{subject.digest}")

    assert_empty_index(response)


def test_referrers_invalid_digest(client: httpx.Client, repo: str) -> None:
    response = client.get(f"/v2/{repo}/referrers/sha256:notadigest")

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_referrers_other_repository(client: httpx.Client, repo: str, subject: Manifest) -> None:
    other = f"{repo}-other"
    push_manifest(client, other, subject, "subject")
    push_manifest(client, other, artifact(subject, TYPE_B))
    mine = artifact(subject, TYPE_A)
    push_manifest(client, repo, mine)

    listed = by_digest(referrers(client, repo, subject.digest))

    assert list(listed) == [mine.digest]


# OCI-Subject


def test_put_subject_header(client: httpx.Client, repo: str, subject: Manifest) -> None:
    manifest = artifact(subject, TYPE_A)
    for blob in manifest.blobs:
        push_blob(client, repo, blob)

    response = client.put(
        f"/v2/{repo}/manifests/{manifest.digest}", content=manifest.data, headers={"Content-Type": OCI_MANIFEST}
    )

    assert response.status_code == 201
    assert response.headers["OCI-Subject"] == subject.digest


def test_put_missing_subject(client: httpx.Client, repo: str) -> None:
    missing = image()  # never pushed
    manifest = artifact(missing, TYPE_B)
    for blob in manifest.blobs:
        push_blob(client, repo, blob)

    response = client.put(
        f"/v2/{repo}/manifests/tagged-artifact", content=manifest.data, headers={"Content-Type": OCI_MANIFEST}
    )
    listed = by_digest(referrers(client, repo, missing.digest))

    assert response.status_code == 201
    assert response.headers["OCI-Subject"] == missing.digest
    assert list(listed) == [manifest.digest]
    assert listed[manifest.digest]["artifactType"] == TYPE_B


def test_put_without_subject_header(client: httpx.Client, repo: str) -> None:
    response = push_manifest(client, repo, artifact(None, TYPE_A))

    assert "OCI-Subject" not in response.headers


# Deletes


def test_referrer_deleted(client: httpx.Client, repo: str, subject: Manifest) -> None:
    doomed = artifact(subject, TYPE_A)
    survivor = artifact(subject, TYPE_A)
    push_manifest(client, repo, doomed)
    push_manifest(client, repo, survivor)
    assert len(referrers(client, repo, subject.digest).json()["manifests"]) == 2

    response = client.delete(f"/v2/{repo}/manifests/{doomed.digest}")

    assert response.status_code == 202
    assert list(by_digest(referrers(client, repo, subject.digest))) == [survivor.digest]
    assert list(by_digest(referrers(client, repo, subject.digest, artifactType=TYPE_A))) == [survivor.digest]


def test_referrer_tag_deleted(client: httpx.Client, repo: str, subject: Manifest) -> None:
    tagged = artifact(subject, TYPE_A)
    push_manifest(client, repo, tagged, "sig")

    response = client.delete(f"/v2/{repo}/manifests/sig")

    assert response.status_code == 202
    assert list(by_digest(referrers(client, repo, subject.digest))) == [tagged.digest]


def test_referrers_survive_subject_delete(client: httpx.Client, repo: str, subject: Manifest) -> None:
    signature = artifact(subject, TYPE_A)
    push_manifest(client, repo, signature)

    response = client.delete(f"/v2/{repo}/manifests/{subject.digest}")

    assert response.status_code == 202
    assert list(by_digest(referrers(client, repo, subject.digest))) == [signature.digest]


# sha512


def test_referrer_pushed_by_sha512(client: httpx.Client, repo: str, subject: Manifest) -> None:
    manifest = artifact(subject, TYPE_A, annotations={ANNOTATION: "sha512"})
    for blob in manifest.blobs:
        push_blob(client, repo, blob)
    digest = digest_of(manifest.data, "sha512")

    response = client.put(
        f"/v2/{repo}/manifests/{digest}", content=manifest.data, headers={"Content-Type": OCI_MANIFEST}
    )
    listed = by_digest(referrers(client, repo, subject.digest))

    assert response.status_code == 201
    assert response.headers["OCI-Subject"] == subject.digest
    assert list(listed) == [digest]
    assert listed[digest]["size"] == len(manifest.data)
    assert listed[digest]["annotations"] == {ANNOTATION: "sha512"}


def test_referrers_of_sha512_subject(client: httpx.Client, repo: str) -> None:
    base = image()
    for blob in base.blobs:
        push_blob(client, repo, blob)
    base_digest = digest_of(base.data, "sha512")
    put = client.put(f"/v2/{repo}/manifests/{base_digest}", content=base.data, headers={"Content-Type": OCI_MANIFEST})
    assert put.status_code == 201
    empty, layer = Blob(b"{}", OCI_EMPTY), Blob(os.urandom(32), "application/octet-stream")
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "artifactType": TYPE_A,
        "config": empty.descriptor(),
        "layers": [layer.descriptor()],
        "subject": {"mediaType": OCI_MANIFEST, "digest": base_digest, "size": len(base.data)},
    }
    referrer = Manifest(canonical(document), OCI_MANIFEST, [empty, layer])
    response = push_manifest(client, repo, referrer)

    listed = by_digest(referrers(client, repo, base_digest))

    assert response.headers["OCI-Subject"] == base_digest
    assert list(listed) == [referrer.digest]
    assert referrers(client, repo, base.digest).json()["manifests"] == []


# Pagination


def collect(client: httpx.Client, url: str) -> tuple[list[str], list[httpx.Response]]:
    """Follow `rel="next"` links from `url` and return all listed digests and every page response."""
    digests: list[str] = []
    pages: list[httpx.Response] = []
    next_url: str | None = url
    while next_url is not None:
        assert len(pages) < 50, "pagination does not end"
        response = client.get(next_url)
        assert response.status_code == 200, response.text
        pages.append(response)
        digests += [descriptor["digest"] for descriptor in response.json()["manifests"]]
        next_url = next_link(response)
    return digests, pages


def test_referrers_paginated(small_pages: httpx.Client) -> None:
    repository = "paged/referrers"
    base = image()
    push_manifest(small_pages, repository, base, "subject")
    pushed = [artifact(base, TYPE_A if i % 3 else TYPE_B, annotations={ANNOTATION: str(i)}) for i in range(8)]
    for manifest in pushed:
        push_manifest(small_pages, repository, manifest)
    expected_a = {manifest.digest for i, manifest in enumerate(pushed) if i % 3}

    digests, pages = collect(small_pages, f"/v2/{repository}/referrers/{base.digest}")
    filtered, filtered_pages = collect(small_pages, f"/v2/{repository}/referrers/{base.digest}?artifactType={TYPE_A}")

    assert [len(page.json()["manifests"]) for page in pages] == [3, 3, 2]
    assert sorted(digests) == sorted(manifest.digest for manifest in pushed)
    assert len(set(digests)) == len(digests)
    assert all(page.headers["Content-Type"] == OCI_INDEX for page in pages)
    first_link = httpx.URL(next_link(pages[0]) or "")
    assert first_link.path == f"/v2/{repository}/referrers/{base.digest}"
    assert [len(page.json()["manifests"]) for page in filtered_pages] == [3, 2]
    assert sorted(filtered) == sorted(expected_a)
    assert len(set(filtered)) == len(filtered)
    assert all(page.headers.get("OCI-Filters-Applied") == "artifactType" for page in filtered_pages)
    assert httpx.URL(next_link(filtered_pages[0]) or "").params["artifactType"] == TYPE_A
