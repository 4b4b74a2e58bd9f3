"""Authentication of the pull-through cache at its upstream: bearer tokens, basic auth and where credentials go.

Each test starts its own `FakeUpstream` and Docket, because Docket keeps one token
cache per rule for its whole life and the token counts below start from zero.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.config import write_config
from tests.support.fake_upstream import (
    CloseConnection,
    Delay,
    FakeUpstream,
    Fault,
    RequireBasicAuth,
    RequireBearerToken,
    Status,
)
from tests.support.oci import error_codes, image
from tests.support.processes import DocketProcess

PREFIX = "up"
USERNAME = "puller"
PASSWORD = "pw-7f3c9a51e2"  # distinctive, so a search of the log cannot miss it
BASIC = "Basic " + base64.b64encode(f"{USERNAME}:{PASSWORD}".encode()).decode()
PASSWORD_VARIABLE = "DOCKET_TEST_UPSTREAM_PASSWORD"

StartDocket = Callable[..., DocketProcess]


def start_with_rule(start_docket: StartDocket, tmp_path: Path, **rule: Any) -> DocketProcess:
    """Start Docket with one rule for PREFIX, logging at debug level so the log shows everything it could leak."""
    config = write_config(tmp_path / "docket.toml", [{"prefix": PREFIX, **rule}])
    return start_docket("--config", str(config), "--log-level", "debug")


@pytest.fixture
def bearer_upstream() -> Iterator[FakeUpstream]:
    """An upstream that requires a token, which its token endpoint issues without credentials."""
    with FakeUpstream(auth=RequireBearerToken()) as fake:
        yield fake


@pytest.fixture
def private_upstream() -> Iterator[FakeUpstream]:
    """An upstream whose token endpoint requires USERNAME and PASSWORD."""
    with FakeUpstream(auth=RequireBearerToken(username=USERNAME, password=PASSWORD)) as fake:
        yield fake


def pull_image(server: DocketProcess, repository: str, reference: str = "v1") -> list[httpx.Response]:
    """Pull the manifest and then every blob the fake image has, and return the responses."""
    with httpx.Client(base_url=server.url, timeout=15.0) as client:
        manifest = client.get(f"/v2/{PREFIX}/{repository}/manifests/{reference}")
        responses = [manifest]
        if manifest.status_code == 200:
            document = json.loads(manifest.content)
            for descriptor in [document["config"], *document["layers"]]:
                responses.append(client.get(f"/v2/{PREFIX}/{repository}/blobs/{descriptor['digest']}"))
    return responses


def pull_statuses(server: DocketProcess, repository: str) -> list[int]:
    return [response.status_code for response in pull_image(server, repository)]


def token_requests(upstream: FakeUpstream, repository: str) -> list[Any]:
    """Return the token requests for pull access to the repository."""
    scope = f"repository:{repository}:pull"
    return [request for request in upstream.token_log.entries() if request.query.get("scope") == scope]


# Bearer tokens.


def test_bearer_anonymous_pull(
    bearer_upstream: FakeUpstream, tmp_path: Path, start_docket: StartDocket, repo: str
) -> None:
    bearer_upstream.add_image(repo, image(layers=2), tags=["v1"])
    server = start_with_rule(start_docket, tmp_path, url=bearer_upstream.url)

    statuses = pull_statuses(server, repo)

    tokens = token_requests(bearer_upstream, repo)
    assert statuses == [200, 200, 200, 200]
    assert len(tokens) == 1
    assert tokens[0].authorization is None
    assert tokens[0].query.get("service") == "fake"


def test_bearer_credentials_flag(
    private_upstream: FakeUpstream, tmp_path: Path, start_docket: StartDocket, repo: str
) -> None:
    private_upstream.add_image(repo, image(), tags=["v1"])
    server = start_docket(
        "--upstream", f"{PREFIX}={private_upstream.url}", "--upstream-credentials", f"{PREFIX}={USERNAME}:{PASSWORD}"
    )

    statuses = pull_statuses(server, repo)

    tokens = token_requests(private_upstream, repo)
    assert statuses == [200, 200, 200]
    assert len(tokens) == 1
    assert tokens[0].authorization == BASIC


def test_bearer_credentials_password_env(
    private_upstream: FakeUpstream,
    tmp_path: Path,
    start_docket: StartDocket,
    repo: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    private_upstream.add_image(repo, image(), tags=["v1"])
    server = start_with_rule(
        start_docket, tmp_path, url=private_upstream.url, username=USERNAME, password_env=PASSWORD_VARIABLE
    )

    statuses = pull_statuses(server, repo)

    tokens = token_requests(private_upstream, repo)
    assert statuses == [200, 200, 200]
    assert len(tokens) == 1
    assert tokens[0].authorization == BASIC


def test_bearer_missing_credentials_denied(
    private_upstream: FakeUpstream, tmp_path: Path, start_docket: StartDocket, repo: str
) -> None:
    """A token endpoint that rejects Docket is an upstream failure, not a missing manifest."""
    private_upstream.add_image(repo, image(), tags=["v1"])
    server = start_with_rule(start_docket, tmp_path, url=private_upstream.url, retries=0)

    response = pull_image(server, repo)[0]

    assert response.status_code == 502
    assert error_codes(response) == ["UNAVAILABLE"]


def test_token_reused_across_pulls(
    bearer_upstream: FakeUpstream, tmp_path: Path, start_docket: StartDocket, repo: str
) -> None:
    bearer_upstream.add_image(repo, image(layers=3), tags=["v1", "v2"])
    server = start_with_rule(start_docket, tmp_path, url=bearer_upstream.url, tag_ttl="0")

    first = pull_statuses(server, repo)
    again = pull_statuses(server, repo)
    other_tag = [response.status_code for response in pull_image(server, repo, "v2")]

    assert first == [200] * 5
    assert again == [200] * 5
    assert other_tag == [200] * 5
    assert len(token_requests(bearer_upstream, repo)) == 1


def test_token_per_repository_scope(
    bearer_upstream: FakeUpstream, tmp_path: Path, start_docket: StartDocket, repo: str
) -> None:
    bearer_upstream.add_image(repo, image(), tags=["v1"])
    bearer_upstream.add_image(f"{repo}-b", image(), tags=["v1"])
    server = start_with_rule(start_docket, tmp_path, url=bearer_upstream.url)

    assert pull_statuses(server, repo) == [200, 200, 200]
    assert pull_statuses(server, f"{repo}-b") == [200, 200, 200]

    assert len(token_requests(bearer_upstream, repo)) == 1
    assert len(token_requests(bearer_upstream, f"{repo}-b")) == 1


def test_token_concurrent_one_fetch(
    bearer_upstream: FakeUpstream, tmp_path: Path, start_docket: StartDocket, repo: str
) -> None:
    digests = [bearer_upstream.add_blob(repo, os.urandom(512)) for _ in range(10)]
    # A slow token endpoint keeps the first fetch open while the other nine requests need a token too.
    bearer_upstream.add_token_fault(Delay(0.5))
    server = start_with_rule(start_docket, tmp_path, url=bearer_upstream.url)

    def pull(digest: str) -> int:
        with httpx.Client(base_url=server.url, timeout=15.0) as client:
            return client.get(f"/v2/{PREFIX}/{repo}/blobs/{digest}").status_code

    with ThreadPoolExecutor(max_workers=10) as pool:
        statuses = list(pool.map(pull, digests))

    assert statuses == [200] * 10
    assert len(token_requests(bearer_upstream, repo)) == 1


def test_token_expired_refetched(tmp_path: Path, start_docket: StartDocket, repo: str) -> None:
    with FakeUpstream(auth=RequireBearerToken()) as fake:
        fake.add_image(repo, image(), tags=["v1"])
        server = start_with_rule(start_docket, tmp_path, url=fake.url, tag_ttl="0")
        assert pull_statuses(server, repo) == [200, 200, 200]
        fake.expire_tokens()

        statuses = pull_statuses(server, repo)

        assert statuses == [200, 200, 200]
        assert len(token_requests(fake, repo)) == 2


TOKEN_FAULTS = {"status-500": (Status(500), 502), "status-503": (Status(503), 502), "close": (CloseConnection(), 503)}


@pytest.mark.parametrize(("fault", "expected"), TOKEN_FAULTS.values(), ids=TOKEN_FAULTS.keys())
def test_token_endpoint_failure(
    bearer_upstream: FakeUpstream, tmp_path: Path, start_docket: StartDocket, repo: str, fault: Fault, expected: int
) -> None:
    bearer_upstream.add_image(repo, image(), tags=["v1"])
    bearer_upstream.add_token_fault(fault, times=None)
    server = start_with_rule(start_docket, tmp_path, url=bearer_upstream.url, retries=0)

    with httpx.Client(base_url=server.url, timeout=15.0) as client:
        manifest = client.get(f"/v2/{PREFIX}/{repo}/manifests/v1")

    assert manifest.status_code == expected
    assert error_codes(manifest) == ["UNAVAILABLE"]
    assert len(token_requests(bearer_upstream, repo)) == 1


# Basic auth.


def test_basic_auth_pull(tmp_path: Path, start_docket: StartDocket, repo: str) -> None:
    with FakeUpstream(auth=RequireBasicAuth(USERNAME, PASSWORD)) as fake:
        fake.add_image(repo, image(layers=2), tags=["v1"])
        server = start_docket(
            "--upstream", f"{PREFIX}={fake.url}", "--upstream-credentials", f"{PREFIX}={USERNAME}:{PASSWORD}"
        )

        statuses = pull_statuses(server, repo)

        requests = fake.requests(path_contains=f"/v2/{repo}/")
        assert statuses == [200, 200, 200, 200]
        assert len(fake.token_log.entries()) == 0
        # Only the first request goes without credentials, to learn the challenge.
        assert [request.authorization for request in requests[1:]] == [BASIC] * (len(requests) - 1)


def test_basic_auth_without_credentials(tmp_path: Path, start_docket: StartDocket, repo: str) -> None:
    with FakeUpstream(auth=RequireBasicAuth(USERNAME, PASSWORD)) as fake:
        fake.add_image(repo, image(), tags=["v1"])
        server = start_docket("--upstream", f"{PREFIX}={fake.url}")

        response = pull_image(server, repo)[0]

        assert response.status_code == 403
        assert error_codes(response) == ["DENIED"]


# Where credentials go, and where they never appear.


def test_credentials_not_logged(
    private_upstream: FakeUpstream, tmp_path: Path, start_docket: StartDocket, repo: str
) -> None:
    private_upstream.add_image(repo, image(), tags=["v1"])
    (tmp_path / "password.txt").write_text(PASSWORD + "\n")
    server = start_with_rule(
        start_docket, tmp_path, url=private_upstream.url, username=USERNAME, password_file="password.txt"
    )
    assert pull_statuses(server, repo) == [200, 200, 200]
    private_upstream.expire_tokens()
    assert pull_statuses(server, f"{repo}-missing")[0] == 404

    log = server.log()

    assert "DEBUG" in log
    assert PASSWORD not in log
    assert BASIC.split()[1] not in log


def test_realm_other_host_anonymous(
    bearer_upstream: FakeUpstream, tmp_path: Path, start_docket: StartDocket, repo: str
) -> None:
    """The rule names the upstream as localhost, and its token realm is on 127.0.0.1, another host name."""
    bearer_upstream.add_image(repo, image(), tags=["v1"])
    server = start_docket(
        "--upstream",
        f"{PREFIX}=http://localhost:{bearer_upstream.port}",
        "--upstream-credentials",
        f"{PREFIX}={USERNAME}:{PASSWORD}",
    )

    statuses = pull_statuses(server, repo)

    tokens = token_requests(bearer_upstream, repo)
    assert statuses == [200, 200, 200]
    assert len(tokens) == 1
    assert tokens[0].authorization is None
    assert "token realm 127.0.0.1 is on another host" in server.log()


def test_realm_listed_token_host(
    bearer_upstream: FakeUpstream, tmp_path: Path, start_docket: StartDocket, repo: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(PASSWORD_VARIABLE, PASSWORD)
    bearer_upstream.add_image(repo, image(), tags=["v1"])
    server = start_with_rule(
        start_docket,
        tmp_path,
        url=f"http://localhost:{bearer_upstream.port}",
        username=USERNAME,
        password_env=PASSWORD_VARIABLE,
        token_hosts=["127.0.0.1"],
    )

    statuses = pull_statuses(server, repo)

    tokens = token_requests(bearer_upstream, repo)
    assert statuses == [200, 200, 200]
    assert len(tokens) == 1
    assert tokens[0].authorization == BASIC
