"""Pull-through addressing over HTTP: which upstream serves a name, mirror requests, and pushes to cached repositories.

Every test runs a real `docket serve` against FakeUpstream registries on loopback.
The embedded public rules are turned off in every configuration, and no request
names a public registry, so nothing leaves this machine.
"""

from __future__ import annotations

import ssl
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.fake_upstream import FakeUpstream, RequireBasicAuth
from tests.support.oci import (
    Manifest,
    artifact,
    error_codes,
    image,
    push_blob,
    push_manifest,
)
from tests.support.processes import DocketProcess

CLI_TIMEOUT = 30.0
UNKNOWN_REGISTRY = "unknown.invalid"
NAMED_NAMESPACE = "named.test"
SIGNATURE_TYPE = "application/vnd.example.signature.v1"
# Every URL here is plain http on loopback, so clients skip loading the CA bundle.
PLAIN_HTTP = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)


def write_config(folder: Path, text: str, name: str = "docket.toml") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def rules_config(upstream_a: FakeUpstream, upstream_b: FakeUpstream) -> str:
    """Rules of the shared server: nested prefixes over two upstreams and one named mirror namespace."""
    return f"""
[cache]
embedded_rules = false

[[rules]]
prefix = "team"
url = "{upstream_a.url}"
upstream_prefix = "org/team"

[[rules]]
prefix = "team/app"
url = "{upstream_b.url}"

[[rules]]
prefix = "named"
url = "{upstream_a.url}"
namespace = "{NAMED_NAMESPACE}"
upstream_prefix = "mirror"
"""


@pytest.fixture(scope="module")
def upstream_a() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def upstream_b() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture(scope="module")
def cached(
    tmp_path_factory: pytest.TempPathFactory, upstream_a: FakeUpstream, upstream_b: FakeUpstream
) -> Iterator[DocketProcess]:
    """Docket with the rules of `rules_config`, shared by the tests of this module."""
    folder = tmp_path_factory.mktemp("cache-addressing")
    path = write_config(folder, rules_config(upstream_a, upstream_b))
    with DocketProcess(folder / "data", "--config", str(path)) as server:
        yield server


@pytest.fixture(scope="module")
def http(cached: DocketProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=cached.url, timeout=30.0, verify=PLAIN_HTTP) as client:
        yield client


def request_paths(upstream: FakeUpstream, contains: str) -> list[str]:
    return [entry.path for entry in upstream.requests(path_contains=contains)]


def outside(paths: list[str], upstream_repository: str) -> list[str]:
    """Return the paths that are not under `/v2/<upstream_repository>/`.

    A cached image also starts a background referrer sync, so the upstream sees
    more requests than the test sends, and they must all name the same repository.
    """
    return [path for path in paths if not path.startswith(f"/v2/{upstream_repository}/")]


def get_manifest(client: httpx.Client, repository: str, reference: str, **query: str) -> httpx.Response:
    return client.get(
        f"/v2/{repository}/manifests/{reference}",
        params=query,
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.oci.image.index.v1+json"},
    )


def cache_image(client: httpx.Client, upstream: FakeUpstream, upstream_repository: str, repository: str) -> Manifest:
    """Put an image tagged v1 on the upstream and pull it through Docket once."""
    manifest = image()
    upstream.add_image(upstream_repository, manifest, tags=["v1"])
    response = get_manifest(client, repository, "v1")
    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    return manifest


# Longest matching prefix, upstream_prefix and several upstreams


def test_prefix_upstream_prefix(http: httpx.Client, upstream_a: FakeUpstream, upstream_b: FakeUpstream) -> None:
    manifest = image()
    upstream_a.add_image("org/team/web", manifest, tags=["v1"])
    layer = manifest.blobs[1]

    response = get_manifest(http, "team/web", "v1")
    blob = http.get(f"/v2/team/web/blobs/{layer.digest}")

    assert response.status_code == 200, response.text
    assert response.content == manifest.data
    assert blob.status_code == 200, blob.text
    assert blob.content == layer.data
    assert "/v2/org/team/web/manifests/v1" in request_paths(upstream_a, "/web/")
    assert f"/v2/org/team/web/blobs/{layer.digest}" in request_paths(upstream_a, "/web/")
    assert outside(request_paths(upstream_a, "/web/"), "org/team/web") == []
    assert request_paths(upstream_b, "/web/") == []


def test_prefix_longest_wins(http: httpx.Client, upstream_a: FakeUpstream, upstream_b: FakeUpstream) -> None:
    manifest = image()
    upstream_b.add_image("longest", manifest, tags=["v1"])

    response = get_manifest(http, "team/app/longest", "v1")

    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    assert "/v2/longest/manifests/v1" in request_paths(upstream_b, "/longest/")
    assert outside(request_paths(upstream_b, "/longest/"), "longest") == []
    assert request_paths(upstream_a, "/longest/") == []


def test_prefix_whole_component(http: httpx.Client, upstream_a: FakeUpstream, upstream_b: FakeUpstream) -> None:
    """`team/appx` starts with the text `team/app` but not with its components, so the rule `team` serves it."""
    manifest = image()
    upstream_a.add_image("org/team/appx", manifest, tags=["v1"])

    response = get_manifest(http, "team/appx", "v1")

    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    assert "/v2/org/team/appx/manifests/v1" in request_paths(upstream_a, "/appx/")
    assert outside(request_paths(upstream_a, "/appx/"), "org/team/appx") == []
    assert request_paths(upstream_b, "/appx/") == []


def test_prefix_teamx_hosted(http: httpx.Client, upstream_a: FakeUpstream, upstream_b: FakeUpstream) -> None:
    """`teamx/...` does not match the rule `team`: it is an ordinary hosted repository."""
    manifest = image()

    push_manifest(http, "teamx/app", manifest, "v1")
    response = get_manifest(http, "teamx/app", "v1")
    tags = http.get("/v2/teamx/app/tags/list")

    assert response.status_code == 200, response.text
    assert response.content == manifest.data
    assert tags.json() == {"name": "teamx/app", "tags": ["v1"]}
    assert request_paths(upstream_a, "teamx") == []
    assert request_paths(upstream_b, "teamx") == []


def test_upstreams_separate(http: httpx.Client, upstream_a: FakeUpstream, upstream_b: FakeUpstream) -> None:
    from_a = image()
    from_b = image()
    upstream_a.add_image("org/team/sep-a", from_a, tags=["v1"])
    upstream_b.add_image("sep-b", from_b, tags=["v1"])

    for repository, manifest in (("team/sep-a", from_a), ("team/app/sep-b", from_b)):
        response = get_manifest(http, repository, "v1")
        blob = http.get(f"/v2/{repository}/blobs/{manifest.blobs[0].digest}")
        assert response.headers.get("Docker-Content-Digest") == manifest.digest, response.text
        assert blob.content == manifest.blobs[0].data

    assert "/v2/org/team/sep-a/manifests/v1" in request_paths(upstream_a, "/sep-a/")
    assert "/v2/sep-b/manifests/v1" in request_paths(upstream_b, "/sep-b/")
    assert request_paths(upstream_a, "/sep-b/") == []
    assert request_paths(upstream_b, "/sep-a/") == []


def test_hosted_push_pull(http: httpx.Client, upstream_a: FakeUpstream, upstream_b: FakeUpstream) -> None:
    manifest = image(layers=2)

    push_manifest(http, "hosted/app", manifest, "v1")
    response = get_manifest(http, "hosted/app", "v1")
    blob = http.get(f"/v2/hosted/app/blobs/{manifest.blobs[1].digest}")
    deleted = http.delete(f"/v2/hosted/app/manifests/{manifest.digest}")

    assert response.status_code == 200, response.text
    assert response.content == manifest.data
    assert blob.content == manifest.blobs[1].data
    assert deleted.status_code == 202, deleted.text
    assert request_paths(upstream_a, "hosted") == []
    assert request_paths(upstream_b, "hosted") == []


def test_namespace_name_matches_longer_rule(
    http: httpx.Client, upstream_a: FakeUpstream, upstream_b: FakeUpstream
) -> None:
    """A mirror request to A for `app/clash` would be stored as `team/app/clash`, which rule `team/app` owns.

    Docket refuses the mirror request, and the prefixed request still gets upstream B's image.
    """
    from_a = image()
    from_b = image()
    upstream_a.add_image("org/team/app/clash", from_a, tags=["v1"])
    upstream_b.add_image("clash", from_b, tags=["v1"])

    mirrored = get_manifest(http, "app/clash", "v1", ns=upstream_a.host)
    prefixed = get_manifest(http, "team/app/clash", "v1")

    assert mirrored.status_code == 403, mirrored.text
    assert mirrored.json()["errors"][0]["code"] == "DENIED"
    assert prefixed.headers.get("Docker-Content-Digest") == from_b.digest, prefixed.text


def test_namespace_name_is_hosted_repository(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    """`team/app` equals the prefix of a rule, so it is hosted, but a mirror request to A for `app` also maps to it.

    Docket refuses the mirror request, so it cannot replace the tag pushed to the hosted repository.
    """
    local = image()
    remote = image()
    push_manifest(http, "team/app", local, "v1")
    upstream_a.add_image("org/team/app", remote, tags=["v1"])

    mirrored = get_manifest(http, "app", "v1", ns=upstream_a.host)
    hosted = get_manifest(http, "team/app", "v1")

    assert mirrored.status_code == 403, mirrored.text
    assert hosted.headers.get("Docker-Content-Digest") == local.digest, hosted.text


# Mirror requests (`ns`)


def test_mirror_namespace_host(http: httpx.Client, upstream_a: FakeUpstream, upstream_b: FakeUpstream) -> None:
    manifest = image()
    upstream_a.add_image("org/team/mirrored", manifest, tags=["v1"])
    layer = manifest.blobs[1]

    response = get_manifest(http, "mirrored", "v1", ns=upstream_a.host)
    blob = http.get(f"/v2/mirrored/blobs/{layer.digest}", params={"ns": upstream_a.host})

    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    assert response.headers["OCI-Namespace"] == upstream_a.host
    assert blob.status_code == 200, blob.text
    assert blob.content == layer.data
    assert blob.headers["OCI-Namespace"] == upstream_a.host
    assert "/v2/org/team/mirrored/manifests/v1" in request_paths(upstream_a, "/mirrored/")
    assert f"/v2/org/team/mirrored/blobs/{layer.digest}" in request_paths(upstream_a, "/mirrored/")
    assert outside(request_paths(upstream_a, "/mirrored/"), "org/team/mirrored") == []
    assert request_paths(upstream_b, "/mirrored/") == []


def test_mirror_stored_under_prefix(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    """A mirrored image is cached as `<prefix>/<name>`, so the prefixed name then hits the cache."""
    manifest = image()
    upstream_a.add_image("org/team/mirror-store", manifest, tags=["v1"])

    mirrored = get_manifest(http, "mirror-store", "v1", ns=upstream_a.host)
    by_digest = get_manifest(http, "team/mirror-store", manifest.digest)

    assert mirrored.status_code == 200, mirrored.text
    assert by_digest.status_code == 200, by_digest.text
    assert "OCI-Namespace" not in by_digest.headers
    assert request_paths(upstream_a, f"/manifests/{manifest.digest}") == []


def test_mirror_configured_namespace(http: httpx.Client, upstream_a: FakeUpstream, upstream_b: FakeUpstream) -> None:
    manifest = image()
    upstream_a.add_image("mirror/lib/named-img", manifest, tags=["v1"])
    layer = manifest.blobs[1]

    response = get_manifest(http, "lib/named-img", "v1", ns=NAMED_NAMESPACE)
    head = http.head(f"/v2/lib/named-img/blobs/{layer.digest}", params={"ns": NAMED_NAMESPACE})

    assert response.status_code == 200, response.text
    assert response.headers["Docker-Content-Digest"] == manifest.digest
    assert response.headers["OCI-Namespace"] == NAMED_NAMESPACE
    assert head.status_code == 200
    assert head.headers["Content-Length"] == str(len(layer.data))
    assert head.headers["OCI-Namespace"] == NAMED_NAMESPACE
    assert "/v2/mirror/lib/named-img/manifests/v1" in request_paths(upstream_a, "/named-img/")
    assert outside(request_paths(upstream_a, "/named-img/"), "mirror/lib/named-img") == []
    assert request_paths(upstream_b, "/named-img/") == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        pytest.param("GET", "/v2/lib/unknown-ns/manifests/v1", id="manifest"),
        pytest.param("HEAD", "/v2/lib/unknown-ns/manifests/v1", id="manifest-head"),
        pytest.param("GET", "/v2/lib/unknown-ns/blobs/sha256:" + "a" * 64, id="blob"),
        pytest.param("GET", "/v2/lib/unknown-ns/tags/list", id="tags"),
        pytest.param("GET", "/v2/lib/unknown-ns/referrers/sha256:" + "a" * 64, id="referrers"),
        pytest.param("PUT", "/v2/lib/unknown-ns/manifests/v1", id="manifest-put"),
    ],
)
def test_mirror_unknown_namespace(
    http: httpx.Client, upstream_a: FakeUpstream, upstream_b: FakeUpstream, method: str, path: str
) -> None:
    response = http.request(method, path, params={"ns": UNKNOWN_REGISTRY}, content=b"{}" if method == "PUT" else None)

    assert response.status_code == 403
    if method != "HEAD":
        assert error_codes(response) == ["DENIED"]
    assert request_paths(upstream_a, "unknown-ns") == []
    assert request_paths(upstream_b, "unknown-ns") == []


def test_mirror_empty_namespace(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    response = get_manifest(http, "lib/empty-ns", "v1", ns="")
    assert response.status_code == 403
    assert error_codes(response) == ["DENIED"]
    assert request_paths(upstream_a, "empty-ns") == []


def test_mirror_default_rule(tmp_path: Path, start_docket: Callable[..., DocketProcess]) -> None:
    """With `[cache] default_rule`, unprefixed names come from that rule, as Docker's registry-mirrors send them."""
    with FakeUpstream() as upstream:
        config = f"""
[cache]
embedded_rules = false
default_rule = "hub"

[[rules]]
prefix = "hub"
url = "{upstream.url}"
library_prefix = true
"""
        server = start_docket("--config", str(write_config(tmp_path, config)))
        single = image()
        nested = image()
        upstream.add_image("library/alpine", single, tags=["3"])
        upstream.add_image("org/img", nested, tags=["v1"])

        with httpx.Client(base_url=server.url, timeout=30.0, verify=PLAIN_HTTP) as client:
            short = get_manifest(client, "alpine", "3")
            blob = client.get(f"/v2/alpine/blobs/{single.blobs[1].digest}")
            long = get_manifest(client, "org/img", "v1")
            prefixed = get_manifest(client, "hub/org/img", "v1")
            push = client.put(
                "/v2/org/img/manifests/mine", content=nested.data, headers={"Content-Type": nested.media_type}
            )

        assert short.headers.get("Docker-Content-Digest") == single.digest, short.text
        assert blob.content == single.blobs[1].data
        assert long.headers.get("Docker-Content-Digest") == nested.digest, long.text
        assert prefixed.headers.get("Docker-Content-Digest") == nested.digest, prefixed.text
        assert push.status_code == 403
        assert "/v2/library/alpine/manifests/3" in request_paths(upstream, "/alpine/")
        assert f"/v2/library/alpine/blobs/{single.blobs[1].digest}" in request_paths(upstream, "/alpine/")
        assert "/v2/org/img/manifests/v1" in request_paths(upstream, "/org/img/")


def test_upstream_flags(tmp_path: Path, start_docket: Callable[..., DocketProcess]) -> None:
    """`--upstream` adds a rule and `--upstream-credentials` gives it basic credentials."""
    with FakeUpstream(auth=RequireBasicAuth("robot", "flag-password")) as upstream:
        manifest = image()
        upstream.add_image("flagged", manifest, tags=["v1"])
        server = start_docket(
            "--config",
            str(write_config(tmp_path, "[cache]\nembedded_rules = false\n")),
            "--upstream",
            f"team={upstream.url}",
            "--upstream-credentials",
            "team=robot:flag-password",
        )

        with httpx.Client(base_url=server.url, timeout=30.0, verify=PLAIN_HTTP) as client:
            response = get_manifest(client, "team/flagged", "v1")

        assert response.status_code == 200, response.text
        assert response.headers["Docker-Content-Digest"] == manifest.digest
        assert upstream.requests("GET", "/v2/flagged/manifests/v1")[-1].status == 200
        assert "flag-password" not in server.log()


# Pushes into cached repositories


def test_push_tag_denied(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    upstream_manifest = cache_image(http, upstream_a, "org/team/push-tag", "team/push-tag")
    mine = image()
    for blob in mine.blobs:
        push_blob(http, "team/push-tag", blob)

    response = http.put("/v2/team/push-tag/manifests/v1", content=mine.data, headers={"Content-Type": mine.media_type})
    served = get_manifest(http, "team/push-tag", "v1")

    assert response.status_code == 403
    assert error_codes(response) == ["DENIED"]
    assert served.headers["Docker-Content-Digest"] == upstream_manifest.digest


def test_push_new_tag_denied(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    cache_image(http, upstream_a, "org/team/push-new-tag", "team/push-new-tag")
    mine = image()
    for blob in mine.blobs:
        push_blob(http, "team/push-new-tag", blob)

    response = http.put(
        "/v2/team/push-new-tag/manifests/local", content=mine.data, headers={"Content-Type": mine.media_type}
    )
    tags = http.get("/v2/team/push-new-tag/tags/list")

    assert response.status_code == 403
    assert error_codes(response) == ["DENIED"]
    assert tags.json()["tags"] == ["v1"]


def test_push_without_subject_denied(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    cache_image(http, upstream_a, "org/team/push-digest", "team/push-digest")
    mine = image()
    for blob in mine.blobs:
        push_blob(http, "team/push-digest", blob)

    response = http.put(
        f"/v2/team/push-digest/manifests/{mine.digest}", content=mine.data, headers={"Content-Type": mine.media_type}
    )
    fetched = get_manifest(http, "team/push-digest", mine.digest)

    assert response.status_code == 403
    assert error_codes(response) == ["DENIED"]
    assert fetched.status_code == 404


def test_push_referrer_listed(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    subject = cache_image(http, upstream_a, "org/team/push-ref", "team/push-ref")
    signature = artifact(subject, SIGNATURE_TYPE)

    response = push_manifest(http, "team/push-ref", signature)
    listed = http.get(f"/v2/team/push-ref/referrers/{subject.digest}")
    fetched = get_manifest(http, "team/push-ref", signature.digest)

    assert response.headers["OCI-Subject"] == subject.digest
    assert listed.status_code == 200, listed.text
    assert [entry["digest"] for entry in listed.json()["manifests"]] == [signature.digest]
    assert listed.json()["manifests"][0]["artifactType"] == SIGNATURE_TYPE
    assert fetched.status_code == 200
    assert fetched.content == signature.data


def test_push_referrer_by_tag_denied(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    subject = cache_image(http, upstream_a, "org/team/push-ref-tag", "team/push-ref-tag")
    signature = artifact(subject, SIGNATURE_TYPE)
    for blob in signature.blobs:
        push_blob(http, "team/push-ref-tag", blob)

    response = http.put(
        "/v2/team/push-ref-tag/manifests/sig", content=signature.data, headers={"Content-Type": signature.media_type}
    )

    assert response.status_code == 403
    assert error_codes(response) == ["DENIED"]


def test_delete_pushed_referrer(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    subject = cache_image(http, upstream_a, "org/team/delete-ref", "team/delete-ref")
    signature = artifact(subject, SIGNATURE_TYPE)
    push_manifest(http, "team/delete-ref", signature)

    response = http.delete(f"/v2/team/delete-ref/manifests/{signature.digest}")
    listed = http.get(f"/v2/team/delete-ref/referrers/{subject.digest}")

    assert response.status_code == 202, response.text
    assert listed.json()["manifests"] == []


def test_delete_cached_manifest_denied(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    manifest = cache_image(http, upstream_a, "org/team/delete-cached", "team/delete-cached")

    by_digest = http.delete(f"/v2/team/delete-cached/manifests/{manifest.digest}")
    by_tag = http.delete("/v2/team/delete-cached/manifests/v1")
    served = get_manifest(http, "team/delete-cached", manifest.digest)

    assert by_digest.status_code == 403
    assert error_codes(by_digest) == ["DENIED"]
    assert by_tag.status_code == 403
    assert error_codes(by_tag) == ["DENIED"]
    assert served.status_code == 200


def test_delete_unknown_manifest_denied(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    cache_image(http, upstream_a, "org/team/delete-unknown", "team/delete-unknown")
    response = http.delete("/v2/team/delete-unknown/manifests/sha256:" + "b" * 64)
    assert response.status_code == 403
    assert error_codes(response) == ["DENIED"]


def test_delete_blob_denied(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    manifest = cache_image(http, upstream_a, "org/team/delete-blob", "team/delete-blob")
    layer = manifest.blobs[1]
    assert http.get(f"/v2/team/delete-blob/blobs/{layer.digest}").status_code == 200

    response = http.delete(f"/v2/team/delete-blob/blobs/{layer.digest}")
    served = http.get(f"/v2/team/delete-blob/blobs/{layer.digest}")

    assert response.status_code == 403
    assert error_codes(response) == ["DENIED"]
    assert served.content == layer.data


def test_push_tag_with_namespace_denied(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    cache_image(http, upstream_a, "org/team/push-ns", "team/push-ns")
    mine = image()

    response = http.put(
        "/v2/push-ns/manifests/v1",
        params={"ns": upstream_a.host},
        content=mine.data,
        headers={"Content-Type": mine.media_type},
    )

    assert response.status_code == 403
    assert error_codes(response) == ["DENIED"]


def test_hosted_tag_not_shadowing(
    tmp_path: Path, start_docket: Callable[..., DocketProcess], upstream_a: FakeUpstream, upstream_b: FakeUpstream
) -> None:
    """A tag pushed while `team/legacy` was hosted stops counting once a rule caches `team/...`."""
    data_dir = tmp_path / "data"
    hosted = write_config(tmp_path, "[cache]\nembedded_rules = false\n", "hosted.toml")
    rules = write_config(tmp_path, rules_config(upstream_a, upstream_b), "rules.toml")
    local = image()
    remote = image()
    upstream_a.add_image("org/team/legacy", remote, tags=["v1"])

    first = start_docket("--config", str(hosted), data_dir=data_dir)
    with httpx.Client(base_url=first.url, timeout=30.0, verify=PLAIN_HTTP) as client:
        push_manifest(client, "team/legacy", local, "v1")
    first.stop()
    second = start_docket("--config", str(rules), data_dir=data_dir)
    with httpx.Client(base_url=second.url, timeout=30.0, verify=PLAIN_HTTP) as client:
        served = get_manifest(client, "team/legacy", "v1")
        again = get_manifest(client, "team/legacy", "v1")

    assert served.headers.get("Docker-Content-Digest") == remote.digest, served.text
    assert again.headers.get("Docker-Content-Digest") == remote.digest, again.text


# Tag lists


def test_tags_list_from_upstream(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    manifest = cache_image(http, upstream_a, "org/team/tag-list", "team/tag-list")
    upstream_a.tag("org/team/tag-list", "v2", manifest.digest)
    upstream_a.tag("org/team/tag-list", "latest", manifest.digest)

    response = http.get("/v2/team/tag-list/tags/list")

    assert response.status_code == 200, response.text
    assert response.json() == {"name": "team/tag-list", "tags": ["latest", "v1", "v2"]}
    assert request_paths(upstream_a, "/tag-list/tags/list") == ["/v2/org/team/tag-list/tags/list"]


def test_tags_list_paginated(http: httpx.Client, upstream_a: FakeUpstream) -> None:
    manifest = cache_image(http, upstream_a, "org/team/tag-pages", "team/tag-pages")
    for tag in ("v2", "v3"):
        upstream_a.tag("org/team/tag-pages", tag, manifest.digest)

    first = http.get("/v2/team/tag-pages/tags/list", params={"n": 2})
    second = http.get("/v2/team/tag-pages/tags/list", params={"n": 2, "last": "v2"})

    assert first.json()["tags"] == ["v1", "v2"]
    assert first.headers["Link"].startswith("</v2/team/tag-pages/tags/list?")
    assert second.json()["tags"] == ["v3"]


def test_tags_list_unknown_upstream(http: httpx.Client) -> None:
    response = http.get("/v2/team/tag-list-absent/tags/list")
    assert response.status_code == 404
    assert error_codes(response) == ["NAME_UNKNOWN"]


def test_tags_list_upstream_stopped(tmp_path: Path, start_docket: Callable[..., DocketProcess]) -> None:
    upstream = FakeUpstream().start()
    try:
        config = f'[cache]\nembedded_rules = false\n[[rules]]\nprefix = "team"\nurl = "{upstream.url}"\n'
        server = start_docket("--config", str(write_config(tmp_path, config)))
        manifest = image()
        upstream.add_image("stopped", manifest, tags=["v1", "v2"])
        with httpx.Client(base_url=server.url, timeout=30.0, verify=PLAIN_HTTP) as client:
            assert get_manifest(client, "team/stopped", "v1").status_code == 200
            live = client.get("/v2/team/stopped/tags/list")
            upstream.stop()
            fallback = client.get("/v2/team/stopped/tags/list")
    finally:
        upstream.stop()

    assert live.json()["tags"] == ["v1", "v2"]
    assert fallback.status_code == 200, fallback.text
    assert fallback.json() == {"name": "team/stopped", "tags": ["v1"]}


# Start-up checks of the rules


def run_serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "docket", "serve", *args],
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT,
    )


RULE_A = '[[rules]]\nprefix = "team"\nurl = "http://127.0.0.1:9"\n'
RULE_B = '[[rules]]\nprefix = "other"\nurl = "http://127.0.0.1:10"\n'
NO_EMBEDDED = "[cache]\nembedded_rules = false\n"


@pytest.mark.parametrize(
    ("config", "flags", "key"),
    [
        pytest.param(NO_EMBEDDED + RULE_A + RULE_A, (), "rules[1].prefix", id="duplicate-prefix"),
        pytest.param(
            NO_EMBEDDED + '[[rules]]\nprefix = "Team/App"\nurl = "http://127.0.0.1:9"\n',
            (),
            "invalid prefix 'Team/App'",
            id="invalid-prefix",
        ),
        pytest.param(
            NO_EMBEDDED + RULE_A + '[[rules]]\nprefix = "other"\nurl = "http://127.0.0.1:9"\n',
            (),
            "prefixes 'team' and 'other'",
            id="same-namespace",
        ),
        pytest.param(
            NO_EMBEDDED
            + RULE_A.replace('"team"', '"team"\nnamespace = "shared.test"')
            + RULE_B.replace('"other"', '"other"\nnamespace = "shared.test"'),
            (),
            "prefixes 'team' and 'other'",
            id="same-configured-namespace",
        ),
        pytest.param(
            NO_EMBEDDED + '[[rules]]\nprefix = "team"\nurl = "127.0.0.1:9"\n', (), "rules[0].url", id="bad-url"
        ),
        pytest.param(
            NO_EMBEDDED + '[[rules]]\nprefix = "team"\nurl = "http://127.0.0.1:9/v2"\n',
            (),
            "rules[0].url",
            id="url-with-path",
        ),
        pytest.param(NO_EMBEDDED + RULE_A + 'tag_ttl = "5x"\n', (), "rules[0].tag_ttl", id="rule-duration"),
        pytest.param(NO_EMBEDDED + RULE_A, ("--tag-ttl", "5x"), "--tag-ttl", id="tag-ttl-flag"),
        pytest.param(NO_EMBEDDED + RULE_A, ("--referrers-ttl", "1h 30m"), "--referrers-ttl", id="referrers-ttl-flag"),
        pytest.param('[cache]\ntag_ttl = "5x"\n', (), "cache.tag_ttl", id="cache-duration"),
        pytest.param(
            NO_EMBEDDED + RULE_A,
            ("--upstream-credentials", "other=robot:pw"),
            "--upstream-credentials",
            id="credentials-unknown-prefix",
        ),
        pytest.param(
            NO_EMBEDDED + RULE_A,
            ("--upstream-credentials", "team=robot"),
            "--upstream-credentials",
            id="credentials-no-password",
        ),
        pytest.param(NO_EMBEDDED, ("--upstream", "team"), "--upstream", id="upstream-flag-no-url"),
        pytest.param(
            NO_EMBEDDED, ("--upstream", "team=ftp://127.0.0.1"), "--upstream team.url", id="upstream-flag-url"
        ),
        pytest.param(NO_EMBEDDED + RULE_A + 'ttl = "5m"\n', (), "rules[0].ttl", id="unknown-rule-key"),
        pytest.param(
            NO_EMBEDDED + RULE_A + 'username = "robot"\npassword_env = "DOCKET_TEST_UNSET_PASSWORD"\n',
            (),
            "rules[0].password_env",
            id="password-env-unset",
        ),
        pytest.param(
            '[cache]\nembedded_rules = false\ndefault_rule = "hub"\n' + RULE_A, (), "default_rule", id="default-rule"
        ),
    ],
)
def test_startup_rejects(tmp_path: Path, config: str, flags: tuple[str, ...], key: str) -> None:
    path = write_config(tmp_path, config)
    data_dir = tmp_path / "data"

    result = run_serve("--config", str(path), "--listen", "127.0.0.1:0", "--data-dir", str(data_dir), *flags)

    assert result.returncode != 0
    assert key in result.stderr
    assert "invalid configuration" in result.stderr
    assert not data_dir.exists()


def test_startup_hides_password(tmp_path: Path) -> None:
    path = write_config(tmp_path, NO_EMBEDDED + RULE_A)
    result = run_serve(
        "--config",
        str(path),
        "--data-dir",
        str(tmp_path / "data"),
        "--upstream-credentials",
        "other=robot:pw-not-for-logs",
    )
    assert result.returncode != 0
    assert "pw-not-for-logs" not in result.stderr
