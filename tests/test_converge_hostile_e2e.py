"""Devices facing a damaged or hostile bucket, and an offline root, end to end through the
real CLI (SPEC 1.1-1.3, 2, 4.1): corrupted blobs and tree nodes are refused with exit 11,
hostile trees are refused for their device only, unsafe names never reach the disk, an
offline root touches nothing. (A cycle of nodes cannot be made with honest hashes: a node
naming a key whose bytes are not it is the closest a bucket gets, and
tests/test_tree_hostile.py reads real cycles through a store that skips the hashes.)"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dropbeard.core.tree import MAX_NODE_BYTES
from dropbeard.sync.registry import register, update_registry
from tests.converge import Bucket, Cli, Device, devices, local_bucket


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
        s3_remote.put(s3_remote.keys.blob(sha(data)), b"not what the tree promised")

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


# --- a tree node that does not match its key ------------------------------------------------


def test_a_node_not_matching_its_key_is_refused(remote: Bucket, tmp_path: Path) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("real.txt", "what a really holds\n")
    a.sync()
    b.write("mine.txt", "b's own\n")

    # a well-formed node, but not the bytes a's head vouches for (its key)
    head = json.loads(remote.get(remote.keys.head("a")))
    key = remote.keys.tree(head["tree"])
    planted = b"planted by someone with write access\n"
    entry = evil_file(remote, "planted.txt")
    entry["sha256"], entry["size"] = remote.put_blob(planted), len(planted)
    original = remote.get(key)
    remote.put(key, json.dumps({"format": 2, "entries": [entry]}).encode())
    before = b.tree()

    got = b.sync(code=11)  # a is skipped; b's own pass goes on
    line = one_error_line(got.err)
    assert "'a'" in line and key in line
    assert b.tree() == before  # neither planted.txt nor real.txt
    assert {e.path for e in remote.listing("b").entries} == {"mine.txt"}

    remote.put(key, original)  # the bucket is repaired: a is read again
    b.sync()
    assert b.read("real.txt") == b"what a really holds\n"
    assert not b.path("planted.txt").exists()


def test_a_node_that_fails_when_looked_up_skips_its_device_for_the_pass(
    remote: Bucket, tmp_path: Path
) -> None:
    """A node a pass did not diff (its device's head did not move) but must look a path up
    in: damaged, it makes that device unreadable for the pass, like a damaged head."""
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("docs/x.txt", "x\n")
    a.write("keep.txt", "k\n")
    a.sync()
    b.sync()
    head = json.loads(remote.get(remote.keys.head("a")))
    top = json.loads(remote.get(remote.keys.tree(head["tree"])))
    (docs,) = (e["tree"] for e in top["entries"] if e["name"] == "docs")
    remote.put(remote.keys.tree(docs), b"not that node")
    shutil.rmtree(b.path(".dropbear/trees"))  # b read it once: not any more
    b.write("docs/x.txt", "edited on b\n")  # reconciling it looks it up in a's tree

    got = b.sync(code=11)

    line = one_error_line(got.err)
    assert "device 'a'" in line and remote.keys.tree(docs) in line, line
    listed = {e.path: e.sha256 for e in remote.listing("b").entries}
    assert listed["docs/x.txt"] == sha(b"edited on b\n")  # b's own change still went out
    # b published the same listing as a, so the same tree: its own last tree holds that
    # node too, so b built its tree anew from its index, and says so (naming its root)
    status = remote.cli("status", str(b.root), "--json", "--offline").json
    problems = {(p["path"], p["kind"]): p["message"] for p in status["problems"]}
    assert list(problems) == [
        ("devices/a/", "integrity"),
        (remote.keys.tree(head["tree"]), "integrity"),
    ]
    assert remote.keys.tree(docs) in problems[(remote.keys.tree(head["tree"]), "integrity")]


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
    key = remote.keys.tree(head["tree"])
    if damage == "malformed":  # under its own key, and a head naming it: it must still parse
        bad = b'{"format": 2, "entries": 7}'
        key = remote.keys.tree(sha(bad))
        head["tree"] = sha(bad)
        remote.put(remote.keys.head("b"), json.dumps(head).encode())
    else:
        bad = remote.get(key) + b" "
    remote.put(key, bad)
    c.write("new-c.txt", "c's own new file\n")

    got = c.sync(code=11)  # b is skipped and named; everything else goes through
    line = one_error_line(got.err)
    assert "device 'b'" in line and key in line, line
    assert c.read("from-a.txt") == b"a v2\n" and c.read("new-a.txt") == b"new on a\n"
    assert not c.path("gone.txt").exists()
    assert c.read("from-b.txt") == b"b's file\n"  # b's absence deletes nothing
    assert "new-c.txt" in {e.path for e in remote.listing("c").entries}
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


# --- hostile trees from a device registered in the bucket ----------------------------------


def put_node(remote: Bucket, node: dict[str, Any] | bytes) -> str:
    """Store a node under the SHA-256 of its bytes (as given: no check, no canonical
    form); its key."""
    data = node if isinstance(node, bytes) else json.dumps(node).encode()
    remote.put(remote.keys.tree(sha(data)), data)
    return sha(data)


def listing(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"format": 2, "entries": list(entries)}


def folder(remote: Bucket, name: str, *entries: dict[str, Any]) -> dict[str, Any]:
    """A folder entry holding `entries` (its node stored)."""
    tree = put_node(remote, listing(*entries))
    return {"name": name, "type": "dir", "mode": 0o755, "version": {"evil": 1}, "tree": tree}


def publish_raw(
    remote: Bucket,
    device: str,
    entries: list[dict[str, Any]],
    n: int,
    deletes: list[dict[str, Any]] | None = None,
    *,
    tree: str | None = None,
) -> None:
    """Publish a root node listing `entries` (or the node `tree`) as `device`'s snapshot
    `n` (and `deletes` as its tombstone batch `n`), bypassing every check a writer makes,
    with a head naming them."""
    root = tree if tree is not None else put_node(remote, listing(*entries))
    snapshot_id = f"20260101T0000{n:02d}Z"
    at = "2026-01-01T00:00:00Z"
    snapshot = {"format": 2, "device_id": device, "snapshot": snapshot_id, "tree": root,
                "created_at": at, "files": len(entries), "bytes": 0}  # fmt: skip
    remote.put(remote.keys.snapshot(device, snapshot_id), json.dumps(snapshot).encode())
    if deletes is not None:
        batch = {"format": 2, "device_id": device, "seq": n, "created_at": at}
        remote.put(
            remote.keys.tombstone(device, n), json.dumps({**batch, "deletes": deletes}).encode()
        )
    head = {
        "format": 2,
        "device_id": device,
        "snapshot": snapshot_id,
        "tree": root,
        "published_at": at,
        "tombstone_seq": n if deletes is not None else 0,
        "seen": {},
    }
    remote.put(remote.keys.head(device), json.dumps(head).encode())


def register_evil(remote: Bucket) -> None:
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    change = register("evil", "bidirectional", now, take_over=False)
    remote.run(lambda s: update_registry(s, remote.keys, change))


def file_entry(remote: Bucket, name: str, data: bytes) -> dict[str, Any]:
    return {
        "name": name,
        "type": "file",
        "size": len(data),
        "mode": 0o644,
        "mtime_ns": 1,
        "sha256": remote.put_blob(data),
        "version": {"evil": 1},
    }


MAX_INT = 2**63 - 1


def nested(depth: int = 100_000) -> bytes:
    """Valid JSON nested deeper than any decoder will follow."""
    return b'{"format": 2, "x": ' + b"[" * depth + b"]" * depth + b"}"


def evil_file(remote: Bucket, name: str, **fields: Any) -> dict[str, Any]:
    entry = {**file_entry(remote, name, b"evil bytes\n"), **fields}
    return {k: v for k, v in entry.items() if v is not None}


def evil_link(name: str, target: str, **fields: Any) -> dict[str, Any]:
    link = {"name": name, "type": "symlink", "target": target, "mode": 0o777}
    return {**link, "version": {"evil": 1}, **fields}


def evil_root(remote: Bucket, data: bytes) -> None:
    """A head naming `data` as evil's root node, under the SHA-256 of those bytes."""
    publish_raw(remote, "evil", [], 0, tree=put_node(remote, data))


def evil_head(remote: Bucket, **fields: Any) -> None:
    publish_raw(remote, "evil", [], 0)
    head = json.loads(remote.get(remote.keys.head("evil")))
    remote.put(remote.keys.head("evil"), json.dumps({**head, **fields}).encode())


def pages_nested(remote: Bucket, levels: int) -> str:
    """A folder of one file under `levels` index levels of one page each."""
    key = put_node(remote, listing(evil_file(remote, "a")))
    for _ in range(levels):
        key = put_node(remote, {"format": 2, "pages": [{"first": "a", "tree": key}]})
    return key


def huge_node(remote: Bucket) -> str:
    """A node just over what any reader holds (8 MiB), under its own key."""
    pad = "x" * (MAX_NODE_BYTES + 1)
    return put_node(remote, {"format": 2, "entries": [], "pad": pad})


def node_not_its_bytes(remote: Bucket) -> str:
    key = put_node(remote, listing(evil_file(remote, "a")))
    remote.put(remote.keys.tree(key), json.dumps(listing(evil_file(remote, "b"))).encode())
    return key


def folder_of_deep_pages(remote: Bucket) -> None:
    deep = {"name": "d", "type": "dir", "mode": 0o755, "version": {"evil": 1}}
    publish_raw(remote, "evil", [{**deep, "tree": pages_nested(remote, 10)}], 0)


def head_of_format_1(remote: Bucket) -> None:
    old = {"format": 1, "device_id": "evil", "manifest": "20260101T000000Z",
           "manifest_sha256": sha(b""), "published_at": "2026-01-01T00:00:00Z"}  # fmt: skip
    remote.put(remote.keys.head("evil"), json.dumps(old).encode())


MINE = b"b's own\n"
#: what a hostile device plants -> how b's pass must end (11: evil skipped, 4: problems)
HOSTILE: dict[str, tuple[Callable[[Bucket], object], int]] = {
    "name_dotdot": (lambda r: publish_raw(r, "evil", [evil_file(r, "..")], 0), 11),
    "name_with_a_slash": (lambda r: publish_raw(r, "evil", [evil_file(r, "../outside")], 0), 11),
    "name_absolute": (lambda r: publish_raw(r, "evil", [evil_file(r, f"{r.url}/x")], 0), 11),
    "name_state_dir": (
        lambda r: publish_raw(r, "evil", [folder(r, ".DropBear", evil_file(r, "x"))], 0),
        11,
    ),
    "name_too_long": (lambda r: publish_raw(r, "evil", [evil_file(r, "x" * 300)], 0), 11),
    "name_twice": (lambda r: publish_raw(r, "evil", [evil_file(r, "d"), evil_file(r, "d")], 0), 11),
    "names_out_of_order": (
        lambda r: publish_raw(r, "evil", [evil_file(r, "b"), evil_file(r, "a")], 0),
        11,
    ),
    "file_holding_a_tree": (
        lambda r: publish_raw(r, "evil", [evil_file(r, "f", tree=sha(b"x"))], 0),
        11,
    ),
    "link_holding_a_tree": (
        lambda r: publish_raw(r, "evil", [evil_link("l", r.url, tree=sha(b"x"))], 0),
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
    "node_nested": (lambda r: evil_root(r, nested()), 11),
    "node_not_json": (lambda r: evil_root(r, b"\xff\xfe not json"), 11),
    "node_of_format_1": (lambda r: evil_root(r, b'{"format": 1, "entries": []}'), 11),
    "node_not_its_bytes": (lambda r: publish_raw(r, "evil", [], 0, tree=node_not_its_bytes(r)), 11),
    "node_absurdly_large": (lambda r: publish_raw(r, "evil", [], 0, tree=huge_node(r)), 11),
    "pages_nested_10_levels": (
        lambda r: publish_raw(r, "evil", [folder(r, "d")], 0, tree=pages_nested(r, 10)),
        11,
    ),
    "folder_nested_10_levels_of_pages": (folder_of_deep_pages, 11),
    "head_nested": (lambda r: r.put(r.keys.head("evil"), nested()), 11),
    "head_of_format_1": (head_of_format_1, 11),
    "head_naming_a_missing_tree": (lambda r: evil_head(r, tree=sha(b"nothing")), 11),
    "head_seen_junk": (lambda r: evil_head(r, seen={"b": {"snapshot": "zzz"}}), 11),
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
    assert {"mine.txt", "new.txt"} <= {e.path for e in local_remote.listing("b").entries}
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
    toml_bytes = b"[remote]\nurl = 'evil'\n"
    hostile = {
        "'../x'": [file_entry(s3_remote, "../x", toml_bytes)],
        "'/etc/x'": [file_entry(s3_remote, "/etc/x", toml_bytes)],
        "the root lists '.dropbear'": [
            folder(s3_remote, ".dropbear", file_entry(s3_remote, "root.toml", toml_bytes))
        ],
    }
    for n, (says, entries) in enumerate(hostile.items()):
        publish_raw(s3_remote, "evil", entries, n)
        b.write(f"new-{n}.txt", f"b's new file {n}\n")
        before = b.tree()
        got = b.sync(code=11)  # evil is skipped; b's own new file is published
        line = one_error_line(got.err)
        bad = says
        assert says in line and "evil" in line, line
        assert b.tree() == before, bad
        assert f"new-{n}.txt" in {e.path for e in s3_remote.listing("b").entries}
        assert not (tmp_path / "x").exists(), bad
        assert b.read(".dropbear/root.toml") == toml, bad
        assert Path("/etc/x").exists() == etc_x_existed
    # evil retired from the bucket's point of view: b syncs normally again
    s3_remote.run(lambda s: s.delete(s3_remote.keys.head("evil")))
    b.sync()


@pytest.mark.parametrize(("name", "mode"), [("tool", 0o6755), ("shared", 0o1777)])
def test_modes_from_the_bucket_never_carry_setuid_setgid_or_sticky_bits(
    local_remote: Bucket, tmp_path: Path, name: str, mode: int
) -> None:
    """A tree lists permission bits only (SPEC 1.1): one claiming more is refused whole."""
    (b,) = devices(local_remote, tmp_path, "b")
    b.write("mine.txt", "b's own\n")
    b.sync()
    register_evil(local_remote)
    tool = {**file_entry(local_remote, "tool", b"#!/bin/sh\necho owned\n"), "mode": 0o755}
    shared = folder(local_remote, "shared")
    entries = {"tool": tool, "shared": shared}
    entries[name] = {**entries[name], "mode": mode}
    publish_raw(local_remote, "evil", [entries["shared"], entries["tool"]], 0)

    line = one_error_line(b.sync(code=11).err)
    assert "evil" in line and "mode" in line
    assert not b.path("tool").exists() and not b.path("shared").exists()
    modes = {e.path: e.mode for e in local_remote.listing("b").entries}
    assert modes == {"mine.txt": 0o644}


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
    assert "notes.txt" in {e.path for e in remote.listing("b").entries}

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
    through = file_entry(s3_remote, "x", b"through the link\n")
    publish_raw(s3_remote, "evil", [folder(s3_remote, "link", through)], 0)

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
