"""Modes (SPEC 4.2) end to end through the real CLI, and what an idle pass costs in
requests (SPEC principle 4: a handful of small reads, no writes)."""

from __future__ import annotations

import hashlib
import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from dropbeard.core.model import decode_head
from dropbeard.core.summary import Summary
from dropbeard.store.counting import CountingStore
from dropbeard.store.factory import open_store
from dropbeard.store.retry import RetryingStore
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.root import RootPaths, open_online, root_lock
from tests.converge import Bucket, Cli, Device, devices, local_bucket


def summary(d: Device, code: int = 0) -> dict[str, Any]:
    result: dict[str, Any] = d.sync(code=code).json
    return result


def blob_key(remote: Bucket, data: bytes) -> str:
    return remote.keys.blob(hashlib.sha256(data).hexdigest())


def test_upload_only_publishes_but_never_downloads(remote: Bucket, tmp_path: Path) -> None:
    (a,) = devices(remote, tmp_path, "a")
    (u,) = devices(remote, tmp_path, "u", mode="upload-only")
    a.write("from-a.txt", "a's file\n")
    a.write("notes.txt", "a's notes\n")
    summary(a)
    u.write("from-u.txt", "u's file\n")
    u.write("notes.txt", "u's notes, never replaced by a's\n")

    got = summary(u)
    assert got["downloaded"] == 0 and got["conflicts"] == 0
    assert sorted(u.tree()) == ["from-u.txt", "notes.txt"]
    assert u.read("notes.txt") == b"u's notes, never replaced by a's\n"
    assert {e.path for e in remote.listing("u").entries} == {"from-u.txt", "notes.txt"}

    summary(a, code=4)  # a gets u's file; the two notes are a conflict on a
    assert a.read("from-u.txt") == b"u's file\n"

    # a remote delete does not reach u either, and u's stale entry does not resurrect it
    a.path("from-u.txt").unlink()
    summary(a, code=4)
    got = summary(u)
    assert got["downloaded"] == 0 and got["deleted_local"] == 0
    assert u.read("from-u.txt") == b"u's file\n"
    summary(a, code=4)
    assert not a.path("from-u.txt").exists()


def test_download_only_pulls_keeps_local_edits_and_never_publishes(
    remote: Bucket, tmp_path: Path
) -> None:
    (a,) = devices(remote, tmp_path, "a")
    (d,) = devices(remote, tmp_path, "d", mode="download-only")
    for name in ("doc.txt", "other.txt", "kept.txt", "gone.txt"):
        a.write(name, f"{name} v1\n")
    summary(a)
    summary(d)
    assert d.tree() == a.tree()

    d.write("kept.txt", "d's local edit, a never touches this file\n")
    d.write("doc.txt", "d's local edit of doc\n")
    d.write("own.txt", "only on d\n")
    a.write("doc.txt", "doc v2 from a\n")
    a.write("other.txt", "other v2 from a\n")
    a.path("gone.txt").unlink()
    a_snapshot = summary(a)["snapshot"]

    got = summary(d, code=4)  # doc.txt: a remote change to a locally edited file
    assert got["uploaded"] == 0 and got["snapshot"] is None
    assert d.read("doc.txt") == b"d's local edit of doc\n"
    assert d.read(f"doc.conflict-a-{a_snapshot}.txt") == b"doc v2 from a\n"
    assert d.read("other.txt") == b"other v2 from a\n"
    assert not d.path("gone.txt").exists()
    assert d.read("kept.txt") == b"d's local edit, a never touches this file\n"
    assert d.read("own.txt") == b"only on d\n"

    # nothing of d's content ever reaches the bucket: its head names no snapshot and no
    # tree, only how far d has processed a (SPEC 1.3); no blob of its bytes
    objects = remote.objects()
    assert [k for k in objects if k.startswith(remote.keys.device_prefix("d"))] == [
        remote.keys.head("d")
    ]
    head = decode_head(remote.get(remote.keys.head("d")), "head")
    assert (head.snapshot, head.tree, head.tombstone_seq) == (None, None, 0)
    assert head.seen["a"].snapshot is not None
    for data in (b"only on d\n", b"d's local edit of doc\n", b"d's local edit, a never"):
        assert blob_key(remote, data) not in objects
    summary(a)
    assert not a.path("own.txt").exists()
    assert a.read("kept.txt") == b"kept.txt v1\n"


def test_archive_only_pulls_keeps_deleted_files_publishes_nothing(
    remote: Bucket, tmp_path: Path
) -> None:
    (a,) = devices(remote, tmp_path, "a")
    (r,) = devices(remote, tmp_path, "r", mode="archive-only")
    for name in ("x.txt", "y.txt", "z.txt"):
        a.write(name, f"{name} v1\n")
    summary(a)
    summary(r)
    assert r.tree() == a.tree()

    a.path("x.txt").unlink()
    a.write("y.txt", "y v2, edited on a\n")
    summary(a)
    r.write("mine.txt", "the archive's own note\n")
    got = summary(r)
    assert got["deleted_local"] == 0 and got["snapshot"] is None and got["uploaded"] == 0
    assert r.read("x.txt") == b"x.txt v1\n"  # deleted elsewhere, kept here
    assert r.read("y.txt") == b"y v2, edited on a\n"
    summary(r)
    assert r.read("x.txt") == b"x.txt v1\n"

    objects = remote.objects()
    mine = [k for k in objects if k.startswith(remote.keys.device_prefix("r"))]
    assert mine == [remote.keys.head("r")]  # its seen-marks only (SPEC 1.3)
    assert decode_head(remote.get(remote.keys.head("r")), "head").tree is None
    assert blob_key(remote, b"the archive's own note\n") not in objects
    summary(a)
    assert sorted(a.tree()) == ["y.txt", "z.txt"]


# --- a backup seeded by hand (SPEC 3) -----------------------------------------------------


@pytest.fixture
def local_remote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Bucket:
    return local_bucket(tmp_path, Cli(capsys))


@pytest.mark.parametrize("mode", ["archive-only", "download-only", "bidirectional"])
def test_a_backup_seeded_with_a_copy_adopts_the_remote_versions_and_stays_quiet(
    local_remote: Bucket, tmp_path: Path, mode: str
) -> None:
    (a,) = devices(local_remote, tmp_path, "a")
    a.write("notes/todo.md", "buy milk\n")
    a.write("photo.jpg", b"\xff\xd8 not really a jpeg")
    a.write("bin/run.sh", "#!/bin/sh\necho hi\n")
    a.path("bin/run.sh").chmod(0o755)
    summary(a)
    # The person copies the folder onto the backup drive by hand (same bytes and modes,
    # new mtimes), then makes that folder a device.
    shutil.copytree(
        a.root,
        tmp_path / "root-s",
        ignore=shutil.ignore_patterns(".dropbear"),
        copy_function=shutil.copy,
    )
    (s,) = devices(local_remote, tmp_path, "s", mode=mode)
    assert s.tree() == a.tree()
    got = summary(s)
    assert (got["downloaded"], got["conflicts"], got["conflict_copies"]) == (0, 0, 0)
    assert s.tree() == a.tree()

    # every later edit made elsewhere arrives as an ordinary update, never a conflict
    for n in range(2, 4):
        a.write("notes/todo.md", f"buy milk, version {n}\n")
        a.path("bin/run.sh").chmod(0o700 if n % 2 else 0o755)
        a.write(f"new-{n}.txt", f"new on a, {n}\n")
        summary(a)
        got = summary(s)
        assert got["conflicts"] == 0 and got["conflict_copies"] == 0, got
        assert s.tree() == a.tree()
    assert s.status()["conflicts"] == []


# --- the cost of an idle pass ------------------------------------------------------------


def counted_pass(root: Path) -> tuple[Summary, Counter[str]]:
    """One pass built as `dropbeard sync` builds it, counting the requests on the wire."""

    async def go() -> tuple[Summary, Counter[str]]:
        paths = RootPaths(root)
        cfg, state = open_online(paths)
        counting = CountingStore(open_store(cfg.remote, retry=False))
        store = RetryingStore(counting)
        try:
            with root_lock(paths):
                done = await run_pass(paths, cfg, state, store, PassOptions())
        finally:
            await store.aclose()
            state.close()
        return done, counting.counts

    return anyio.run(go)


@pytest.mark.s3
def test_idle_pass_costs_one_listing_and_one_read_per_device(
    s3_remote: Bucket, tmp_path: Path
) -> None:
    everyone = devices(s3_remote, tmp_path, "a", "b", "c", "d")
    for d in everyone:
        d.write(f"{d.id}.txt", f"written on {d.id}\n")
        summary(d)
    for d in everyone:
        summary(d)
    a = everyone[0]
    counted_pass(a.root)  # settle: a has seen every other device's latest

    done, counts = counted_pass(a.root)
    assert done.snapshot is None and done.downloaded == 0 and done.uploaded == 0
    writes = {k: n for k, n in counts.items() if k.startswith("put") or k == "delete"}
    assert writes == {}, counts
    assert counts["list_page"] <= 1, counts
    # one conditional read per other device, none of this device's own head
    assert counts["get_if_changed"] <= 3, counts
    assert sum(counts.values()) <= 1 + 3, counts
    assert sorted(a.tree()) == ["a.txt", "b.txt", "c.txt", "d.txt"]
