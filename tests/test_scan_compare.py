"""A pass over the whole root compares each folder with what state.sqlite tracks in it
(dropbeard.sync.folderrows): an unchanged file costs no item, no entry and no hashing,
while an edit, a new file, a file or a whole folder gone, and what another device changed
are reconciled as before; an unchanged file is still where a download copies its bytes
from."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from dropbeard.cli.main import main
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Entry
from dropbeard.core.passrules import ScannedItem, local_entries
from dropbeard.core.summary import Summary
from dropbeard.store.base import Store
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync import localscan
from dropbeard.sync.engine import PassOptions
from dropbeard.sync.folderrows import Compare
from dropbeard.sync.root import RootPaths
from dropbeard.sync.state import State
from tests.onepass import run_one_pass
from tests.treeio import published_listing

T = TypeVar("T")
KEYS = RootKeys("r1")


def init(tmp_path: Path, device: str) -> Path:
    folder = tmp_path / device
    (tmp_path / "remote").mkdir(exist_ok=True)
    args = ["init", str(folder), "--remote", str(tmp_path / "remote"), "--root-id", "r1"]
    assert main([*args, "--device-id", device, "-q"]) == 0
    return folder


class Counted:
    """Counts the entries each pass builds from its scan (`core.passrules.local_entries`)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.built: list[int] = []

        def counting(items: Mapping[str, ScannedItem]) -> dict[str, Entry]:
            self.built.append(len(items))
            return local_entries(items)

        monkeypatch.setattr(localscan, "local_entries", counting)


def one_pass(
    root: Path, minutes: int, *, check_full: bool = False, store: Store | None = None
) -> Summary:
    """One pass over the whole root, as if `minutes` + 1 minutes from now: no file just
    written is racily clean (`core.passrules.RACY_WINDOW_NS`), so the stat cache vouches
    for them."""
    at = datetime.now(UTC) + timedelta(minutes=minutes + 1)
    opts = PassOptions(check_full=check_full)
    opts.now = lambda: at
    return run_one_pass(root, store or LocalStore(root.parent / "remote"), opts)


def fill(root: Path, folders: int, files: int) -> None:
    for f in range(folders):
        (root / f"d{f}").mkdir(parents=True, exist_ok=True)
        for i in range(files):
            (root / f"d{f}" / f"f{i}.txt").write_text(f"{f}/{i}")


def listed(root: Path, device: str) -> set[str]:
    found = anyio.run(published_listing, LocalStore(root.parent / "remote"), KEYS, device)
    return set(found)


def test_an_idle_pass_builds_no_entry_for_an_unchanged_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = init(tmp_path, "a")
    fill(root, 3, 100)
    counted = Counted(monkeypatch)
    compares: list[Compare] = []

    class Recorded(Compare):
        def __init__(self, *args: Any) -> None:
            super().__init__(*args)
            compares.append(self)

    monkeypatch.setattr(localscan, "Compare", Recorded)
    first = one_pass(root, 0)
    assert first.uploaded == 300
    idle = one_pass(root, 1)
    assert (idle.hashed, idle.snapshot) == (0, None)
    assert counted.built[-1] == 3  # the three folders, no file
    # nothing kept of the unchanged files: counted, not held
    assert (compares[-1].unchanged, compares[-1].cached, compares[-1].vanished) == (300, {}, [])
    assert compares[-1].tracked == {"d0", "d1", "d2"}
    (root / "d1" / "f7.txt").write_text("edited")
    (root / "d2" / "new.txt").write_text("new")
    edited = one_pass(root, 2)
    assert (edited.hashed, edited.uploaded) == (2, 2)
    assert counted.built[-1] == 3 + 2
    assert edited.snapshot is not None


@pytest.mark.parametrize("check_full", [False, True])
def test_a_file_or_a_whole_folder_gone_is_deleted(tmp_path: Path, check_full: bool) -> None:
    root = init(tmp_path, "a")
    fill(root, 3, 5)
    (root / "d2" / "sub").mkdir()
    (root / "d2" / "sub" / "deep.txt").write_text("deep")
    one_pass(root, 0)
    (root / "d0" / "f3.txt").unlink()
    shutil.rmtree(root / "d2")
    gone = one_pass(root, 1, check_full=check_full)
    assert gone.tombstones == 1 + 1 + 5 + 1 + 1  # f3, d2, its files, sub, deep.txt
    assert listed(root, "a") == {"d0", "d1"} | {f"d0/f{i}.txt" for i in (0, 1, 2, 4)} | {
        f"d1/f{i}.txt" for i in range(5)
    }


def test_another_devices_edit_of_an_unchanged_file_lands(tmp_path: Path) -> None:
    a, b = init(tmp_path, "a"), init(tmp_path, "b")
    fill(a, 2, 3)
    one_pass(a, 0)
    one_pass(b, 1)
    assert (b / "d1" / "f2.txt").read_text() == "1/2"
    one_pass(b, 2)  # b's files are now vouched for by its stat cache
    (a / "d1" / "f2.txt").write_text("edited on a")
    one_pass(a, 3)
    pulled = one_pass(b, 4)
    assert pulled.downloaded == 1
    assert (b / "d1" / "f2.txt").read_text() == "edited on a"


def test_an_unchanged_file_is_copied_not_downloaded(tmp_path: Path) -> None:
    a, b = init(tmp_path, "a"), init(tmp_path, "b")
    (a / "big.bin").write_bytes(b"x" * 100_000)
    one_pass(a, 0)
    one_pass(b, 1)
    one_pass(b, 2)
    (a / "copy.bin").write_bytes(b"x" * 100_000)
    one_pass(a, 3)
    store = Reads(LocalStore(tmp_path / "remote"))
    pulled = one_pass(b, 4, store=store)
    assert pulled.planned_downloads == 1
    assert (b / "copy.bin").read_bytes() == b"x" * 100_000
    sha = hashlib.sha256(b"x" * 100_000).hexdigest()
    assert store.read and not [k for k in store.read if sha in k]  # copied from big.bin


class Reads(CountingStore):
    """Records the key of every read."""

    def __init__(self, inner: LocalStore) -> None:
        super().__init__(inner)
        self.read: list[str] = []

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        if op.startswith("get"):
            self.read.append(key)
        return await super()._forward(op, key, call)


def test_the_folder_index_is_added_to_an_existing_index(tmp_path: Path) -> None:
    root = init(tmp_path, "a")
    fill(root, 1, 2)
    one_pass(root, 0)
    state = State.open(RootPaths(root).state)
    try:
        state._db.execute("DROP INDEX files_parent")
    finally:
        state.close()
    (root / "d0" / "f1.txt").write_text("edited")
    assert one_pass(root, 1).uploaded == 1
    state = State.open(RootPaths(root).state)
    try:
        names = {r[0] for r in state._db.execute("SELECT name FROM sqlite_master")}
    finally:
        state.close()
    assert "files_parent" in names
