"""Reading a tree ahead of the walk (`dropbeard.sync.treeahead`): a tree of many folders
is read in a few bursts of concurrent GETs, not one round trip per folder, and never
more than the TreeStore's concurrency at once nor far ahead of the walk."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio
import pytest

from dropbeard.core.tree import TreeEntry
from dropbeard.core.treediff import tree_order
from dropbeard.store.counting import CountingStore
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.treeahead import BATCH, MAX_AHEAD
from dropbeard.sync.treeread import diff, walk
from dropbeard.sync.trees import TreeStore
from tests.treegen import dir_entry, file_entry
from tests.treeio import KEYS, bare, build_map, in_tree_order

T = TypeVar("T")
pytestmark = pytest.mark.anyio


class InFlight(ForwardingStore):
    """Records how many GETs are in flight at once (`most`), and the round trips they
    took one after another (`rounds`: a GET's round is one more than the latest round
    of the GETs that had ended when it started). Each GET takes `latency` seconds."""

    def __init__(self, inner: CountingStore, latency: float = 0.005) -> None:
        super().__init__(inner)
        self.latency = latency
        self.now = self.most = self.rounds = self.gets = 0
        self._ended_round = 0

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        if op != "get":
            return await call()
        mine = self._ended_round + 1
        self.rounds = max(self.rounds, mine)
        self.now += 1
        self.gets += 1
        self.most = max(self.most, self.now)
        try:
            await anyio.sleep(self.latency)
            return await call()
        finally:
            self.now -= 1
            self._ended_round = max(self._ended_round, mine)


def nested(width: int, depth: int) -> dict[str, TreeEntry]:
    """`width` folders in every folder, `depth` levels deep, each holding its own file
    (so that no two folders share a node)."""
    paths: dict[str, TreeEntry] = {}
    level = [""]
    for _ in range(depth):
        below = []
        for parent in level:
            for i in range(width):
                path = f"{parent}/d{i}" if parent else f"d{i}"
                paths[path] = dir_entry(f"d{i}")
                paths[f"{path}/f.txt"] = file_entry("f.txt", path)
                below.append(path)
        level = below
    return paths


async def _built(tmp_path: Path, paths: dict[str, TreeEntry]) -> tuple[str, CountingStore]:
    (tmp_path / "bucket").mkdir()
    bucket = CountingStore(LocalStore(tmp_path / "bucket"))
    return await build_map(TreeStore(bucket, KEYS), paths), bucket


async def test_a_tree_of_many_folders_is_read_in_a_few_round_trips_of_concurrent_gets(
    tmp_path: Path,
) -> None:
    paths = nested(width=4, depth=4)  # 4 + 16 + 64 + 256 folders: 85 of them hold folders
    root, bucket = await _built(tmp_path, paths)
    seen = InFlight(bucket, latency=0.02)
    trees = TreeStore(seen, KEYS, concurrency=BATCH)
    found = [(p, bare(e)) async for p, e in walk(trees, root)]
    assert found == in_tree_order(paths)
    assert seen.gets == 1 + 340  # every node once
    assert seen.most > 1
    # a round trip per level and per BATCH nodes, give or take: not one per folder (85)
    assert seen.rounds <= 10, seen.rounds


async def test_a_bootstraps_node_reads_are_bounded(tmp_path: Path) -> None:
    paths = nested(width=30, depth=2)  # 30 + 900 folders, none paged
    root, bucket = await _built(tmp_path, paths)
    seen = InFlight(bucket, latency=0.001)
    trees = TreeStore(seen, KEYS, concurrency=8)
    folders = 0
    async for path, _, entry in diff(trees, None, root):
        assert entry is not None
        folders += entry.tree is not None
        # the root, the folders walked into, and a bounded number ahead of them
        assert seen.gets <= 1 + folders + MAX_AHEAD, (path, seen.gets, folders)
    assert seen.most <= 8
    assert seen.most > 1
    assert seen.gets == 1 + 930


async def test_a_diff_reads_both_sides_of_the_changed_folders_ahead_and_no_other_node(
    tmp_path: Path,
) -> None:
    before = nested(width=4, depth=3)  # 4 + 16 + 64 folders
    before["d1/same"] = dir_entry("same")  # unchanged beside them: never read
    before["d1/same/f.txt"] = file_entry("f.txt", "same")
    after = dict(before)
    for path in [p for p in before if p.count("/") == 3]:  # every deepest folder's file
        after[path] = file_entry("f.txt", path + " edited", 2)
    (tmp_path / "bucket").mkdir()
    bucket = CountingStore(LocalStore(tmp_path / "bucket"))
    writer = TreeStore(bucket, KEYS)
    old, new = await build_map(writer, before), await build_map(writer, after)
    seen = InFlight(bucket, latency=0.02)
    trees = TreeStore(seen, KEYS, concurrency=BATCH)
    found = [p async for p, _, _ in diff(trees, old, new)]
    assert found == sorted((p for p in after if p.count("/") == 3), key=tree_order)
    assert seen.gets == 2 * (1 + 4 + 16 + 64)  # both sides of every changed folder
    # one round trip per level, give or take: not two per changed folder (170)
    assert seen.rounds <= 8, seen.rounds
