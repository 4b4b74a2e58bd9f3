"""The data directory's lock: a server and offline maintenance each hold it exclusively."""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "docket.lock"


class DataDirectoryBusy(Exception):
    pass


def hold(data_dir: Path, exclusive: bool) -> int:
    """Take the lock without waiting and return its descriptor; keep it open to keep the lock."""
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, (fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise DataDirectoryBusy(
            f"data directory {data_dir} is in use by another Docket process "
            "(a server or an offline maintenance command)"
        ) from None
    return fd
