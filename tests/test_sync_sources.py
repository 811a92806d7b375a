"""Which blobs one apply is fetching (dropbeard.sync.sources.LocalSources): a second write
of a blob being fetched waits for that fetch and then copies its file; a blob fetched by
one write alone costs no event."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest
from anyio.abc import TaskGroup

from dropbeard.sync.sources import LocalSources

pytestmark = pytest.mark.anyio

SHA = "ab" * 32


async def test_a_blob_fetched_by_one_write_alone_makes_no_event() -> None:
    sources = LocalSources()
    assert await sources.claim(SHA) is None
    assert sources.fetching == {SHA: None}
    sources.release(SHA)
    assert sources.fetching == {}


async def test_a_second_write_of_a_blob_in_flight_waits_and_copies_its_file(
    tmp_path: Path,
) -> None:
    sources = LocalSources()
    assert await sources.claim(SHA) is None
    got: list[Path | None] = []
    async with anyio.create_task_group() as tg:
        await _second_claim(tg, sources, got)
        assert got == []  # waiting on the first write's fetch
        assert isinstance(sources.fetching[SHA], anyio.Event)
        sources.add(SHA, tmp_path / "landed")
        sources.release(SHA)
    assert got == [tmp_path / "landed"]


async def test_a_failed_fetch_hands_the_blob_to_the_next_waiter() -> None:
    sources = LocalSources()
    assert await sources.claim(SHA) is None
    got: list[Path | None] = []
    async with anyio.create_task_group() as tg:
        await _second_claim(tg, sources, got)
        sources.release(SHA)  # nothing landed: the waiter fetches it itself
    assert got == [None]
    assert sources.fetching == {SHA: None}


async def _second_claim(tg: TaskGroup, sources: LocalSources, got: list[Path | None]) -> None:
    """Start a second claim of SHA (what it gets lands in `got`) and let it block."""

    async def second() -> None:
        got.append(await sources.claim(SHA))

    tg.start_soon(second)
    await anyio.wait_all_tasks_blocked()
