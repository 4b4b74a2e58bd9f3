"""Prometheus metrics shared by the worker processes of `docket serve --workers N`.

prometheus-client keeps counters in files under `PROMETHEUS_MULTIPROC_DIR` when that
variable is set before the library is imported. Each worker writes its own files,
and `/metrics` in any worker sums them, so every scrape reports the whole server.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

ENVIRONMENT = "PROMETHEUS_MULTIPROC_DIR"


class MetricsSetupError(RuntimeError):
    """The shared metrics directory was requested after prometheus-client was imported."""


def enable(data_dir: Path) -> Path:
    """Use a shared metrics directory (the environment's, else `metrics/` in the data directory).

    Files left by an earlier run are removed, so counters start from zero as they do
    in a single process. Must run before anything imports prometheus-client.
    """
    if "prometheus_client" in sys.modules:
        raise MetricsSetupError("prometheus-client was imported before the shared metrics directory was set")
    directory = Path(os.environ.get(ENVIRONMENT) or data_dir / "metrics")
    directory.mkdir(parents=True, exist_ok=True)
    for leftover in directory.glob("*.db"):
        leftover.unlink(missing_ok=True)
    os.environ[ENVIRONMENT] = str(directory)
    return directory


def enabled() -> bool:
    return bool(os.environ.get(ENVIRONMENT))
