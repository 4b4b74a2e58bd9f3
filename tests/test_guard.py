"""Tests of the content guard: a collector waiting for the guard is not starved by a steady stream of writers."""

from __future__ import annotations

import asyncio
import multiprocessing
import time
from pathlib import Path

from docket.storage.guard import ContentGuard

WRITERS = 4
# Bound on waits, so a starved collector fails the test instead of hanging it. A working guard stays far below it.
HANG_GUARD = 20.0


async def write_continuously(guard: ContentGuard, stop: asyncio.Event, entries: list[float]) -> None:
    while not stop.is_set():
        async with guard.writing():
            entries.append(time.monotonic())
            await asyncio.sleep(0.005)
        await asyncio.sleep(0)


async def overlapping_writers(
    guard: ContentGuard, stop: asyncio.Event, entries: list[float]
) -> list[asyncio.Task[None]]:
    """Start writers whose holds overlap, so the guard is never free of writers while they run."""
    tasks = []
    for _ in range(WRITERS):
        tasks.append(asyncio.create_task(write_continuously(guard, stop, entries)))
        await asyncio.sleep(0.002)
    while len(entries) < 3 * WRITERS:
        await asyncio.sleep(0.005)
    return tasks


async def test_collector_precedes_later_writers(tmp_path: Path) -> None:
    guard = ContentGuard(tmp_path / "content.lock")
    stop = asyncio.Event()
    entries: list[float] = []
    writers = await overlapping_writers(guard, stop, entries)

    requested = time.monotonic()
    async with asyncio.timeout(HANG_GUARD):
        async with guard.collecting():
            inside = len(entries)
            await asyncio.sleep(0.05)
            # No writer entered while the collector held the guard.
            assert len(entries) == inside
    stop.set()
    await asyncio.gather(*writers)

    assert [entry for entry in entries if entry > requested] != []
    # Writers that arrived after the collector's request waited until it finished.
    entered_while_waiting = [entry for entry in entries[:inside] if entry > requested]
    assert entered_while_waiting == []


def writer_process(lock_path: str, seconds: float, entries_path: str) -> None:
    async def main() -> None:
        guard = ContentGuard(Path(lock_path))
        stop = asyncio.Event()
        entries: list[float] = []
        writers = await overlapping_writers(guard, stop, entries)
        Path(entries_path + ".ready").touch()
        await asyncio.sleep(seconds)
        stop.set()
        await asyncio.gather(*writers)
        Path(entries_path).write_text("\n".join(str(entry) for entry in entries))

    asyncio.run(main())


async def test_collector_not_starved_across_processes(tmp_path: Path) -> None:
    lock_path = tmp_path / "content.lock"
    entries_path = tmp_path / "entries"
    context = multiprocessing.get_context("spawn")
    worker = context.Process(target=writer_process, args=(str(lock_path), 3.0, str(entries_path)))
    worker.start()
    try:
        async with asyncio.timeout(HANG_GUARD):
            while not Path(str(entries_path) + ".ready").exists():
                await asyncio.sleep(0.01)
        guard = ContentGuard(lock_path)
        async with asyncio.timeout(HANG_GUARD):
            async with guard.collecting():
                held_from = time.monotonic()
                await asyncio.sleep(0.2)
                held_until = time.monotonic()
    finally:
        worker.join(HANG_GUARD)
        if worker.is_alive():
            worker.kill()
    assert worker.exitcode == 0

    entries = [float(line) for line in entries_path.read_text().split()]
    # The other worker's writers kept coming after the collection, and none entered during it.
    assert any(entry > held_until for entry in entries)
    assert not [entry for entry in entries if held_from <= entry <= held_until]
