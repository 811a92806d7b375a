"""Names at the edges, end to end through the real CLI (SPEC 2, 4 step 2, 4.3): names
spelled in NFD on disk (every file made on macOS) keep their spelling for every
operation, and case twins are two files where the filesystem can hold both."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from tests.converge import Bucket, Cli, Device, devices, local_bucket

NFD_DIR, NFD_FILE = "Cafe\u0301", "Ame\u0301lie.txt"
NFC_DIR, NFC_FILE = "Caf\u00e9", "Am\u00e9lie.txt"
NFC_PATH, NFD_PATH = f"{NFC_DIR}/{NFC_FILE}", f"{NFD_DIR}/{NFD_FILE}"


@pytest.fixture
def remote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Bucket:
    """The local-directory remote only: the S3 server plays no part in these rules."""
    return local_bucket(tmp_path, Cli(capsys))


def summary(d: Device, *flags: str, code: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = d.sync(*flags, code=code).json
    return result


def names(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


def problems(d: Device) -> list[dict[str, str]]:
    """The problems `status` shows for `d` (whatever its exit code)."""
    found: list[dict[str, str]] = d.cli("status", str(d.root), "--json", "--offline").json[
        "problems"
    ]
    return found


def idle(d: Device) -> None:
    """One more pass changes nothing: no download, no publish, no problem."""
    got = summary(d)
    assert (got["downloaded"], got["snapshot"], got["problems"]) == (0, None, 0), got


# --- names spelled in NFD on disk ---------------------------------------------------------


def test_an_nfd_named_file_receives_remote_edits_and_deletes(
    remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    b.write("keep.txt", "keeps the root from looking emptied\n")
    b.write(NFD_PATH, "made on a Mac\n")
    summary(b)
    summary(a)
    assert a.read(NFC_PATH) == b"made on a Mac\n"

    a.write(NFC_PATH, "edited on a\n")
    summary(a)
    got = summary(b)
    assert got["downloaded"] == 1
    assert b.read(NFD_PATH) == b"edited on a\n"
    assert names(b.root) == sorted([".dropbear", NFD_DIR, "keep.txt"])  # no NFC twin
    assert names(b.path(NFD_DIR)) == [NFD_FILE]
    idle(b)

    a.write(f"{NFC_DIR}/new.txt", "a new file in the folder\n")
    summary(a)
    summary(b)
    assert names(b.path(NFD_DIR)) == sorted([NFD_FILE, "new.txt"])
    assert names(b.root) == sorted([".dropbear", NFD_DIR, "keep.txt"])

    a.path(NFC_PATH).unlink()
    summary(a)
    got = summary(b)
    assert got["deleted_local"] == 1
    assert names(b.path(NFD_DIR)) == ["new.txt"]
    idle(b)
    summary(a)
    assert sorted(a.tree()) == [NFC_DIR, f"{NFC_DIR}/new.txt", "keep.txt"]


def test_a_hand_copied_nfd_file_adopts_the_remote_version_and_takes_later_edits(
    remote: Bucket, tmp_path: Path
) -> None:
    (a,) = devices(remote, tmp_path, "a")
    a.write(NFC_PATH, "the same bytes\n")
    summary(a)

    b = Device(remote, tmp_path / "root-b", "b")
    b.write(NFD_PATH, "the same bytes\n")
    b.init()
    got = summary(b)
    assert (got["downloaded"], got["conflicts"]) == (0, 0), got
    assert names(b.root) == sorted([".dropbear", NFD_DIR])

    summary(a)
    a.write(NFC_PATH, "edited on a after b joined\n")
    summary(a)
    got = summary(b)
    assert got["conflicts"] == 0
    assert b.read(NFD_PATH) == b"edited on a after b joined\n"
    assert names(b.root) == sorted([".dropbear", NFD_DIR])
    idle(b)


@pytest.mark.parametrize("settled_by", ["deleting-the-copy", "resolve-keep-a"])
def test_a_conflict_copy_of_an_nfd_named_file_lands_in_its_folder(
    remote: Bucket, tmp_path: Path, settled_by: str
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    b.write("keep.txt", "keeps the root from looking emptied\n")
    b.write(NFD_PATH, "v1\n")
    summary(b)
    summary(a)

    a.write(NFC_PATH, "edited on a\n")
    b.write(NFD_PATH, "edited on b\n")
    a_snapshot = summary(a)["snapshot"]
    assert summary(b, code=4)["conflicts"] == 1
    copy = f"Am\u00e9lie.conflict-a-{a_snapshot}.txt"
    assert names(b.root) == sorted([".dropbear", NFD_DIR, "keep.txt"])
    assert names(b.path(NFD_DIR)) == sorted([NFD_FILE, copy])
    assert b.read(f"{NFD_DIR}/{copy}") == b"edited on a\n"
    assert b.read(NFD_PATH) == b"edited on b\n"

    if settled_by == "deleting-the-copy":  # b's version wins everywhere
        b.path(f"{NFD_DIR}/{copy}").unlink()
        assert summary(b)["conflicts"] == 0
        winner = b"edited on b\n"
    else:  # a's version wins everywhere
        got = b.cli("resolve", str(b.path(NFD_PATH)), "--keep", "a", "-q")
        assert got.code == 0, got.err
        winner = b"edited on a\n"
    summary(a)
    idle(b)
    assert a.read(NFC_PATH) == winner and b.read(NFD_PATH) == winner
    assert names(b.path(NFD_DIR)) == [NFD_FILE]
    assert names(a.path(NFC_DIR)) == [NFC_FILE]


# --- case twins ---------------------------------------------------------------------------


def test_case_twins_on_a_case_sensitive_filesystem_are_two_files(
    remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("a.txt", "lower\n")
    a.write("A.txt", "upper\n")
    a.write("Docs/x.txt", "in Docs\n")
    a.write("docs/y.txt", "in docs\n")
    got = summary(a)
    assert got["problems"] == 0
    published = {e.path for e in remote.listing("a").entries}
    assert published == {"a.txt", "A.txt", "Docs", "Docs/x.txt", "docs", "docs/y.txt"}

    summary(b)
    assert b.tree() == a.tree()

    b.write("A.txt", "upper, edited on b\n")
    summary(b)
    a.path("a.txt").unlink()
    summary(a)
    summary(b)
    summary(a)
    for d in (a, b):
        assert sorted(d.tree()) == ["A.txt", "Docs", "Docs/x.txt", "docs", "docs/y.txt"], d.id
        assert d.read("A.txt") == b"upper, edited on b\n", d.id


def test_only_a_filesystem_that_folds_case_reports_the_twin_it_cannot_create(
    remote: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, c = devices(remote, tmp_path, "a", "c")
    # c's folder behaves like a case-insensitive volume (macOS, Windows) for the twin check
    monkeypatch.setattr(
        "dropbeard.sync.disknames.folds_case", lambda folder: c.root in folder.parents
    )
    a.write("a.txt", "lower\n")
    a.write("A.txt", "upper\n")
    a.write("other.txt", "unrelated\n")
    summary(a)

    got = summary(c, code=4)
    assert got["problems"] == 1
    (problem,) = problems(c)
    assert (problem["path"], problem["kind"]) == ("a.txt", "case_collision")
    assert sorted(c.tree()) == ["A.txt", "other.txt"]
    assert c.read("A.txt") == b"upper\n"
    # c does not claim the twin, and does not delete it anywhere either
    assert {e.path for e in remote.listing("c").entries} == {"A.txt", "other.txt"}
    assert summary(a)["snapshot"] is None
    assert sorted(a.tree()) == ["A.txt", "a.txt", "other.txt"]
    again = summary(c, code=4)
    assert (again["downloaded"], again["problems"]) == (0, 1)  # not fetched again

    a.path("A.txt").unlink()  # once the twin is gone, c can hold a.txt
    summary(a)
    summary(c)
    assert sorted(c.tree()) == ["a.txt", "other.txt"]
    assert c.read("a.txt") == b"lower\n"
    assert problems(c) == []
