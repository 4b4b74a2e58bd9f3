"""The data directory's lock: a server or an offline maintenance command holds it exclusively.

The holder writes its description and process id into the lock file, so the error
of a second process that finds the directory busy names the holder.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

LOCK_NAME = "docket.lock"
SERVER = "a running Docket server"
MAINTENANCE = "an offline maintenance command"


class DataDirectoryBusy(Exception):
    pass


def hold(data_dir: Path, holder: str) -> int:
    """Take the lock without waiting and return its descriptor; keep it open to keep the lock.

    `holder` (SERVER or MAINTENANCE) is recorded in the file for the busy message of others.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    fd = os.open(data_dir / LOCK_NAME, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        recorded = os.pread(fd, 200, 0).decode(errors="replace").strip()
        os.close(fd)
        raise DataDirectoryBusy(
            f"data directory {data_dir} is in use by {recorded or 'another Docket process'}"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{holder} (pid {os.getpid()})\n".encode(), 0)
    return fd
