"""The cyclic garbage collector during a command (cli.main.fewer_collections): a pass of
many small files runs few collections, and the process gets its own thresholds back."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dropbeard.cli.main import fewer_collections
from tests.converge import Cli, devices, local_bucket

FILES = 600


@pytest.fixture
def collections() -> Iterator[list[int]]:
    """The generation of each collection the cyclic collector starts while it is open."""
    seen: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            seen.append(info["generation"])

    gc.callbacks.append(count)
    try:
        yield seen
    finally:
        gc.callbacks.remove(count)


def test_a_download_of_many_small_files_runs_few_collections(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], collections: list[int]
) -> None:
    a, b = devices(local_bucket(tmp_path, Cli(capsys)), tmp_path, "a", "b")
    for i in range(FILES):
        a.write(f"d{i // 100}/f{i}.txt", f"file {i}\n")
    a.sync()
    collections.clear()
    b.sync()
    assert len(list((b.root).rglob("f*.txt"))) == FILES
    # At CPython's default (a young collection per 700 allocations) this was 45.
    assert len(collections) < FILES // 50, collections


def test_the_thresholds_are_given_back() -> None:
    before = gc.get_threshold()
    with fewer_collections():
        assert gc.get_threshold()[0] > before[0]
    assert gc.get_threshold() == before
