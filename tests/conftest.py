"""Shared fixtures: real `docket serve` processes on loopback and HTTP clients for them."""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.support.processes import DocketProcess

REPOSITORY_ROOT = Path(__file__).resolve().parent.parent

# Third-party OCI content made by other projects' tools. The only place that names
# its default location; set DOCKET_TEST_FIXTURES to use another copy.
FIXTURES = Path(os.environ.get("DOCKET_TEST_FIXTURES", REPOSITORY_ROOT.parent / "shared" / "fixtures"))


@pytest.fixture(scope="session")
def fixtures_dir() -> Path:
    if not (FIXTURES / "oci").is_dir():
        pytest.skip(f"third-party OCI fixtures not found at {FIXTURES}; set DOCKET_TEST_FIXTURES to their folder")
    return FIXTURES


@pytest.fixture(scope="session")
def docket(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DocketProcess]:
    """One Docket server for the whole session; tests use their own repository names."""
    server = DocketProcess(tmp_path_factory.mktemp("docket") / "data")
    with server:
        yield server


@pytest.fixture
def start_docket(tmp_path: Path) -> Iterator[Callable[..., DocketProcess]]:
    """Start extra Docket servers with their own data directory; all are stopped afterwards."""
    started: list[DocketProcess] = []

    def start(*args: str, data_dir: Path | None = None) -> DocketProcess:
        server = DocketProcess(data_dir or tmp_path / f"data{len(started)}", *args)
        started.append(server)
        return server.start()

    yield start
    for server in started:
        server.stop()


@pytest.fixture
def client(docket: DocketProcess) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=docket.url, timeout=30.0) as http:
        yield http


_counter = itertools.count()


@pytest.fixture
def repo(request: pytest.FixtureRequest) -> str:
    """A repository name no other test uses."""
    base = request.node.name.lower()
    cleaned = "".join(c if c.isalnum() else "-" for c in base).strip("-")
    while "--" in cleaned:
        cleaned = cleaned.replace("--", "-")
    return f"t{next(_counter)}/{cleaned[:60].strip('-') or 'repo'}"
