"""Applying a plan to the folder (dropbeard.sync.apply), directly against a LocalStore remote
and a temp root: what lands on disk, what is refused, what becomes a problem."""

from __future__ import annotations

import hashlib
import os
import stat
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from dropbeard.core.conflictname import conflict_name
from dropbeard.core.ignore import IgnoreRules
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Entry
from dropbeard.core.plan import ConflictCopy, Download, LocalDelete, Plan
from dropbeard.store.base import FileSlot, ObjectInfo, Store
from dropbeard.store.counting import CountingStore
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync import apply as apply_module
from dropbeard.sync import folderwriter as folderwriter_module
from dropbeard.sync import trips as trips_module
from dropbeard.sync.applied import UnsafePath
from dropbeard.sync.apply import Applied, apply_plan
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.disknames import DiskNames
from dropbeard.sync.fetch import WHOLE_DOWNLOAD
from dropbeard.sync.partfiles import PREFIX
from dropbeard.sync.root import RootPaths, reset_tmp
from dropbeard.sync.scan import ScanResult, scan

pytestmark = pytest.mark.anyio

KEYS = RootKeys("r1")
MTIME = 1_700_000_000_123_456_789


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: str, data: bytes, *, mode: int = 0o644, mtime_ns: int = MTIME) -> Entry:
    return Entry(
        path=path,
        type="file",
        mode=mode,
        version={"b": 1},
        size=len(data),
        mtime_ns=mtime_ns,
        sha256=sha(data),
    )


def dir_entry(path: str, mode: int = 0o755) -> Entry:
    return Entry(path=path, type="dir", mode=mode, version={"b": 1})


def link_entry(path: str, target: str) -> Entry:
    return Entry(path=path, type="symlink", mode=0o777, version={"b": 1}, target=target)


@dataclass
class World:
    """A root folder, its `.dropbear/`, and a LocalStore remote (requests counted)."""

    root: Path
    paths: RootPaths
    store: CountingStore

    def write(self, rel: str, data: bytes) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()

    async def blob(self, data: bytes) -> str:
        """Put `data` in the bucket as a blob, as another device's upload would."""
        await self.store.inner.put(KEYS.blob(sha(data)), data)
        return sha(data)

    async def scan(self) -> ScanResult:
        return await scan(self.root, ignore=IgnoreRules.empty(), cache=lambda _p: None)

    async def apply(
        self, plan: Plan, scanned: ScanResult | None = None, *, concurrency: int = 4
    ) -> Applied:
        if scanned is None:
            scanned = await self.scan()
        self.store.reset()
        return await apply_plan(
            self.paths, self.store, KEYS, plan, scanned, budget=TransferBudget(concurrency)
        )

    def tmp_files(self) -> list[str]:
        """What downloads left behind: in `.dropbear/tmp/`, and beside their destination."""
        beside = [str(p.relative_to(self.root)) for p in self.root.rglob(f"{PREFIX}*")]
        return sorted([p.name for p in self.paths.tmp.iterdir()] + beside)


@pytest.fixture
def world(tmp_path: Path) -> World:
    root, remote = tmp_path / "root", tmp_path / "remote"
    (root / ".dropbear").mkdir(parents=True)
    remote.mkdir()
    paths = RootPaths(root)
    reset_tmp(paths)
    return World(root, paths, CountingStore(LocalStore(remote)))


def plan(
    downloads: Sequence[Download] = (),
    copies: Sequence[ConflictCopy] = (),
    deletes: Sequence[LocalDelete] = (),
) -> Plan:
    return Plan(
        publishes=False,
        downloads=list(downloads),
        conflict_copies=list(copies),
        local_deletes=list(deletes),
    )


def kinds(applied: Applied) -> dict[str, str]:
    return {p.path: p.kind for p in applied.problems}


# --- downloads ---------------------------------------------------------------------------


async def test_a_download_lands_with_its_bytes_mode_and_mtime(world: World) -> None:
    data = b"remote bytes\n" * 100
    await world.blob(data)
    entry = file_entry("docs/notes/a.txt", data, mode=0o640)

    applied = await world.apply(plan([Download(path=entry.path, entry=entry)]))

    assert world.read("docs/notes/a.txt") == data
    st = os.lstat(world.root / "docs/notes/a.txt")
    assert stat.S_IMODE(st.st_mode) == 0o640
    assert st.st_mtime_ns == MTIME
    assert (applied.downloaded, applied.downloaded_bytes, applied.copied_locally) == (
        1,
        len(data),
        0,
    )
    assert not applied.failed and not applied.problems
    # The stat-cache row describes the file as written, so the next scan need not hash it.
    assert applied.stats == {
        "docs/notes/a.txt": (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, sha(data), None)
    }
    assert world.store.counts == {"get": 1}  # a small blob: one request, no streaming
    assert world.tmp_files() == []


async def test_a_remote_edit_replaces_the_unchanged_local_file(world: World) -> None:
    world.write("a.txt", b"old version")
    scanned = await world.scan()
    await world.blob(b"new version")
    entry = file_entry("a.txt", b"new version", mode=0o600)

    applied = await world.apply(plan([Download(path="a.txt", entry=entry)]), scanned)

    assert world.read("a.txt") == b"new version"
    assert stat.S_IMODE(os.lstat(world.root / "a.txt").st_mode) == 0o600
    assert applied.downloaded == 1 and not applied.failed


async def test_a_blob_failing_its_sha256_never_overwrites_the_local_file(world: World) -> None:
    world.write("a.txt", b"what I have")
    scanned = await world.scan()
    wanted = file_entry("a.txt", b"what they published")
    await world.store.inner.put(KEYS.blob(wanted.sha256 or ""), b"corrupted in the bucket")
    fine = file_entry("b.txt", b"fine")
    await world.blob(b"fine")

    applied = await world.apply(
        plan([Download(path="a.txt", entry=wanted), Download(path="b.txt", entry=fine)]), scanned
    )

    assert world.read("a.txt") == b"what I have"
    assert kinds(applied) == {"a.txt": "integrity"}
    assert applied.failed == {"a.txt"}
    assert "a.txt" not in applied.stats
    assert applied.downloaded == 1  # only b.txt counts as downloaded
    assert world.read("b.txt") == b"fine"  # one bad blob does not stop the others
    assert world.tmp_files() == []  # the unverified bytes were discarded


async def test_a_blob_missing_from_the_bucket_is_a_problem_for_that_path(world: World) -> None:
    entry = file_entry("gone.txt", b"never uploaded")

    applied = await world.apply(plan([Download(path="gone.txt", entry=entry)]))

    assert kinds(applied) == {"gone.txt": "missing_blob"}
    assert entry.sha256 is not None and entry.sha256 in applied.problems[0].message
    assert applied.failed == {"gone.txt"}
    assert not (world.root / "gone.txt").exists()
    assert world.tmp_files() == []


async def test_content_already_on_disk_is_copied_not_downloaded(world: World) -> None:
    data = b"a photo, say" * 1000
    world.write("camera/IMG_1.jpg", data)
    entry = file_entry("album/IMG_1.jpg", data, mode=0o600)  # not in the bucket at all

    applied = await world.apply(plan([Download(path=entry.path, entry=entry)]))

    assert world.read("album/IMG_1.jpg") == data
    assert world.read("camera/IMG_1.jpg") == data
    assert stat.S_IMODE(os.lstat(world.root / "album/IMG_1.jpg").st_mode) == 0o600
    assert (applied.copied_locally, applied.downloaded) == (1, 0)
    assert world.store.counts == {}  # not a single request
    assert "album/IMG_1.jpg" in applied.stats


async def test_a_remote_rename_moves_the_bytes_without_a_download(world: World) -> None:
    data = b"renamed on the other device"
    world.write("old name.txt", data)
    scanned = await world.scan()
    old = file_entry("old name.txt", data)
    new = file_entry("new name.txt", data)

    applied = await world.apply(
        plan(
            downloads=[Download(path="new name.txt", entry=new)],
            deletes=[LocalDelete(path="old name.txt", expected=old)],
        ),
        scanned,
    )

    assert world.read("new name.txt") == data
    assert not (world.root / "old name.txt").exists()
    assert (applied.deleted, applied.copied_locally, applied.downloaded) == (1, 1, 0)
    assert world.store.counts == {}
    assert world.tmp_files() == []  # the parked original is removed at the end


async def test_one_blob_for_many_paths_is_fetched_once(world: World) -> None:
    data = b"the same bytes everywhere"
    await world.blob(data)
    downloads = [
        Download(path=f"d{i}/same.txt", entry=file_entry(f"d{i}/same.txt", data)) for i in range(6)
    ]

    applied = await world.apply(plan(downloads), concurrency=6)

    assert all(world.read(f"d{i}/same.txt") == data for i in range(6))
    assert world.store.counts == {"get": 1}
    assert (applied.downloaded, applied.copied_locally) == (1, 5)
    assert not applied.problems


async def test_a_file_edited_since_the_scan_is_not_overwritten(world: World) -> None:
    world.write("a.txt", b"scanned")
    scanned = await world.scan()
    world.write("a.txt", b"edited by the user after the scan")
    await world.blob(b"remote")

    applied = await world.apply(
        plan([Download(path="a.txt", entry=file_entry("a.txt", b"remote"))]), scanned
    )

    assert world.read("a.txt") == b"edited by the user after the scan"
    assert applied.failed == {"a.txt"}  # kept its old base: the next pass sees a conflict
    assert "a.txt" not in applied.stats
    assert world.tmp_files() == []


async def test_a_file_created_after_the_scan_is_not_overwritten(world: World) -> None:
    scanned = await world.scan()  # nothing there yet
    world.write("new.txt", b"the user was quicker")
    await world.blob(b"remote")

    applied = await world.apply(
        plan([Download(path="new.txt", entry=file_entry("new.txt", b"remote"))]), scanned
    )

    assert world.read("new.txt") == b"the user was quicker"
    assert applied.failed == {"new.txt"}


async def test_a_local_source_edited_since_the_scan_is_never_copied(world: World) -> None:
    world.write("source.txt", b"original")
    scanned = await world.scan()
    world.write("source.txt", b"edited!!")  # same size: only the hash can tell

    applied = await world.apply(
        plan([Download(path="copy.txt", entry=file_entry("copy.txt", b"original"))]), scanned
    )

    # The bucket does not hold the blob either: the path fails; no wrong bytes land.
    assert not (world.root / "copy.txt").exists()
    assert applied.failed == {"copy.txt"}
    assert [p.path for p in applied.problems] == ["copy.txt"]
    assert world.tmp_files() == []


@pytest.mark.parametrize("concurrency", [1, 4])
async def test_two_files_swapping_contents_are_both_written(world: World, concurrency: int) -> None:
    a, b = b"content of a", b"content of b"
    world.write("a.txt", a)
    world.write("b.txt", b)
    scanned = await world.scan()
    await world.blob(a)  # both blobs are in the bucket, as this device uploaded them
    await world.blob(b)

    applied = await world.apply(
        plan(
            [
                Download(path="a.txt", entry=file_entry("a.txt", b)),
                Download(path="b.txt", entry=file_entry("b.txt", a)),
            ]
        ),
        scanned,
        concurrency=concurrency,
    )

    assert (world.read("a.txt"), world.read("b.txt")) == (b, a)
    assert not applied.problems and not applied.failed


async def test_a_local_source_edited_since_the_scan_falls_back_to_the_bucket(
    world: World,
) -> None:
    world.write("source.txt", b"original")
    scanned = await world.scan()
    world.write("source.txt", b"edited!!")  # same size: only the hash can tell
    await world.blob(b"original")

    applied = await world.apply(
        plan([Download(path="copy.txt", entry=file_entry("copy.txt", b"original"))]), scanned
    )

    assert world.read("copy.txt") == b"original"
    assert not applied.problems and not applied.failed
    assert (applied.copied_locally, applied.downloaded) == (0, 1)
    assert world.tmp_files() == []


async def test_a_parent_made_meanwhile_by_another_writer_is_used(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Parents missing from the plan (a manifest need not list them) are made on the way
    by concurrent writers. Here the other writer wins the race for `new/` exactly between
    this writer's check and its mkdir (the interleaving a pass with many downloads into a
    new folder hits now and then)."""
    await world.blob(b"payload")
    contested = str(world.root / "new")
    real_mkdir = os.mkdir

    def mkdir_losing_the_race(path: str | Path, *args: object, **kwargs: object) -> None:
        if os.fspath(path) == contested and not os.path.exists(contested):
            real_mkdir(contested)  # the other writer, just before us
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", mkdir_losing_the_race)
    entry = file_entry("new/f.txt", b"payload")

    applied = await world.apply(plan([Download(path=entry.path, entry=entry)]))

    assert kinds(applied) == {}
    assert world.read("new/f.txt") == b"payload"


async def test_a_file_put_into_a_folder_this_apply_made_is_not_overwritten(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A folder this apply made is not looked into before its files are fetched (it was
    empty); a file the user puts there meanwhile is still seen before the rename, and
    kept."""
    await world.blob(b"remote")
    made = str(world.root / "new")
    dest = str(world.root / "new" / "f.txt")
    real_mkdir, real_lstat = os.mkdir, os.lstat
    looked: list[str] = []

    def mkdir_then_the_user_writes(path: str | Path, *args: object, **kwargs: object) -> None:
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]
        if os.fspath(path) == made:
            Path(dest).write_bytes(b"the user was quicker")

    def lstat_seen(path: str | Path, *args: object, **kwargs: object) -> os.stat_result:
        looked.append(os.fspath(path))
        return real_lstat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", mkdir_then_the_user_writes)
    monkeypatch.setattr(os, "lstat", lstat_seen)
    entry = file_entry("new/f.txt", b"remote")

    applied = await world.apply(plan([Download(path=entry.path, entry=entry)]))

    assert world.read("new/f.txt") == b"the user was quicker"
    assert applied.failed == {"new/f.txt"}
    assert looked.count(dest) == 1  # before the rename, not when vetted


async def test_a_file_in_a_folder_this_apply_made_is_looked_at_once(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await world.blob(b"remote")
    real_lstat = os.lstat
    looked: list[str] = []

    def lstat_seen(path: str | Path, *args: object, **kwargs: object) -> os.stat_result:
        looked.append(os.fspath(path))
        return real_lstat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "lstat", lstat_seen)
    new, old = file_entry("new/f.txt", b"remote"), file_entry("old/f.txt", b"remote")
    world.write("old/other.txt", b"x")
    scanned = await world.scan()

    applied = await world.apply(plan([Download(path=e.path, entry=e) for e in (new, old)]), scanned)

    assert kinds(applied) == {} and world.read("new/f.txt") == world.read("old/f.txt")
    # before the rename, and after it for the stat row; in a folder that was there, also
    # when vetted before the fetch
    assert looked.count(str(world.root / "new" / "f.txt")) == 2
    assert looked.count(str(world.root / "old" / "f.txt")) == 3


async def test_a_symlink_made_meanwhile_where_a_parent_goes_is_refused(
    world: World, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The same race, lost to a symlink (pointing outside the root): still refused."""
    await world.blob(b"payload")
    outside = tmp_path / "outside"
    outside.mkdir()
    contested = str(world.root / "new")
    real_mkdir = os.mkdir

    def mkdir_losing_the_race(path: str | Path, *args: object, **kwargs: object) -> None:
        if os.fspath(path) == contested and not os.path.lexists(contested):
            os.symlink(outside, contested)
        real_mkdir(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "mkdir", mkdir_losing_the_race)
    entry = file_entry("new/f.txt", b"payload")

    applied = await world.apply(plan([Download(path=entry.path, entry=entry)]))

    assert kinds(applied) == {"new/f.txt": "unsafe_path"}
    assert list(outside.iterdir()) == []


# --- folders and symlinks ------------------------------------------------------------------


async def test_a_folder_and_a_symlink_are_created(world: World) -> None:
    applied = await world.apply(
        plan(
            [
                Download(path="sub", entry=dir_entry("sub", 0o750)),
                Download(path="sub/link", entry=link_entry("sub/link", "../elsewhere/x")),
            ]
        )
    )

    st = os.lstat(world.root / "sub")
    assert stat.S_ISDIR(st.st_mode) and stat.S_IMODE(st.st_mode) == 0o750
    assert os.readlink(world.root / "sub/link") == "../elsewhere/x"
    assert not applied.problems and not applied.failed
    assert world.store.counts == {}


async def test_special_mode_bits_never_come_from_the_bucket(world: World) -> None:
    data = b"#!/bin/sh\n"
    await world.blob(data)
    tool, shared = file_entry("tool", data, mode=0o6755), dir_entry("shared", 0o3777)
    world.write("group/kept.txt", b"x")
    (world.root / "group").chmod(0o2770)  # a folder's own setgid bit stays

    await world.apply(
        plan([Download(path=e.path, entry=e) for e in (tool, shared, dir_entry("group", 0o755))])
    )

    assert stat.S_IMODE(os.lstat(world.root / "tool").st_mode) == 0o755
    assert stat.S_IMODE(os.lstat(world.root / "shared").st_mode) == 0o777
    assert stat.S_IMODE(os.lstat(world.root / "group").st_mode) == 0o2755


# --- type changes (file <-> folder <-> symlink) ---------------------------------------------


async def test_a_folder_replaces_the_unchanged_file_the_scan_saw(world: World) -> None:
    world.write("thing", b"a file")

    applied = await world.apply(plan([Download(path="thing", entry=dir_entry("thing", 0o750))]))

    assert (world.root / "thing").is_dir()
    assert stat.S_IMODE(os.lstat(world.root / "thing").st_mode) == 0o750
    assert not applied.problems and not applied.failed


async def test_a_folder_is_never_made_over_a_file_changed_since_the_scan(world: World) -> None:
    world.write("thing", b"a file")
    scanned = await world.scan()
    world.write("thing", b"edited after the scan")

    applied = await world.apply(plan([Download(path="thing", entry=dir_entry("thing"))]), scanned)

    assert world.read("thing") == b"edited after the scan"
    assert applied.failed == {"thing"}  # kept its old base: the next pass decides
    assert not applied.problems


async def test_a_folder_replacing_a_file_takes_its_bytes_below_it(world: World) -> None:
    """`x` became a folder holding `x/x` elsewhere (mv x tmp; mkdir x; mv tmp x/x): the
    bytes of the replaced file are moved, not downloaded."""
    data = b"the file that moved into its own folder"
    world.write("x", data)

    applied = await world.apply(
        plan(
            [
                Download(path="x", entry=dir_entry("x")),
                Download(path="x/x", entry=file_entry("x/x", data)),
            ]
        )
    )

    assert world.read("x/x") == data
    assert not applied.problems and not applied.failed
    assert (applied.copied_locally, applied.downloaded) == (1, 0)
    assert world.store.counts == {}
    assert world.tmp_files() == []


async def test_a_file_replaces_the_folder_its_plan_emptied(world: World) -> None:
    world.write("x/a.txt", b"tracked, deleted elsewhere")
    scanned = await world.scan()
    await world.blob(b"x is a file now")

    applied = await world.apply(
        plan(
            downloads=[Download(path="x", entry=file_entry("x", b"x is a file now"))],
            deletes=[
                LocalDelete(path="x/a.txt", expected=file_entry("x/a.txt", b"tracked, deleted"))
            ],
        ),
        scanned,
    )

    assert world.read("x") == b"x is a file now"
    assert not applied.problems and not applied.failed
    assert "x" in applied.stats


async def test_a_folder_still_holding_untracked_files_is_not_replaced(world: World) -> None:
    world.write("x/a.txt", b"tracked, deleted elsewhere")
    world.write("x/mine.txt", b"this device never synced it")
    scanned = await world.scan()
    await world.blob(b"x is a file now")

    applied = await world.apply(
        plan(
            downloads=[Download(path="x", entry=file_entry("x", b"x is a file now"))],
            deletes=[LocalDelete(path="x/a.txt", expected=file_entry("x/a.txt", b"tracked"))],
        ),
        scanned,
    )

    assert world.read("x/mine.txt") == b"this device never synced it"
    assert kinds(applied) == {"x": "type_clash"}
    assert applied.failed == {"x"}
    assert world.store.counts == {}  # refused before fetching: not downloaded every pass
    assert world.tmp_files() == []


@pytest.mark.parametrize("emptied", [True, False], ids=["emptied", "still-full"])
async def test_a_symlink_over_a_folder_leaves_no_temporary_link(
    world: World, emptied: bool
) -> None:
    world.write("x/a.txt", b"tracked")
    scanned = await world.scan()
    deletes = [LocalDelete(path="x/a.txt", expected=file_entry("x/a.txt", b"tracked"))]

    applied = await world.apply(
        plan(
            [Download(path="x", entry=link_entry("x", "elsewhere"))], [], deletes if emptied else []
        ),
        scanned,
    )

    assert sorted(os.listdir(world.root)) == [".dropbear", "x"]  # no .x.dropbeard-* link
    assert world.tmp_files() == []
    if emptied:
        assert os.readlink(world.root / "x") == "elsewhere"
        assert not applied.problems
    else:
        assert world.read("x/a.txt") == b"tracked"
        assert kinds(applied) == {"x": "type_clash"}


async def test_a_symlink_that_cannot_be_placed_leaves_no_temporary_link(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_replace = os.replace

    def failing_replace(src: str | Path, dst: str | Path) -> None:
        if os.path.islink(src):
            raise PermissionError(13, "Permission denied")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", failing_replace)

    applied = await world.apply(plan([Download(path="l", entry=link_entry("l", "target"))]))

    assert kinds(applied) == {"l": "permission"}
    assert sorted(os.listdir(world.root)) == [".dropbear"]
    assert world.tmp_files() == []


@pytest.mark.parametrize("kind", ["file", "folder", "symlink"])
async def test_a_special_file_in_the_way_is_a_problem_and_nothing_is_fetched(
    world: World, kind: str
) -> None:
    os.mkfifo(world.root / "pipe")
    await world.blob(b"payload")
    entry = {
        "file": file_entry("pipe", b"payload"),
        "folder": dir_entry("pipe"),
        "symlink": link_entry("pipe", "target"),
    }[kind]

    applied = await world.apply(plan([Download(path="pipe", entry=entry)]))

    assert kinds(applied) == {"pipe": "special_file"}
    assert stat.S_ISFIFO(os.lstat(world.root / "pipe").st_mode)
    assert world.store.counts == {}
    assert world.tmp_files() == []


async def test_nothing_is_written_through_a_symlinked_parent(world: World, tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, world.root / "link")
    await world.blob(b"payload")

    applied = await world.apply(
        plan([Download(path="link/f.txt", entry=file_entry("link/f.txt", b"payload"))])
    )

    assert os.listdir(outside) == []
    assert kinds(applied) == {"link/f.txt": "unsafe_path"}
    assert "symlink" in applied.problems[0].message


@pytest.mark.parametrize("path", ["../escape.txt", ".dropbear/state.sqlite", "a/./b", "a//b"])
async def test_unsafe_relative_paths_are_refused(world: World, path: str) -> None:
    await world.blob(b"payload")
    before = sorted(p.name for p in world.paths.dot.iterdir())

    applied = await world.apply(plan([Download(path=path, entry=file_entry(path, b"payload"))]))

    assert kinds(applied) == {path: "unsafe_path"}
    assert not (world.root.parent / "escape.txt").exists()
    assert sorted(p.name for p in world.paths.dot.iterdir()) == before
    assert not (world.root / "a").exists()


# --- local deletes ------------------------------------------------------------------------


async def test_a_remote_delete_removes_the_file_and_its_emptied_folder(world: World) -> None:
    world.write("d/f.txt", b"bye")
    world.write("keep.txt", b"stay")
    scanned = await world.scan()

    applied = await world.apply(
        plan(
            deletes=[
                LocalDelete(path="d/f.txt", expected=file_entry("d/f.txt", b"bye")),
                LocalDelete(path="d", expected=dir_entry("d")),
            ]
        ),
        scanned,
    )

    assert not (world.root / "d").exists()
    assert world.read("keep.txt") == b"stay"
    assert applied.deleted == 2 and not applied.failed and not applied.problems
    assert world.store.counts == {}


async def test_a_file_edited_since_the_scan_is_not_deleted(world: World) -> None:
    world.write("f.txt", b"old")
    scanned = await world.scan()
    world.write("f.txt", b"edited since")

    applied = await world.apply(
        plan(deletes=[LocalDelete(path="f.txt", expected=file_entry("f.txt", b"old"))]), scanned
    )

    assert world.read("f.txt") == b"edited since"
    assert applied.deleted == 0
    assert applied.failed == {"f.txt"}


async def test_a_folder_still_holding_untracked_files_is_kept(world: World) -> None:
    world.write("d/tracked.txt", b"t")
    world.write("d/untracked.log", b"u")
    scanned = await world.scan()

    applied = await world.apply(
        plan(
            deletes=[
                LocalDelete(path="d/tracked.txt", expected=file_entry("d/tracked.txt", b"t")),
                LocalDelete(path="d", expected=dir_entry("d")),
            ]
        ),
        scanned,
    )

    assert not (world.root / "d/tracked.txt").exists()
    assert world.read("d/untracked.log") == b"u"
    # the delete is done for what was synced; the folder stays, local-only, for the rest
    assert kinds(applied) == {}
    assert applied.deleted == 1 and applied.failed == set() and applied.kept == ["d"]


async def test_deleting_what_is_already_gone_is_not_a_problem(world: World) -> None:
    scanned = await world.scan()

    applied = await world.apply(
        plan(deletes=[LocalDelete(path="never.txt", expected=file_entry("never.txt", b"x"))]),
        scanned,
    )

    assert (applied.deleted, applied.failed, applied.problems) == (0, set(), [])


# --- conflict copies ------------------------------------------------------------------------


async def test_a_conflict_copy_is_written_next_to_the_file(world: World) -> None:
    world.write("notes/todo.txt", b"my edit")
    scanned = await world.scan()
    theirs = file_entry("notes/todo.txt", b"their edit", mode=0o600)
    await world.blob(b"their edit")
    copy_path = conflict_name("notes/todo.txt", "b", "20260522T180500Z")
    copy = ConflictCopy(path="notes/todo.txt", copy_path=copy_path, device_id="b", entry=theirs)

    applied = await world.apply(plan(copies=[copy]), scanned)

    assert copy_path == "notes/todo.conflict-b-20260522T180500Z.txt"
    assert world.read("notes/todo.txt") == b"my edit"
    assert world.read(copy_path) == b"their edit"
    assert sorted(os.listdir(world.root / "notes")) == [
        "todo.conflict-b-20260522T180500Z.txt",
        "todo.txt",
    ]
    assert not applied.failed and not applied.problems
    assert applied.stats == {}  # a copy is never tracked

    # Written once: a later pass leaves an existing copy (maybe edited since) alone.
    (world.root / copy_path).write_bytes(b"the user tidied the copy")
    again = await world.apply(plan(copies=[copy]))
    assert world.read(copy_path) == b"the user tidied the copy"
    assert not again.failed and not again.problems


async def test_a_conflict_copy_of_a_symlink_is_a_symlink(world: World) -> None:
    world.write("link", b"a file here")
    scanned = await world.scan()
    copy_path = conflict_name("link", "b", "20260522T180500Z")
    copy = ConflictCopy(
        path="link", copy_path=copy_path, device_id="b", entry=link_entry("link", "target/x")
    )

    applied = await world.apply(plan(copies=[copy]), scanned)

    assert world.read("link") == b"a file here"
    assert os.readlink(world.root / copy_path) == "target/x"
    assert not applied.problems


async def test_a_large_blob_streams_to_disk_instead_of_memory(world: World) -> None:
    data = os.urandom(WHOLE_DOWNLOAD + 1)
    await world.blob(data)
    entry = file_entry("big.bin", data)

    applied = await world.apply(plan([Download(path="big.bin", entry=entry)]))

    assert world.read("big.bin") == data
    assert world.store.counts == {"get_file": 1}
    assert applied.downloaded_bytes == len(data) and not applied.problems
    assert world.tmp_files() == []


async def _large_download(
    world: World, path: str
) -> tuple[bytes, Callable[[Store], Awaitable[Applied]]]:
    """A blob that streams to disk, in the bucket for `path`; and the apply of its
    download from the folder as it is now, through a given store."""
    data = os.urandom(WHOLE_DOWNLOAD + 1)
    await world.blob(data)
    entry = file_entry(path, data)
    scanned = await world.scan()

    async def download(store: Store) -> Applied:
        return await apply_plan(
            world.paths,
            store,
            KEYS,
            plan([Download(path=path, entry=entry)]),
            scanned,
            budget=TransferBudget(4),
        )

    return data, download


class _Dests(ForwardingStore):
    """Records where each download is written."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.dests: list[Path | FileSlot] = []

    async def get_file(self, key: str, dest: Path | FileSlot, **kwargs: Any) -> ObjectInfo:
        self.dests.append(dest)
        return await self.inner.get_file(key, dest, **kwargs)


class _Started(ForwardingStore):
    """Records the order downloads start in."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.keys: list[str] = []

    async def get(self, key: str, **kwargs: Any) -> bytes:
        self.keys.append(key)
        return await self.inner.get(key, **kwargs)

    async def get_file(self, key: str, dest: Path | FileSlot, **kwargs: Any) -> ObjectInfo:
        self.keys.append(key)
        return await self.inner.get_file(key, dest, **kwargs)


async def test_large_files_start_first_the_largest_first(world: World) -> None:
    # A large file started last runs alone at the end: the streaming files start first,
    # largest first, and the small ones fill in around them in the plan's order.
    sizes = {"a.bin": 1, "b.bin": 3 << 20, "c/d.bin": 5 << 20, "e.bin": 2 << 20}
    blobs = {path: os.urandom(WHOLE_DOWNLOAD + extra) for path, extra in sizes.items()}
    blobs |= {"0.txt": b"small zero", "z.txt": b"small z"}
    for data in blobs.values():
        await world.blob(data)
    downloads = [Download(path=p, entry=file_entry(p, d)) for p, d in sorted(blobs.items())]
    scanned = await world.scan()
    store = _Started(world.store.inner)

    applied = await apply_plan(
        world.paths, store, KEYS, plan(downloads), scanned, budget=TransferBudget(1)
    )

    assert not applied.problems
    order = ["c/d.bin", "b.bin", "e.bin", "a.bin", "0.txt", "z.txt"]
    assert store.keys == [KEYS.blob(sha(blobs[p])) for p in order]
    assert all(world.read(p) == d for p, d in blobs.items())


async def test_a_download_is_written_beside_its_destination_and_renamed_over_it(
    world: World,
) -> None:
    data, download = await _large_download(world, "new folder/deeper/big.bin")
    watched = _Dests(world.store)

    applied = await download(watched)

    assert not applied.problems
    (dest,) = watched.dests
    assert isinstance(dest, Path)
    assert dest.parent == world.root / "new folder/deeper"  # made before any byte came
    assert dest.name.startswith(PREFIX)  # never synced, never a name of the folder's
    assert world.read("new folder/deeper/big.bin") == data
    assert world.tmp_files() == []


class _Stalls(_Dests):
    """Writes each download whole, then never returns (a connection that hangs)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.written = anyio.Event()

    async def get_file(self, key: str, dest: Path | FileSlot, **kwargs: Any) -> ObjectInfo:
        await super().get_file(key, dest, **kwargs)
        self.written.set()
        await anyio.sleep_forever()
        raise AssertionError("unreachable")


async def test_a_cancelled_download_leaves_no_temporary_file_in_the_folder(
    world: World,
) -> None:
    _data, download = await _large_download(world, "docs/big.bin")
    stalls = _Stalls(world.store)

    async with anyio.create_task_group() as tg:
        tg.start_soon(download, stalls)
        await stalls.written.wait()
        (dest,) = stalls.dests
        assert isinstance(dest, Path) and dest.exists()  # the bytes are beside their place
        tg.cancel_scope.cancel()

    assert world.tmp_files() == []
    assert not (world.root / "docs/big.bin").exists()


async def test_small_downloads_share_worker_thread_trips(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    datas = [b"file number %d" % i for i in range(60)]
    for data in datas:
        await world.blob(data)
    trips: list[int] = []
    run_all = trips_module._run_all

    def counted(jobs: list[object], on_trip: object) -> None:
        trips.append(len(jobs))
        run_all(jobs, on_trip)  # type: ignore[arg-type]

    monkeypatch.setattr(trips_module, "_run_all", counted)
    applied = await world.apply(
        plan(
            [Download(path=f"d/f{i}", entry=file_entry(f"d/f{i}", d)) for i, d in enumerate(datas)]
        ),
        concurrency=16,
    )

    assert applied.downloaded == 60 and not applied.problems
    assert all(world.read(f"d/f{i}") == d for i, d in enumerate(datas))
    # One job per file (write, verify and place; whether its place is free was asked in
    # a batch before), far fewer trips.
    assert sum(trips) == 60
    assert len(trips) <= 30


async def test_temporary_names_cost_no_random_draw_per_file(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    datas = [b"temp %d" % i for i in range(20)]
    for data in datas:
        await world.blob(data)
    draws: list[int] = []
    uuid4 = uuid.uuid4

    def counted() -> uuid.UUID:
        draws.append(1)
        return uuid4()

    monkeypatch.setattr(uuid, "uuid4", counted)
    applied = await world.apply(
        plan([Download(path=f"f{i}", entry=file_entry(f"f{i}", d)) for i, d in enumerate(datas)])
    )
    assert applied.downloaded == 20 and world.tmp_files() == []
    # once for the names, once for the probe of case-sensitivity (disknames): not one per
    # file, a getrandom() syscall on the event loop each
    assert len(draws) == 2


async def test_local_deletes_and_new_folders_go_a_batch_per_trip_in_order(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    names = [f"old/d{i // 100}/f{i}" for i in range(300)]
    for name in names:
        world.write(name, b"bye")
    scanned = await world.scan()
    batches: list[int] = []
    run_in_order = apply_module.run_in_order

    def counted(steps: list[Callable[[], None]]) -> None:
        batches.append(len(steps))
        run_in_order(steps)

    monkeypatch.setattr(apply_module, "run_in_order", counted)
    deletes = [LocalDelete(path=n, expected=file_entry(n, b"bye")) for n in names]
    deletes += [LocalDelete(path=f"old/d{d}", expected=dir_entry(f"old/d{d}")) for d in range(3)]
    deletes.append(LocalDelete(path="old", expected=dir_entry("old")))  # deepest first
    folders = [Download(path=p, entry=dir_entry(p)) for p in ("new", "new/a", "new/a/b")]

    applied = await world.apply(plan(folders, deletes=deletes), scanned)

    assert not applied.problems and applied.deleted == 304
    assert not (world.root / "old").exists()
    assert (world.root / "new/a/b").is_dir()  # parents before children
    # the deletes, then the folders (no write needed them before)
    assert batches == [apply_module.STEPS_PER_TRIP, 304 - apply_module.STEPS_PER_TRIP, 3]


async def test_new_folders_are_made_in_the_trip_of_the_first_files_they_hold(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A first sync's thousands of folders are not all made before the first download:
    each trip that vets writes first makes their new parents (parents first); the
    folders no write needs come last."""
    trips: list[list[str]] = []
    run_in_order = apply_module.run_in_order

    def named(steps: list[Callable[[], None]]) -> None:
        trips.append([getattr(step, "args", ("?",))[0] for step in steps])
        run_in_order(steps)

    monkeypatch.setattr(apply_module, "run_in_order", named)
    first = apply_module.FIRST_VETTED
    files = [f"new/a/b/f{i:03}" for i in range(first)] + [f"new/c/g{i}" for i in range(3)]
    dirs = ["new", "new/a", "new/a/b", "new/c", "empty"]
    downloads = [Download(path=p, entry=dir_entry(p)) for p in dirs]
    downloads += [Download(path=f, entry=file_entry(f, f.encode())) for f in files]
    for f in files:
        await world.blob(f.encode())

    applied = await world.apply(plan(downloads))

    assert not applied.problems and applied.downloaded == len(files)
    assert all((world.root / d).is_dir() for d in dirs)
    assert trips[0] == ["new", "new/a", "new/a/b", *files[:first]]
    assert trips[1] == ["new/c", *files[first:]]
    assert trips[2] == ["empty"]


async def test_downloads_start_while_later_places_are_still_vetted(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    datas = [b"vetted %d" % i for i in range(600)]
    for data in datas:
        await world.blob(data)
    vetted: list[str] = []
    vetted_at_first_get: list[int] = []
    vet = folderwriter_module.FolderWriter.vet
    get = world.store.inner.get

    def counted_vet(self: object, rel: str, *rest: object) -> None:
        vetted.append(rel)
        vet(self, rel, *rest)  # type: ignore[arg-type]

    async def first_get(key: str) -> bytes:
        if not vetted_at_first_get:
            vetted_at_first_get.append(len(vetted))
        return await get(key)

    monkeypatch.setattr(folderwriter_module.FolderWriter, "vet", counted_vet)
    monkeypatch.setattr(world.store.inner, "get", first_get)
    applied = await world.apply(
        plan([Download(path=f"f{i}", entry=file_entry(f"f{i}", d)) for i, d in enumerate(datas)]),
        concurrency=16,
    )

    assert applied.downloaded == 600 and not applied.problems
    assert all(world.read(f"f{i}") == d for i, d in enumerate(datas))
    assert len(vetted) == 600
    # the first batch of places was vetted, not all 600, when the first download began
    assert vetted_at_first_get[0] < 600, vetted_at_first_get


async def test_a_folders_files_look_at_its_parents_once_per_trip(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    datas = [b"deep file %d" % i for i in range(40)]
    for data in datas:
        await world.blob(data)
    parent = str(world.root / "a" / "b")
    looked: list[str] = []
    real_lstat = os.lstat

    def counting(path: str | Path, *args: object, **kwargs: object) -> os.stat_result:
        if os.fspath(path) == parent:
            looked.append(parent)
        return real_lstat(path, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "lstat", counting)
    entries = [file_entry(f"a/b/f{i}", d) for i, d in enumerate(datas)]
    applied = await world.apply(plan([Download(path=e.path, entry=e) for e in entries]))

    assert applied.downloaded == 40 and not applied.problems
    assert all(world.read(f"a/b/f{i}") == d for i, d in enumerate(datas))
    # looked at once per trip (the vetting trips, then the writes' shared trips), not
    # twice per file (its place vetted, then installed)
    assert 0 < len(looked) < 40


async def test_a_parent_turned_symlink_is_refused_from_the_next_trip_on(
    world: World, tmp_path: Path
) -> None:
    """What a trip found a real directory counts for that trip alone: a parent swapped
    for a symlink afterwards is looked at again, and refused, by the next one."""
    outside = tmp_path / "outside"
    outside.mkdir()
    writer = folderwriter_module.FolderWriter(
        world.paths,
        await world.scan(),
        DiskNames(world.root, {}),
        Applied(),
        None,
        None,  # type: ignore[arg-type]
    )
    writer.new_trip()
    assert writer.target("d/one.txt") == world.root / "d" / "one.txt"  # made, a folder
    (world.root / "d").rmdir()
    (world.root / "d").symlink_to(outside)
    assert writer.target("d/two.txt") == world.root / "d" / "two.txt"  # the same trip
    writer.new_trip()
    with pytest.raises(UnsafePath, match="is a symlink"):
        writer.target("d/three.txt")
    assert list(outside.iterdir()) == []
