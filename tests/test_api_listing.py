"""Paginated lists over HTTP: tags of a repository and the repository catalog."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.oci import error_codes, image, push_blob, push_manifest, random_blob
from tests.support.processes import DocketProcess

NEXT_LINK_RE = re.compile(r'^<([^<>]+)>; *rel="next"$')

# Byte-wise order puts digits before uppercase, uppercase before '_', '_' before lowercase.
MIXED_TAGS = ["latest", "Latest", "v10", "v9", "V2", "1.0", "10", "9", "_private", "a-b", "a.b", "a_b", "ZZ"]


def next_link(response: httpx.Response) -> str | None:
    """Return the target of the response's `rel="next"` link, or None when there is none."""
    header = response.headers.get("Link")
    if header is None:
        return None
    match = NEXT_LINK_RE.match(header)
    assert match is not None, f"malformed Link header {header!r}"
    return match.group(1)


def link_target(response: httpx.Response) -> tuple[str, dict[str, str]] | None:
    """Return the path and decoded query of the next link, so tests need not fix its encoding."""
    target = next_link(response)
    if target is None:
        return None
    url = httpx.URL(target)
    return url.path, dict(url.params)


def collect_pages(client: httpx.Client, url: str, key: str) -> list[list[str]]:
    """Follow `rel="next"` links from `url` and return the `key` list of every page."""
    pages: list[list[str]] = []
    next_url: str | None = url
    while next_url is not None:
        assert len(pages) < 100, "pagination does not end"
        response = client.get(next_url)
        assert response.status_code == 200, response.text
        pages.append(list(response.json()[key]))
        next_url = next_link(response)
    return pages


def push_tags(client: httpx.Client, repository: str, tags: list[str]) -> None:
    """Point every tag in `tags` at one manifest."""
    manifest = image(layers=0)
    push_manifest(client, repository, manifest)
    for tag in tags:
        response = client.put(
            f"/v2/{repository}/manifests/{tag}",
            content=manifest.data,
            headers={"Content-Type": manifest.media_type},
        )
        assert response.status_code == 201, response.text


@pytest.fixture
def small_pages(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> Iterator[httpx.Client]:
    """A client for a fresh server whose `max_page_size` is 3."""
    config = tmp_path / "small-pages.toml"
    config.write_text("[registry]\nmax_page_size = 3\n")
    server = start_docket("--config", str(config))
    http = httpx.Client(base_url=server.url, timeout=30.0)
    yield http
    http.close()


@pytest.fixture
def own_server(start_docket: Callable[..., DocketProcess]) -> Iterator[httpx.Client]:
    """A client for a fresh server with the default configuration, so its catalog is empty."""
    server = start_docket()
    http = httpx.Client(base_url=server.url, timeout=30.0)
    yield http
    http.close()


# Tags


def test_tags_sorted_bytewise(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, MIXED_TAGS)

    response = client.get(f"/v2/{repo}/tags/list")

    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.json() == {"name": repo, "tags": sorted(MIXED_TAGS)}
    assert "Link" not in response.headers


def test_tags_follow_links(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, MIXED_TAGS)
    expected = sorted(MIXED_TAGS)

    first = client.get(f"/v2/{repo}/tags/list", params={"n": 4})
    pages = collect_pages(client, f"/v2/{repo}/tags/list?n=4", "tags")

    assert first.headers["Link"] == f'</v2/{repo}/tags/list?n=4&last={expected[3]}>; rel="next"'
    assert [len(page) for page in pages] == [4, 4, 4, 1]
    assert [tag for page in pages for tag in page] == expected


def test_tags_full_last_page(client: httpx.Client, repo: str) -> None:
    tags = [f"t{i}" for i in range(6)]
    push_tags(client, repo, tags)

    pages = collect_pages(client, f"/v2/{repo}/tags/list?n=3", "tags")

    assert pages == [tags[:3], tags[3:]]


def test_tags_n_larger_than_count(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, ["a", "b"])

    response = client.get(f"/v2/{repo}/tags/list", params={"n": 50})

    assert response.json()["tags"] == ["a", "b"]
    assert "Link" not in response.headers


def test_tags_last_without_n(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, MIXED_TAGS)
    expected = sorted(MIXED_TAGS)
    last = expected[len(expected) // 2 - 1]

    response = client.get(f"/v2/{repo}/tags/list", params={"last": last})

    assert response.status_code == 200
    assert response.json()["tags"] == expected[len(expected) // 2 :]
    assert "Link" not in response.headers


def test_tags_last_with_n(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, ["a", "b", "c", "d", "e"])

    response = client.get(f"/v2/{repo}/tags/list", params={"n": 2, "last": "b"})

    assert response.json()["tags"] == ["c", "d"]
    assert response.headers["Link"] == f'</v2/{repo}/tags/list?n=2&last=d>; rel="next"'


def test_tags_last_not_a_tag(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, ["a", "b", "c", "d"])

    response = client.get(f"/v2/{repo}/tags/list", params={"last": "b0"})

    assert response.json()["tags"] == ["c", "d"]


def test_tags_last_after_all(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, ["a", "b"])

    response = client.get(f"/v2/{repo}/tags/list", params={"last": "b"})

    assert response.status_code == 200
    assert response.json()["tags"] == []


def test_tags_n_zero(client: httpx.Client, repo: str) -> None:
    push_tags(client, repo, ["a", "b"])

    response = client.get(f"/v2/{repo}/tags/list", params={"n": 0})

    assert response.status_code == 200
    assert response.json() == {"name": repo, "tags": []}


@pytest.mark.parametrize("n", ["abc", "-1", "1.5", "0x10"])
def test_tags_invalid_n(client: httpx.Client, repo: str, n: str) -> None:
    push_tags(client, repo, ["a"])

    response = client.get(f"/v2/{repo}/tags/list", params={"n": n})

    assert response.status_code == 400
    assert response.headers["Content-Type"].startswith("application/json")
    assert len(error_codes(response)) == 1


def test_tags_unknown_repository(client: httpx.Client, repo: str) -> None:
    response = client.get(f"/v2/{repo}/tags/list")

    assert response.status_code == 404
    assert error_codes(response) == ["NAME_UNKNOWN"]


def test_tags_untagged_repository(client: httpx.Client, repo: str) -> None:
    push_manifest(client, repo, image(layers=0))

    response = client.get(f"/v2/{repo}/tags/list")

    assert response.status_code == 200
    assert response.json() == {"name": repo, "tags": []}


@pytest.mark.parametrize("by", ["tag", "digest"])
def test_tags_all_deleted(client: httpx.Client, repo: str, by: str) -> None:
    manifest = image(layers=0)
    push_manifest(client, repo, manifest, "one")
    push_manifest(client, repo, manifest, "two")
    targets = ["one", "two"] if by == "tag" else [manifest.digest]
    for target in targets:
        assert client.delete(f"/v2/{repo}/manifests/{target}").status_code == 202

    response = client.get(f"/v2/{repo}/tags/list")

    assert response.status_code == 200
    assert response.json() == {"name": repo, "tags": []}


def test_tags_invalid_repository(client: httpx.Client) -> None:
    response = client.get("/v2/Upper/Case/tags/list")

    assert response.status_code == 400
    assert error_codes(response) == ["NAME_INVALID"]


# Catalog


def test_catalog_sorted_and_paged(own_server: httpx.Client) -> None:
    names = ["b/x", "a", "a/b", "a-b", "a.b", "c/d/e", "0abc", "z9"]
    for name in names:
        push_blob(own_server, name, random_blob(16))
    expected = sorted(names)

    full = own_server.get("/v2/_catalog")
    first = own_server.get("/v2/_catalog", params={"n": 3})
    pages = collect_pages(own_server, "/v2/_catalog?n=3", "repositories")
    after = own_server.get("/v2/_catalog", params={"last": expected[4]})

    assert full.status_code == 200
    assert full.json() == {"repositories": expected}
    assert "Link" not in full.headers
    assert link_target(first) == ("/v2/_catalog", {"n": "3", "last": expected[2]})
    assert pages == [expected[:3], expected[3:6], expected[6:]]
    assert after.json()["repositories"] == expected[5:]
    assert "Link" not in after.headers


def test_catalog_hides_emptied_repository(client: httpx.Client, repo: str) -> None:
    manifest = image(layers=0)
    push_manifest(client, f"{repo}/kept", image(layers=0), "v1")
    push_manifest(client, f"{repo}/emptied", manifest, "v1")
    assert client.delete(f"/v2/{repo}/emptied/manifests/{manifest.digest}").status_code == 202
    for blob in manifest.blobs:
        assert client.delete(f"/v2/{repo}/emptied/blobs/{blob.digest}").status_code == 202

    # The session server contains other tests' repositories, so list only the names after `repo`.
    response = client.get("/v2/_catalog", params={"n": 2, "last": repo})

    assert response.status_code == 200
    assert f"{repo}/emptied" not in response.json()["repositories"]
    assert response.json()["repositories"][0] == f"{repo}/kept"


def test_catalog_n_zero_and_invalid(client: httpx.Client) -> None:
    zero = client.get("/v2/_catalog", params={"n": 0})
    invalid = client.get("/v2/_catalog", params={"n": "many"})
    negative = client.get("/v2/_catalog", params={"n": -5})

    assert zero.status_code == 200
    assert zero.json() == {"repositories": []}
    assert invalid.status_code == 400
    assert len(error_codes(invalid)) == 1
    assert negative.status_code == 400


# Server maximum


def test_n_clamped_to_max_page_size(small_pages: httpx.Client) -> None:
    tags = ["a", "b", "c", "d", "e"]
    push_tags(small_pages, "clamp/tags", tags)
    names = ["clamp/tags", "p/a", "p/b", "p/c", "p/d"]
    for name in names[1:]:
        push_blob(small_pages, name, random_blob(16))

    tag_page = small_pages.get("/v2/clamp/tags/tags/list", params={"n": 1000})
    default_tag_page = small_pages.get("/v2/clamp/tags/tags/list")
    tag_pages = collect_pages(small_pages, "/v2/clamp/tags/tags/list?n=1000000000000", "tags")
    catalog_page = small_pages.get("/v2/_catalog", params={"n": 500})
    catalog_pages = collect_pages(small_pages, "/v2/_catalog", "repositories")

    assert tag_page.status_code == 200
    assert tag_page.json()["tags"] == ["a", "b", "c"]
    assert tag_page.headers["Link"] == '</v2/clamp/tags/tags/list?n=3&last=c>; rel="next"'
    assert default_tag_page.json()["tags"] == ["a", "b", "c"]
    assert next_link(default_tag_page) is not None
    assert tag_pages == [["a", "b", "c"], ["d", "e"]]
    assert catalog_page.status_code == 200
    assert catalog_page.json()["repositories"] == names[:3]
    assert link_target(catalog_page) == ("/v2/_catalog", {"n": "3", "last": "p/b"})
    assert catalog_pages == [names[:3], names[3:]]
