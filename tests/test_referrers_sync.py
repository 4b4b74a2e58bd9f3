"""Referrer discovery and sync of the pull-through cache against real upstream registries.

Each upstream kind gets one environment for the module: a registry loaded from the
regclient test repository, and a Docket that caches it. The kind "docket" is a hosted
Docket, which has the OCI 1.1 referrers API; "distribution" is CNCF distribution 2.8,
which has not, so Docket reads the `sha256-<hex>` fallback tags there. Every rule of the
caching Docket maps `<prefix>/<name>` to the upstream repository `<name>`, and each
group of tests uses its own upstream repository, so each test counts only the
upstream requests for its own repository.

Helpers above the fixtures are shared with test_referrers_policy.py and
test_referrers_cli.py.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.config import write_config
from tests.support.distribution import DistributionRegistry, push_blob_in_two_steps, push_layout_manifest
from tests.support.fake_upstream import FakeUpstream
from tests.support.layout import REF_NAME, OciLayout
from tests.support.oci import OCI_INDEX, OCI_MANIFEST, Manifest, artifact, canonical, image, index
from tests.support.processes import DocketProcess

UPSTREAM_KINDS = ("docket", "distribution")
MANIFEST_ACCEPT = ", ".join(
    [
        OCI_INDEX,
        OCI_MANIFEST,
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.docker.distribution.manifest.v2+json",
    ]
)
# Maximum time, in seconds, that a background sync started by a pull may take.
SYNC_DEADLINE = 15.0

SBOM = "application/example.sbom"
SIGNATURE = "application/example.signature"
ARMS = "application/example.arms"
LOOP = "application/example.loop"
# Artifact type of the generated signature on the `a1` SBOM, a referrer of a referrer.
SBOM_SIGNATURE = "application/vnd.example.sbom.signature"

# An access log request line, in both Docket's and distribution's format.
_REQUEST_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3})')


# Content of the regclient test repository.


def fallback_tag(digest: str) -> str:
    algorithm, encoded = digest.split(":", 1)
    return f"{algorithm}-{encoded}"


def digest_of(data: bytes) -> str:
    return f"sha256:{hashlib.sha256(data).hexdigest()}"


@dataclass(frozen=True)
class RegclientRepo:
    """The regclient test repository layout, with the digests the tests refer to."""

    layout: OciLayout
    v1: str
    v2: str
    platforms: dict[str, str]
    """Platform (`os/arch[/variant]`) to digest of each v2 child."""
    arms: dict[str, str]
    """Digest of each v2 child to the digest of its `application/example.arms` referrer."""
    a1: str
    a2: str
    v3: str
    v3_sboms: tuple[str, ...]
    """The two SBOM referrers of v3, which no fallback tag lists."""
    child: str
    loop: str
    meta_tag: str
    mirror: str
    sbom_signature: Manifest
    """A generated signature whose subject is the a1 SBOM."""

    @property
    def v2_referrers(self) -> dict[str, str]:
        return {self.a1: SBOM, self.a2: SIGNATURE}

    def document(self, digest: str) -> dict[str, Any]:
        return dict(json.loads(self.layout.read(digest)))

    def blobs(self, digest: str) -> list[str]:
        """Digests of the config and layers of a manifest in the layout."""
        document = self.document(digest)
        return [document["config"]["digest"], *(layer["digest"] for layer in document.get("layers", []))]


def load_testrepo(fixtures_dir: Path) -> RegclientRepo:
    layout = OciLayout(fixtures_dir / "oci" / "regclient-testrepo")
    tags = {name: descriptor["digest"] for name, descriptor in layout.tags().items()}

    v2 = tags["v2"]
    platforms = {}
    for child in json.loads(layout.read(v2))["manifests"]:
        platform = child["platform"]
        label = "/".join(platform[key] for key in ("os", "architecture", "variant") if platform.get(key))
        platforms[label] = child["digest"]
    arms = {}
    for digest in platforms.values():
        listed = json.loads(layout.read(tags[fallback_tag(digest)]))["manifests"]
        arms[digest] = listed[0]["digest"]

    v3 = tags["v3"]
    untagged = [
        entry["digest"] for entry in layout.index()["manifests"] if REF_NAME not in entry.get("annotations", {})
    ]
    v3_sboms = tuple(
        digest for digest in untagged if json.loads(layout.read(digest)).get("subject", {}).get("digest") == v3
    )
    meta_tag = next(name for name in tags if name.endswith(".meta"))

    a1_manifest = Manifest(layout.read(tags["a1"]), OCI_MANIFEST)
    return RegclientRepo(
        layout=layout,
        v1=tags["v1"],
        v2=v2,
        platforms=platforms,
        arms=arms,
        a1=tags["a1"],
        a2=tags["a2"],
        v3=v3,
        v3_sboms=v3_sboms,
        child=tags["child"],
        loop=tags["loop"],
        meta_tag=meta_tag,
        mirror=tags["mirror"],
        sbom_signature=artifact(a1_manifest, SBOM_SIGNATURE, b"signature of the a1 SBOM"),
    )


def tags_to_load(testrepo: RegclientRepo) -> list[str]:
    """Tags loaded into each upstream repository: v2 with a1, a2, the fallback tags, and the edge cases."""
    return [
        "v2",
        "a1",
        "a2",
        fallback_tag(testrepo.v2),
        *(fallback_tag(digest) for digest in testrepo.platforms.values()),
        "child",
        "loop",
        fallback_tag(testrepo.child),
        "v3",
        testrepo.meta_tag,
        "mirror",
        fallback_tag(testrepo.mirror),
    ]


# Upstream registries and the caching Docket.


class Upstream:
    """A registry on loopback that tests can stop and start again on the same port with the same data.

    `kind` is "docket" (a hosted Docket, with the referrers API) or "distribution"
    (CNCF distribution 2.8, without it).
    """

    def __init__(self, kind: str, directory: Path) -> None:
        self.kind = kind
        self.directory = directory
        self.port = 0
        self._server: DocketProcess | DistributionRegistry | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def has_referrers_api(self) -> bool:
        return self.kind == "docket"

    def start(self) -> Upstream:
        self.directory.mkdir(parents=True, exist_ok=True)
        server: DocketProcess | DistributionRegistry
        if self.kind == "docket":
            server = DocketProcess(self.directory / "data", port=self.port or None)
        else:
            server = DistributionRegistry(self.directory / "distribution", port=self.port or None)
        self._server = server.start()
        self.port = server.port
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None

    @contextmanager
    def stopped(self) -> Iterator[None]:
        """Stop the registry for the `with` block, then start it again on the same port."""
        self.stop()
        try:
            yield
        finally:
            self.start()

    def log(self) -> str:
        path = self.directory / ("data.log" if self.kind == "docket" else "distribution/distribution.log")
        return path.read_text(errors="replace") if path.exists() else ""

    def requests(self, method: str | None = None, path_contains: str = "") -> list[str]:
        """Return the paths of the requests in the access log, optionally one method's, that contain the text."""
        paths = []
        for match in _REQUEST_LINE.finditer(self.log()):
            if (method is None or match["method"] == method) and path_contains in match["path"]:
                paths.append(match["path"])
        return paths

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30.0)

    def push_tags(self, layout: OciLayout, repository: str, tags: list[str]) -> None:
        """Push tags of a layout with all they reference, in a way both registry kinds accept."""
        descriptors = layout.tags()
        with self.client() as http:
            for tag in tags:
                push_layout_manifest(http, layout, repository, descriptors[tag], tag)

    def push_untagged(self, layout: OciLayout, repository: str, digests: tuple[str, ...]) -> None:
        entries = {entry["digest"]: entry for entry in layout.index()["manifests"]}
        with self.client() as http:
            for digest in digests:
                push_layout_manifest(http, layout, repository, entries[digest])

    def push_generated(self, repository: str, manifest: Manifest, reference: str | None = None) -> None:
        """Push generated content (tests.support.oci) with two-step blob uploads, which distribution needs."""
        with self.client() as http:
            _push_generated(http, repository, manifest, reference)


def _push_generated(http: httpx.Client, repository: str, manifest: Manifest, reference: str | None) -> None:
    for child in manifest.children:
        _push_generated(http, repository, child, None)
    for blob in manifest.blobs:
        if http.head(f"/v2/{repository}/blobs/{blob.digest}").status_code != 200:
            push_blob_in_two_steps(http, repository, blob.digest, blob.data)
    response = http.put(
        f"/v2/{repository}/manifests/{reference or manifest.digest}",
        content=manifest.data,
        headers={"Content-Type": manifest.media_type},
    )
    assert response.status_code == 201, f"{reference or manifest.digest}: {response.status_code} {response.text}"


def fallback_index(subject: str, referrers: list[Manifest], artifact_type: str) -> Manifest:
    """A referrers index for the `sha256-<hex>` tag of `subject`, as clients of the tag schema write it."""
    document = {
        "schemaVersion": 2,
        "mediaType": OCI_INDEX,
        "manifests": [referrer.descriptor(artifactType=artifact_type) for referrer in referrers],
    }
    return Manifest(canonical(document), OCI_INDEX, [], list(referrers))


def load_repository(upstream: Upstream, testrepo: RegclientRepo, repository: str) -> None:
    """Load the test repository content, and the generated signature on a1 with its fallback tag."""
    upstream.push_tags(testrepo.layout, repository, tags_to_load(testrepo))
    upstream.push_untagged(testrepo.layout, repository, testrepo.v3_sboms)
    signatures = fallback_index(testrepo.a1, [testrepo.sbom_signature], SBOM_SIGNATURE)
    upstream.push_generated(repository, signatures, fallback_tag(testrepo.a1))


def rule(prefix: str, upstream_url: str, **settings: Any) -> dict[str, Any]:
    """A rule table; each gets its own mirror namespace, since they share one upstream host."""
    return {"prefix": prefix, "url": upstream_url, "namespace": f"{prefix}.test", **settings}


# Requests to the caching Docket.


def get_manifest(http: httpx.Client, repository: str, reference: str) -> httpx.Response:
    return http.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": MANIFEST_ACCEPT})


def pull(http: httpx.Client, repository: str, reference: str) -> httpx.Response:
    response = get_manifest(http, repository, reference)
    assert response.status_code == 200, f"{repository}:{reference}: {response.status_code} {response.text}"
    return response


def pull_image(http: httpx.Client, repository: str, reference: str) -> list[str]:
    """Pull an index and each platform manifest, as a client does; return the children's digests."""
    document = pull(http, repository, reference).json()
    children = [child["digest"] for child in document.get("manifests", [])]
    for digest in children:
        pull(http, repository, digest)
    return children


def referrers(http: httpx.Client, repository: str, subject: str, **query: str) -> httpx.Response:
    return http.get(f"/v2/{repository}/referrers/{subject}", params=query)


def listed_types(response: httpx.Response) -> dict[str, str | None]:
    """Map each referrer digest of a referrers API response to its artifact type."""
    return {entry["digest"]: entry.get("artifactType") for entry in response.json()["manifests"]}


def inspect_tree(http: httpx.Client, reference: str) -> dict[str, Any]:
    """Docket's cached tree of an image (/_docket/inspect), which never contacts the upstream."""
    response = http.get("/_docket/inspect", params={"reference": reference})
    assert response.status_code == 200, response.text
    return dict(response.json()["manifest"])


def synced_referrers(node: dict[str, Any]) -> dict[str, bool]:
    """Map each referrer of an inspect node that a sync recorded to whether its content was synced."""
    return {
        referrer["digest"]: bool(referrer.get("contentSynced"))
        for referrer in node.get("referrers", [])
        if referrer.get("syncedAt")
    }


def wait_until(condition: Callable[[], bool], what: str, timeout: float = SYNC_DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout}s")
        time.sleep(0.05)


def discovered(upstream: Upstream, repository: str, subject: str) -> bool:
    """Tell whether Docket finished asking the upstream about an image's referrers.

    The HEAD of cosign's `.sbom` tag is the last upstream request of an image's discovery.
    """
    return bool(upstream.requests("HEAD", f"/v2/{repository}/manifests/{fallback_tag(subject)}.sbom"))


def referrer_discovered(upstream: Upstream, repository: str, subject: str) -> bool:
    """Tell whether Docket asked the upstream about a referrer's own referrers.

    Cosign tags are looked up for images only, so listing them is the whole discovery.
    """
    return bool(discovery_requests(upstream, repository, subject))


def discovery_requests(upstream: Upstream, repository: str, subject: str) -> list[str]:
    """Requests that list the subject's referrers: the referrers API or the fallback tag."""
    api = upstream.requests("GET", f"/v2/{repository}/referrers/{subject}")
    tag_path = f"/v2/{repository}/manifests/{fallback_tag(subject)}"
    return api + [path for path in upstream.requests("GET", tag_path) if path == tag_path]


def access_log_paths(log: str, path_contains: str) -> list[str]:
    return [match["path"] for match in _REQUEST_LINE.finditer(log) if path_contains in match["path"]]


# Fixtures.

PLAIN = "plain"  # default settings
FILTERED = "filtered"  # referrers_exclude the signature type
SIZED = "sized"  # referrers_max_size between the a1 manifest alone and a1 with its blobs
MAX_SIZE = 587
UPSTREAM_REPOSITORIES = ("sync", "edge", "count", "filter", "sized", "local", "probe")


@dataclass
class Env:
    upstream: Upstream
    cache: DocketProcess
    http: httpx.Client


@pytest.fixture(scope="module")
def testrepo(fixtures_dir: Path) -> RegclientRepo:
    return load_testrepo(fixtures_dir)


@pytest.fixture(scope="module", params=UPSTREAM_KINDS)
def env(
    request: pytest.FixtureRequest, testrepo: RegclientRepo, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Env]:
    kind: str = request.param
    folder = tmp_path_factory.mktemp(f"referrers-{kind}")
    upstream = Upstream(kind, folder / "upstream")
    upstream.start()
    try:
        for repository in UPSTREAM_REPOSITORIES:
            load_repository(upstream, testrepo, repository)
        config = write_config(
            folder / "docket.toml",
            [
                rule(PLAIN, upstream.url),
                rule(FILTERED, upstream.url, referrers_exclude=[SIGNATURE]),
                rule(SIZED, upstream.url, referrers_max_size=MAX_SIZE),
            ],
        )
        with (
            DocketProcess(folder / "cache", "--config", str(config)) as cache,
            httpx.Client(base_url=cache.url, timeout=30.0) as http,
        ):
            yield Env(upstream, cache, http)
    finally:
        upstream.stop()


@pytest.fixture(scope="module")
def synced_v2(env: Env, testrepo: RegclientRepo) -> str:
    """Pull v2 and its platforms through `plain/sync`, wait for the background syncs; return Docket's log then.

    No client calls the referrers API before this returns.
    """
    repository = f"{PLAIN}/sync"
    pull_image(env.http, repository, "v2")
    images = [testrepo.v2, *testrepo.platforms.values()]
    referrer_subjects = [*testrepo.v2_referrers, *testrepo.arms.values(), testrepo.sbom_signature.digest]
    wait_until(
        lambda: (
            all(discovered(env.upstream, "sync", subject) for subject in images)
            and all(referrer_discovered(env.upstream, "sync", subject) for subject in referrer_subjects)
        ),
        f"discovery of the referrers of v2, its platforms and their referrers in {env.upstream.kind}",
    )

    def listed() -> bool:
        tree = inspect_tree(env.http, f"{repository}:v2")
        children = {child["digest"]: child for child in tree["children"]}
        return synced_referrers(tree).keys() == testrepo.v2_referrers.keys() and all(
            synced_referrers(children[digest]).keys() == {testrepo.arms[digest]}
            for digest in testrepo.platforms.values()
        )

    wait_until(listed, "the synced referrers of v2 in docket inspect")
    return env.cache.log()


# Background sync after a plain pull.


def test_sync_without_client_call(env: Env, testrepo: RegclientRepo, synced_v2: str) -> None:
    referrer_calls = access_log_paths(synced_v2, f"/v2/{PLAIN}/sync/referrers/")
    assert referrer_calls == []
    for digest in [*testrepo.v2_referrers, *testrepo.arms.values(), testrepo.sbom_signature.digest]:
        assert env.upstream.requests("GET", f"/v2/sync/manifests/{digest}"), f"referrer {digest} never fetched"


def test_sync_source_matches_upstream(env: Env, synced_v2: str) -> None:
    expected = "referrers API" if env.upstream.has_referrers_api else "referrers tag schema"
    tree = inspect_tree(env.http, f"{PLAIN}/sync:v2")
    sources = {referrer["discoveredVia"] for referrer in tree["referrers"]}
    assert sources == {expected}


def test_referrers_listed_upstream_stopped(env: Env, testrepo: RegclientRepo, synced_v2: str) -> None:
    repository = f"{PLAIN}/sync"
    with env.upstream.stopped():
        index_response = referrers(env.http, repository, testrepo.v2)
        platform_responses = {digest: referrers(env.http, repository, digest) for digest in testrepo.platforms.values()}
    assert index_response.status_code == 200, index_response.text
    assert index_response.headers["Content-Type"] == OCI_INDEX
    assert listed_types(index_response) == testrepo.v2_referrers
    for digest, response in platform_responses.items():
        assert response.status_code == 200, response.text
        assert listed_types(response) == {testrepo.arms[digest]: ARMS}


def test_referrer_content_served_upstream_stopped(env: Env, testrepo: RegclientRepo, synced_v2: str) -> None:
    repository = f"{PLAIN}/sync"
    referrer_digests = [*testrepo.v2_referrers, *testrepo.arms.values()]
    with env.upstream.stopped():
        manifests = {digest: get_manifest(env.http, repository, digest) for digest in referrer_digests}
        blobs = {
            blob: env.http.get(f"/v2/{repository}/blobs/{blob}")
            for digest in referrer_digests
            for blob in testrepo.blobs(digest)
        }
    for digest, response in manifests.items():
        assert response.status_code == 200, f"manifest {digest}: {response.status_code} {response.text}"
        assert response.content == testrepo.layout.read(digest)
    for digest, response in blobs.items():
        assert response.status_code == 200, f"blob {digest}: {response.status_code} {response.text}"
        assert digest_of(response.content) == digest


def test_referrer_of_referrer_upstream_stopped(env: Env, testrepo: RegclientRepo, synced_v2: str) -> None:
    repository = f"{PLAIN}/sync"
    signature = testrepo.sbom_signature
    with env.upstream.stopped():
        listed = referrers(env.http, repository, testrepo.a1)
        manifest = get_manifest(env.http, repository, signature.digest)
    assert listed.status_code == 200, listed.text
    assert listed_types(listed) == {signature.digest: SBOM_SIGNATURE}
    assert manifest.status_code == 200, manifest.text
    assert manifest.content == signature.data


def test_artifact_type_filter(env: Env, testrepo: RegclientRepo, synced_v2: str) -> None:
    response = referrers(env.http, f"{PLAIN}/sync", testrepo.v2, artifactType=SBOM)
    assert response.status_code == 200, response.text
    assert listed_types(response) == {testrepo.a1: SBOM}
    assert response.headers.get("OCI-Filters-Applied") == "artifactType"


def test_fallback_tag_matches_api(env: Env, testrepo: RegclientRepo, synced_v2: str) -> None:
    repository = f"{PLAIN}/sync"
    for subject in [testrepo.v2, *testrepo.platforms.values()]:
        tag = get_manifest(env.http, repository, fallback_tag(subject))
        api = referrers(env.http, repository, subject)
        assert tag.status_code == 200, f"{fallback_tag(subject)}: {tag.status_code} {tag.text}"
        assert tag.headers["Content-Type"] == OCI_INDEX
        assert tag.headers["Docker-Content-Digest"] == digest_of(tag.content)
        assert tag.json()["manifests"] == api.json()["manifests"]


def test_second_call_within_ttl_no_upstream(env: Env, testrepo: RegclientRepo) -> None:
    # v2 was never pulled through `plain/count`, so the first call syncs and waits for it.
    repository = f"{PLAIN}/count"
    first = referrers(env.http, repository, testrepo.v2)
    after_first = env.upstream.requests(path_contains="/v2/count/")
    second = referrers(env.http, repository, testrepo.v2)
    after_second = env.upstream.requests(path_contains="/v2/count/")
    assert listed_types(first) == testrepo.v2_referrers
    assert discovery_requests(env.upstream, "count", testrepo.v2), "the first call did not ask the upstream"
    assert listed_types(second) == testrepo.v2_referrers
    assert after_second == after_first


# Edge cases of the test repository.


@pytest.fixture(scope="module")
def synced_child(env: Env, testrepo: RegclientRepo) -> None:
    """Pull `child`, whose referrer `loop` is an index that also lists `child`, and wait for the sync."""
    pull(env.http, f"{PLAIN}/edge", "child")
    wait_until(
        lambda: (
            discovered(env.upstream, "edge", testrepo.child)
            and referrer_discovered(env.upstream, "edge", testrepo.loop)
        ),
        "discovery of the referrers of child and loop",
    )


def test_index_referrer_upstream_stopped(env: Env, testrepo: RegclientRepo, synced_child: None) -> None:
    repository = f"{PLAIN}/edge"
    with env.upstream.stopped():
        listed = referrers(env.http, repository, testrepo.child)
        loop = get_manifest(env.http, repository, testrepo.loop)
    assert listed.status_code == 200, listed.text
    assert [(entry["digest"], entry["mediaType"]) for entry in listed.json()["manifests"]] == [
        (testrepo.loop, OCI_INDEX)
    ]
    assert listed_types(listed) == {testrepo.loop: LOOP}
    assert loop.status_code == 200, loop.text
    assert loop.content == testrepo.layout.read(testrepo.loop)


def test_loop_sync_terminates(env: Env, testrepo: RegclientRepo, synced_child: None) -> None:
    log = env.cache.log()
    assert len(discovery_requests(env.upstream, "edge", testrepo.child)) == 1
    assert len(discovery_requests(env.upstream, "edge", testrepo.loop)) == 1
    assert f"referrer sync of {PLAIN}/edge" not in log
    assert "Traceback" not in log


def test_v3_sboms_without_fallback_tag(env: Env, testrepo: RegclientRepo) -> None:
    repository = f"{PLAIN}/edge"
    pull(env.http, repository, "v3")
    response = referrers(env.http, repository, testrepo.v3)
    assert response.status_code == 200, response.text
    if env.upstream.has_referrers_api:
        assert listed_types(response) == dict.fromkeys(testrepo.v3_sboms, SBOM)
    else:
        # Distribution 2.8 has no referrers API and no fallback tag lists these SBOMs,
        # so nothing can find them there.
        assert listed_types(response) == {}


def test_lookalike_tags_served_as_tags(env: Env, testrepo: RegclientRepo) -> None:
    repository = f"{PLAIN}/edge"
    meta = get_manifest(env.http, repository, testrepo.meta_tag)
    mirror = get_manifest(env.http, repository, "mirror")
    assert meta.status_code == 200, meta.text
    assert meta.headers["Docker-Content-Digest"] == testrepo.v3
    assert meta.content == testrepo.layout.read(testrepo.v3)
    assert mirror.status_code == 200, mirror.text
    assert mirror.headers["Docker-Content-Digest"] == testrepo.mirror


def test_lookalike_tags_not_referrer_indexes(env: Env, testrepo: RegclientRepo) -> None:
    repository = f"{PLAIN}/edge"
    # The `.meta` tag starts with v1's fallback tag; it must not be read as v1's referrers.
    of_v1 = referrers(env.http, repository, testrepo.v1)
    # The upstream tag `sha256-<hex of mirror>` is a plain manifest, not an index.
    of_mirror = referrers(env.http, repository, testrepo.mirror)
    assert of_v1.status_code == 200, of_v1.text
    assert listed_types(of_v1) == {}
    assert of_mirror.status_code == 200, of_mirror.text
    assert listed_types(of_mirror) == {}
    if not env.upstream.has_referrers_api:
        assert f"tag {fallback_tag(testrepo.mirror)} in {repository} is not an image index" in env.cache.log()


# Rules that filter what is synced.


def test_excluded_type_listed_not_stored(env: Env, testrepo: RegclientRepo) -> None:
    repository = f"{FILTERED}/filter"
    pull(env.http, repository, "v2")
    wait_until(
        lambda: synced_referrers(inspect_tree(env.http, f"{repository}:v2")).keys() == testrepo.v2_referrers.keys(),
        "the referrers of v2 in docket inspect",
    )
    with env.upstream.stopped():
        listed = referrers(env.http, repository, testrepo.v2)
        excluded = get_manifest(env.http, repository, testrepo.a2)
        kept = get_manifest(env.http, repository, testrepo.a1)
    reason = (
        f"listing referrer {testrepo.a2} of {repository}@{testrepo.v2} without its content: "
        f"artifact type '{SIGNATURE}' is in referrers_exclude"
    )
    assert listed_types(listed) == testrepo.v2_referrers
    assert excluded.status_code != 200
    assert kept.status_code == 200, kept.text
    assert env.upstream.requests("GET", f"/v2/filter/manifests/{testrepo.a2}") == []
    assert reason in env.cache.log()


def test_max_size_limits_content(env: Env, testrepo: RegclientRepo) -> None:
    repository = f"{SIZED}/sized"
    amd64 = testrepo.platforms["linux/amd64"]
    sizes = {digest: len(testrepo.layout.read(digest)) for digest in (testrepo.a1, testrepo.a2)}
    # The a2 manifest alone exceeds the limit. The a1 manifest fits, but not with its blobs.
    assert sizes[testrepo.a2] > MAX_SIZE >= sizes[testrepo.a1], sizes
    pull(env.http, repository, "v2")
    pull(env.http, repository, amd64)

    def recorded() -> dict[str, bool]:
        tree = inspect_tree(env.http, f"{repository}:v2")
        children = {child["digest"]: child for child in tree["children"]}
        return {**synced_referrers(tree), **synced_referrers(children.get(amd64, {}))}

    wait_until(lambda: len(recorded()) == 3, "the referrers of v2 and its amd64 manifest in docket inspect")
    log = env.cache.log()
    assert recorded() == {testrepo.a1: False, testrepo.a2: False, testrepo.arms[amd64]: True}
    assert env.upstream.requests("GET", f"/v2/sized/manifests/{testrepo.a2}") == []
    assert f"listing referrer {testrepo.a2} of {repository}@{testrepo.v2} without its content" in log
    assert f"not syncing the blobs of referrer {testrepo.a1} in {repository}" in log
    assert f"exceed referrers_max_size of {MAX_SIZE}" in log


# Referrers pushed to Docket.


def test_local_referrer_listed_with_synced(env: Env, testrepo: RegclientRepo) -> None:
    repository = f"{PLAIN}/local"
    pull(env.http, repository, "v2")
    subject = Manifest(testrepo.layout.read(testrepo.v2), OCI_INDEX)
    scan = artifact(subject, "application/vnd.example.scan+json", b'{"findings": []}')
    for blob in scan.blobs:
        upload = env.http.post(f"/v2/{repository}/blobs/uploads/", params={"digest": blob.digest}, content=blob.data)
        assert upload.status_code == 201, upload.text
    pushed = env.http.put(
        f"/v2/{repository}/manifests/{scan.digest}", content=scan.data, headers={"Content-Type": OCI_MANIFEST}
    )
    listed = referrers(env.http, repository, testrepo.v2)
    tag = get_manifest(env.http, repository, fallback_tag(testrepo.v2))
    assert pushed.status_code == 201, pushed.text
    assert listed_types(listed) == {**testrepo.v2_referrers, scan.digest: "application/vnd.example.scan+json"}
    assert tag.json()["manifests"] == listed.json()["manifests"]


# How often the upstream is asked.


@pytest.mark.parametrize("env", ["distribution"], indirect=True)
def test_unsupported_api_probed_once(
    env: Env, testrepo: RegclientRepo, start_docket: Callable[..., DocketProcess], tmp_path: Path
) -> None:
    config = write_config(tmp_path / "probe.toml", [rule(PLAIN, env.upstream.url)])
    cache = start_docket("--config", str(config))
    repository = f"{PLAIN}/probe"
    with httpx.Client(base_url=cache.url, timeout=30.0) as http:
        pull_image(http, repository, "v2")
        pull_image(http, repository, "v3")
    subjects = [testrepo.v2, *testrepo.platforms.values(), testrepo.v3]
    wait_until(
        lambda: all(discovered(env.upstream, "probe", subject) for subject in subjects),
        "discovery of the referrers of v2, v3 and the v2 platforms",
    )
    assert len(env.upstream.requests("GET", "/v2/probe/referrers/")) == 1
    for subject in subjects:
        tag_path = f"/v2/probe/manifests/{fallback_tag(subject)}"
        assert tag_path in env.upstream.requests("GET", tag_path), f"fallback tag of {subject} never read"


# An upstream whose referrers API redirects to a login page.


def test_redirecting_api_uses_fallback_tag(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    subject = index([image(), image()])
    signature = artifact(subject, SIGNATURE)
    other = image()
    with FakeUpstream(referrers="redirect") as upstream:
        upstream.add_image("app", subject, tags=["v1"])
        upstream.add_image("app", other, tags=["v2"])
        upstream.add_image(
            "app", fallback_index(subject.digest, [signature], SIGNATURE), tags=[fallback_tag(subject.digest)]
        )
        config = write_config(tmp_path / "redirect.toml", [rule(PLAIN, upstream.url)])
        cache = start_docket("--config", str(config))
        with httpx.Client(base_url=cache.url, timeout=30.0) as http:
            listed = referrers(http, f"{PLAIN}/app", subject.digest)
            filtered = referrers(http, f"{PLAIN}/app", subject.digest, artifactType=SIGNATURE)
            none = referrers(http, f"{PLAIN}/app", other.digest)
            tag = get_manifest(http, f"{PLAIN}/app", fallback_tag(subject.digest))
        api_requests = upstream.count("GET", "/referrers/")
        login_requests = upstream.count("GET", "/login")
    for response in (listed, filtered, none, tag):
        assert response.status_code == 200, f"{response.request.url}: {response.status_code} {response.text}"
    assert listed_types(listed) == {signature.digest: SIGNATURE}
    assert listed_types(filtered) == {signature.digest: SIGNATURE}
    assert listed_types(none) == {}
    assert tag.json()["manifests"] == listed.json()["manifests"]
    # One probe; Docket must not retry a redirect as if it were a transient failure.
    assert api_requests == 1
    assert login_requests == 0
    assert "referrers API of plain not usable: the upstream redirected (303)" in cache.log()
