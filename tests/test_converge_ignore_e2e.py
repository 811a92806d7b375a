"""Ignored paths are local-only both ways, end to end through the real CLI (SPEC 2): never
uploaded or tombstoned, never downloaded, nor replaced or deleted by a remote change; and
an ignore file that cannot be read or decoded is a problem, with no new path synced."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any

import pytest

from dropbeard.core.model import decode_snapshot, decode_tombstones
from tests.converge import Bucket, Cli, Device, devices, local_bucket


@pytest.fixture
def remote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Bucket:
    """The local-directory remote only: the S3 server plays no part in these rules."""
    return local_bucket(tmp_path, Cli(capsys))


def summary(d: Device, *flags: str, code: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = d.sync(*flags, code=code).json
    return result


def published_by(remote: Bucket, device: str) -> list[set[str]]:
    """The paths of every snapshot `device` ever published, oldest first."""
    keys = sorted(k for k in remote.objects() if f"/devices/{device}/snapshots/" in k)
    trees = [decode_snapshot(remote.get(k), k).tree for k in keys]
    return [{e.path for e in remote.tree_entries(tree)} for tree in trees]


def tombstoned(remote: Bucket) -> set[str]:
    """Every path any device ever published a tombstone for."""
    return {
        gone.path
        for k in remote.objects()
        if "/tombstones/" in k
        for gone in decode_tombstones(remote.get(k), k).deletes
    }


def problems(d: Device) -> list[dict[str, str]]:
    found: list[dict[str, str]] = d.cli("status", str(d.root), "--json", "--offline").json[
        "problems"
    ]
    return found


def has_blob(remote: Bucket, data: bytes) -> bool:
    return remote.keys.blob(hashlib.sha256(data).hexdigest()) in remote.objects()


# --- local-only both ways -----------------------------------------------------------------


def test_ignored_paths_are_never_downloaded_replaced_or_deleted_by_remote_changes(
    remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("keep.txt", "shared\n")
    a.write("x.log", "a's log\n")
    a.write("build/out.o", "a's object\n")
    summary(a)
    summary(b)
    # b's rules are its own: the ignore file ignores itself, so a never learns them
    b.write(".dropbearignore", ".dropbearignore\n*.log\nbuild/\n")
    b.path("x.log").unlink()
    b.path("build/out.o").unlink()
    got = summary(b)
    assert (got["downloaded"], got["tombstones"]) == (0, 0), got

    a.write("x.log", "a's log, edited\n")
    a.write("build/out.o", "a's object, rebuilt\n")
    a.write("new.log", "a's new log\n")
    summary(a)
    got = summary(b)
    assert got["downloaded"] == 0, got
    assert sorted(b.tree()) == [".dropbearignore", "build", "keep.txt"]

    b.write("x.log", "b's own log\n")  # never replaced by a's ...
    summary(b)
    a.write("x.log", "a's log, edited again\n")
    summary(a)
    summary(b)
    assert b.read("x.log") == b"b's own log\n"
    a.path("x.log").unlink()  # ... nor deleted by a's delete
    summary(a)
    summary(b)
    assert b.read("x.log") == b"b's own log\n"

    # a keeps its files; b never listed an ignored path, nor tombstoned one
    assert sorted(a.tree()) == ["build", "build/out.o", "keep.txt", "new.log"]
    assert all(
        m <= {"keep.txt", "x.log", "build", "build/out.o"} for m in published_by(remote, "b")
    )
    assert published_by(remote, "b")[-1] == {"keep.txt"}
    assert tombstoned(remote) == {"x.log"}  # a's own delete, nothing of b's
    assert summary(b)["snapshot"] is None and summary(a)["snapshot"] is None


def test_a_new_rule_stops_an_ignored_file_coming_back_and_the_listing_flipping(
    remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("keep.txt", "shared\n")
    a.write("x.log", "a's log\n")
    summary(a)
    summary(b)

    b.write(".dropbearignore", "*.log\n")  # the rule travels to a, like any file
    b.path("x.log").unlink()
    for d in (b, a, b, a, b, a):
        got = summary(d)
        assert got["downloaded"] == 0 or d is a, (d.id, got)
        assert not b.path("x.log").exists()

    assert a.read("x.log") == b"a's log\n"  # untracked on a, never deleted there
    assert sorted(b.tree()) == [".dropbearignore", "keep.txt"]
    b_snapshots = published_by(remote, "b")
    assert all("x.log" not in m for m in b_snapshots[1:]), b_snapshots
    assert "x.log" not in published_by(remote, "a")[-1]
    assert tombstoned(remote) == set()
    assert summary(a)["snapshot"] is None and summary(b)["snapshot"] is None


# --- an ignore file that cannot be read ---------------------------------------------------


@pytest.mark.parametrize("broken", ["latin1-comment", "a-folder"])
def test_an_unreadable_ignore_file_is_a_problem_and_no_new_path_syncs(
    remote: Bucket, tmp_path: Path, broken: str
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("keep.txt", "shared\n")
    summary(a)
    summary(b)
    b.write("from-b.txt", "new on b\n")
    summary(b)

    if broken == "latin1-comment":
        a.write(".dropbearignore", b"# r\xe8gles de caf\xe9\n*.log\n")
    else:
        a.path(".dropbearignore").mkdir()
    a.write("secret.log", "must never be uploaded\n")
    a.write("new.txt", "new on a\n")
    a.write("keep.txt", "shared, edited on a\n")
    got = summary(a, code=4)

    (problem,) = problems(a)
    assert (problem["path"], problem["kind"]) == (".dropbearignore", "ignore_file")
    assert got["downloaded"] == 0 and not a.path("from-b.txt").exists()
    assert not has_blob(remote, b"must never be uploaded\n")
    assert not has_blob(remote, b"new on a\n")
    assert {"secret.log", "new.txt"}.isdisjoint(published_by(remote, "a")[-1])
    assert has_blob(remote, b"shared, edited on a\n")  # a tracked path still syncs
    summary(b)
    assert b.read("keep.txt") == b"shared, edited on a\n"
    assert sorted(b.tree()) == ["from-b.txt", "keep.txt"]  # the ignore file is new too

    if broken == "a-folder":
        a.path(".dropbearignore").rmdir()
    a.write(".dropbearignore", "*.log\n")  # fixed: the new paths sync, the rules hold
    summary(a)
    assert problems(a) == []
    assert a.read("from-b.txt") == b"new on b\n"
    assert "new.txt" in published_by(remote, "a")[-1]
    assert not has_blob(remote, b"must never be uploaded\n")
    summary(b)
    assert b.read("new.txt") == b"new on a\n" and not b.path("secret.log").exists()


def test_a_folder_deleted_elsewhere_that_holds_ignored_files_here_settles(
    remote: Bucket, tmp_path: Path
) -> None:
    """a deletes folder `build/`; b holds ignored files inside it. b deletes what was
    synced and keeps the folder for its local-only files (SPEC 2); the devices then agree
    at once: no pass republishes the folder, none re-creates it on a, no problem repeats.
    A synced file put in it later brings the folder back everywhere, as any new file."""
    a, b = devices(remote, tmp_path, "a", "b")
    for d in (a, b):
        d.write(".dropbearignore", "*.o\n")
    a.write("keep.txt", "keeps the root from looking emptied\n")
    a.write("build/notes.txt", "synced\n")
    a.write("build/obj/readme.txt", "synced too\n")
    a.sync()
    b.sync()
    b.write("build/main.o", "local-only object file\n")
    b.write("build/obj/util.o", "another\n")
    b.sync()
    shutil.rmtree(a.path("build"))
    a.sync()

    first = summary(b)
    assert first["deleted_local"] == 2 and first["problems"] == 0, first
    assert not b.path("build/notes.txt").exists()
    assert not b.path("build/obj/readme.txt").exists()
    assert b.read("build/main.o") == b"local-only object file\n"
    for _ in range(2):
        again = summary(b)
        assert (again["snapshot"], again["problems"], again["planned_local_deletes"]) == (
            None,
            0,
            0,
        ), again
        assert b.status()["problems"] == []
        assert summary(a)["downloaded"] == 0
        assert not a.path("build").exists()
    assert b.read("build/obj/util.o") == b"another\n"

    b.write("build/obj/new.txt", "a synced file in the kept folder\n")
    b.sync()
    a.sync()
    assert a.read("build/obj/new.txt") == b"a synced file in the kept folder\n"
    assert not a.path("build/main.o").exists()


def test_what_a_downloaded_ignore_file_stops_ignoring_arrives_in_the_same_sync(
    remote: Bucket, tmp_path: Path
) -> None:
    """a stops ignoring `notes.txt` and publishes it with the new `.dropbearignore`; b's
    one `sync` writes the new rules and then, with them, the file (a pass reconciles with
    the rules it began with, so the sync runs one more pass once the rules changed)."""
    a, b = devices(remote, tmp_path, "a", "b")
    a.write(".dropbearignore", "notes.txt\n")
    a.write("keep.txt", "keeps the root from looking emptied\n")
    a.write("notes.txt", "local-only on a, for now\n")
    a.sync()
    b.sync()
    assert not b.path("notes.txt").exists()

    a.write(".dropbearignore", "# nothing ignored\n")
    a.sync()
    got = summary(b)
    assert got["downloaded"] == 2, got
    assert b.read("notes.txt") == b"local-only on a, for now\n"
    assert summary(b)["downloaded"] == 0
