"""Manifest API over HTTP: push, pull, content negotiation, errors and deletes."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.support.oci import (
    DOCKER_MANIFEST,
    DOCKER_MANIFEST_LIST,
    OCI_CONFIG,
    OCI_INDEX,
    OCI_LAYER,
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
    random_blob,
)
from tests.support.processes import DocketProcess

MAX_MANIFEST_SIZE = 4 * 1024 * 1024
EMPTY_JSON_DIGEST = "sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"
SPEC_ERROR_CODES = {
    "BLOB_UNKNOWN",
    "BLOB_UPLOAD_INVALID",
    "BLOB_UPLOAD_UNKNOWN",
    "DIGEST_INVALID",
    "MANIFEST_BLOB_UNKNOWN",
    "MANIFEST_INVALID",
    "MANIFEST_UNKNOWN",
    "NAME_INVALID",
    "NAME_UNKNOWN",
    "SIZE_INVALID",
    "UNAUTHORIZED",
    "DENIED",
    "UNSUPPORTED",
    "TOOMANYREQUESTS",
}


def odd_json(document: dict[str, Any]) -> bytes:
    """Serialize with reversed key order, tabs, spaces around separators and a CRLF tail.

    A registry that re-serializes what it stores cannot reproduce these bytes.
    """
    reordered = dict(reversed(list(document.items())))
    return json.dumps(reordered, indent="\t", separators=(" , ", " :  ")).encode() + b"\r\n  \n"


def reformatted(manifest: Manifest) -> Manifest:
    """Return the same manifest serialized with `odd_json`, keeping its blobs and children."""
    return Manifest(odd_json(json.loads(manifest.data)), manifest.media_type, manifest.blobs, manifest.children)


def push_content(client: httpx.Client, repository: str, manifest: Manifest) -> None:
    """Push the blobs and child manifests that `manifest` references, but not the manifest."""
    for child in manifest.children:
        push_manifest(client, repository, child)
    for blob in manifest.blobs:
        push_blob(client, repository, blob)


def put_manifest(
    client: httpx.Client, repository: str, reference: str, data: Any, content_type: str | None
) -> httpx.Response:
    headers = {"Content-Type": content_type} if content_type else {}
    return client.put(f"/v2/{repository}/manifests/{reference}", content=data, headers=headers)


def tag_list(client: httpx.Client, repository: str) -> list[str]:
    response = client.get(f"/v2/{repository}/tags/list")
    assert response.status_code == 200, response.text
    return list(response.json()["tags"])


def chunks(data: bytes, size: int = 64 * 1024) -> Iterator[bytes]:
    """Yield `data` in pieces so that httpx sends it with chunked transfer encoding."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def sized_image(size: int, annotation_size: int = 10_000) -> Manifest:
    """Build an image manifest of exactly `size` bytes by padding many annotations."""
    count = max(1, size // (annotation_size + 40))
    keys = [f"org.example.padding.{i:05d}" for i in range(count)]
    # Digests and the config nonce have fixed lengths, so the overhead is the same for every build.
    overhead = len(image(annotations={key: "" for key in keys}).data)
    spare = size - overhead
    values = {key: "x" * (spare // count) for key in keys}
    values[keys[0]] += "x" * (spare % count)
    manifest = image(annotations=values)
    assert len(manifest.data) == size
    return manifest


def docker_image() -> Manifest:
    return image(media_type=DOCKER_MANIFEST)


def docker_list() -> Manifest:
    children = [image(media_type=DOCKER_MANIFEST), image(media_type=DOCKER_MANIFEST)]
    return index(children, media_type=DOCKER_MANIFEST_LIST)


def oci_index() -> Manifest:
    return index([image(), image()])


def oci_artifact() -> Manifest:
    return artifact(None, "application/vnd.example.sbom.v1+json", annotations={"org.example.kind": "sbom"})


MANIFEST_KINDS = {
    "oci-manifest": image,
    "oci-index": oci_index,
    "docker-manifest": docker_image,
    "docker-list": docker_list,
    "artifact": oci_artifact,
}


# Push


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_put_returns_201_location_digest(client: httpx.Client, repo: str, by: str) -> None:
    manifest = image()
    push_content(client, repo, manifest)
    reference = "v1" if by == "tag" else manifest.digest

    response = put_manifest(client, repo, reference, manifest.data, manifest.media_type)

    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    # The spec only requires that Location names the manifest, so the tag form is also valid.
    assert httpx.URL(response.headers["Location"]).path in {
        f"/v2/{repo}/manifests/{manifest.digest}",
        f"/v2/{repo}/manifests/{reference}",
    }
    assert "OCI-Subject" not in response.headers


def test_put_location_serves_manifest(client: httpx.Client, repo: str) -> None:
    manifest = reformatted(image())
    response = push_manifest(client, repo, manifest, "v1")

    pulled = client.get(response.headers["Location"], headers={"Accept": manifest.media_type})

    assert pulled.status_code == 200
    assert pulled.content == manifest.data
    assert pulled.headers["Content-Type"] == manifest.media_type
    assert pulled.headers["Content-Length"] == str(len(manifest.data))


def test_put_chunked_body(client: httpx.Client, repo: str) -> None:
    manifest = reformatted(image(layers=3))
    push_content(client, repo, manifest)

    response = put_manifest(client, repo, "chunked", chunks(manifest.data, 100), manifest.media_type)

    assert response.request.headers.get("Transfer-Encoding") == "chunked"
    assert "Content-Length" not in response.request.headers
    assert response.status_code == 201, response.text
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    pulled = client.get(f"/v2/{repo}/manifests/chunked")
    assert pulled.content == manifest.data


# Pull


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_get_returns_exact_bytes(client: httpx.Client, repo: str, by: str) -> None:
    manifest = reformatted(image(layers=2))
    push_manifest(client, repo, manifest, "odd")
    reference = "odd" if by == "tag" else manifest.digest

    response = client.get(f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})

    assert response.status_code == 200
    assert response.content == manifest.data
    assert response.headers["Content-Type"] == OCI_MANIFEST
    assert response.headers["Content-Length"] == str(len(manifest.data))
    assert response.headers["Docker-Content-Digest"] == manifest.digest


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_head_returns_headers_only(client: httpx.Client, repo: str, by: str) -> None:
    manifest = reformatted(image(layers=2))
    push_manifest(client, repo, manifest, "odd")
    reference = "odd" if by == "tag" else manifest.digest

    response = client.head(f"/v2/{repo}/manifests/{reference}", headers={"Accept": OCI_MANIFEST})

    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["Content-Type"] == OCI_MANIFEST
    assert response.headers["Content-Length"] == str(len(manifest.data))
    assert response.headers["Docker-Content-Digest"] == manifest.digest


@pytest.mark.parametrize("kind", list(MANIFEST_KINDS))
def test_media_type_round_trip(client: httpx.Client, repo: str, kind: str) -> None:
    manifest = reformatted(MANIFEST_KINDS[kind]())
    push_manifest(client, repo, manifest, kind)

    for reference in (kind, manifest.digest):
        got = client.get(f"/v2/{repo}/manifests/{reference}")
        assert got.status_code == 200, reference
        assert got.content == manifest.data, reference
        assert got.headers["Content-Type"] == manifest.media_type, reference
        assert got.headers["Content-Length"] == str(len(manifest.data)), reference
        head = client.head(f"/v2/{repo}/manifests/{reference}")
        assert head.status_code == 200, reference
        assert head.headers["Content-Type"] == manifest.media_type, reference
        assert head.headers["Content-Length"] == str(len(manifest.data)), reference


@pytest.mark.parametrize("media_type", [OCI_MANIFEST, OCI_INDEX])
def test_media_type_from_content_type(client: httpx.Client, repo: str, media_type: str) -> None:
    source = image() if media_type == OCI_MANIFEST else oci_index()
    document = json.loads(source.data)
    del document["mediaType"]
    manifest = Manifest(odd_json(document), media_type, source.blobs, source.children)
    push_manifest(client, repo, manifest, "untyped")

    response = client.get(f"/v2/{repo}/manifests/untyped")

    assert response.status_code == 200
    assert response.content == manifest.data
    assert response.headers["Content-Type"] == media_type


def test_artifact_with_empty_config(client: httpx.Client, repo: str) -> None:
    manifest = artifact(None, "application/vnd.example.signature.v1", payload=b"signature")
    push_manifest(client, repo, manifest, "sig")

    response = client.get(f"/v2/{repo}/manifests/sig", headers={"Accept": OCI_MANIFEST})

    assert response.status_code == 200
    assert response.content == manifest.data
    assert json.loads(response.content)["artifactType"] == "application/vnd.example.signature.v1"


def test_get_after_restart(start_docket: Callable[..., DocketProcess]) -> None:
    first = start_docket()
    oci = reformatted(image())
    docker = reformatted(docker_image())
    docker_digest = digest_of(docker.data, "sha512")
    with httpx.Client(base_url=first.url) as http:
        push_manifest(http, "restart/oci", oci, "v1")
        push_content(http, "restart/docker", docker)
        assert put_manifest(http, "restart/docker", docker_digest, docker.data, DOCKER_MANIFEST).status_code == 201
    first.stop()
    second = start_docket(data_dir=first.data_dir)

    with httpx.Client(base_url=second.url) as http:
        for repository, reference, manifest in (
            ("restart/oci", "v1", oci),
            ("restart/docker", docker_digest, docker),
        ):
            head = http.head(f"/v2/{repository}/manifests/{reference}")
            assert head.status_code == 200, reference
            assert head.headers["Content-Type"] == manifest.media_type, reference
            assert head.headers["Content-Length"] == str(len(manifest.data)), reference
            got = http.get(f"/v2/{repository}/manifests/{reference}")
            assert got.status_code == 200, reference
            assert got.content == manifest.data, reference
            assert got.headers["Content-Type"] == manifest.media_type, reference


# sha512


def test_sha512_put_get_head_delete(client: httpx.Client, repo: str) -> None:
    manifest = reformatted(image())
    push_content(client, repo, manifest)
    digest = digest_of(manifest.data, "sha512")

    put = put_manifest(client, repo, digest, manifest.data, manifest.media_type)
    assert put.status_code == 201, put.text
    assert put.headers["Docker-Content-Digest"] == digest
    assert httpx.URL(put.headers["Location"]).path == f"/v2/{repo}/manifests/{digest}"

    got = client.get(f"/v2/{repo}/manifests/{digest}")
    assert got.status_code == 200
    assert got.content == manifest.data
    assert got.headers["Docker-Content-Digest"] == digest
    assert got.headers["Content-Type"] == manifest.media_type

    head = client.head(f"/v2/{repo}/manifests/{digest}")
    assert head.status_code == 200
    assert head.headers["Docker-Content-Digest"] == digest
    assert head.headers["Content-Length"] == str(len(manifest.data))

    deleted = client.delete(f"/v2/{repo}/manifests/{digest}")
    assert deleted.status_code == 202
    assert client.head(f"/v2/{repo}/manifests/{digest}").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/{digest}").status_code == 404


def test_sha512_mismatch_rejected(client: httpx.Client, repo: str) -> None:
    manifest = image()
    push_content(client, repo, manifest)
    wrong = digest_of(manifest.data + b" ", "sha512")

    response = put_manifest(client, repo, wrong, manifest.data, manifest.media_type)

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_sha512_index_of_sha512_children(client: httpx.Client, repo: str) -> None:
    child = image()
    push_content(client, repo, child)
    child_digest = digest_of(child.data, "sha512")
    assert put_manifest(client, repo, child_digest, child.data, OCI_MANIFEST).status_code == 201
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [{"mediaType": OCI_MANIFEST, "digest": child_digest, "size": len(child.data)}],
    }
    data = canonical(document)
    digest = digest_of(data, "sha512")

    response = put_manifest(client, repo, digest, data, OCI_INDEX)

    assert response.status_code == 201, response.text
    assert client.get(f"/v2/{repo}/manifests/{digest}").content == data


# Accept negotiation


@pytest.mark.parametrize(
    "accept",
    [
        pytest.param([], id="none"),
        pytest.param(["*/*"], id="wildcard"),
        pytest.param(["application/*"], id="application-wildcard"),
        pytest.param([f"{DOCKER_MANIFEST}, {OCI_INDEX}, {OCI_MANIFEST}"], id="one-header-list"),
        pytest.param([OCI_INDEX, OCI_MANIFEST], id="two-headers"),
        pytest.param([f"{DOCKER_MANIFEST};q=0.9, {OCI_MANIFEST};q=0.5"], id="quality-values"),
        pytest.param([f"{DOCKER_MANIFEST}, */*;q=0.1"], id="types-and-wildcard"),
    ],
)
def test_accept_serves_stored_type(client: httpx.Client, repo: str, accept: list[str]) -> None:
    manifest = image()
    push_manifest(client, repo, manifest, "v1")
    headers = [("Accept", value) for value in accept]

    got = client.get(f"/v2/{repo}/manifests/v1", headers=headers)
    head = client.head(f"/v2/{repo}/manifests/v1", headers=headers)

    assert got.status_code == 200
    assert got.content == manifest.data
    assert got.headers["Content-Type"] == OCI_MANIFEST
    assert head.status_code == 200


@pytest.mark.parametrize(
    "accept",
    [
        pytest.param([DOCKER_MANIFEST], id="docker"),
        pytest.param([f"{OCI_INDEX}, {DOCKER_MANIFEST_LIST}"], id="indexes"),
        pytest.param([OCI_INDEX, DOCKER_MANIFEST], id="two-headers"),
    ],
)
def test_accept_without_stored_type(client: httpx.Client, repo: str, accept: list[str]) -> None:
    manifest = image()
    push_manifest(client, repo, manifest, "v1")
    headers = [("Accept", value) for value in accept]

    got = client.get(f"/v2/{repo}/manifests/v1", headers=headers)
    head = client.head(f"/v2/{repo}/manifests/{manifest.digest}", headers=headers)

    assert got.status_code == 404
    assert error_codes(got) == ["MANIFEST_UNKNOWN"]
    assert head.status_code == 404
    assert head.content == b""


# Rejected pushes


def test_put_not_json(client: httpx.Client, repo: str) -> None:
    response = put_manifest(client, repo, "v1", b"this is {not json", OCI_MANIFEST)

    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_INVALID"]
    assert client.get(f"/v2/{repo}/manifests/v1").status_code == 404


@pytest.mark.parametrize("missing", ["config", "layer"])
def test_put_missing_blob(client: httpx.Client, repo: str, missing: str) -> None:
    manifest = image(layers=2)
    config, *layers = manifest.blobs
    skipped = config if missing == "config" else layers[1]
    for blob in manifest.blobs:
        if blob is not skipped:
            push_blob(client, repo, blob)

    response = put_manifest(client, repo, "v1", manifest.data, manifest.media_type)

    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert client.get(f"/v2/{repo}/manifests/{manifest.digest}").status_code == 404


def test_put_blob_of_other_repository(client: httpx.Client, repo: str) -> None:
    manifest = image()
    push_content(client, f"{repo}-other", manifest)

    response = put_manifest(client, repo, "v1", manifest.data, manifest.media_type)

    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]


def test_put_index_missing_child(client: httpx.Client, repo: str) -> None:
    present, missing = image(), image()
    push_manifest(client, repo, present)
    for blob in missing.blobs:
        push_blob(client, repo, blob)
    manifest = index([present, missing])

    response = put_manifest(client, repo, "v1", manifest.data, manifest.media_type)

    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert client.get(f"/v2/{repo}/manifests/{manifest.digest}").status_code == 404


def test_put_rejected_creates_no_repository(client: httpx.Client, repo: str) -> None:
    # An artifact with the empty config `{}` and a layer that was never pushed.
    manifest = artifact(None, "application/vnd.example.sbom.v1+json")

    response = put_manifest(client, repo, "v1", manifest.data, manifest.media_type)

    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_BLOB_UNKNOWN"]
    assert client.get(f"/v2/{repo}/blobs/{EMPTY_JSON_DIGEST}").status_code == 404
    tags = client.get(f"/v2/{repo}/tags/list")
    assert tags.status_code == 404
    assert error_codes(tags) == ["NAME_UNKNOWN"]


def test_put_digest_mismatch(client: httpx.Client, repo: str) -> None:
    manifest, other = image(), image()
    push_content(client, repo, manifest)

    response = put_manifest(client, repo, other.digest, manifest.data, manifest.media_type)

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert client.get(f"/v2/{repo}/manifests/{manifest.digest}").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/{other.digest}").status_code == 404


def test_put_digest_mismatch_whitespace(client: httpx.Client, repo: str) -> None:
    manifest = image()
    push_content(client, repo, manifest)

    response = put_manifest(client, repo, manifest.digest, manifest.data + b"  ", manifest.media_type)

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_put_malformed_digest(client: httpx.Client, repo: str) -> None:
    manifest = image()
    push_content(client, repo, manifest)

    response = put_manifest(client, repo, "sha256:totallywrong", manifest.data, manifest.media_type)

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]


def test_get_malformed_digest(client: httpx.Client, repo: str) -> None:
    push_manifest(client, repo, image(), "v1")

    response = client.request(
        "GET",
        f"/v2/{repo}/manifests/sha256:totallywrong",
        content=b"junk body",
        headers={"Content-Type": OCI_MANIFEST},
    )

    assert response.status_code == 400
    assert error_codes(response) == ["DIGEST_INVALID"]
    assert set(error_codes(response)) <= SPEC_ERROR_CODES


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "chunked"])
def test_put_too_large(client: httpx.Client, repo: str, chunked: bool) -> None:
    manifest = sized_image(MAX_MANIFEST_SIZE + 1)
    push_content(client, repo, manifest)
    body = chunks(manifest.data) if chunked else manifest.data

    response = put_manifest(client, repo, "big", body, manifest.media_type)

    assert ("Content-Length" in response.request.headers) is not chunked
    assert response.status_code == 413
    assert client.get(f"/v2/{repo}/manifests/big").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/{manifest.digest}").status_code == 404


@pytest.mark.parametrize("size", [MAX_MANIFEST_SIZE - 100_000, MAX_MANIFEST_SIZE], ids=["under", "exact"])
def test_put_large_manifest(client: httpx.Client, repo: str, size: int) -> None:
    manifest = sized_image(size)
    push_manifest(client, repo, manifest, "large")

    response = client.get(f"/v2/{repo}/manifests/large")

    assert response.status_code == 200
    assert response.content == manifest.data
    assert response.headers["Content-Length"] == str(size)


@pytest.mark.parametrize("tag", ["-dash", ".dot", "x" * 129, "has+plus", "colon:"])
def test_put_invalid_tag(client: httpx.Client, repo: str, tag: str) -> None:
    manifest = image()
    push_content(client, repo, manifest)

    response = put_manifest(client, repo, tag, manifest.data, manifest.media_type)

    assert response.status_code == 400
    assert set(error_codes(response)) <= SPEC_ERROR_CODES


def test_put_longest_tag(client: httpx.Client, repo: str) -> None:
    tag = "_" + "a" * 127
    manifest = image()
    push_manifest(client, repo, manifest, tag)

    assert client.get(f"/v2/{repo}/manifests/{tag}").content == manifest.data
    assert tag_list(client, repo) == [tag]


@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_get_invalid_name(client: httpx.Client, repo: str, method: str) -> None:
    push_manifest(client, repo, image(), "v1")

    response = client.request(method, f"/v2/{repo}/manifests/.INVALID_MANIFEST_NAME")

    assert response.status_code == 404


def test_get_unknown_tag(client: httpx.Client, repo: str) -> None:
    push_manifest(client, repo, image(), "v1")

    response = client.get(f"/v2/{repo}/manifests/missing-tag")
    head = client.head(f"/v2/{repo}/manifests/missing-tag")

    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_UNKNOWN"]
    assert head.status_code == 404
    assert head.content == b""


def test_get_unknown_digest(client: httpx.Client, repo: str) -> None:
    push_manifest(client, repo, image(), "v1")

    response = client.get(f"/v2/{repo}/manifests/{digest_of(os.urandom(16))}")

    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_UNKNOWN"]


def test_get_other_repository_digest(client: httpx.Client, repo: str) -> None:
    manifest = image()
    push_manifest(client, repo, manifest, "v1")
    push_manifest(client, f"{repo}-other", image(), "v1")

    response = client.get(f"/v2/{repo}-other/manifests/{manifest.digest}")

    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_UNKNOWN"]


@pytest.mark.parametrize(
    ("body_type", "content_type"),
    [(OCI_MANIFEST, DOCKER_MANIFEST), (OCI_MANIFEST, OCI_INDEX), (OCI_INDEX, OCI_MANIFEST)],
)
def test_put_media_type_conflict(client: httpx.Client, repo: str, body_type: str, content_type: str) -> None:
    manifest = image() if body_type == OCI_MANIFEST else oci_index()
    push_content(client, repo, manifest)

    response = put_manifest(client, repo, "v1", manifest.data, content_type)

    assert response.status_code == 400
    assert error_codes(response) == ["MANIFEST_INVALID"]


@pytest.mark.parametrize(
    "layer_type",
    [
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
    ],
)
def test_put_nondistributable_layer(client: httpx.Client, repo: str, layer_type: str) -> None:
    config = Blob(canonical({"architecture": "amd64", "os": "windows", "nonce": os.urandom(8).hex()}), OCI_CONFIG)
    local = random_blob(256, OCI_LAYER)
    foreign = random_blob(256, layer_type)
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": config.descriptor(),
        "layers": [
            {**foreign.descriptor(), "urls": ["https://example.com/layer.tar"]},
            local.descriptor(),
        ],
    }
    manifest = Manifest(canonical(document), OCI_MANIFEST, [config, local])
    push_content(client, repo, manifest)

    response = put_manifest(client, repo, "windows", manifest.data, manifest.media_type)

    assert response.status_code == 201, response.text
    assert client.get(f"/v2/{repo}/manifests/windows").content == manifest.data


def test_put_empty_config_not_pushed(client: httpx.Client, repo: str) -> None:
    manifest = artifact(None, "application/vnd.example.attestation.v1")
    empty, layer = manifest.blobs
    push_blob(client, repo, layer)

    response = put_manifest(client, repo, "attestation", manifest.data, manifest.media_type)

    assert response.status_code == 201, response.text
    blob = client.get(f"/v2/{repo}/blobs/{EMPTY_JSON_DIGEST}")
    assert blob.status_code == 200
    assert blob.content == b"{}"
    assert blob.headers["Content-Length"] == "2"
    assert empty.digest == EMPTY_JSON_DIGEST


def test_put_empty_layers(client: httpx.Client, repo: str) -> None:
    manifest = image(layers=0)
    push_manifest(client, repo, manifest, "empty-layers")

    assert client.get(f"/v2/{repo}/manifests/empty-layers").content == manifest.data


def test_put_unknown_fields_kept(client: httpx.Client, repo: str) -> None:
    config = Blob(canonical({"architecture": "amd64", "os": "linux", "nonce": os.urandom(8).hex()}), OCI_CONFIG)
    layer = random_blob()
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {**config.descriptor(), "newUnspecifiedField": "aGVsbG8gd29ybGQ=", "data": "e30="},
        "layers": [{**layer.descriptor(), "newUnspecifiedField": None}],
        "org.example.extra": {"nested": [1, 2, 3]},
    }
    manifest = Manifest(odd_json(document), OCI_MANIFEST, [config, layer])
    push_manifest(client, repo, manifest, "custom")

    assert client.get(f"/v2/{repo}/manifests/custom").content == manifest.data


# Tags


def test_tag_repointed(client: httpx.Client, repo: str) -> None:
    first, second, third = image(), image(), image()
    for manifest in (first, second, third):
        push_manifest(client, repo, manifest, "latest")

    got = client.get(f"/v2/{repo}/manifests/latest")
    head = client.head(f"/v2/{repo}/manifests/latest")

    assert got.content == third.data
    assert got.headers["Docker-Content-Digest"] == third.digest
    assert head.headers["Docker-Content-Digest"] == third.digest
    assert tag_list(client, repo) == ["latest"]
    assert client.get(f"/v2/{repo}/manifests/{first.digest}").status_code == 200


def test_tag_repointed_across_media_types(client: httpx.Client, repo: str) -> None:
    single, multi = image(), oci_index()
    push_manifest(client, repo, single, "latest")
    push_manifest(client, repo, multi, "latest")

    response = client.get(f"/v2/{repo}/manifests/latest")

    assert response.content == multi.data
    assert response.headers["Content-Type"] == OCI_INDEX


def test_same_manifest_many_tags(client: httpx.Client, repo: str) -> None:
    manifest = image()
    for tag in ("a", "b", "c"):
        push_manifest(client, repo, manifest, tag)

    assert tag_list(client, repo) == ["a", "b", "c"]
    for tag in ("a", "b", "c"):
        assert client.get(f"/v2/{repo}/manifests/{tag}").content == manifest.data, tag


# Deletes


def test_delete_by_digest(client: httpx.Client, repo: str) -> None:
    doomed, other = image(), image()
    push_manifest(client, repo, doomed, "one")
    push_manifest(client, repo, doomed, "two")
    push_manifest(client, repo, other, "keep")
    # Read it once so that a stale cache entry would be served after the delete.
    assert client.get(f"/v2/{repo}/manifests/{doomed.digest}").status_code == 200

    response = client.delete(f"/v2/{repo}/manifests/{doomed.digest}")

    assert response.status_code == 202
    assert client.get(f"/v2/{repo}/manifests/{doomed.digest}").status_code == 404
    assert client.head(f"/v2/{repo}/manifests/{doomed.digest}").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/one").status_code == 404
    assert client.head(f"/v2/{repo}/manifests/two").status_code == 404
    assert tag_list(client, repo) == ["keep"]
    assert client.get(f"/v2/{repo}/manifests/keep").content == other.data


def test_delete_keeps_other_repository(client: httpx.Client, repo: str) -> None:
    manifest = image()
    push_manifest(client, repo, manifest, "v1")
    push_manifest(client, f"{repo}-copy", manifest, "v1")

    response = client.delete(f"/v2/{repo}/manifests/{manifest.digest}")

    assert response.status_code == 202
    assert client.get(f"/v2/{repo}-copy/manifests/{manifest.digest}").content == manifest.data
    assert client.get(f"/v2/{repo}-copy/manifests/v1").content == manifest.data


def test_delete_by_tag(client: httpx.Client, repo: str) -> None:
    manifest = image()
    push_manifest(client, repo, manifest, "gone")
    push_manifest(client, repo, manifest, "stays")

    response = client.delete(f"/v2/{repo}/manifests/gone")

    assert response.status_code == 202
    assert client.get(f"/v2/{repo}/manifests/gone").status_code == 404
    assert client.head(f"/v2/{repo}/manifests/gone").status_code == 404
    assert client.get(f"/v2/{repo}/manifests/{manifest.digest}").content == manifest.data
    assert client.get(f"/v2/{repo}/manifests/stays").content == manifest.data
    assert tag_list(client, repo) == ["stays"]


def test_delete_then_push_again(client: httpx.Client, repo: str) -> None:
    manifest = image()
    push_manifest(client, repo, manifest, "v1")
    assert client.delete(f"/v2/{repo}/manifests/{manifest.digest}").status_code == 202

    push_manifest(client, repo, manifest, "v1")

    assert client.get(f"/v2/{repo}/manifests/v1").content == manifest.data


@pytest.mark.parametrize("reference", ["missing-tag", "digest"])
def test_delete_unknown(client: httpx.Client, repo: str, reference: str) -> None:
    push_manifest(client, repo, image(), "v1")
    target = digest_of(os.urandom(16)) if reference == "digest" else reference

    response = client.delete(f"/v2/{repo}/manifests/{target}")

    assert response.status_code == 404
    assert error_codes(response) == ["MANIFEST_UNKNOWN"]


def test_delete_twice(client: httpx.Client, repo: str) -> None:
    manifest = image()
    push_manifest(client, repo, manifest)

    first = client.delete(f"/v2/{repo}/manifests/{manifest.digest}")
    second = client.delete(f"/v2/{repo}/manifests/{manifest.digest}")

    assert first.status_code == 202
    assert second.status_code == 404


def test_delete_unknown_repository(client: httpx.Client, repo: str) -> None:
    response = client.delete(f"/v2/{repo}/manifests/{digest_of(b'never pushed')}")

    assert response.status_code == 404
