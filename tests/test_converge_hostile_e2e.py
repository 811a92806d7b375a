"""Devices facing a damaged or hostile bucket, and an offline root, end to end through the
real CLI (SPEC 1.1-1.2, 2, 4.5): corrupted blobs and manifests are refused with exit 11,
unsafe paths never reach the disk, an offline root touches nothing."""

from __future__ import annotations

import hashlib
import json
import stat
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import pytest

from dropbeard.core.model import Entry, encode_manifest
from dropbeard.sync.registry import register, update_registry
from tests.converge import ROOT_ID, Bucket, Cli, Device, devices, local_bucket


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def one_error_line(err: str) -> str:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("dropbeard: error: "), err
    assert "Traceback" not in err
    return lines[0]


def dot_snapshot(d: Device) -> dict[str, bytes]:
    """Every file under `.dropbear/` but the lock (bytes), to prove a refused pass changed
    nothing."""
    dot = d.path(".dropbear")
    files = (p for p in dot.rglob("*") if p.is_file() and p.name != "lock")
    return {str(p.relative_to(dot)): p.read_bytes() for p in files}


# --- corrupted blob ---------------------------------------------------------------------


@pytest.mark.s3
def test_corrupted_blob_is_refused_and_nothing_else_breaks(
    s3_remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(s3_remote, tmp_path, "a", "b")
    a.write("edited.txt", "old bytes, held by b\n")
    a.write("fine.txt", "fine v1\n")
    a.write("keep.txt", "untouched by all of this\n")
    a.sync()
    b.sync()

    edited, fresh = b"new bytes from a\n", b"a brand new file from a\n"
    a.write("edited.txt", edited)
    a.write("fresh.txt", fresh)
    a.write("fine.txt", "fine v2, arrives intact\n")
    a.sync()
    for data in (edited, fresh):  # someone overwrites the blobs in the bucket
        s3_remote.put(s3_remote.keys.blob(sha(data)), b"not what the manifest promised")

    got = b.sync(code=11)
    line = one_error_line(got.err)
    assert "edited.txt" in line or "fresh.txt" in line, line
    assert b.read("edited.txt") == b"old bytes, held by b\n"
    assert not b.path("fresh.txt").exists()
    assert b.read("fine.txt") == b"fine v2, arrives intact\n"
    assert b.read("keep.txt") == b"untouched by all of this\n"
    assert list(b.path(".dropbear/tmp").iterdir()) == []
    assert sorted(b.tree()) == ["edited.txt", "fine.txt", "keep.txt"]

    # the bucket is repaired: the next pass takes what it could not before
    for data in (edited, fresh):
        s3_remote.put(s3_remote.keys.blob(sha(data)), data)
    b.sync()
    assert b.read("edited.txt") == edited and b.read("fresh.txt") == fresh
    a.sync()
    assert a.tree() == b.tree()


# --- manifest that does not match its head ------------------------------------------------


def test_manifest_not_matching_its_head_is_refused(remote: Bucket, tmp_path: Path) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("real.txt", "what a really holds\n")
    a.sync()
    b.write("mine.txt", "b's own\n")

    # a well-formed manifest, but not the bytes a's head vouches for
    head = json.loads(remote.get(remote.keys.head("a")))
    key = remote.keys.manifest("a", head["manifest"])
    real = remote.manifest("a")
    planted = b"planted by someone with write access\n"
    entry = Entry(
        path="planted.txt",
        type="file",
        mode=0o644,
        version={"a": 99},
        size=len(planted),
        mtime_ns=1,
        sha256=remote.put_blob(planted),
    )
    original = remote.get(key)
    remote.put(key, encode_manifest(msgspec.structs.replace(real, entries=[*real.entries, entry])))
    before = b.tree()

    got = b.sync(code=11)  # a is skipped; b's own pass goes on
    line = one_error_line(got.err)
    assert "'a'" in line and head["manifest"] in line
    assert b.tree() == before  # neither planted.txt nor real.txt
    assert {e.path for e in remote.manifest("b").entries} == {"mine.txt"}

    remote.put(key, original)  # the bucket is repaired: a is read again
    b.sync()
    assert b.read("real.txt") == b"what a really holds\n"
    assert not b.path("planted.txt").exists()


# --- one bad device among good ones (SPEC 4.1) ---------------------------------------------


@pytest.fixture
def local_remote(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Bucket:
    return local_bucket(tmp_path, Cli(capsys))


@pytest.mark.parametrize("damage", ["malformed", "wrong hash"])
def test_one_bad_device_does_not_stop_the_others(
    local_remote: Bucket, tmp_path: Path, damage: str
) -> None:
    remote = local_remote
    a, b, c = devices(remote, tmp_path, "a", "b", "c")
    a.write("from-a.txt", "a v1\n")
    a.write("gone.txt", "deleted on a later\n")
    a.sync()
    b.write("from-b.txt", "b's file\n")
    b.sync()
    c.sync()
    a.write("from-a.txt", "a v2\n")
    a.write("new-a.txt", "new on a\n")
    a.path("gone.txt").unlink()
    a.sync()
    b.write("from-b.txt", "b v2, never seen\n")
    b.sync()
    head = json.loads(remote.get(remote.keys.head("b")))
    key = remote.keys.manifest("b", head["manifest"])
    bad = b'{"format": 1, "entries": 7}' if damage == "malformed" else remote.get(key) + b" "
    remote.put(key, bad)
    if damage == "malformed":
        head["manifest_sha256"] = sha(bad)  # a head vouching for it: it must still parse
        remote.put(remote.keys.head("b"), json.dumps(head).encode())
    c.write("new-c.txt", "c's own new file\n")

    got = c.sync(code=11)  # b is skipped and named; everything else goes through
    line = one_error_line(got.err)
    assert "device 'b'" in line and key in line, line
    assert c.read("from-a.txt") == b"a v2\n" and c.read("new-a.txt") == b"new on a\n"
    assert not c.path("gone.txt").exists()
    assert c.read("from-b.txt") == b"b's file\n"  # b's absence deletes nothing
    assert "new-c.txt" in {e.path for e in remote.manifest("c").entries}
    problems = remote.cli("status", str(c.root), "--json").json["problems"]
    assert [(p["path"], p["kind"]) for p in problems] == [("devices/b/", "integrity")]

    a.sync(code=11)
    assert a.read("new-c.txt") == b"c's own new file\n"

    b.write("from-b.txt", "b v3, republished\n")  # b's next publish repairs its head
    repair = remote.cli("sync", str(b.root), "--json")  # (saying so, if it reads its own)
    assert repair.code in (0, 11), repair.err
    c.sync()
    assert c.read("from-b.txt") == b"b v3, republished\n"
    assert remote.cli("status", str(c.root), "--json").json["problems"] == []


# --- hostile manifests from a device registered in the bucket ------------------------------


def publish_raw(
    remote: Bucket,
    device: str,
    entries: list[dict[str, Any]],
    n: int,
    deletes: list[dict[str, Any]] | None = None,
) -> None:
    """Publish `entries` as `device`'s manifest (and `deletes` as its tombstone batch `n`),
    bypassing every check a writer makes, with a head whose manifest_sha256 is correct."""
    manifest_id = f"20260101T0000{n:02d}Z"
    data = json.dumps(
        {
            "format": 1,
            "root_id": ROOT_ID,
            "device_id": device,
            "created_at": "2026-01-01T00:00:00Z",
            "entries": entries,
        }
    ).encode()
    remote.put(remote.keys.manifest(device, manifest_id), data)
    if deletes is not None:
        batch = {"format": 1, "device_id": device, "seq": n, "created_at": "2026-01-01T00:00:00Z"}
        remote.put(
            remote.keys.tombstone(device, n), json.dumps({**batch, "deletes": deletes}).encode()
        )
    head = {
        "format": 1,
        "device_id": device,
        "manifest": manifest_id,
        "manifest_sha256": sha(data),
        "published_at": "2026-01-01T00:00:00Z",
        "tombstone_seq": n if deletes is not None else 0,
        "seen": {},
    }
    remote.put(remote.keys.head(device), json.dumps(head).encode())


def register_evil(remote: Bucket) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    change = register("evil", "bidirectional", now, take_over=False)
    remote.run(lambda s: update_registry(s, remote.keys, change))


def file_entry(remote: Bucket, path: str, data: bytes) -> dict[str, Any]:
    return {
        "path": path,
        "type": "file",
        "mode": 0o644,
        "size": len(data),
        "mtime_ns": 1,
        "sha256": remote.put_blob(data),
        "version": {"evil": 1},
    }


MAX_INT = 2**63 - 1


def nested(depth: int = 100_000) -> bytes:
    """Valid JSON nested deeper than any decoder will follow."""
    return b'{"format": 1, "x": ' + b"[" * depth + b"]" * depth + b"}"


def evil_file(remote: Bucket, path: str, **fields: Any) -> dict[str, Any]:
    return {**file_entry(remote, path, b"evil bytes\n"), **fields}


def evil_link(path: str, target: str) -> dict[str, Any]:
    return {
        "path": path,
        "type": "symlink",
        "mode": 0o777,
        "version": {"evil": 1},
        "target": target,
    }


def evil_manifest_bytes(remote: Bucket, data: bytes) -> None:
    """A head vouching (by SHA-256) for `data` as evil's manifest."""
    publish_raw(remote, "evil", [], 0)
    head = json.loads(remote.get(remote.keys.head("evil")))
    remote.put(remote.keys.manifest("evil", head["manifest"]), data)
    head["manifest_sha256"] = sha(data)
    remote.put(remote.keys.head("evil"), json.dumps(head).encode())


def evil_head(remote: Bucket, **fields: Any) -> None:
    publish_raw(remote, "evil", [], 0)
    head = json.loads(remote.get(remote.keys.head("evil")))
    remote.put(remote.keys.head("evil"), json.dumps({**head, **fields}).encode())


def manifest_of(device: str) -> bytes:
    fields = {
        "format": 1,
        "root_id": ROOT_ID,
        "device_id": device,
        "created_at": "2026-01-01T00:00:00Z",
    }
    return json.dumps({**fields, "entries": []}).encode()


MINE = b"b's own\n"
#: what a hostile device plants -> how b's pass must end (11: evil skipped, 4: problems)
HOSTILE: dict[str, tuple[Callable[[Bucket], object], int]] = {
    "path_dotdot": (lambda r: publish_raw(r, "evil", [evil_file(r, "../outside")], 0), 11),
    "path_absolute": (lambda r: publish_raw(r, "evil", [evil_file(r, f"{r.url}/x")], 0), 11),
    "path_state_dir": (lambda r: publish_raw(r, "evil", [evil_file(r, ".DropBear/x")], 0), 11),
    "path_too_long": (lambda r: publish_raw(r, "evil", [evil_file(r, "x" * 300)], 0), 11),
    "path_twice": (lambda r: publish_raw(r, "evil", [evil_file(r, "d"), evil_file(r, "d")], 0), 11),
    "path_under_a_file": (
        lambda r: publish_raw(r, "evil", [evil_file(r, "f"), evil_file(r, "f/x")], 0),
        11,
    ),
    "path_through_its_link": (
        lambda r: publish_raw(r, "evil", [evil_link("l", r.url), evil_file(r, "l/x")], 0),
        11,
    ),
    "file_without_sha256": (
        lambda r: publish_raw(r, "evil", [evil_file(r, "n.txt", sha256=None)], 0),
        11,
    ),
    "mode_out_of_range": (
        lambda r: publish_raw(r, "evil", [evil_file(r, "m.txt", mode=0o10000)], 0),
        11,
    ),
    "manifest_nested": (lambda r: evil_manifest_bytes(r, nested()), 11),
    "manifest_not_json": (lambda r: evil_manifest_bytes(r, b"\xff\xfe not json"), 11),
    "manifest_of_another_device": (lambda r: evil_manifest_bytes(r, manifest_of("b")), 11),
    "head_nested": (lambda r: r.put(r.keys.head("evil"), nested()), 11),
    "head_naming_a_missing_manifest": (lambda r: evil_head(r, manifest="20250101T000000Z"), 11),
    "head_seen_junk": (lambda r: evil_head(r, seen={"b": {"manifest": "zzz"}}), 11),
    "tombstone_outside": (
        lambda r: publish_raw(
            r, "evil", [], 1, [{"path": "../outside", "type": "file", "version": {"evil": 1}}]
        ),
        11,
    ),
    "tombstones_nested": (
        lambda r: (
            publish_raw(r, "evil", [], 1, []),
            r.put(r.keys.tombstone("evil", 1), nested()),
        ),
        11,
    ),
    "version_exhausting_my_counter": (
        lambda r: publish_raw(r, "evil", [evil_file(r, "v.txt", version={"b": MAX_INT})], 0),
        4,
    ),
    "delete_exhausting_my_counter": (
        lambda r: publish_raw(
            r,
            "evil",
            [],
            1,
            [{"path": "mine.txt", "type": "file", "version": {"b": MAX_INT}, "sha256": sha(MINE)}],
        ),
        4,
    ),
    "delete_naming_other_bytes": (
        lambda r: publish_raw(
            r,
            "evil",
            [],
            1,
            [
                {
                    "path": "mine.txt",
                    "type": "file",
                    "version": {"b": 9, "evil": 1},
                    "sha256": "1" * 64,
                }
            ],
        ),
        4,
    ),
    "blob_missing": (
        lambda r: publish_raw(r, "evil", [evil_file(r, "bm.txt", sha256="2" * 64)], 0),
        4,
    ),
    "blob_not_its_bytes": (
        lambda r: (
            publish_raw(r, "evil", [evil_file(r, "bc.txt")], 0),
            r.put(r.keys.blob(sha(b"evil bytes\n")), b"other bytes\n"),
        ),
        11,
    ),
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_objects_never_stop_this_device_publishing_its_own(
    local_remote: Bucket, tmp_path: Path, case: str
) -> None:
    plant, code = HOSTILE[case]
    (b,) = devices(local_remote, tmp_path, "b")
    b.write("mine.txt", MINE)
    b.sync()
    register_evil(local_remote)
    plant(local_remote)
    b.write("new.txt", "b's new file\n")

    got = b.sync(code=code)
    if code == 11:
        line = one_error_line(got.err)
        assert "evil" in line or "bc.txt" in line, line
    else:
        assert got.err == ""
    assert b.read("mine.txt") == MINE
    assert {"mine.txt", "new.txt"} <= {e.path for e in local_remote.manifest("b").entries}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["remote", "root-b"]
    assert not Path(local_remote.url, "x").exists() and not b.path(".dropbear/x").exists()


def test_a_registry_nested_too_deeply_is_one_clear_line(
    local_remote: Bucket, tmp_path: Path
) -> None:
    (b,) = devices(local_remote, tmp_path, "b")
    b.sync()
    local_remote.put(local_remote.keys.registry, nested())

    got = b.sync(code=1)  # the root's list of devices: nothing can be read without it
    line = one_error_line(got.err)
    assert line.endswith(f"invalid registry {local_remote.keys.registry}: JSON nested too deeply")


@pytest.mark.s3
def test_hostile_paths_are_rejected_and_nothing_is_written(
    s3_remote: Bucket, tmp_path: Path
) -> None:
    (b,) = devices(s3_remote, tmp_path, "b")
    b.write("mine.txt", "b's own\n")
    b.sync()
    register_evil(s3_remote)
    toml = b.read(".dropbear/root.toml")
    etc_x_existed = Path("/etc/x").exists()
    for n, bad in enumerate(["../x", "/etc/x", ".dropbear/root.toml"]):
        publish_raw(s3_remote, "evil", [file_entry(s3_remote, bad, b"[remote]\nurl = 'evil'\n")], n)
        b.write(f"new-{n}.txt", f"b's new file {n}\n")
        before = b.tree()
        got = b.sync(code=11)  # evil is skipped; b's own new file is published
        line = one_error_line(got.err)
        assert repr(bad) in line and "evil" in line, line
        assert b.tree() == before, bad
        assert f"new-{n}.txt" in {e.path for e in s3_remote.manifest("b").entries}
        assert not (tmp_path / "x").exists(), bad
        assert b.read(".dropbear/root.toml") == toml, bad
        assert Path("/etc/x").exists() == etc_x_existed
    # evil retired from the bucket's point of view: b syncs normally again
    s3_remote.run(lambda s: s.delete(s3_remote.keys.head("evil")))
    b.sync()


def test_modes_from_the_bucket_never_carry_setuid_setgid_or_sticky_bits(
    local_remote: Bucket, tmp_path: Path
) -> None:
    (b,) = devices(local_remote, tmp_path, "b")
    b.write("mine.txt", "b's own\n")
    b.sync()
    register_evil(local_remote)
    tool = {**file_entry(local_remote, "tool", b"#!/bin/sh\necho owned\n"), "mode": 0o6755}
    shared = {"path": "shared", "type": "dir", "mode": 0o1777, "version": {"evil": 1}}
    publish_raw(local_remote, "evil", [tool, shared], 0)

    b.sync()
    assert stat.S_IMODE(b.path("tool").stat().st_mode) == 0o755
    assert stat.S_IMODE(b.path("shared").stat().st_mode) == 0o777
    modes = {e.path: e.mode for e in local_remote.manifest("b").entries}
    assert modes == {"mine.txt": 0o644, "tool": 0o755, "shared": 0o777}
    assert b.sync().json["manifest"] is None  # settled: nothing flips back and forth


def test_a_delete_naming_other_bytes_is_refused(local_remote: Bucket, tmp_path: Path) -> None:
    remote = local_remote
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("notes.txt", "precious notes\n")
    a.write("keep.txt", "keeps the root from looking emptied\n")
    a.sync()
    b.sync()
    register_evil(remote)
    mine = {"path": "notes.txt", "type": "file", "version": {"a": 99, "evil": 1}}
    forged = [{**mine, "sha256": sha(b"other bytes")}]
    publish_raw(remote, "evil", [], 1, deletes=forged)

    for _ in range(2):  # refused, and still reported on the next pass
        b.sync(code=4)
        assert b.read("notes.txt") == b"precious notes\n"
        problems = remote.cli("status", str(b.root), "--json", "--offline").json["problems"]
        assert [(p["path"], p["kind"]) for p in problems] == [("notes.txt", "refused_delete")]
    assert "notes.txt" in {e.path for e in remote.manifest("b").entries}

    a.path("notes.txt").unlink()  # a real delete, of these bytes: it goes through
    a.sync()
    b.sync()
    assert not b.path("notes.txt").exists()
    assert b.status()["problems"] == []


@pytest.mark.s3
def test_nothing_is_written_through_a_local_symlink(s3_remote: Bucket, tmp_path: Path) -> None:
    (b,) = devices(s3_remote, tmp_path, "b")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    b.path("link").symlink_to(elsewhere)
    b.write("mine.txt", "b's own\n")
    b.sync()
    register_evil(s3_remote)
    publish_raw(s3_remote, "evil", [file_entry(s3_remote, "link/x", b"through the link\n")], 0)

    b.sync(code=4)
    assert list(elsewhere.iterdir()) == []
    problems = b.status()["problems"]  # on the symlink (SPEC 4.1), naming what it blocks
    assert [(p["path"], p["kind"]) for p in problems] == [("link", "type_clash")], problems
    assert "link/x" in problems[0]["message"]
    assert b.path("link").is_symlink()
    b.sync(code=4)  # still refused, still reported
    assert list(elsewhere.iterdir()) == []


# --- an offline root ---------------------------------------------------------------------


@pytest.mark.parametrize("how", ["root.toml removed", "folder missing"])
def test_offline_root_is_left_untouched(remote: Bucket, tmp_path: Path, how: str) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    for name in ("x.txt", "y.txt", "z.txt"):
        a.write(name, f"{name} v1\n")
    a.sync()
    b.sync()
    a.write("x.txt", "x v2, waiting for b\n")
    a.sync()
    b.path("y.txt").unlink()  # would be a delete to publish, were b online
    b.write("new.txt", "would be uploaded\n")
    moved = tmp_path / "unmounted"
    if how == "root.toml removed":
        toml = b.read(".dropbear/root.toml")
        b.path(".dropbear/root.toml").unlink()
    else:
        b.root.rename(moved)
    before_tree = b.tree() if b.root.exists() else None
    before_objects = remote.objects()

    got = b.sync(code=3)
    assert "offline" in one_error_line(got.err)
    status = remote.cli("status", str(b.root), "--json")
    assert status.code == 3 and status.json["online"] is False
    assert remote.objects() == before_objects
    if before_tree is None:
        assert not b.root.exists()
    else:
        assert b.tree() == before_tree

    # back online: the pending changes on both sides go through, nothing was lost
    if how == "root.toml removed":
        b.write(".dropbear/root.toml", toml)
    else:
        moved.rename(b.root)
    b.sync()
    a.sync()
    assert b.read("x.txt") == b"x v2, waiting for b\n"
    assert a.read("new.txt") == b"would be uploaded\n"
    assert not a.path("y.txt").exists()
    assert a.tree() == b.tree()


def test_a_stray_object_among_tombstones_is_skipped(local_remote: Bucket, tmp_path: Path) -> None:
    """A file that is not a tombstone batch in a device's tombstones folder (a `.DS_Store`
    a NAS gained, a note someone left) is not a batch: it is skipped like a foreign folder
    under `devices/`, and the device's real deletes still arrive."""
    remote = local_remote
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("old.txt", "to be deleted\n")
    a.write("keep.txt", "keeps the root from looking emptied\n")
    a.sync()
    b.sync()
    for name in (".DS_Store", "00000000000000000001.json.bak", "notes.txt"):
        remote.put(remote.keys.tombstones_prefix("a") + name, b"not a batch\n")
    a.path("old.txt").unlink()
    a.sync()

    b.sync()
    assert not b.path("old.txt").exists()
    assert b.read("keep.txt") == b"keeps the root from looking emptied\n"
    assert b.status()["problems"] == []
