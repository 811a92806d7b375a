"""A whole-root scan records the stamps of each folder whose every file its rows vouched
for (dropbeard.sync.folderrows.folder_stamps), and the next scan that finds the same
stamps vouches for the folder without reading its rows; any change on disk, any row
written by any path, and stamps that are simply wrong cost the row compare, never a
missed change."""

from __future__ import annotations

import os
import sqlite3
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dropbeard.store.local import LocalStore
from dropbeard.sync import folderrows
from dropbeard.sync.engine import PassOptions
from dropbeard.sync.folderrows import FolderRows
from dropbeard.sync.root import RootPaths
from dropbeard.sync.state import State
from tests.onepass import run_one_pass
from tests.test_scan_compare import fill, init, one_pass


class RowReads:
    """Records the folder of every `FolderRows.of` (one folder's rows read)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.read: list[str] = []
        real = FolderRows.of

        def of(rows: FolderRows, prefix: str) -> Any:
            self.read.append(prefix)
            return real(rows, prefix)

        monkeypatch.setattr(folderrows.FolderRows, "of", of)


def stamps(root: Path) -> dict[str, bytes]:
    with sqlite3.connect(RootPaths(root).state) as db:
        return dict(db.execute("SELECT parent, stamps FROM folder_stamps").fetchall())


def stamped(tmp_path: Path) -> Path:
    """A root of three folders of 20 files, synced, whose stamps are recorded."""
    root = init(tmp_path, "a")
    fill(root, 3, 20)
    assert one_pass(root, 0).uploaded == 60
    one_pass(root, 1)  # every file vouched for: the stamps are recorded
    assert set(stamps(root)) == {"", "d0/", "d1/", "d2/"}
    return root


def test_an_idle_pass_over_stamped_folders_reads_no_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = stamped(tmp_path)
    reads = RowReads(monkeypatch)
    idle = one_pass(root, 2)
    assert (idle.scanned, idle.hashed, idle.snapshot) == (63, 0, None)
    assert reads.read == []


def test_a_change_in_a_stamped_folder_is_found_by_its_rows(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = stamped(tmp_path)
    reads = RowReads(monkeypatch)
    (root / "d1" / "f7.txt").write_text("X/7")  # same size
    (root / "d2" / "f3.txt").unlink()
    os.chmod(root / "d0" / "f1.txt", 0o600)
    changed = one_pass(root, 2)
    assert (changed.hashed, changed.uploaded, changed.tombstones) == (2, 1, 1)
    assert {"d0/", "d1/", "d2/"} <= set(reads.read)
    reads.read.clear()
    one_pass(root, 3)  # the rows the pass wrote dropped their folders' stamps: recorded again
    assert set(reads.read) == {"d0/", "d1/", "d2/"}
    reads.read.clear()
    assert one_pass(root, 4).hashed == 0
    assert reads.read == []


def test_a_row_written_by_any_path_drops_its_folders_stamps(tmp_path: Path) -> None:
    root = stamped(tmp_path)
    with sqlite3.connect(RootPaths(root).state, isolation_level=None) as db:
        db.execute("UPDATE files SET status = 'changed' WHERE path = 'd1/f3.txt'")
        assert set(stamps(root)) == {"", "d0/", "d2/"}
        db.execute("INSERT INTO files (path) VALUES ('d2/new.txt')")
        assert set(stamps(root)) == {"", "d0/"}
        db.execute("UPDATE files SET path = 'moved.txt' WHERE path = 'd0/f5.txt'")
        assert set(stamps(root)) == set()  # where it was and where it went
        db.execute("INSERT INTO folder_stamps VALUES ('d1/', x'00')")
        db.execute("DELETE FROM files WHERE path = 'd1/f4.txt'")
        assert set(stamps(root)) == set()


def test_wrong_stamps_cost_the_row_compare_not_a_change(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = stamped(tmp_path)
    with sqlite3.connect(RootPaths(root).state) as db:
        db.execute("UPDATE folder_stamps SET stamps = x'00'")
    (root / "d1" / "f7.txt").write_text("edited")
    reads = RowReads(monkeypatch)
    edited = one_pass(root, 2)
    assert (edited.hashed, edited.uploaded) == (1, 1)
    assert set(reads.read) == {"", "d0/", "d1/", "d2/"}
    assert stamps(root).keys() == {"", "d0/", "d2/"}  # recorded again, but where it changed


def test_stamps_are_not_recorded_over_rows_written_during_the_scan(tmp_path: Path) -> None:
    root = stamped(tmp_path)
    path = RootPaths(root).state
    rows = FolderRows(path)
    state = State.open(path)
    try:
        assert rows.of("d0/") and rows.unwritten()
        state.set_meta("elsewhere", "written")
        assert not rows.unwritten()
        assert not state.set_folder_stamps({"d0/": b"x"}, rows.unwritten)
    finally:
        rows.close()
        state.close()
    assert stamps(root)["d0/"] != b"x"


def test_a_folder_with_a_conflict_copy_or_a_non_file_is_not_stamped(tmp_path: Path) -> None:
    root = init(tmp_path, "a")
    fill(root, 3, 2)
    (root / "d0" / "f0.conflict-laptop-20260101T000000Z.txt").write_text("copy")
    os.symlink("f0.txt", root / "d1" / "link")
    one_pass(root, 0)
    one_pass(root, 1)
    assert set(stamps(root)) == {"", "d2/"}


def test_a_dry_run_records_no_stamps(tmp_path: Path) -> None:
    root = init(tmp_path, "a")
    fill(root, 2, 2)
    one_pass(root, 0)
    at = datetime.now(UTC) + timedelta(minutes=2)
    opts = PassOptions(dry_run=True)
    opts.now = lambda: at
    run_one_pass(root, LocalStore(tmp_path / "remote"), opts)
    assert stamps(root) == {}
    one_pass(root, 2)
    assert set(stamps(root)) == {"", "d0/", "d1/"}


def test_stamps_an_index_cannot_take_now_cost_the_next_scan_not_the_pass(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = init(tmp_path, "a")
    fill(root, 2, 2)
    one_pass(root, 0)

    def locked(*_: Any) -> bool:
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(State, "set_folder_stamps", locked)
    assert one_pass(root, 1).problems == 0
    assert stamps(root) == {}
