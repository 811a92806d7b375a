"""Devices converging through type changes, end to end through the real CLI on the
local-directory remote (SPEC 2, 4 step 5, 4.1, 4.3, 6): a one-sided change of type
propagates; a clash with a change below is a conflict or a problem and loses nothing; a
device that replaced a folder keeps syncing; no temporary item leaks into the folder; a
special file in the way is a problem once; only a really empty root trips the emptied-root
guard.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.converge import CONFLICT_TS, Bucket, Device, devices

pytestmark = pytest.mark.parametrize("remote", ["local"], indirect=True)


def summary(d: Device, *flags: str, code: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = d.sync(*flags, code=code).json
    return result


def problems(d: Device) -> dict[str, str]:
    got = d.cli("status", str(d.root), "--json", "--offline")
    return {p["path"]: p["kind"] for p in got.json["problems"]}


def remove(d: Device, rel: str) -> None:
    p = d.path(rel)
    if p.is_dir() and not p.is_symlink():
        shutil.rmtree(p)
    else:
        p.unlink()


def leftovers(d: Device) -> list[str]:
    """Temporary items in the folder (never in `.dropbear/`): none may ever be left."""
    return [rel for rel in d.tree() if ".dropbeard-" in rel]


def idle(*everyone: Device) -> None:
    """One more pass on each device publishes nothing, changes nothing, exits 0."""
    trees = [d.tree() for d in everyone]
    for d in everyone:
        assert summary(d)["snapshot"] is None, d.id
    assert [d.tree() for d in everyone] == trees


# --- 1. one-sided type changes propagate --------------------------------------------------


def _file(d: Device) -> None:
    d.write("x", "x is a file\n")


def _folder(d: Device) -> None:
    d.write("x/inner.txt", "inside x\n")
    d.write("x/deeper/more.txt", "deeper inside x\n")


def _empty_folder(d: Device) -> None:
    d.path("x").mkdir()


def _symlink(d: Device) -> None:
    os.symlink("keep.txt", d.path("x"))


CHANGES: dict[str, tuple[Callable[[Device], None], Callable[[Device], None]]] = {
    "file-to-folder": (_file, _folder),
    "folder-to-file": (_folder, _file),
    "folder-to-symlink": (_folder, _symlink),
    "symlink-to-folder": (_symlink, _folder),
    "empty-folder-to-file": (_empty_folder, _file),
    "file-to-symlink": (_file, _symlink),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_one_sided_type_change_propagates(remote: Bucket, tmp_path: Path, change: str) -> None:
    before, after = CHANGES[change]
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("keep.txt", "keeps the root from looking emptied\n")
    before(a)
    summary(a)
    summary(b)
    assert b.tree() == a.tree()

    remove(a, "x")
    after(a)
    for d in (a, b, a):
        got = summary(d)
        assert got["problems"] == 0 and got["conflicts"] == 0, (d.id, got)
    assert b.tree() == a.tree()
    assert leftovers(b) == []
    idle(a, b)


def test_a_folder_holding_an_ignored_file_is_not_replaced(remote: Bucket, tmp_path: Path) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("keep.txt", "k\n")
    _folder(a)
    summary(a)
    summary(b)
    b.write(".dropbearignore", "*.log\n")
    b.write("x/build.log", "b's own, never synced\n")
    summary(b)

    remove(a, "x")
    _file(a)
    summary(a)
    summary(b, code=4)
    assert problems(b) == {"x": "type_clash"}
    assert b.read("x/build.log") == b"b's own, never synced\n"  # nothing lost
    assert not b.path("x/inner.txt").exists()  # what was tracked there did go
    assert leftovers(b) == []
    summary(b, code=4)  # reported again, nothing else happens
    assert problems(b) == {"x": "type_clash"}


def test_a_type_change_against_an_addition_below_is_a_conflict(
    remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("keep.txt", "k\n")
    _folder(a)
    summary(a)
    summary(b)

    remove(a, "x")
    _file(a)  # a: the folder becomes a file
    b.write("x/added-on-b.txt", "b's addition\n")  # b: meanwhile, adds to the folder
    a_snapshot = summary(a)["snapshot"]
    got = summary(b, code=4)
    assert got["conflicts"] == 1
    copy = f"x.conflict-a-{a_snapshot}"
    assert re.fullmatch(rf"x\.conflict-a-{CONFLICT_TS}", copy)
    assert b.read(copy) == b"x is a file\n"  # a's file, beside b's folder
    assert b.read("x/added-on-b.txt") == b"b's addition\n"
    assert [c["path"] for c in b.status()["conflicts"]] == ["x"]

    summary(a, code=4)  # a keeps its file; b's addition cannot go below it: a problem
    assert a.read("x") == b"x is a file\n"
    assert problems(a) == {"x": "type_clash"}
    assert not any(".conflict-" in p for p in remote.all_listed_paths())

    # b's person keeps the folder (deletes the copy): everyone takes it
    b.path(copy).unlink()
    for d in (b, a, b):
        assert summary(d)["conflicts"] == 0, d.id
    assert a.tree() == b.tree()
    assert a.read("x/added-on-b.txt") == b"b's addition\n"
    idle(a, b)


# --- 2. a device that replaced a folder keeps syncing -------------------------------------


@pytest.mark.parametrize("folder", ["d", "d/e"])  # the edited file right below `d`, or deeper
@pytest.mark.parametrize("replacement", ["symlink", "file"])
def test_a_device_that_replaced_a_folder_keeps_syncing(
    remote: Bucket, tmp_path: Path, replacement: str, folder: str
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    f, g = f"{folder}/f.txt", f"{folder}/g.txt"
    a.write("keep.txt", "k\n")
    a.write(f, "v1\n")
    a.write(g, "untouched\n")
    summary(a)
    summary(b)

    remove(b, "d")
    if replacement == "symlink":
        os.symlink("keep.txt", b.path("d"))
    else:
        b.write("d", "d is a file on b\n")
    a.write(f, "v2, edited on a\n")
    summary(a)

    b.write("new-on-b.txt", "unrelated, must still reach a\n")
    got = summary(b, code=4)
    assert got["snapshot"] is not None
    assert problems(b) == {"d": "type_clash"}
    published = {e.path: e.type for e in remote.listing("b").entries}  # a valid tree
    assert published["d"] == replacement and "new-on-b.txt" in published
    assert not any(p.startswith("d/") for p in published)
    assert summary(b, code=4)["snapshot"] is None  # stable: no error, nothing new

    summary(a, code=4)  # a keeps its folder and its edit; b's item arrives as a copy
    assert a.read("new-on-b.txt") == b"unrelated, must still reach a\n"
    assert a.read(f) == b"v2, edited on a\n"
    assert [c["path"] for c in a.status()["conflicts"]] == ["d"]
    assert not a.path(g).exists()  # b's delete of the untouched file went through

    # a's person keeps the folder: b takes it back, with a's edit
    for copy in [p for p in a.tree() if p.startswith("d.conflict-")]:
        remove(a, copy)
    for d in (a, b, a):
        assert summary(d)["conflicts"] == 0, d.id
    assert b.read(f) == b"v2, edited on a\n"
    assert a.tree() == b.tree()
    idle(a, b)


def test_a_folder_of_60_files_replaced_by_a_file_halts_and_an_addition_still_syncs(
    remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    for i in range(60):
        b.write(f"d/f{i:02}.txt", f"file {i}\n")
    summary(b)
    summary(a)

    shutil.rmtree(b.path("d"))
    b.write("d", "one file instead of the folder\n")
    b.write("added.txt", "arrived with the replacement\n")
    run = b.sync(code=1)
    assert run.json["halted"] and "--allow-mass-delete" in run.err
    published = {e.path: e.type for e in remote.listing("b").entries}
    assert published["d"] == "dir" and "added.txt" in published  # nothing destructive out

    summary(a)
    assert a.read("added.txt") == b"arrived with the replacement\n"
    assert len(list(a.path("d").iterdir())) == 60  # the folder is untouched on a

    summary(b, "--allow-mass-delete")
    summary(a)
    assert a.read("d") == b"one file instead of the folder\n"
    assert a.tree() == b.tree()


# --- 3. no temporary item leaks into the folder -------------------------------------------


def test_a_symlink_replacing_a_folder_leaves_no_temporary_item(
    remote: Bucket, tmp_path: Path
) -> None:
    a, b, c = devices(remote, tmp_path, "a", "b", "c")
    a.write("keep.txt", "k\n")
    _folder(a)
    for d in (a, b, c):
        summary(d)
    c.write(".dropbearignore", "*.log\n")
    c.write("x/c.log", "c's own\n")  # c cannot let its folder go: a problem there

    remove(a, "x")
    _symlink(a)
    summary(a)
    summary(b)
    for _ in range(3):
        summary(c, code=4)
    for d in (a, b, c):
        assert leftovers(d) == [], d.id
        assert os.listdir(d.root / ".dropbear" / "tmp") == [], d.id
    assert not any(".dropbeard-" in p for p in remote.all_listed_paths())
    assert b.tree()["x"] == ("symlink", "keep.txt")


# --- 7. a special file in the way is a problem, once --------------------------------------


def test_a_fifo_in_the_way_is_a_problem_and_is_not_downloaded_every_pass(
    remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("keep.txt", "k\n")
    summary(a)
    summary(b)
    os.mkfifo(b.path("pipe"))
    a.write("pipe", "a regular file on a\n")
    summary(a)

    for _ in range(2):
        got = summary(b, code=4)
        assert got["downloaded"] == 0 and got["problems"] == 1
        assert problems(b) == {"pipe": "special_file"}
        assert "special file" in b.cli("status", str(b.root), "--offline").out
    assert "pipe" not in {e.path for e in remote.listing("b").entries}

    b.path("pipe").unlink()  # the person clears the way
    summary(b)
    assert b.read("pipe") == b"a regular file on a\n"
    idle(a, b)


# --- 9. the emptied-root rule --------------------------------------------------------------


def test_renaming_the_only_file_is_an_ordinary_change(remote: Bucket, tmp_path: Path) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("only.txt", "the one file\n")
    summary(a)
    summary(b)
    os.rename(a.path("only.txt"), a.path("renamed.txt"))
    assert summary(a)["halted"] is None
    summary(b)
    assert sorted(b.tree()) == ["renamed.txt"]


def test_replacing_the_only_folder_is_an_ordinary_change(remote: Bucket, tmp_path: Path) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("d/only.txt", "the one file\n")
    summary(a)
    summary(b)
    shutil.rmtree(a.path("d"))
    a.write("d", "now a file\n")
    assert summary(a)["halted"] is None
    summary(b)
    assert b.tree() == a.tree() == {"d": ("file", 0o644, b"now a file\n")}


def test_an_emptied_root_still_halts(remote: Bucket, tmp_path: Path) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("only.txt", "the one file\n")
    summary(a)
    summary(b)
    a.path("only.txt").unlink()
    assert a.sync(code=1).json["halted"]
    summary(b)
    assert b.read("only.txt") == b"the one file\n"
