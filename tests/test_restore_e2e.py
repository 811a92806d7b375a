"""Restore dominates (SPEC 8.3), end to end through the command line with real devices on
a local remote: a file restored into the root is a new local version dominating both the
restored and the current one, so the next syncs carry it to every device, with no
conflict copy and no problem, whether the current version is another device's delete
(its tombstone) or another device's overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chunkfiles import sha
from tests.converge import Cli, Device, devices, local_bucket


def three(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> list[Device]:
    return devices(local_bucket(tmp_path, Cli(capsys)), tmp_path, "a", "b", "c")


def sync_all(devs: list[Device]) -> None:
    for dev in devs:
        dev.sync()


def settled(devs: list[Device]) -> None:
    """Every device holds the same tree, with no conflict and no problem."""
    trees = [dev.tree() for dev in devs]
    assert trees[0] == trees[1] == trees[2]
    assert not [p for p in trees[0] if ".conflict-" in p]
    for dev in devs:
        status = dev.status()
        assert (status["conflicts"], status["problems"]) == ([], [])


def test_a_file_deleted_on_one_device_restored_on_another_comes_back_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    devs = a, b, c = three(tmp_path, capsys)
    a.write("docs/plan.md", b"the plan")
    a.write("other.txt", b"stays")
    sync_all(devs)
    a.path("docs/plan.md").unlink()
    sync_all(devs)  # a's tombstone reaches b and c
    assert not b.path("docs/plan.md").exists() and not c.path("docs/plan.md").exists()
    versions = b.cli("versions", str(b.path("docs/plan.md")), "--json")
    assert versions.code == 0, versions.err
    assert [v["kind"] for v in versions.json][-1] == "deleted"
    got = b.cli("restore", str(b.path("docs/plan.md")))
    assert got.code == 0, got.err
    sync_all([b, a, c])
    for dev in devs:
        assert dev.read("docs/plan.md") == b"the plan"
    sync_all(devs)  # and it stays: no device deletes it again
    settled(devs)
    assert a.read("docs/plan.md") == b"the plan"


def test_an_overwritten_version_restored_lands_on_every_device_without_a_conflict(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    devs = a, b, c = three(tmp_path, capsys)
    a.write("notes.txt", b"first draft")
    sync_all(devs)
    b.write("notes.txt", b"second draft, which was a mistake")
    sync_all([b, a, c])
    assert a.read("notes.txt") == c.read("notes.txt") == b"second draft, which was a mistake"
    got = c.cli("restore", str(c.path("notes.txt")), "--version", sha(b"first draft")[:10])
    assert got.code == 0, got.err
    assert c.read("notes.txt") == b"first draft"
    sync_all([c, a, b])
    sync_all(devs)
    settled(devs)
    for dev in devs:
        assert dev.read("notes.txt") == b"first draft"


def test_a_restored_folder_deleted_elsewhere_comes_back_everywhere(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    devs = a, b, c = three(tmp_path, capsys)
    a.write("keep.txt", b"the root is not emptied")
    for name in ("one", "two", "three"):
        a.write(f"photos/{name}.jpg", name.encode() * 100)
    sync_all(devs)
    for name in ("one", "two", "three"):
        c.path(f"photos/{name}.jpg").unlink()
    c.path("photos").rmdir()
    sync_all([c, a, b])
    assert not a.path("photos").exists()
    got = a.cli("restore", str(a.path("photos")))
    assert got.code == 0, got.err
    sync_all([a, b, c])
    sync_all(devs)
    settled(devs)
    for dev in devs:
        assert dev.read("photos/two.jpg") == b"two" * 100
