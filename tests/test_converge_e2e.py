"""Devices converging through one remote, end to end through the real CLI (SPEC 2-4):
propagation of every kind of change, conflicts and their resolution, edit against delete,
a chain of three devices, and a new device whose files were copied in by hand."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from tests.converge import CONFLICT_TS, Bucket, Cli, Device, devices, local_bucket


def summary(d: Device, *flags: str, code: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = d.sync(*flags, code=code).json
    return result


# --- every kind of change travels, both ways ---------------------------------------------


def _populate(d: Device) -> None:
    d.write("docs/a.txt", "first version of a\n")
    d.write("old-name.txt", "a file that will be renamed\n")
    d.write("doomed.txt", "a file that will be deleted\n")
    d.write("tool.sh", "#!/bin/sh\necho hi\n")
    os.chmod(d.path("tool.sh"), 0o644)
    d.path("empty").mkdir()
    d.path("gone-dir").mkdir()
    os.symlink("docs/a.txt", d.path("current"))


def _change(d: Device) -> None:
    d.write("docs/a.txt", "second, longer version of a\n")
    os.rename(d.path("old-name.txt"), d.path("docs/new-name.txt"))
    d.path("doomed.txt").unlink()
    d.path("gone-dir").rmdir()
    os.chmod(d.path("tool.sh"), 0o755)
    d.path("current").unlink()
    os.symlink("docs/new-name.txt", d.path("current"))
    d.path("empty2").mkdir()


@pytest.mark.parametrize("direction", ["a-to-b", "b-to-a"])
def test_every_kind_of_change_propagates(remote: Bucket, tmp_path: Path, direction: str) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    src, dst = (a, b) if direction == "a-to-b" else (b, a)
    _populate(src)
    summary(src)
    summary(dst)
    assert dst.tree() == src.tree()
    assert dst.tree()["current"] == ("symlink", "docs/a.txt")
    assert dst.tree()["empty"][0] == "dir"
    assert dst.tree()["tool.sh"][1] == 0o644

    _change(src)
    summary(src)
    got = summary(dst)
    assert dst.tree() == src.tree()
    assert dst.read("docs/a.txt") == b"second, longer version of a\n"
    assert not dst.path("old-name.txt").exists()
    assert dst.read("docs/new-name.txt") == b"a file that will be renamed\n"
    assert not dst.path("doomed.txt").exists()
    assert not dst.path("gone-dir").exists()
    assert dst.tree()["tool.sh"][1] == 0o755
    assert dst.tree()["current"] == ("symlink", "docs/new-name.txt")
    assert dst.tree()["empty2"][0] == "dir"
    # a rename moves bytes already on this disk: only the edited file is fetched
    assert got["downloaded"] == 1, got

    # both sides now agree: further passes are idle and change nothing anywhere
    before = remote.objects()
    assert summary(src)["snapshot"] is None
    assert summary(dst)["snapshot"] is None
    assert remote.objects() == before
    assert dst.tree() == src.tree()


# --- concurrent edits: a conflict copy, then a resolution everyone takes ----------------


@pytest.mark.s3
def test_concurrent_edits_conflict_then_resolution_converges(
    s3_remote: Bucket, tmp_path: Path
) -> None:
    a, b, c = devices(s3_remote, tmp_path, "a", "b", "c")
    a.write("notes/report.md", "base\n")
    summary(a)
    summary(b)
    summary(c)

    a.write("notes/report.md", "edited on a\n")
    b.write("notes/report.md", "edited on b, differently\n")
    a_snapshot = summary(a)["snapshot"]
    assert re.fullmatch(CONFLICT_TS, a_snapshot)

    found = summary(b, code=4)
    assert found["conflicts"] == 1
    copy = f"notes/report.conflict-a-{a_snapshot}.md"
    assert b.read("notes/report.md") == b"edited on b, differently\n"
    assert b.read(copy) == b"edited on a\n"
    assert sorted(p.name for p in b.path("notes").iterdir()) == sorted(
        ["report.md", copy.rpartition("/")[2]]
    )
    conflicts = b.status()["conflicts"]
    assert conflicts == [{"path": "notes/report.md", "copies": [copy]}]
    assert "notes/report.md" not in {e.path for e in s3_remote.listing("b").entries}
    (a_entry,) = [e for e in s3_remote.listing("a").entries if e.path == "notes/report.md"]

    # c syncs meanwhile (takes a's version); a sees nothing new; nobody sees the copy
    summary(c)
    assert c.read("notes/report.md") == b"edited on a\n"
    summary(a)
    assert a.read("notes/report.md") == b"edited on a\n"
    assert not any(".conflict-" in p for p in s3_remote.all_listed_paths())
    assert not any(".conflict-" in str(p) for p in a.tree()) and not any(
        ".conflict-" in str(p) for p in c.tree()
    )

    # b resolves: merges by hand, deletes the copy, syncs -> a dominating version
    b.write("notes/report.md", "merged by hand on b\n")
    b.path(copy).unlink()
    resolved = summary(b)
    assert resolved["conflicts"] == 0 and resolved["snapshot"]
    assert b.status()["conflicts"] == []
    (b_entry,) = [e for e in s3_remote.listing("b").entries if e.path == "notes/report.md"]
    assert all(b_entry.version.get(dev, 0) >= n for dev, n in a_entry.version.items())
    assert b_entry.version != a_entry.version
    for d in (a, c, b, a, c):
        got = summary(d)
        assert got["conflicts"] == 0 and got["conflict_copies"] == 0, (d.id, got)
    for d in (a, b, c):
        assert d.read("notes/report.md") == b"merged by hand on b\n", d.id
        assert sorted(d.tree()) == ["notes", "notes/report.md"], d.id
        assert d.status()["conflicts"] == []
    assert not any(".conflict-" in p for p in s3_remote.all_listed_paths())


# --- edit against delete: the edit survives everywhere -----------------------------------


@pytest.mark.parametrize("first", ["deleter", "editor"])
def test_edit_beats_concurrent_delete(remote: Bucket, tmp_path: Path, first: str) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("plan.txt", "v1\n")
    a.write("other.txt", "keeps the root from looking emptied (SPEC 6)\n")
    summary(a)
    summary(b)

    a.path("plan.txt").unlink()
    b.write("plan.txt", "v2, edited on b while a deleted it\n")
    order = [a, b, a, b] if first == "deleter" else [b, a, b, a]
    for d in order:
        got = summary(d)
        assert got["conflicts"] == 0, (d.id, got)
    for d in (a, b):
        assert d.read("plan.txt") == b"v2, edited on b while a deleted it\n", d.id
    # and it stays: both published trees hold the edit
    for name in ("a", "b"):
        entries = {e.path for e in remote.listing(name).entries}
        assert "plan.txt" in entries, name


# --- the A -> B -> C chain ---------------------------------------------------------------


def test_chain_of_three_devices_takes_the_latest(remote: Bucket, tmp_path: Path) -> None:
    a, b, c = devices(remote, tmp_path, "a", "b", "c")
    a.write("chain.txt", "v0\n")
    for d in (a, b, c):
        summary(d)

    a.write("chain.txt", "v1 from a\n")
    summary(a)
    summary(b)
    assert b.read("chain.txt") == b"v1 from a\n"
    b.write("chain.txt", "v2 from b, after taking a's\n")
    summary(b)

    got = summary(c)  # c saw neither v1 nor v2: b's dominates a's
    assert got["conflicts"] == 0 and got["conflict_copies"] == 0
    assert c.read("chain.txt") == b"v2 from b, after taking a's\n"
    assert sorted(c.tree()) == ["chain.txt"]
    summary(a)
    assert a.read("chain.txt") == b"v2 from b, after taking a's\n"


# --- a new device whose files were copied in by hand --------------------------------------


def test_hand_copied_identical_file_merges_quietly(remote: Bucket, tmp_path: Path) -> None:
    (a,) = devices(remote, tmp_path, "a")
    a.write("photos/cat.jpg", b"\xff\xd8 cat bytes " * 100)
    summary(a)

    b = Device(remote, tmp_path / "root-b", "b")
    b.write("photos/cat.jpg", b"\xff\xd8 cat bytes " * 100)
    b.init()
    before = os.stat(b.path("photos/cat.jpg"))
    got = summary(b)
    assert got["conflicts"] == 0 and got["conflict_copies"] == 0
    assert got["downloaded"] == 0, got
    after = os.stat(b.path("photos/cat.jpg"))
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    assert sorted(b.tree()) == ["photos", "photos/cat.jpg"]

    # the versions merged: a's next edit reaches b as a plain update, not a conflict
    summary(a)
    a.write("photos/cat.jpg", b"a retouched cat")
    summary(a)
    got = summary(b)
    assert got["conflicts"] == 0
    assert b.read("photos/cat.jpg") == b"a retouched cat"


def test_hand_copied_different_file_is_a_conflict_not_an_overwrite(
    remote: Bucket, tmp_path: Path
) -> None:
    (a,) = devices(remote, tmp_path, "a")
    a.write("todo.txt", "a's list\n")
    a_snapshot = summary(a)["snapshot"]

    b = Device(remote, tmp_path / "root-b", "b")
    b.write("todo.txt", "b's own, different list\n")
    b.init()
    got = summary(b, code=4)
    assert got["conflicts"] == 1
    assert b.read("todo.txt") == b"b's own, different list\n"
    assert b.read(f"todo.conflict-a-{a_snapshot}.txt") == b"a's list\n"
    summary(a)
    assert a.read("todo.txt") == b"a's list\n"
    assert sorted(a.tree()) == ["todo.txt"]


@pytest.fixture
def local_remote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Bucket:
    return local_bucket(tmp_path, Cli(capsys))


# --- a delete of bytes this device never saw ---------------------------------------------


def test_an_edit_then_a_delete_made_while_away_both_arrive(
    local_remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(local_remote, tmp_path, "a", "b")
    a.write("draft.txt", "first draft\n")
    a.write("keep.txt", "stays\n")
    summary(a)
    summary(b)
    a.write("draft.txt", "second draft, never seen by b\n")
    summary(a)
    a.path("draft.txt").unlink()  # the delete names the second draft's bytes
    summary(a)

    got = summary(b)  # b held the first draft, which a was seen holding: deleted
    assert got["deleted_local"] == 1 and got["problems"] == 0
    assert sorted(b.tree()) == ["keep.txt"]


# --- a dry run with conflicts ----------------------------------------------------------


def test_dry_run_reports_the_conflict_copies_it_would_write_and_writes_nothing(
    local_remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(local_remote, tmp_path, "a", "b")
    a.write("notes.md", "base\n")
    a.write("todo.txt", "base\n")
    summary(a)
    summary(b)
    a.write("notes.md", "edited on a\n")
    a.write("todo.txt", "edited on a\n")
    a.write("new.txt", "new on a\n")
    summary(a)
    b.write("notes.md", "edited on b\n")
    b.write("todo.txt", "edited on b\n")
    tree, objects, state = b.tree(), local_remote.objects(), b.read(".dropbear/state.sqlite")

    got = summary(b, "--dry-run", code=4)
    assert (got["planned_conflict_copies"], got["conflicts"]) == (2, 2)
    assert (got["planned_downloads"], got["conflict_copies"]) == (1, 0)
    human = local_remote.cli("sync", str(b.root), "--dry-run")
    assert human.code == 4
    assert "1 to download" in human.out and "2 conflict copies to write" in human.out
    assert b.tree() == tree and local_remote.objects() == objects
    assert b.read(".dropbear/state.sqlite") == state

    got = summary(b, code=4)  # the real pass writes what the dry run said
    assert (got["conflict_copies"], got["conflicts"]) == (2, 2)
    assert len([p for p in b.tree() if ".conflict-a-" in p]) == 2
    assert b.read("new.txt") == b"new on a\n"
