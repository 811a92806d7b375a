"""A full disk — the remote's (a USB drive) or the root's — gives a clear error or problem
and loses nothing; once space is freed the next sync completes. Uses a tiny tmpfs, so it
needs the right to mount (root, as on the CI machines)."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.converge import Bucket, Cli, Device, LocalStore


def _mount_tmpfs(where: Path, size: str) -> bool:
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        check=False,
    )
    return done.returncode == 0


@pytest.fixture
def tiny(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB filesystem, unmounted afterwards."""
    where = tmp_path / "tiny"
    if os.geteuid() != 0 or not _mount_tmpfs(where, "1m"):
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False)


def test_full_remote_fails_the_pass_cleanly_and_publishes_nothing(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote = tiny / "remote"
    remote.mkdir()
    bucket = Bucket(str(remote), (), lambda: LocalStore(remote), Cli(capsys))
    a = Device(bucket, tmp_path / "a", "a").init()
    a.write("small.txt", "fits\n")
    a.sync()
    head = (remote / "roots/r1/devices/a/head.json").read_bytes()
    a.write("big.bin", os.urandom(2 * 1024 * 1024))  # bigger than the whole remote disk
    result = a.cli("sync", str(a.root))
    assert result.code == 10, result.err
    (line,) = result.err.strip().splitlines()
    assert "No space left on device" in line
    assert (remote / "roots/r1/devices/a/head.json").read_bytes() == head  # nothing published
    assert a.read("big.bin")  # the local file is untouched
    (a.root / "big.bin").unlink()  # "space freed": the file no longer needs uploading
    a.write("other.txt", "later\n")
    assert a.sync().json["snapshot"] is not None


def test_full_root_keeps_the_old_state_and_retries(
    tiny: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    remote = tmp_path / "remote"
    remote.mkdir()
    bucket = Bucket(str(remote), (), lambda: LocalStore(remote), Cli(capsys))
    a = Device(bucket, tmp_path / "a", "a").init()
    b = Device(bucket, tiny / "b", "b").init()  # b's folder lives on the tiny disk
    a.write("big.bin", os.urandom(2 * 1024 * 1024))
    a.write("small.txt", "fits\n")
    a.sync()
    result = b.cli("sync", str(b.root), "--json")
    assert result.code == 4, result.err  # problems for the files that did not fit
    problems = {p["path"]: p for p in b.status()["problems"]}
    assert "big.bin" in problems  # (small.txt may also have lost the race for space)
    assert {p["kind"] for p in problems.values()} == {"disk_full"}
    assert "No space left on device" in problems["big.bin"]["message"]
    assert not (b.root / "big.bin").exists()  # never a partial file
    assert not any((b.root / ".dropbear" / "tmp").iterdir())  # no leftovers
    # a removes the big file: b converges on what remains, the problem clears.
    (a.root / "big.bin").unlink()
    a.sync()
    b.sync()
    assert b.read("small.txt") == b"fits\n"
    assert not (b.root / "big.bin").exists()
    assert b.status()["problems"] == []


def test_a_full_disk_under_the_state_is_one_clear_line_not_an_internal_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """state.sqlite cannot take the pass's commit (SQLite's own "disk is full"):
    the person reads that the disk is full and that nothing was lost, not a traceback's
    `internal error: ExceptionGroup`; once there is room the sync completes."""
    import sqlite3

    from dropbeard.sync.state import State

    remote = tmp_path / "remote"
    remote.mkdir()
    bucket = Bucket(str(remote), (), lambda: LocalStore(remote), Cli(capsys))
    a = Device(bucket, tmp_path / "a", "a").init()
    a.write("one.txt", "1\n")
    a.sync()
    b = Device(bucket, tmp_path / "b", "b").init()

    def no_room(*args: object, **kwargs: object) -> None:
        raise sqlite3.OperationalError("database or disk is full")

    with monkeypatch.context() as patched:
        patched.setattr(State, "put_bases", no_room)
        result = b.cli("sync", str(b.root))
    assert result.code == 1, result.err
    (line,) = result.err.strip().splitlines()
    assert line.startswith("dropbeard: error: no space left on device writing state"), line
    assert "nothing was lost" in line and "internal" not in line
    b.sync()
    assert b.read("one.txt") == b"1\n"


def test_the_full_disk_is_found_in_a_group_in_a_cause() -> None:
    import errno
    import sqlite3

    from dropbeard.cli.main import out_of_space

    try:
        try:
            raise OSError(errno.EDQUOT, "Disk quota exceeded", "/x/state.sqlite")
        except OSError as inner:
            raise RuntimeError("writing failed") from inner
    except RuntimeError as outer:
        group = ExceptionGroup("task group", [ValueError("other"), outer])
    assert "no space left on device writing /x/state.sqlite" in (out_of_space(group) or "")
    assert out_of_space(sqlite3.OperationalError("database or disk is full")) is not None
    assert out_of_space(ExceptionGroup("g", [OSError(errno.EACCES, "denied")])) is None
