"""Logging set-up: human-readable or JSON lines, structured fields, and rate-limited repeats.

Code attaches structured fields with `extra={"fields": {...}}`; both formats print
them. Repeats of the same warning (same logger, template and arguments) within
`REPEAT_WINDOW` seconds are dropped and counted, and the next one that gets
through reports how many were dropped, so an upstream outage cannot flood the log.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from datetime import UTC, datetime
from typing import Any

import orjson

REPEAT_WINDOW = 30.0


class RateLimitFilter(logging.Filter):
    def __init__(self, window: float = REPEAT_WINDOW) -> None:
        super().__init__()
        self.window = window
        self._seen: dict[tuple[str, str, str], tuple[float, int]] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno < logging.WARNING or record.name == "docket.access":
            return True
        key = (record.name, str(record.msg), repr(record.args))
        now = time.monotonic()
        last = self._seen.get(key)
        if last is not None and now - last[0] < self.window:
            self._seen[key] = (last[0], last[1] + 1)
            return False
        if last is not None and last[1]:
            record.msg = f"{record.msg} ({last[1]} identical messages suppressed in the last {self.window:.0f}s)"
        self._seen[key] = (now, 0)
        if len(self._seen) > 10_000:
            self._seen.clear()
        return True


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    fields = getattr(record, "fields", None)
    return fields if isinstance(fields, dict) else {}


class HumanFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        fields = _fields(record)
        if fields:
            line += " " + " ".join(f"{key}={value}" for key, value in fields.items() if value is not None)
        return line


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update((key, value) for key, value in _fields(record).items() if value is not None)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


class RecentProblems(logging.Handler):
    """Keeps the last warnings and errors in memory for `docket status`."""

    def __init__(self, capacity: int = 20) -> None:
        super().__init__(logging.WARNING)
        self.entries: deque[dict[str, str]] = deque(maxlen=capacity)

    def emit(self, record: logging.LogRecord) -> None:
        self.entries.append(
            {
                "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
                "level": record.levelname.lower(),
                "logger": record.name,
                "message": record.getMessage(),
            }
        )


RECENT_PROBLEMS = RecentProblems()


def setup_logging(level: str, log_format: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else HumanFormatter())
    handler.addFilter(RateLimitFilter())
    root = logging.getLogger()
    if not RECENT_PROBLEMS.filters:
        RECENT_PROBLEMS.addFilter(RateLimitFilter())
    root.handlers[:] = [handler, RECENT_PROBLEMS]
    root.setLevel(level.upper())
    # Alembic reports every plugin and migration step at INFO; only problems matter here.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
