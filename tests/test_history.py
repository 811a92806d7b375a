"""Reading a path's history (sync.history): every device's retained snapshots looked up by
path, each distinct folder node searched once however many snapshots share it; snapshot
objects and tombstone batches cached, so a second look costs a listing and the heads;
restore's destinations checked against the retained versions of their paths."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropbeard.sync.devicelog import SnapshotReader
from dropbeard.sync.history import load_history
from dropbeard.sync.restore import UnsyncedEdit, check_destinations, plan_items
from tests.format2 import sha256
from tests.history import KEYS, File, Folder, World, delete_of, world

__all__ = ["world"]
pytestmark = pytest.mark.anyio


def tree(day: int, stable_files: int = 5) -> Folder:
    """A folder where only `log/today.txt` changes from day to day."""
    stable = Folder({f"f{i:03d}": File(f"stable {i}".encode()) for i in range(stable_files)})
    return Folder(
        {
            "stable": stable,
            "log": Folder({"today.txt": File(f"day {day}".encode())}),
            "readme": File(b"hello"),
        }
    )


async def test_a_path_looked_up_in_30_snapshots_reads_each_folder_node_once(
    world: World, tmp_path: Path
) -> None:
    for day in range(1, 31):
        await world.publish("laptop", tree(day, 300), f"202601{day:02d}T000000Z")  # paged
    trees = world.trees()
    reader = SnapshotReader(world.store, KEYS, tmp_path / "log")
    history = await load_history(world.store, KEYS, trees, reader)
    rows = await history.versions("stable/f150")
    assert len(rows) == 1 and rows[0].until == "20260130T000000Z"
    # 30 roots, then "stable"'s index and the one page holding f150: once each
    assert trees.stats.fetched == 30 + 2
    rows = await history.versions("log/today.txt")
    assert [r.sha256 for r in rows] == [sha256(f"day {d}".encode()) for d in range(1, 31)]
    assert trees.stats.fetched == 32 + 30  # plus each day's log folder
    # a second run: snapshot objects come from the cache
    world.store.counts.clear()
    again = await load_history(
        world.store, KEYS, trees, SnapshotReader(world.store, KEYS, tmp_path / "log")
    )
    await again.versions("readme")
    assert world.store.counts["get"] == 0 and world.store.counts["list_page"] == 1


async def test_deletes_of_a_folder_cover_the_files_inside(world: World) -> None:
    await world.publish("laptop", tree(1), "20260101T000000Z")
    gone = {"path": "log", "type": "dir", "version": {"laptop": 5}}
    await world.publish(
        "laptop", Folder({"readme": File(b"hello")}), "20260102T000000Z", deletes=[gone]
    )
    history = await load_history(
        world.store, KEYS, world.trees(), SnapshotReader(world.store, KEYS)
    )
    rows = await history.versions("log/today.txt")
    assert [(r.kind, r.seq) for r in rows] == [("file", None), ("deleted", 1)]


async def test_a_destination_with_content_no_version_holds_is_refused(
    world: World, tmp_path: Path
) -> None:
    await world.publish("laptop", tree(1), "20260101T000000Z")
    await world.publish(
        "laptop", tree(2), "20260102T000000Z", deletes=[delete_of("x", b"x", {"laptop": 1})]
    )
    history = await load_history(
        world.store, KEYS, world.trees(), SnapshotReader(world.store, KEYS)
    )
    snap = history.snapshots["laptop"]["20260101T000000Z"]
    entry = await history.entry(snap.tree, "log/today.txt")
    assert entry is not None
    root = tmp_path / "root"
    (root / "log").mkdir(parents=True)
    items = plan_items([("log/today.txt", entry)], "log/today.txt", root, True)
    (root / "log" / "today.txt").write_bytes(b"day 2")  # synced: day 2 is retained
    checked = await check_destinations(items, history, root)
    assert "log/today.txt" in checked
    (root / "log" / "today.txt").write_bytes(b"day 3, never published")
    with pytest.raises(UnsyncedEdit, match=r"log/today\.txt holds an edit"):
        await check_destinations(items, history, root)
    outside = plan_items([("log/today.txt", entry)], "log/today.txt", tmp_path / "out", False)
    assert outside[0].dest == tmp_path / "out" / "today.txt"


async def test_a_snapshot_whose_tree_cannot_be_read_is_left_out_and_named(world: World) -> None:
    await world.publish("laptop", tree(1), "20260101T000000Z")
    broken = await world.publish("laptop", tree(2), "20260102T000000Z")
    await world.publish("laptop", tree(3), "20260103T000000Z")
    await world.store.inner.put(KEYS.tree(broken), b'{"format":2,"entries":[]}')
    history = await load_history(
        world.store, KEYS, world.trees(), SnapshotReader(world.store, KEYS)
    )
    rows = await history.versions("log/today.txt")
    assert [r.sha256 for r in rows] == [sha256(b"day 1"), sha256(b"day 3")]
    [problem] = history.problems
    assert (
        problem.startswith("laptop's snapshot 20260102T000000Z: ") and KEYS.tree(broken) in problem
    )
