"""Benchmark Docket against CNCF distribution 2.8 and nginx on loopback, and write docs/benchmarks.md.

    python bench/run.py [--quick] [--runs N] [--output docs/benchmarks.md] [--docket-workers N]

One run starts, on 127.0.0.1 only: an upstream distribution loaded with generated
images, distribution as a pull-through proxy of it, nginx serving a blob file, and
Docket with pull-through rules for the upstream. See `METHODS` below for what each row
measures. All generated data lives in one temporary directory that is deleted at the
end, and every server is stopped, also on errors and Ctrl-C.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import os
import re
import shlex
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

if __package__ in (None, ""):
    # Run as a script: make the `bench` package importable from the repository root.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import aiohttp

from bench.content import MANIFEST_ACCEPT, Blob, Image, make_image, push_image
from bench.load import (
    MeasurementError,
    WrkResult,
    client_session,
    concurrent_downloads,
    run_ab_head,
    run_wrk,
    skopeo_pull,
    timed_download,
)
from bench.report import REPOSITORY_ROOT, Results, TableRow, render_document, render_table
from bench.servers import Distribution, Docket, Nginx, Server, ServerError, ServerSet, memory_kib, pss_kib

MIB = 1 << 20
GIB = 1 << 30
REQUIRED_TOOLS = ("docker-registry", "nginx", "wrk", "ab", "skopeo")
# Interval between memory samples while the large blob is served.
MEMORY_SAMPLE_INTERVAL = 0.05
# How long the upstream may take to write its access log line after a response.
UPSTREAM_LOG_TIMEOUT = 5.0


@dataclass(frozen=True)
class Settings:
    runs: int
    quick: bool
    cold_size: int
    concurrent_size: int
    concurrent_clients: int
    large_size: int
    large_clients: int
    pull_layers: tuple[int, ...]
    wrk_duration: float
    wrk_threads: int
    wrk_connections: int
    docket_workers: int | None

    @classmethod
    def from_arguments(cls, arguments: argparse.Namespace) -> Settings:
        quick = arguments.quick
        runs = arguments.runs
        if runs is None:
            runs = 1 if quick else 3
        return cls(
            runs=runs,
            quick=quick,
            cold_size=8 * MIB if quick else 256 * MIB,
            concurrent_size=8 * MIB if quick else 64 * MIB,
            concurrent_clients=10,
            large_size=16 * MIB if quick else 2 * GIB,
            large_clients=10,
            pull_layers=(4 * MIB, MIB, 256 << 10, 64 << 10) if quick else (64 * MIB, 16 * MIB, 4 * MIB, MIB),
            wrk_duration=arguments.wrk_duration or (2.0 if quick else 10.0),
            wrk_threads=2,
            wrk_connections=8,
            docket_workers=arguments.docket_workers,
        )


def size_text(size: int) -> str:
    if size >= GIB and size % GIB == 0:
        return f"{size // GIB} GiB"
    if size >= MIB:
        return f"{size // MIB} MiB" if size % MIB == 0 else f"{size / MIB:.1f} MiB"
    return f"{size >> 10} KiB"


def docket_config(upstream_url: str) -> str:
    return f"""[cache]
embedded_rules = false
tag_ttl = "1h"

[[rules]]
prefix = "up"
url = "{upstream_url}"
tag_ttl = "1h"

# The same upstream with no tag TTL: every pull by tag revalidates with the upstream, as distribution does.
[[rules]]
prefix = "up0"
url = "{upstream_url}"
tag_ttl = "0"
# Two rules for one upstream host need distinct mirror namespaces. Docket never
# contacts a namespace, and .invalid names resolve nowhere.
namespace = "ttl0.bench.invalid"
"""


class Benchmark:
    """The servers, the generated content and the measurements of one benchmark run."""

    def __init__(self, settings: Settings, workdir: Path, servers: ServerSet) -> None:
        self.settings = settings
        self.workdir = workdir
        self.servers = servers
        self.results = Results()
        self.errors: dict[str, str] = {}
        self.session: aiohttp.ClientSession
        # The repository and layer of row 1's first run, which row 2 reads hot.
        self.hot_layer: tuple[str, Blob] | None = None

    # Servers and content.

    def start_docket(self, name: str, workers: int | None = None) -> Docket:
        """Start a Docket server with the configured `--workers`, or with `workers` when it is given."""
        upstream_url = self.upstream.url
        server = Docket(
            name,
            self.workdir / name,
            lambda: docket_config(upstream_url),
            workers=workers if workers is not None else self.settings.docket_workers,
        )
        self.servers.start(server)
        return server

    def start_proxy(self, name: str) -> Distribution:
        server = Distribution(name, self.workdir / name, remote_url=self.upstream.url)
        self.servers.start(server)
        return server

    def stop_and_delete(self, server: Server) -> None:
        self.servers.stop(server)
        shutil.rmtree(server.directory, ignore_errors=True)

    async def push(self, repository: str, tag: str, layer_sizes: list[int]) -> Image:
        """Generate an image with random layers and push it to the upstream; the files stay until discard_files()."""
        directory = self.workdir / "content" / repository.replace("/", "-")
        image = await asyncio.to_thread(make_image, directory, repository, tag, layer_sizes)
        await push_image(self.session, self.upstream.url, image)
        return image

    def discard_files(self, image: Image, keep: Blob | None = None) -> None:
        for blob in image.layers:
            if blob is not keep:
                blob.path.unlink(missing_ok=True)

    async def setup(self) -> None:
        self.upstream = Distribution("upstream", self.workdir / "upstream")
        self.servers.start(self.upstream)
        self.proxy = self.start_proxy("distribution-proxy")
        self.docket = self.start_docket("docket")
        www = self.workdir / "www"
        www.mkdir()
        self.www = www
        self.nginx = Nginx("nginx", self.workdir / "nginx", www)
        self.servers.start(self.nginx)
        # Pull one small image through every cache before measuring, so no row pays for
        # a cache's first contact with the upstream (connections, the /v2/ check).
        self.small_image = await self.push("bench/manifest", "v1", [4 << 10])
        accept = {"Accept": MANIFEST_ACCEPT}
        for url in (
            f"{self.docket.url}/v2/up/bench/manifest/manifests/v1",
            f"{self.docket.url}/v2/up0/bench/manifest/manifests/v1",
            f"{self.proxy.url}/v2/bench/manifest/manifests/v1",
        ):
            await self.verify_digest(url, self.small_image.manifest_digest, headers=accept)

    # Helpers for the rows.

    def upstream_blob_url(self, repository: str, digest: str) -> str:
        return f"{self.upstream.url}/v2/{repository}/blobs/{digest}"

    def docket_blob_url(self, repository: str, digest: str, server: Server | None = None) -> str:
        return f"{(server or self.docket).url}/v2/up/{repository}/blobs/{digest}"

    def proxy_blob_url(self, repository: str, digest: str, server: Server | None = None) -> str:
        return f"{(server or self.proxy).url}/v2/{repository}/blobs/{digest}"

    async def verify_digest(self, url: str, digest: str, headers: dict[str, str] | None = None) -> None:
        """GET `url` and raise MeasurementError unless its body has `digest`."""
        hasher = hashlib.sha256()
        async with self.session.get(url, headers=headers) as response:
            if response.status != 200:
                raise MeasurementError(f"GET {url} returned {response.status}")
            async for chunk in response.content.iter_any():
                hasher.update(chunk)
        if f"sha256:{hasher.hexdigest()}" != digest:
            raise MeasurementError(
                f"GET {url} returned content with digest sha256:{hasher.hexdigest()}, expected {digest}"
            )

    def wrk(self, url: str, *, headers: dict[str, str] | None = None, timeout: float = 60.0) -> WrkResult:
        """Run wrk with the configured threads, connections and duration."""
        return run_wrk(
            url,
            script_dir=self.workdir,
            headers=headers,
            threads=self.settings.wrk_threads,
            connections=self.settings.wrk_connections,
            duration=self.settings.wrk_duration,
            timeout=timeout,
        )

    def upstream_gets(self, log_offset: int, digest: str) -> int:
        pattern = re.compile(r'"GET /v2/[^ "]+/blobs/' + re.escape(digest) + r' HTTP/[\d.]+"')
        return len(pattern.findall(self.upstream.log_text(log_offset)))

    async def count_upstream_gets(self, log_offset: int, digest: str) -> int:
        """Count the upstream's access log lines for GETs of `digest` after `log_offset`.

        Distribution writes a line once a response ends, which can be just after the
        client has its last byte, so this waits for the count to stop changing.
        """
        deadline = time.monotonic() + UPSTREAM_LOG_TIMEOUT
        count = self.upstream_gets(log_offset, digest)
        while time.monotonic() < deadline:
            await asyncio.sleep(0.25)
            latest = self.upstream_gets(log_offset, digest)
            if latest == count and count > 0:
                break
            count = latest
        return count

    # Rows.

    async def cold_blob(self) -> None:
        """Row 1: GET one new layer from the upstream, then cold through Docket and through the proxy."""
        size = self.settings.cold_size
        for run in range(self.settings.runs):
            repository = f"bench/cold-{run}"
            image = await self.push(repository, "v1", [size])
            layer = image.layers[0]
            if run == 0:
                self.hot_layer = (repository, layer)
            else:
                self.discard_files(image)
            self.results.add(
                "upstream direct: cold blob GET",
                await timed_download(self.session, self.upstream_blob_url(repository, layer.digest), size),
                "s",
            )
            self.results.add(
                "Docket: cold blob GET",
                await timed_download(self.session, self.docket_blob_url(repository, layer.digest), size),
                "s",
            )
            self.results.add(
                "distribution proxy: cold blob GET",
                await timed_download(self.session, self.proxy_blob_url(repository, layer.digest), size),
                "s",
            )

    async def hot_blob(self) -> None:
        """Row 2: wrk on the blob of row 1, cached in Docket and the proxy, and the same file from nginx."""
        if self.hot_layer is None:
            raise MeasurementError("no cached blob to read, because the cold blob row failed")
        repository, layer = self.hot_layer
        os.link(layer.path, self.www / "blob")
        urls = {
            "Docket": self.docket_blob_url(repository, layer.digest),
            "distribution proxy": self.proxy_blob_url(repository, layer.digest),
            "nginx": f"{self.nginx.url}/blob",
        }
        for url in urls.values():
            await self.verify_digest(url, layer.digest)
        for _ in range(self.settings.runs):
            for name, url in urls.items():
                result = await asyncio.to_thread(self.wrk, url, timeout=120.0)
                self.results.add(f"{name}: hot blob throughput", result.gigabytes_per_second, "GB/s")

    async def manifests(self) -> None:
        """Row 3: requests per second for the manifest of the small image that setup() pushed."""
        image = self.small_image
        accept = {"Accept": MANIFEST_ACCEPT}
        docket = f"{self.docket.url}/v2/up/bench/manifest/manifests"
        docket_ttl0 = f"{self.docket.url}/v2/up0/bench/manifest/manifests"
        proxy = f"{self.proxy.url}/v2/bench/manifest/manifests"
        get_cases = {
            "Docket: manifest GET by tag, TTL 1h": f"{docket}/v1",
            "Docket: manifest GET by tag, TTL 0": f"{docket_ttl0}/v1",
            "Docket: manifest GET by digest": f"{docket}/{image.manifest_digest}",
            "distribution proxy: manifest GET by tag": f"{proxy}/v1",
            "distribution proxy: manifest GET by digest": f"{proxy}/{image.manifest_digest}",
        }
        head_cases = {
            "Docket: manifest HEAD by tag, TTL 1h": f"{docket}/v1",
            "distribution proxy: manifest HEAD by tag": f"{proxy}/v1",
        }
        # Pull every manifest once, so each server has it cached, and check its digest.
        for url in [*get_cases.values(), *head_cases.values()]:
            await self.verify_digest(url, image.manifest_digest, headers=accept)
        for _ in range(self.settings.runs):
            for name, url in get_cases.items():
                result = await asyncio.to_thread(self.wrk, url, headers=accept)
                self.results.add(name, result.requests_per_second, "req/s")
            for name, url in head_cases.items():
                rate = await asyncio.to_thread(
                    run_ab_head,
                    url,
                    headers=accept,
                    connections=self.settings.wrk_connections,
                    duration=self.settings.wrk_duration,
                )
                self.results.add(name, rate, "req/s")

    async def pulls(self) -> None:
        """Row 4: skopeo copies of a new image, cold then warm, through Docket and through the proxy."""
        destination = self.workdir / "skopeo-copy"
        for run in range(self.settings.runs):
            repository = f"bench/pull-{run}"
            image = await self.push(repository, "v1", list(self.settings.pull_layers))
            self.discard_files(image)
            references = {
                "Docket": f"docker://{self.docket.host}/up/{repository}:v1",
                "distribution proxy": f"docker://{self.proxy.host}/{repository}:v1",
            }
            for name, reference in references.items():
                for state in ("cold", "warm"):
                    seconds = await asyncio.to_thread(skopeo_pull, reference, destination)
                    self.results.add(f"{name}: image pull, {state}", seconds, "s")

    async def concurrent(self) -> None:
        """Row 5: clients that GET one cold blob at once; upstream GETs and time to the last byte."""
        size = self.settings.concurrent_size
        clients = self.settings.concurrent_clients
        for run in range(self.settings.runs):
            repository = f"bench/concurrent-{run}"
            image = await self.push(repository, "v1", [size, size, size])
            self.discard_files(image)
            single, docket_blob, proxy_blob = image.layers
            self.results.add(
                "Docket: single cold GET",
                await timed_download(self.session, self.docket_blob_url(repository, single.digest), size),
                "s",
            )
            self.results.add(
                "distribution proxy: single cold GET",
                await timed_download(self.session, self.proxy_blob_url(repository, single.digest), size),
                "s",
            )
            cases = [
                ("Docket", self.docket_blob_url(repository, docket_blob.digest), docket_blob),
                ("distribution proxy", self.proxy_blob_url(repository, proxy_blob.digest), proxy_blob),
            ]
            for name, url, blob in cases:
                log_offset = self.upstream.log_size()
                seconds = await concurrent_downloads(self.session, url, size, clients)
                self.results.add(f"{name}: {clients} concurrent cold GETs, last byte", seconds, "s")
                gets = await self.count_upstream_gets(log_offset, blob.digest)
                self.results.add(f"{name}: {clients} concurrent cold GETs, upstream GETs", gets, "GETs")
            # The same clients on the now cached blob: the time that delivering the bytes alone takes.
            seconds = await concurrent_downloads(self.session, cases[0][1], size, clients)
            self.results.add(f"Docket: {clients} concurrent hot GETs, last byte", seconds, "s")

    async def serve_while_sampling(self, server: Server, url: str) -> tuple[float, float]:
        """GET `url` from the large-blob clients at once; return the peak memory of `server` in MiB.

        The first value is the summed VmHWM, the second the highest summed Pss sampled
        during the transfer.
        """
        sampling = True
        peak_pss = 0

        async def sample() -> None:
            nonlocal peak_pss
            while sampling:
                peak_pss = max(peak_pss, pss_kib(server.pid))
                await asyncio.sleep(MEMORY_SAMPLE_INTERVAL)

        sampler = asyncio.create_task(sample())
        try:
            await concurrent_downloads(self.session, url, self.settings.large_size, self.settings.large_clients)
        finally:
            sampling = False
            await sampler
        _, peak_hwm = memory_kib(server.pid)
        return peak_hwm / 1024, peak_pss / 1024

    async def peak_rss(self) -> None:
        """Row 6: peak RSS of a fresh server while it serves a large cold blob to concurrent clients.

        With `--docket-workers` above 1, a single-process Docket is measured as well, because
        the summed RSS of forked workers counts the pages they share once per process.
        """
        image = await self.push("bench/large", "v1", [self.settings.large_size])
        self.discard_files(image)
        layer = image.layers[0]
        configurations: list[tuple[str, int | None]] = [("Docket", None)]
        if self.settings.docket_workers is not None and self.settings.docket_workers > 1:
            configurations.append(("Docket, 1 process", 1))
        for run in range(self.settings.runs):
            for label, workers in configurations:
                docket = self.start_docket(f"docket-rss-{run}-{workers or 'configured'}", workers=workers)
                try:
                    peak, pss = await self.serve_while_sampling(
                        docket, self.docket_blob_url("bench/large", layer.digest, docket)
                    )
                    self.results.add(f"{label}: peak RSS, large cold blob", peak, "MiB")
                    self.results.add(f"{label}: sampled peak Pss, large cold blob", pss, "MiB")
                finally:
                    self.stop_and_delete(docket)
            proxy = self.start_proxy(f"distribution-proxy-rss-{run}")
            try:
                peak, _ = await self.serve_while_sampling(
                    proxy, self.proxy_blob_url("bench/large", layer.digest, proxy)
                )
                self.results.add("distribution proxy: peak RSS, large cold blob", peak, "MiB")
            finally:
                self.stop_and_delete(proxy)

    async def run(self) -> None:
        rows: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("cold blob", self.cold_blob),
            ("hot blob", self.hot_blob),
            ("manifests", self.manifests),
            ("pulls", self.pulls),
            ("concurrent", self.concurrent),
            ("peak RSS", self.peak_rss),
        ]
        async with client_session() as session:
            self.session = session
            await self.setup()
            for name, measure in rows:
                started = time.monotonic()
                print(f"bench: measuring {name} ...", file=sys.stderr, flush=True)
                try:
                    await measure()
                except (MeasurementError, ServerError, aiohttp.ClientError, OSError) as error:
                    self.errors[name] = f"{type(error).__name__}: {error}"
                    print(f"bench: {name} failed: {self.errors[name]}", file=sys.stderr, flush=True)
                print(f"bench: {name} took {time.monotonic() - started:.1f}s", file=sys.stderr, flush=True)


def ratio_at_most(docket: float | None, peer: float | None, limit: float) -> bool | None:
    if docket is None or peer is None:
        return None
    return docket / peer <= limit


def ratio_at_least(docket: float | None, peer: float | None, limit: float) -> bool | None:
    if docket is None or peer is None:
        return None
    return docket / peer >= limit


def build_rows(benchmark: Benchmark) -> list[TableRow]:
    """Turn the series into the table rows, each with its peers and target."""
    settings = benchmark.settings
    results = benchmark.results
    median = results.median
    clients = settings.concurrent_clients
    rows: list[TableRow] = []

    docket = median("Docket: cold blob GET")
    upstream = median("upstream direct: cold blob GET")
    rows.append(
        TableRow(
            f"1. Cold blob GET, {size_text(settings.cold_size)}",
            "s",
            docket,
            [("upstream direct", upstream), ("distribution proxy", median("distribution proxy: cold blob GET"))],
            "≤ 1.15× upstream direct",
            ratio_at_most(docket, upstream, 1.15),
            benchmark.errors.get("cold blob"),
        )
    )

    docket = median("Docket: hot blob throughput")
    nginx = median("nginx: hot blob throughput")
    proxy = median("distribution proxy: hot blob throughput")
    best_peer = max((value for value in (nginx, proxy) if value is not None), default=None)
    rows.append(
        TableRow(
            f"2. Hot blob throughput, {size_text(settings.cold_size)} blob",
            "GB/s",
            docket,
            [("nginx", nginx), ("distribution proxy", proxy)],
            "≥ 1.0× the better of nginx and distribution proxy",
            ratio_at_least(docket, best_peer, 1.0),
            benchmark.errors.get("hot blob"),
        )
    )

    manifest_error = benchmark.errors.get("manifests")
    proxy_tag = median("distribution proxy: manifest GET by tag")
    manifest_rows = [
        ("3a. Manifest GET by tag, TTL 1h", "Docket: manifest GET by tag, TTL 1h", "by tag", proxy_tag, 5.0),
        ("3b. Manifest GET by tag, TTL 0", "Docket: manifest GET by tag, TTL 0", "by tag", proxy_tag, 1.5),
        (
            "3c. Manifest GET by digest",
            "Docket: manifest GET by digest",
            "by digest",
            median("distribution proxy: manifest GET by digest"),
            5.0,
        ),
        (
            "3d. Manifest HEAD by tag, TTL 1h (ab)",
            "Docket: manifest HEAD by tag, TTL 1h",
            "HEAD by tag",
            median("distribution proxy: manifest HEAD by tag"),
            None,
        ),
    ]
    for name, series, peer_case, peer, limit in manifest_rows:
        docket = median(series)
        rows.append(
            TableRow(
                name,
                "req/s",
                docket,
                [(f"distribution proxy {peer_case}", peer)],
                f"≥ {limit:g}× distribution proxy" if limit is not None else "–",
                ratio_at_least(docket, peer, limit) if limit is not None else None,
                manifest_error,
            )
        )

    for letter, state in (("a", "cold"), ("b", "warm")):
        rows.append(
            TableRow(
                f"4{letter}. Image pull, {state} (skopeo, {len(settings.pull_layers)} layers, "
                f"{size_text(sum(settings.pull_layers))})",
                "s",
                median(f"Docket: image pull, {state}"),
                [("distribution proxy", median(f"distribution proxy: image pull, {state}"))],
                "–",
                None,
                benchmark.errors.get("pulls"),
            )
        )

    concurrent_error = benchmark.errors.get("concurrent")
    docket_gets = results.values(f"Docket: {clients} concurrent cold GETs, upstream GETs")
    rows.append(
        TableRow(
            f"5a. Concurrent cold GETs, upstream GETs ({clients} clients, {size_text(settings.concurrent_size)})",
            "GETs",
            median(f"Docket: {clients} concurrent cold GETs, upstream GETs"),
            [("distribution proxy", median(f"distribution proxy: {clients} concurrent cold GETs, upstream GETs"))],
            "exactly 1 in every run",
            all(value == 1 for value in docket_gets) if docket_gets else None,
            concurrent_error,
        )
    )
    docket = median(f"Docket: {clients} concurrent cold GETs, last byte")
    single = median("Docket: single cold GET")
    rows.append(
        TableRow(
            f"5b. Concurrent cold GETs, last byte ({clients} clients, {size_text(settings.concurrent_size)})",
            "s",
            docket,
            [
                ("Docket single cold GET", single),
                (f"Docket {clients} concurrent hot GETs", median(f"Docket: {clients} concurrent hot GETs, last byte")),
                ("distribution proxy", median(f"distribution proxy: {clients} concurrent cold GETs, last byte")),
                ("distribution proxy single cold GET", median("distribution proxy: single cold GET")),
            ],
            "≤ 1.2× Docket single cold GET",
            ratio_at_most(docket, single, 1.2),
            concurrent_error,
        )
    )

    memory_rows = [("6", "Docket", "")]
    if settings.docket_workers is not None and settings.docket_workers > 1:
        memory_rows = [
            ("6a", "Docket", f", --workers {settings.docket_workers}"),
            ("6b", "Docket, 1 process", ", 1 process"),
        ]
    for number, label, setup in memory_rows:
        docket = median(f"{label}: peak RSS, large cold blob")
        rows.append(
            TableRow(
                f"{number}. Peak RSS, cold {size_text(settings.large_size)} blob to {settings.large_clients} clients"
                + setup,
                "MiB",
                docket,
                [("distribution proxy", median("distribution proxy: peak RSS, large cold blob"))],
                "< 150 MiB",
                docket < 150 if docket is not None else None,
                benchmark.errors.get("peak RSS"),
                detail=("sampled peak Pss", median(f"{label}: sampled peak Pss, large cold blob")),
            )
        )
    return rows


def describe_methods(settings: Settings) -> list[str]:
    wrk = f"wrk -t{settings.wrk_threads} -c{settings.wrk_connections} -d{settings.wrk_duration:g}s"
    workers = (
        f"`--workers {settings.docket_workers}`" if settings.docket_workers is not None else "no `--workers` option"
    )
    cold = size_text(settings.cold_size)
    concurrent = size_text(settings.concurrent_size)
    return [
        "Servers, all on 127.0.0.1. The upstream is `docker-registry serve` (distribution 2.8) with filesystem "
        "storage. The distribution proxy is a second one with `proxy.remoteurl` set to the upstream. nginx runs in "
        "the foreground with `sendfile on` and serves a hard link of the blob file that was pushed. Docket runs "
        f"`python -m docket serve` with {workers}, rule `up` (tag TTL 1h) and rule `up0` (tag TTL 0) for the "
        "upstream, and no embedded rules. Every server logs at its default level, access logs included.",
        "Content is random (os.urandom), generated locally as OCI images with uncompressed layers and pushed to "
        "the upstream. Each cold measurement reads a blob that no cache has seen. Before the first row, one small "
        "image is pulled through each cache, so that no row includes a cache's first contact with the upstream.",
        f"Row 1: seconds from sending a GET of a new {cold} layer to its last byte, read by an aiohttp client, "
        "from the upstream directly, then cold through Docket, then cold through the proxy.",
        f"Row 2: GB/s that {wrk} reads from the {cold} blob of row 1, which both caches now hold, and from the same "
        "file through nginx. wrk's byte count includes responses still unfinished when the time is up.",
        f"Row 3: requests per second for one small image's manifest, with {wrk} and a Lua script that sets the "
        "Accept header. The distribution proxy asks the upstream on every pull by tag, so both tag rows compare with "
        "its by-tag rate. wrk 4.1 waits for a body after a HEAD response that has a Content-Length, so the HEAD "
        "row uses ApacheBench (`ab -i -k`) with the same connection count and duration on both servers.",
        "Row 4: seconds for `skopeo copy --src-tls-verify=false docker://… dir:…` of a new image with layers of "
        f"{', '.join(size_text(size) for size in settings.pull_layers)}, cold and then warm right after.",
        f"Row 5: {settings.concurrent_clients} aiohttp clients start a GET of the same new {concurrent} blob at once. "
        "The time runs from the start to the last client's last byte. Upstream GETs are the upstream's access log "
        f"lines for that blob. The single cold GET reads another new {concurrent} blob, and the hot GETs repeat "
        "the concurrent GETs once Docket holds the blob, which shows how long delivering the bytes alone takes.",
        f"Row 6: a fresh server with an empty cache serves a new {size_text(settings.large_size)} blob to "
        f"{settings.large_clients} concurrent clients. The value is the sum of VmHWM in /proc/PID/status over the "
        "server process and its children, read before the server stops. For several processes the sum is an upper "
        "bound, because pages that they share count once for each. The Docket sampled peak Pss is the highest sum of "
        f"Pss (/proc/PID/smaps_rollup) over the same processes, sampled every {MEMORY_SAMPLE_INTERVAL * 1000:.0f} ms, "
        "which counts shared pages once but can miss a short peak. With more than one worker, a Docket "
        "without `--workers` (one process, the default) is measured the same way in the same runs.",
    ]


def parse_arguments(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python bench/run.py",
        description="Benchmark Docket against distribution 2.8 and nginx on loopback and write a Markdown report.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, 1 run and 2-second wrk runs (a smoke test)")
    parser.add_argument("--runs", type=int, help="repetitions of each measurement (default 3, or 1 with --quick)")
    parser.add_argument(
        "--output",
        type=Path,
        default=REPOSITORY_ROOT / "docs" / "benchmarks.md",
        help="Markdown file to write (default docs/benchmarks.md in the repository)",
    )
    parser.add_argument("--docket-workers", type=int, help="pass --workers N to docket serve")
    parser.add_argument(
        "--wrk-duration", type=float, help="seconds for each wrk and ab run (default 10, or 2 with --quick)"
    )
    arguments = parser.parse_args(argv)
    if arguments.runs is not None and arguments.runs < 1:
        parser.error(f"--runs must be at least 1, got {arguments.runs}")
    if arguments.docket_workers is not None and arguments.docket_workers < 1:
        parser.error(f"--docket-workers must be at least 1, got {arguments.docket_workers}")
    if arguments.wrk_duration is not None and arguments.wrk_duration <= 0:
        parser.error(f"--wrk-duration must be positive, got {arguments.wrk_duration}")
    return arguments


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt(f"received {signal.Signals(signum).name}")


ANALYSIS_HEADING = "\n## Where the time goes"


def kept_analysis(output: Path) -> str:
    """Return the hand-written analysis section of an earlier report, so a new run keeps it."""
    if not output.exists():
        return ""
    text = output.read_text()
    start = text.find(ANALYSIS_HEADING)
    return text[start:] if start >= 0 else ""


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(sys.argv[1:] if argv is None else argv)
    missing = [tool for tool in REQUIRED_TOOLS if shutil.which(tool) is None]
    if missing:
        print(
            f"bench: missing tools: {', '.join(missing)}; install the Debian packages docker-registry, nginx, wrk, "
            "apache2-utils and skopeo",
            file=sys.stderr,
        )
        return 2
    settings = Settings.from_arguments(arguments)
    command = shlex.join(["python", "bench/run.py", *(sys.argv[1:] if argv is None else argv)])
    started = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGHUP, _interrupt)

    workdir = Path(tempfile.mkdtemp(prefix="docket-bench-"))
    try:
        with ServerSet() as servers:
            benchmark = Benchmark(settings, workdir, servers)
            asyncio.run(benchmark.run())
    except KeyboardInterrupt as interrupt:
        print(f"bench: interrupted ({str(interrupt) or 'Ctrl-C'}); servers stopped", file=sys.stderr)
        return 130
    except ServerError as error:
        print(f"bench: a server failed to start: {error}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(workdir, ignore_errors=True)

    rows = build_rows(benchmark)
    document = render_document(
        command=command,
        started=started,
        methods=describe_methods(settings),
        rows=rows,
        results=benchmark.results,
        runs=settings.runs,
    )
    output = arguments.output
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(document + kept_analysis(output))
    print(render_table(rows))
    print(f"\nbench: wrote {output}")
    if benchmark.errors:
        for name, message in benchmark.errors.items():
            print(f"bench: {name} failed: {message}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
