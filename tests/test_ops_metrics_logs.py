"""Metrics, health checks, structured logs and `docket status` of real `docket serve` processes.

A scripted session (cold pull, warm pull, referrer sync, upstream failures, a policy
denial, eviction) runs once against a FakeUpstream. Each step's test compares the exact
change of every Docket counter in `/metrics` with what the step must cause.
Background referrer syncs send requests too, and the session waits for all of them
before it reads the counters, so the counts are exact.
"""

from __future__ import annotations

import base64
import json
import re
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.support.fake_upstream import FakeUpstream, RequireBasicAuth, RequireBearerToken, Status
from tests.support.oci import Blob, Manifest, artifact, image, random_blob
from tests.support.processes import DocketProcess

REPOSITORY = "ops/app"  # upstream repository of every image in the session
SBOM = "application/vnd.example.sbom+json"
SIGNATURE = "application/vnd.example.signature"  # required by rule "p", and no image has one
MAX_SIZE = 256 * 1024  # [storage] max_size of the session's Docket
SETTLE_TIMEOUT = 15.0

MetricKey = tuple[str, tuple[tuple[str, str], ...]]


def metric(name: str, **labels: str) -> MetricKey:
    return name, tuple(sorted(labels.items()))


def decision(rule: str, kind: str, outcome: str) -> MetricKey:
    return metric("docket_cache_decisions_total", rule=rule, kind=kind, decision=outcome)


def upstream_request(rule: str, method: str, status: str) -> MetricKey:
    return metric("docket_upstream_requests_total", upstream=rule, method=method, status=status)


def discovered(source: str, artifact_type: str) -> MetricKey:
    return metric("docket_referrers_discovered_total", source=source, artifact_type=artifact_type)


def synced(source: str, artifact_type: str) -> MetricKey:
    return metric("docket_referrers_synced_total", source=source, artifact_type=artifact_type)


UPSTREAM_BYTES = "docket_upstream_bytes_total"
EVICTED_IMAGES = metric("docket_evicted_images_total")
EVICTED_BYTES = metric("docket_evicted_bytes_total")
STORE_BYTES = metric("docket_store_bytes")


def read_metrics(url: str) -> dict[MetricKey, float]:
    """Parse `/metrics` with prometheus_client's parser and keep Docket's samples."""
    response = httpx.get(f"{url}/metrics", timeout=10.0)
    assert response.status_code == 200, response.text
    values: dict[MetricKey, float] = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            if sample.name.startswith("docket_"):
                values[metric(sample.name, **sample.labels)] = sample.value
    return values


def upstream_requests_counted(values: dict[MetricKey, float]) -> float:
    return sum(value for (name, _labels), value in values.items() if name == "docket_upstream_requests_total")


def counter_deltas(before: dict[MetricKey, float], after: dict[MetricKey, float]) -> dict[MetricKey, float]:
    """Changes of every `*_total` counter except upstream bytes, leaving out the unchanged ones."""
    deltas = {}
    for key, value in after.items():
        name = key[0]
        if name.endswith("_total") and not name.startswith(UPSTREAM_BYTES):
            change = value - before.get(key, 0.0)
            if change:
                deltas[key] = change
    return deltas


def bytes_delta(before: dict[MetricKey, float], after: dict[MetricKey, float]) -> float:
    total = 0.0
    for key, value in after.items():
        if key[0] == UPSTREAM_BYTES:
            total += value - before.get(key, 0.0)
    return total


def cosign_tag(subject: Manifest) -> str:
    return subject.digest.replace(":", "-") + ".sig"


def size_of(*manifests: Manifest, skip: frozenset[str] = frozenset()) -> int:
    """Bytes of these manifests and their blobs, each digest once."""
    sizes = {}
    for manifest in manifests:
        sizes[manifest.digest] = len(manifest.data)
        sizes.update((blob.digest, len(blob.data)) for blob in manifest.blobs)
    return sum(size for digest, size in sizes.items() if digest not in skip)


@dataclass
class Content:
    """The images, referrers and blob that the FakeUpstream serves in `REPOSITORY`."""

    first: Manifest = field(default_factory=lambda: image(2, layer_size=32 * 1024))
    second: Manifest = field(default_factory=image)
    unsigned: Manifest = field(default_factory=image)
    big: Manifest = field(default_factory=lambda: image(1, layer_size=200 * 1024))
    cosign: Manifest = field(default_factory=lambda: image(1, layer_size=100))
    missing_blob: Blob = field(default_factory=lambda: random_blob(256))
    first_sbom: Manifest = field(init=False)
    second_sbom: Manifest = field(init=False)

    def __post_init__(self) -> None:
        self.first_sbom = artifact(self.first, SBOM)
        self.second_sbom = artifact(self.second, SBOM)

    def load(self, upstream: FakeUpstream) -> None:
        upstream.add_image(REPOSITORY, self.first, tags=["v1"])
        upstream.add_image(REPOSITORY, self.first_sbom)
        upstream.add_image(REPOSITORY, self.second, tags=["v2"])
        upstream.add_image(REPOSITORY, self.second_sbom)
        upstream.add_image(REPOSITORY, self.cosign, tags=[cosign_tag(self.second)])
        upstream.add_image(REPOSITORY, self.unsigned, tags=["v3"])
        upstream.add_image(REPOSITORY, self.big, tags=["big"])
        upstream.add_blob(REPOSITORY, self.missing_blob.data)


@dataclass
class StepResult:
    counters: dict[MetricKey, float]
    upstream_bytes: float
    statuses: list[int]


@dataclass
class StoreReading:
    gauge: float
    status_bytes: int
    evicted_images: int


@dataclass
class Session:
    content: Content
    steps: dict[str, StepResult]
    before_eviction: StoreReading
    after_eviction: StoreReading
    referrers_index_bytes: dict[str, int]


class Recorder:
    """A runner of session steps, which records the counter changes each step caused."""

    def __init__(self, server: DocketProcess, upstream: FakeUpstream) -> None:
        self.server = server
        self.upstream = upstream
        self.steps: dict[str, StepResult] = {}

    def settle(self, requests: int, condition: Callable[[dict[MetricKey, float]], bool] | None) -> None:
        """Wait until the upstream received `requests` in total, Docket counted them all, and `condition` holds.

        Gives up silently after SETTLE_TIMEOUT: the step's test then shows the counts.
        """
        deadline = time.monotonic() + SETTLE_TIMEOUT
        while time.monotonic() < deadline:
            values = read_metrics(self.server.url)
            received = self.upstream.count()
            if (
                received >= requests
                and upstream_requests_counted(values) == received
                and (condition is None or condition(values))
            ):
                return
            time.sleep(0.05)

    @contextmanager
    def step(
        self,
        name: str,
        upstream_requests: int,
        condition: Callable[[dict[MetricKey, float]], bool] | None = None,
    ) -> Iterator[list[int]]:
        """Record the counter changes of a step that should send `upstream_requests` requests upstream."""
        before = read_metrics(self.server.url)
        expected_total = self.upstream.count() + upstream_requests
        statuses: list[int] = []
        yield statuses
        self.settle(expected_total, condition)
        after = read_metrics(self.server.url)
        self.steps[name] = StepResult(counter_deltas(before, after), bytes_delta(before, after), statuses)


def pull(client: httpx.Client, repository: str, reference: str, manifest: Manifest, blobs: bool = True) -> list[int]:
    """Pull a manifest (and its blobs), check the bytes of every 200, and return the statuses."""
    response = client.get(f"/v2/{repository}/manifests/{reference}", headers={"Accept": manifest.media_type})
    statuses = [response.status_code]
    if response.status_code == 200:
        assert response.content == manifest.data
    for blob in manifest.blobs if blobs else []:
        response = client.get(f"/v2/{repository}/blobs/{blob.digest}")
        statuses.append(response.status_code)
        if response.status_code == 200:
            assert response.content == blob.data
    return statuses


def store_reading(url: str) -> StoreReading:
    evicted = httpx.post(f"{url}/_docket/evict", timeout=30.0).json()["images"]
    status = httpx.get(f"{url}/_docket/status", timeout=10.0).json()
    return StoreReading(read_metrics(url)[STORE_BYTES], status["store"]["bytes"], evicted)


def write_session_config(path: Path, upstream: FakeUpstream) -> Path:
    path.write_text(
        f"""
[cache]
embedded_rules = false

[storage]
max_size = {MAX_SIZE}

[[rules]]
prefix = "m"
url = "{upstream.url}"
retries = 0

[[rules]]
prefix = "p"
url = "{upstream.url}"
namespace = "policy.test"
retries = 0
require_referrers = ["{SIGNATURE}"]
""",
        encoding="utf-8",
    )
    return path


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> Session:
    folder = tmp_path_factory.mktemp("metrics")
    content = Content()
    cached = f"m/{REPOSITORY}"
    with FakeUpstream() as upstream:
        content.load(upstream)
        config = write_session_config(folder / "docket.toml", upstream)
        with (
            DocketProcess(folder / "data", "--config", str(config)) as server,
            httpx.Client(base_url=server.url, timeout=30.0) as client,
        ):
            recorder = Recorder(server, upstream)
            # Image: 1 manifest + 3 blobs. Sync: referrers API and 3 cosign HEADs for the
            # image, the referrers API for its SBOM (cosign tags are looked up for images
            # only), plus the SBOM's manifest and 2 blobs.
            with recorder.step("cold", upstream_requests=12) as statuses:
                statuses += pull(client, cached, "v1", content.first)
            with recorder.step("warm", upstream_requests=0) as statuses:
                statuses += pull(client, cached, "v1", content.first)
            # The manifest, then a sync: referrers API, 3 cosign HEADs (.sig found), the SBOM's
            # manifest and payload (its empty config is cached already), the cosign manifest
            # and 2 blobs, then the referrers API for the SBOM.
            with recorder.step("sync", upstream_requests=11) as statuses:
                statuses += pull(client, cached, "v2", content.second, blobs=False)
            with recorder.step("failure", upstream_requests=2) as statuses:
                upstream.add_fault(Status(500), method="GET", path=f"/v2/{REPOSITORY}/manifests/broken")
                upstream.add_fault(Status(503), method="GET", path=content.missing_blob.digest)
                statuses.append(client.get(f"/v2/{cached}/manifests/broken").status_code)
                statuses.append(client.get(f"/v2/{cached}/blobs/{content.missing_blob.digest}").status_code)
            # The manifest and one sync (referrers API and 3 cosign HEADs), which the policy waits for.
            with recorder.step("policy", upstream_requests=5) as statuses:
                response = client.get(
                    f"/v2/p/{REPOSITORY}/manifests/v3", headers={"Accept": content.unsigned.media_type}
                )
                statuses.append(response.status_code)
            before_eviction = store_reading(server.url)

            def evicted(values: dict[MetricKey, float]) -> bool:
                return values.get(EVICTED_IMAGES, 0.0) > 0

            with recorder.step("eviction", upstream_requests=7, condition=evicted) as statuses:
                statuses += pull(client, cached, "big", content.big)
            after_eviction = store_reading(server.url)

        subjects = [
            content.first,
            content.first_sbom,
            content.second,
            content.second_sbom,
            content.unsigned,
            content.big,
        ]
        index_bytes = {
            subject.digest: len(httpx.get(f"{upstream.url}/v2/{REPOSITORY}/referrers/{subject.digest}").content)
            for subject in subjects
        }
    return Session(content, recorder.steps, before_eviction, after_eviction, index_bytes)


def test_metrics_cold_pull(session: Session) -> None:
    step = session.steps["cold"]
    assert step.statuses == [200, 200, 200, 200]
    assert step.counters == {
        decision("m", "manifest", "miss"): 2,
        decision("m", "blob", "miss"): 5,
        upstream_request("m", "GET", "200"): 9,
        upstream_request("m", "HEAD", "404"): 3,
        discovered("api", SBOM): 1,
        synced("api", SBOM): 1,
    }


def test_metrics_warm_pull(session: Session) -> None:
    step = session.steps["warm"]
    assert step.statuses == [200, 200, 200, 200]
    assert step.counters == {decision("m", "manifest", "hit"): 1, decision("m", "blob", "hit"): 3}


def test_metrics_referrer_sync(session: Session) -> None:
    step = session.steps["sync"]
    assert step.statuses == [200]
    # A cosign tag is one referrer: discovered and synced carry the same artifact_type label.
    assert step.counters == {
        decision("m", "manifest", "miss"): 3,
        decision("m", "blob", "miss"): 3,
        upstream_request("m", "GET", "200"): 8,
        upstream_request("m", "HEAD", "200"): 1,
        upstream_request("m", "HEAD", "404"): 2,
        discovered("api", SBOM): 1,
        synced("api", SBOM): 1,
        discovered("cosign_tag", "sig"): 1,
        synced("cosign_tag", "sig"): 1,
    }


def test_metrics_upstream_failure(session: Session) -> None:
    step = session.steps["failure"]
    assert step.statuses == [502, 502]
    assert step.counters == {
        decision("m", "manifest", "upstream_error"): 1,
        decision("m", "blob", "upstream_error"): 1,
        upstream_request("m", "GET", "500"): 1,
        upstream_request("m", "GET", "503"): 1,
    }


def test_metrics_policy_denial(session: Session) -> None:
    step = session.steps["policy"]
    assert step.statuses == [403]
    assert step.counters == {
        decision("p", "manifest", "miss"): 1,
        upstream_request("p", "GET", "200"): 2,
        upstream_request("p", "HEAD", "404"): 3,
        metric("docket_policy_denials_total", rule="p"): 1,
    }


def stored_before_eviction(content: Content) -> int:
    """Everything the session cached before the eviction step; the failures stored nothing."""
    return (
        size_of(
            content.first,
            content.first_sbom,
            content.second_sbom,
            content.cosign,
        )
        + len(content.second.data)
        + len(content.unsigned.data)
    )


def evicted_bytes(content: Content) -> int:
    """The first image with its SBOM, except the SBOM's empty config, which the second SBOM shares."""
    return size_of(content.first, content.first_sbom, skip=frozenset({content.first_sbom.blobs[0].digest}))


def test_metrics_store_bytes(session: Session) -> None:
    expected = stored_before_eviction(session.content)
    assert session.before_eviction.evicted_images == 0
    assert session.before_eviction.gauge == expected
    assert session.before_eviction.status_bytes == expected


def test_metrics_eviction(session: Session) -> None:
    content = session.content
    step = session.steps["eviction"]
    assert stored_before_eviction(content) + size_of(content.big) > MAX_SIZE
    assert step.statuses == [200, 200, 200]
    assert step.counters == {
        decision("m", "manifest", "miss"): 1,
        decision("m", "blob", "miss"): 2,
        upstream_request("m", "GET", "200"): 4,
        upstream_request("m", "HEAD", "404"): 3,
        EVICTED_IMAGES: 1,
        EVICTED_BYTES: evicted_bytes(content),
    }


def test_metrics_store_after_eviction(session: Session) -> None:
    content = session.content
    expected = stored_before_eviction(content) + size_of(content.big) - evicted_bytes(content)
    assert session.after_eviction.evicted_images == 0
    assert session.after_eviction.gauge == expected
    assert session.after_eviction.status_bytes == expected


def test_metrics_upstream_bytes(session: Session) -> None:
    """Every byte received from the upstream counts: manifests, blobs and referrers API answers."""
    content = session.content
    index = session.referrers_index_bytes
    # Both SBOMs have the same empty config blob, which the first sync already cached.
    empty_config = frozenset({content.first_sbom.blobs[0].digest})
    expected = {
        "cold": size_of(content.first, content.first_sbom)
        + index[content.first.digest]
        + index[content.first_sbom.digest],
        "warm": 0,
        "sync": len(content.second.data)
        + size_of(content.second_sbom, skip=empty_config)
        + size_of(content.cosign)
        + index[content.second.digest]
        + index[content.second_sbom.digest],
        "failure": 0,
        "policy": len(content.unsigned.data) + index[content.unsigned.digest],
        "eviction": size_of(content.big) + index[content.big.digest],
    }
    actual = {name: step.upstream_bytes for name, step in session.steps.items()}
    assert actual == expected


# Health checks


def test_health_endpoints(start_docket: Callable[..., DocketProcess], tmp_path: Path) -> None:
    data = tmp_path / "ready"
    server = start_docket(data_dir=data)
    ready = httpx.get(f"{server.url}/readyz", timeout=10.0)

    (data / "blobs").rename(tmp_path / "blobs-elsewhere")
    try:
        missing = httpx.get(f"{server.url}/readyz", timeout=10.0)
        alive = httpx.get(f"{server.url}/healthz", timeout=10.0)
    finally:
        (tmp_path / "blobs-elsewhere").rename(data / "blobs")
    restored = httpx.get(f"{server.url}/readyz", timeout=10.0)

    assert ready.status_code == 200
    assert ready.json() == {"status": "ok"}
    assert missing.status_code == 503
    assert missing.json()["status"] == "unavailable"
    assert any("content store" in problem and "blobs" in problem for problem in missing.json()["problems"])
    assert alive.status_code == 200
    assert alive.json() == {"status": "ok"}
    assert restored.status_code == 200


# Logs


def access_entries(log: str, request_id: str) -> list[dict[str, object]]:
    entries = [json.loads(line) for line in log.splitlines() if line.strip()]
    return [
        entry for entry in entries if entry.get("logger") == "docket.access" and entry.get("request_id") == request_id
    ]


def one_rule_config(path: Path, upstream: FakeUpstream) -> Path:
    path.write_text(
        f'[cache]\nembedded_rules = false\n[[rules]]\nprefix = "up"\nurl = "{upstream.url}"\nretries = 0\n',
        encoding="utf-8",
    )
    return path


@dataclass
class JsonRun:
    log: str
    pulls: list[int]
    echoed: list[str]


@pytest.fixture(scope="module")
def json_run(tmp_path_factory: pytest.TempPathFactory) -> JsonRun:
    """A `--log-format json` server: a cold and a warm pull, then requests with and without X-Request-Id."""
    folder = tmp_path_factory.mktemp("json-log")
    manifest = image()
    with FakeUpstream() as upstream:
        upstream.add_image(REPOSITORY, manifest, tags=["v1"])
        config = one_rule_config(folder / "docket.toml", upstream)
        with (
            DocketProcess(folder / "data", "--config", str(config), "--log-format", "json") as server,
            httpx.Client(base_url=server.url, timeout=10.0) as client,
        ):
            pulls = []
            for request_id in ("pull-miss-1", "pull-hit-2"):
                headers = {"Accept": manifest.media_type, "X-Request-Id": request_id}
                pulls.append(client.get(f"/v2/up/{REPOSITORY}/manifests/v1", headers=headers).status_code)
            echoed = [
                client.get("/v2/", headers={"X-Request-Id": "client-id.42"}).headers["X-Request-Id"],
                client.get("/v2/", headers={"X-Request-Id": "spaces are not allowed"}).headers["X-Request-Id"],
                client.get("/v2/").headers["X-Request-Id"],
            ]
    return JsonRun(server.log(), pulls, echoed)


def test_log_json_lines(json_run: JsonRun) -> None:
    for line in json_run.log.splitlines():
        assert isinstance(json.loads(line), dict), line
    miss = access_entries(json_run.log, "pull-miss-1")
    hit = access_entries(json_run.log, "pull-hit-2")
    assert json_run.pulls == [200, 200]
    assert len(miss) == 1
    assert len(hit) == 1
    assert miss[0]["repository"] == f"up/{REPOSITORY}"
    assert miss[0]["reference"] == "v1"
    assert miss[0]["cache"] == "miss"
    assert miss[0]["upstream_status"] == "200"
    assert isinstance(miss[0]["duration_ms"], float)
    assert hit[0]["repository"] == f"up/{REPOSITORY}"
    assert hit[0]["reference"] == "v1"
    assert hit[0]["cache"] == "hit"
    assert isinstance(hit[0]["duration_ms"], float)


def test_request_id_echoed(json_run: JsonRun) -> None:
    given, invalid, generated = json_run.echoed
    assert given == "client-id.42"
    assert len(access_entries(json_run.log, given)) == 1
    assert re.fullmatch(r"[0-9a-f]{16}", invalid)
    assert len(access_entries(json_run.log, invalid)) == 1
    assert "spaces are not allowed" not in json_run.log
    assert re.fullmatch(r"[0-9a-f]{16}", generated)
    assert len({given, invalid, generated}) == 3


@dataclass
class TextRun:
    log: str
    pulls: list[int]
    status: subprocess.CompletedProcess[str]


@pytest.fixture(scope="module")
def text_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TextRun, FakeUpstream]]:
    """A text-format server: a cold and a warm pull, an upstream failure, then `docket status`."""
    folder = tmp_path_factory.mktemp("text-log")
    manifest = image()
    with FakeUpstream() as upstream:
        upstream.add_image(REPOSITORY, manifest, tags=["v1"])
        config = one_rule_config(folder / "docket.toml", upstream)
        with DocketProcess(folder / "data", "--config", str(config), "--log-format", "text") as server:
            with httpx.Client(base_url=server.url, timeout=10.0, headers={"X-Request-Id": "text-pull-7"}) as client:
                pulls = pull(client, f"up/{REPOSITORY}", "v1", manifest)
            with httpx.Client(base_url=server.url, timeout=10.0) as client:
                pulls += pull(client, f"up/{REPOSITORY}", "v1", manifest)
                # The background referrer sync ends with the cosign .sbom HEAD; wait for it so
                # that the failure below is the upstream's last answer.
                upstream.log.wait_for(1, "HEAD", ".sbom")
                deadline = time.monotonic() + SETTLE_TIMEOUT
                while upstream_requests_counted(read_metrics(server.url)) < upstream.count():
                    assert time.monotonic() < deadline, "Docket did not count its upstream requests"
                    time.sleep(0.05)
                upstream.add_fault(Status(500), method="GET", path=f"/v2/{REPOSITORY}/manifests/v2")
                pulls.append(client.get(f"/v2/up/{REPOSITORY}/manifests/v2").status_code)
            status = subprocess.run(
                [sys.executable, "-m", "docket", "status", "--server", server.url],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
        yield TextRun(server.log(), pulls, status), upstream


def test_log_text_fields(text_run: tuple[TextRun, FakeUpstream]) -> None:
    run, _upstream = text_run
    manifest_line = f"GET /v2/up/{REPOSITORY}/manifests/v1 "
    lines = [line for line in run.log.splitlines() if "request_id=text-pull-7" in line and manifest_line in line]
    assert run.pulls[0] == 200
    assert len(lines) == 1
    assert " INFO docket.access: " in lines[0]
    fields = dict(re.findall(r" (\w+)=(\S+)", lines[0]))
    assert fields["repository"] == f"up/{REPOSITORY}"
    assert fields["reference"] == "v1"
    assert fields["cache"] == "miss"
    assert fields["upstream_status"] == "200"
    assert float(fields["duration_ms"]) >= 0


def test_log_hides_credentials(
    start_docket: Callable[..., DocketProcess], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    basic_password = "basic-secret-5e2a"
    token_password = "token-secret-b81c"
    wrong_password = "wrong-secret-77d0"
    first, second = image(), image()
    with (
        FakeUpstream(auth=RequireBasicAuth("alice", basic_password)) as basic,
        FakeUpstream(auth=RequireBearerToken("bob", token_password)) as bearer,
    ):
        basic.add_image(REPOSITORY, first, tags=["v1"])
        bearer.add_image(REPOSITORY, first, tags=["v1"])
        bearer.add_image(REPOSITORY, second, tags=["v2"])
        config = tmp_path / "docket.toml"
        config.write_text(
            f"[cache]\nembedded_rules = false\n"
            f'[[rules]]\nprefix = "tok"\nurl = "{bearer.url}"\nnamespace = "tok.test"\n'
            f'username = "bob"\npassword_env = "OPS_LOG_TOKEN_PASSWORD"\nretries = 0\n'
            f'[[rules]]\nprefix = "wrong"\nurl = "{basic.url}"\nnamespace = "wrong.test"\n'
            f'username = "alice"\npassword_env = "OPS_LOG_WRONG_PASSWORD"\nretries = 0\n',
            encoding="utf-8",
        )
        monkeypatch.setenv("OPS_LOG_TOKEN_PASSWORD", token_password)
        monkeypatch.setenv("OPS_LOG_WRONG_PASSWORD", wrong_password)
        server = start_docket(
            "--config", str(config),
            "--log-level", "debug",
            "--upstream", f"bas={basic.url}",
            "--upstream-credentials", f"bas=alice:{basic_password}",
        )  # fmt: skip
        with httpx.Client(base_url=server.url, timeout=10.0) as client:
            statuses = [pull(client, f"{prefix}/{REPOSITORY}", "v1", first) for prefix in ("bas", "tok")]
            bearer.expire_tokens()  # the next pull fetches a second token
            statuses.append(pull(client, f"tok/{REPOSITORY}", "v2", second))
            denied = client.get(f"/v2/wrong/{REPOSITORY}/manifests/v1").status_code
        tokens = {request.authorization.split()[1] for request in bearer.requests() if request.authorization}
        server.stop()

    log = server.log()
    logins = [("alice", basic_password), ("bob", token_password), ("alice", wrong_password)]
    secrets = [basic_password, token_password, wrong_password, *tokens]
    secrets += [base64.b64encode(f"{user}:{password}".encode()).decode() for user, password in logins]
    assert statuses == [[200, 200, 200]] * 3
    assert denied == 403
    assert len(tokens) >= 2
    for secret in secrets:
        assert secret not in log


@pytest.fixture
def upstream() -> Iterator[FakeUpstream]:
    with FakeUpstream() as fake:
        yield fake


def test_log_repeated_errors_rate_limited(
    upstream: FakeUpstream, start_docket: Callable[..., DocketProcess], tmp_path: Path
) -> None:
    """Identical warnings are logged once per 30 s window; the next one says how many were dropped.

    NOTE: this waits for the 30 s window of docket.logs.REPEAT_WINDOW to pass.
    """
    config = one_rule_config(tmp_path / "docket.toml", upstream)
    upstream.add_fault(Status(500), method="GET", path=f"/v2/{REPOSITORY}/manifests/down", times=None)
    server = start_docket("--config", str(config))
    url = f"{server.url}/v2/up/{REPOSITORY}/manifests/down"

    def warnings() -> list[str]:
        return [line for line in server.log().splitlines() if " WARNING " in line]

    with httpx.Client(timeout=10.0) as client:
        statuses = {client.get(url).status_code for _ in range(50)}
        burst = warnings()
        pulls = 50
        # Pulls after which each logger's note first appeared.
        noted: dict[str, int] = {}
        deadline = time.monotonic() + 45.0
        while time.monotonic() < deadline and len(noted) < 2:
            assert client.get(url).status_code == 502
            pulls += 1
            for line in warnings():
                if "suppressed" in line:
                    noted.setdefault(line.split(" WARNING ")[1].split(":")[0], pulls)
            time.sleep(0.25)

    assert statuses == {502}
    assert upstream.count("GET", "/manifests/down") == pulls
    assert len(burst) == 2, "\n".join(burst)
    assert sorted(noted) == ["docket.api.app", "docket.cache.manifests"]
    for logger, count in noted.items():
        note = next(line for line in warnings() if f" WARNING {logger}:" in line and "suppressed" in line)
        # The first message and the one carrying the note were logged; the rest were dropped.
        assert f"({count - 2} identical messages suppressed in the last 30s)" in note


# `docket status`


def test_status_after_upstream_failure(text_run: tuple[TextRun, FakeUpstream]) -> None:
    run, upstream = text_run
    lines = run.status.stdout.splitlines()
    upstream_lines = [line for line in lines if line.strip().startswith("up ")]

    assert run.pulls == [200, 200, 200] * 2 + [502]
    assert run.status.returncode == 0, run.status.stderr
    # The image is a manifest, a config and a layer; 3 misses and 3 hits.
    assert lines[0] == "store: 0.0 MiB in 3 blobs; 1 manifests, 1 tags, 1 repositories, 0 uploads in progress"
    assert lines[1].startswith("cache hit ratio since start: 50.0%;")
    assert len(upstream_lines) == 1
    assert upstream.url in upstream_lines[0]
    assert "last status 500" in upstream_lines[0]
    assert f"GET /v2/{REPOSITORY}/manifests/v2 responded 500" in upstream_lines[0]
    assert "recent problems:" in lines
    assert any(f"cache upstream_error: manifest up/{REPOSITORY}:v2" in line for line in lines)
