"""End to end: one device publishing its folder — `init`, `sync`, `status` through the real
command line (in-process or as a subprocess) and `run_pass` over real stores — against a
local-directory remote and SeaweedFS.

What is checked is what a person (or a fifty-line script reading the bucket) would notice:
the objects at their documented keys and their bytes, exit codes, the one-line errors, and
that nothing changes — in the bucket or in `state.sqlite` — when it must not.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from dropbeard.cli.main import main
from dropbeard.core.config import parse_root_config
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import (
    Entry,
    Head,
    Snapshot,
    TombstoneBatch,
    decode_head,
    decode_registry,
    decode_snapshot,
    decode_tombstones,
)
from dropbeard.core.summary import Summary
from dropbeard.core.tree import decode_node
from dropbeard.core.treediff import to_entry
from dropbeard.core.version import dominates
from dropbeard.store.base import ObjectInfo, Store
from dropbeard.store.counting import CountingStore
from dropbeard.store.factory import open_store
from dropbeard.store.local import LocalStore
from dropbeard.store.s3 import S3Store
from dropbeard.store.s3client import Credentials
from dropbeard.sync.ahead import LARGEST
from dropbeard.sync.chunking import Chunker
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.meter import PassMeter, Stage, StageName
from dropbeard.sync.root import RootPaths, open_online, root_lock
from tests.conftest import make_s3_store
from tests.faults import FaultStore
from tests.httpspy import http_spy
from tests.seaweed import Seaweed, free_ports

T = TypeVar("T")
S3T = TypeVar("S3T", bound=S3Store)
MiB = 1024 * 1024
ROOT_ID = "notes"
DEVICE = "laptop"
KEYS = RootKeys(ROOT_ID)
EMPTY_SHA = hashlib.sha256(b"").hexdigest()
STATE_TABLES = ("meta", "files", "peers", "problems")
#: Variables the machine sets that point TLS clients at a CA bundle (and AWS settings).
CA_VARS = ("CA_BUNDLE", "SSL_CERT", "CA_CERTS", "CAINFO")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def arun(fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn)


# --- the remote under test ------------------------------------------------------------


@dataclass
class Remote:
    """A remote as `init --remote` names it, plus a raw view of it for the assertions."""

    kind: str  # "local" or "s3"
    url: str
    directory: Path | None = None
    server: Seaweed | None = None
    prefix: str = ""

    def init_args(self) -> list[str]:
        if self.server is None:
            return ["--remote", self.url]
        return [
            "--remote",
            self.url,
            "--endpoint-url",
            self.server.endpoint,
            "--addressing-style",
            "path",
        ]

    def raw_store(self) -> Store:
        if self.server is None:
            assert self.directory is not None
            return LocalStore(self.directory)
        return make_s3_store(self.server, self.prefix)

    def objects(self) -> dict[str, bytes]:
        """Every object of the root `notes` in the bucket: key -> bytes."""

        async def read() -> dict[str, bytes]:
            store = self.raw_store()
            found: dict[str, bytes] = {}
            try:
                async for page in store.list(KEYS.prefix):
                    for obj in page.objects:
                        found[obj.key] = await store.get(obj.key)
            finally:
                await store.aclose()
            return found

        return arun(read)

    def snapshot(self) -> dict[str, object]:
        """Everything in the remote, byte for byte (and each object's identity: mtime and
        inode of a file, etag and modification time of an S3 object)."""
        if self.server is None:
            assert self.directory is not None
            return _dir_snapshot(self.directory)

        async def read() -> dict[str, object]:
            store = self.raw_store()
            found: dict[str, object] = {}
            try:
                async for page in store.list(""):
                    for obj in page.objects:
                        found[obj.key] = (await store.get(obj.key), obj.etag, obj.last_modified)
            finally:
                await store.aclose()
            return found

        return arun(read)

    def subprocess_env(self, *, machine_env: bool = True) -> dict[str, str]:
        env = dict(os.environ)
        if not machine_env:
            env = {
                k: v
                for k, v in env.items()
                if not k.startswith("AWS_") and not any(m in k for m in CA_VARS)
            }
        if self.server is not None:
            env["DROPBEAR_S3_ACCESS_KEY_ID"] = self.server.access_key
            env["DROPBEAR_S3_SECRET_ACCESS_KEY"] = self.server.secret_key
        return env


def _dir_snapshot(top: Path) -> dict[str, object]:
    if not top.exists():
        return {}
    found: dict[str, object] = {}
    for folder, dirs, files in os.walk(top):
        for d in dirs:
            found[os.path.relpath(os.path.join(folder, d), top) + "/"] = "dir"
        for f in files:
            path = os.path.join(folder, f)
            st = os.lstat(path)
            found[os.path.relpath(path, top)] = (Path(path).read_bytes(), st.st_mtime_ns, st.st_ino)
    return found


def _folder_snapshot(root: Path) -> dict[str, object]:
    """The synced folder as a person sees it (`.dropbear/` is compared via `state_dump`)."""
    return {k: v for k, v in _dir_snapshot(root).items() if not k.startswith(".dropbear/")}


def _s3_remote(server: Seaweed, monkeypatch: pytest.MonkeyPatch) -> Remote:
    prefix = f"e2e-{uuid.uuid4().hex[:12]}"
    monkeypatch.setenv("DROPBEAR_S3_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("DROPBEAR_S3_SECRET_ACCESS_KEY", server.secret_key)
    monkeypatch.delenv("DROPBEAR_S3_SESSION_TOKEN", raising=False)
    return Remote("s3", f"s3://{server.bucket}/{prefix}", server=server, prefix=prefix)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def remote(
    request: pytest.FixtureRequest, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Remote:
    if request.param == "local":
        directory = tmp_path / "remote"
        return Remote("local", str(directory), directory=directory)
    return _s3_remote(request.getfixturevalue("seaweed"), monkeypatch)


@pytest.fixture
def s3_remote(seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch) -> Remote:
    return _s3_remote(seaweed, monkeypatch)


# --- driving the command line -----------------------------------------------------------


@dataclass
class Run:
    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.out)
        return data


def cli(*args: str | Path) -> Run:
    """`dropbeard ARGS` in this process, its output captured."""
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([str(a) for a in args])
    return Run(code, out.getvalue(), err.getvalue())


def init(
    remote: Remote,
    root: Path,
    *extra: str,
    device: str = DEVICE,
    mode: str = "bidirectional",
) -> Run:
    return cli(
        "init", root, *remote.init_args(), "--root-id", ROOT_ID, "--device-id", device,
        "--mode", mode, *extra,
    )  # fmt: skip


def sync(root: Path, *extra: str, expect: int = 0) -> dict[str, Any]:
    run = cli("sync", root, "--json", *extra)
    assert run.code == expect, run.err
    return run.json()


def new_root(remote: Remote, tmp_path: Path, mode: str = "bidirectional") -> Path:
    root = tmp_path / DEVICE
    run = init(remote, root, mode=mode)
    assert run.code == 0, run.err
    return root


def write(root: Path, rel: str, data: bytes | str, mode: int = 0o644) -> Path:
    path = root / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    os.chmod(path, mode)
    return path


async def pass_in_process(
    root: Path,
    wrap: Callable[[Store], Store] = lambda s: s,
    *,
    store: Store | None = None,
    **opts: Any,
) -> Summary:
    """One pass as `sync_command` runs it, with the store wrapped or replaced by a test."""
    paths = RootPaths(root)
    cfg, state = open_online(paths)
    used = wrap(store if store is not None else open_store(cfg.remote))
    try:
        with root_lock(paths):
            return await run_pass(paths, cfg, state, used, PassOptions(**opts))
    finally:
        await used.aclose()
        state.close()


# --- reading what was published ---------------------------------------------------------


def blobs(objects: dict[str, bytes]) -> dict[str, bytes]:
    return {k: v for k, v in objects.items() if k.startswith(KEYS.blobs_prefix)}


@dataclass
class Published:
    """A device's head, the snapshot it names, and what that snapshot's tree lists
    (sorted by path), with the keys of the tree's nodes."""

    head: Head
    snapshot: Snapshot
    entries: list[Entry]
    nodes: set[str]


def head_and_listing(objects: dict[str, bytes], device: str = DEVICE) -> Published:
    head = decode_head(objects[KEYS.head(device)], KEYS.head(device))
    assert head.snapshot is not None and head.tree is not None
    key = KEYS.snapshot(device, head.snapshot)
    snapshot = decode_snapshot(objects[key], key)
    assert snapshot.tree == head.tree
    found: list[Entry] = []
    nodes: set[str] = set()
    todo = [("", head.tree)]
    while todo:
        folder, digest = todo.pop()
        nodes.add(KEYS.tree(digest))
        node = decode_node(objects[KEYS.tree(digest)], digest, KEYS.tree(digest))
        todo += [(folder, page.tree) for page in node.pages or []]
        for entry in node.entries or []:
            path = f"{folder}/{entry.name}" if folder else entry.name
            found.append(to_entry(path, entry))
            if entry.tree is not None:
                todo.append((path, entry.tree))
    return Published(head, snapshot, sorted(found, key=lambda e: e.path), nodes)


def entries(objects: dict[str, bytes]) -> dict[str, Entry]:
    return {e.path: e for e in head_and_listing(objects).entries}


def tombstone_batches(objects: dict[str, bytes], device: str = DEVICE) -> list[TombstoneBatch]:
    prefix = KEYS.tombstones_prefix(device)
    return [decode_tombstones(v, k) for k, v in sorted(objects.items()) if k.startswith(prefix)]


def state_dump(root: Path) -> dict[str, list[tuple[Any, ...]]]:
    db = sqlite3.connect(f"file:{root / '.dropbear' / 'state.sqlite'}?mode=ro", uri=True)
    try:
        return {
            t: sorted(db.execute(f"SELECT * FROM {t}").fetchall(), key=repr) for t in STATE_TABLES
        }
    finally:
        db.close()


# --- init ---------------------------------------------------------------------------------


def test_init_creates_the_root_and_registers_the_device(remote: Remote, tmp_path: Path) -> None:
    root = tmp_path / DEVICE
    run = init(remote, root, mode="upload-only")
    assert run.code == 0, run.err

    cfg = parse_root_config((root / ".dropbear" / "root.toml").read_text(), "root.toml")
    assert (cfg.root_id, cfg.device_id, cfg.mode) == (ROOT_ID, DEVICE, "upload-only")
    assert cfg.remote.url == remote.url
    assert (root / ".dropbear" / "state.sqlite").is_file()
    assert not (root / ".dropbear.init-tmp").exists()
    meta = dict(state_dump(root)["meta"])
    assert (meta["root_id"], meta["device_id"]) == (ROOT_ID, DEVICE)

    objects = remote.objects()
    assert list(objects) == [KEYS.registry]
    registry = decode_registry(objects[KEYS.registry], KEYS.registry)
    assert list(registry.devices) == [DEVICE]
    record = registry.devices[DEVICE]
    assert (record.status, record.mode) == ("active", "upload-only")
    assert record.registered_at


def test_init_twice_on_one_folder_is_refused_and_changes_nothing(
    remote: Remote, tmp_path: Path
) -> None:
    root = new_root(remote, tmp_path)
    toml = (root / ".dropbear" / "root.toml").read_bytes()
    bucket, state = remote.snapshot(), state_dump(root)

    run = init(remote, root, device="other")
    assert run.code == 2
    assert "already a dropbeard root" in run.err
    assert (root / ".dropbear" / "root.toml").read_bytes() == toml
    assert state_dump(root) == state
    assert remote.snapshot() == bucket


def test_a_second_folder_cannot_take_an_active_device_id_unless_asked(
    remote: Remote, tmp_path: Path
) -> None:
    new_root(remote, tmp_path)
    bucket = remote.snapshot()
    other = tmp_path / "reinstalled"

    run = init(remote, other)
    assert run.code == 2
    assert "already active" in run.err and "--take-over" in run.err
    assert not (other / ".dropbear").exists()
    assert not (other / ".dropbear.init-tmp").exists()
    assert remote.snapshot() == bucket

    run = init(remote, other, "--take-over")
    assert run.code == 0, run.err
    assert (other / ".dropbear" / "root.toml").is_file()
    registry = decode_registry(remote.objects()[KEYS.registry], KEYS.registry)
    assert list(registry.devices) == [DEVICE]
    assert registry.devices[DEVICE].status == "active"


@pytest.mark.parametrize(
    ("flag", "value"),
    [  # typed ids are normalised first (`My Laptop` -> `my-laptop`): these have no valid id
        ("--device-id", "---"),
        ("--device-id", "..."),
        ("--device-id", "ü"),
        ("--root-id", "x" * 65),
        ("--root-id", "/"),
        ("--root-id", ""),
    ],
)
def test_init_refuses_invalid_ids(tmp_path: Path, flag: str, value: str) -> None:
    remote_dir = tmp_path / "remote"
    root = tmp_path / "root"
    root.mkdir()
    ids = {"--root-id": ROOT_ID, "--device-id": DEVICE, flag: value}
    run = cli("init", root, "--remote", remote_dir, *(f"{k}={v}" for k, v in ids.items()))
    assert run.code == 2
    assert flag in run.err and "valid id" in run.err
    assert len(run.err.strip().splitlines()) <= 2  # usage line at most, then one error line
    assert list(root.iterdir()) == []
    assert not remote_dir.exists()


# --- publishing -----------------------------------------------------------------------------


def _tree(root: Path) -> dict[str, bytes]:
    files = {
        "a.txt": b"alpha\n",
        "empty": b"",
        "docs/b.md": b"# bee\n" * 1000,
        "run.sh": b"#!/bin/sh\necho hi\n",
    }
    write(root, "a.txt", files["a.txt"])
    write(root, "empty", files["empty"])
    write(root, "docs/b.md", files["docs/b.md"], 0o600)
    write(root, "run.sh", files["run.sh"], 0o755)
    os.chmod(root / "docs", 0o750)
    (root / "link").symlink_to("a.txt")
    return files


@pytest.mark.parametrize("mode", ["upload-only", "bidirectional"])
def test_sync_publishes_blobs_trees_snapshot_and_head_at_the_documented_keys(
    remote: Remote, tmp_path: Path, mode: str
) -> None:
    root = new_root(remote, tmp_path, mode)
    files = _tree(root)

    summary = sync(root)
    assert summary["uploaded"] == 4
    assert summary["uploaded_bytes"] == sum(len(v) for v in files.values())
    objects = remote.objects()

    # blobs: the whole file's bytes at blobs/ab/cd/<sha256>; the empty file is a 0-byte blob
    expected_blobs = {KEYS.blob(sha(d)): d for d in files.values()}
    assert blobs(objects) == expected_blobs
    assert f"{KEYS.blobs_prefix}e3/b0/{EMPTY_SHA}" in objects
    assert objects[f"{KEYS.blobs_prefix}e3/b0/{EMPTY_SHA}"] == b""

    published = head_and_listing(objects)
    head, snapshot = published.head, published.snapshot
    assert head.snapshot == snapshot.snapshot == summary["snapshot"]
    assert head.device_id == DEVICE and head.tombstone_seq == 0 and head.seen == {}
    assert snapshot.device_id == DEVICE
    assert (snapshot.files, snapshot.bytes) == (4, sum(len(v) for v in files.values()))
    assert len(published.nodes) == 2  # the root and docs
    assert set(objects) == {
        *expected_blobs,
        *published.nodes,
        KEYS.registry,
        KEYS.head(DEVICE),
        KEYS.snapshot(DEVICE, snapshot.snapshot),
    }

    paths = [e.path for e in published.entries]
    assert paths == ["a.txt", "docs", "docs/b.md", "empty", "link", "run.sh"]
    got = {e.path: e for e in published.entries}
    for rel, data in files.items():
        e, st = got[rel], os.stat(root / rel)
        assert (e.type, e.size, e.sha256) == ("file", len(data), sha(data)), rel
        assert (e.mode, e.mtime_ns, e.target) == (st.st_mode & 0o7777, st.st_mtime_ns, None)
    assert (got["run.sh"].mode, got["docs/b.md"].mode, got["a.txt"].mode) == (0o755, 0o600, 0o644)
    assert (got["docs"].type, got["docs"].mode, got["docs"].sha256) == ("dir", 0o750, None)
    assert (got["link"].type, got["link"].target, got["link"].sha256) == ("symlink", "a.txt", None)
    # every path has a fresh version of this device's counter, and only of this device
    counters = [e.version[DEVICE] for e in published.entries]
    assert all(list(e.version) == [DEVICE] for e in published.entries)
    assert len(set(counters)) == len(counters) and min(counters) >= 1


def test_renames_and_duplicates_upload_no_new_blob(remote: Remote, tmp_path: Path) -> None:
    root = new_root(remote, tmp_path)
    write(root, "a.txt", b"some bytes " * 100)
    write(root, "b.txt", b"other bytes " * 100)
    assert sync(root)["uploaded"] == 2
    before = set(blobs(remote.objects()))

    (root / "moved").mkdir()
    os.rename(root / "a.txt", root / "moved" / "renamed.txt")
    write(root, "copy-of-b.txt", (root / "b.txt").read_bytes())
    summary = sync(root)
    assert summary["uploaded"] == 0 and summary["uploaded_bytes"] == 0
    objects = remote.objects()
    assert set(blobs(objects)) == before
    now = entries(objects)
    assert now["moved/renamed.txt"].sha256 == sha(b"some bytes " * 100)
    assert now["copy-of-b.txt"].sha256 == now["b.txt"].sha256
    assert "a.txt" not in now

    # two new files with the same bytes in one pass: one blob, one upload
    write(root, "twin1", b"twins")
    write(root, "twin2", b"twins")
    assert sync(root)["uploaded"] == 1
    assert set(blobs(remote.objects())) == {*before, KEYS.blob(sha(b"twins"))}


def test_a_deleted_file_becomes_one_tombstone_dominating_the_published_version(
    remote: Remote, tmp_path: Path
) -> None:
    root = new_root(remote, tmp_path)
    write(root, "a.txt", b"doomed")
    write(root, "keep.txt", b"kept")
    sync(root)
    published = entries(remote.objects())["a.txt"]

    (root / "a.txt").unlink()
    summary = sync(root)
    assert summary["tombstones"] == 1
    objects = remote.objects()
    batches = tombstone_batches(objects)
    assert [b.seq for b in batches] == [1]
    assert KEYS.tombstone(DEVICE, 1) in objects
    (gone,) = batches[0].deletes
    assert (gone.path, gone.type, gone.sha256) == ("a.txt", "file", sha(b"doomed"))
    assert dominates(gone.version, published.version)
    published = head_and_listing(objects)
    assert published.head.tombstone_seq == 1
    assert [e.path for e in published.entries] == ["keep.txt"]
    # the blob is not deleted (other devices, older snapshots and restore still need it)
    assert KEYS.blob(sha(b"doomed")) in objects


def test_deleting_a_folder_of_100_files_is_one_tombstone_object(
    remote: Remote, tmp_path: Path
) -> None:
    root = new_root(remote, tmp_path)
    for i in range(100):
        write(root, f"old/f{i:03}.txt", f"file {i}\n")
    for i in range(110):  # keeps the deletion under the mass-delete guard's 50 %
        write(root, f"stay/s{i:03}.txt", "same\n")
    sync(root)

    shutil.rmtree(root / "old")
    summary = sync(root)
    assert summary["halted"] is None
    objects = remote.objects()
    (batch,) = tombstone_batches(objects)
    deleted = {d.path: d for d in batch.deletes}
    assert set(deleted) == {"old", *(f"old/f{i:03}.txt" for i in range(100))}
    assert deleted["old/f007.txt"].sha256 == sha(b"file 7\n")
    assert not any(p.startswith("old") for p in entries(objects))


# --- an idle device -----------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["upload-only", "bidirectional"])
def test_an_idle_sync_makes_no_writes(remote: Remote, tmp_path: Path, mode: str) -> None:
    root = new_root(remote, tmp_path, mode)
    _tree(root)
    sync(root)
    sync(root)  # the stat cache is settled
    bucket = remote.snapshot()

    counting: list[CountingStore] = []

    def wrap(store: Store) -> Store:
        counting.append(CountingStore(store))
        return counting[0]

    summary = arun(lambda: pass_in_process(root, wrap))
    counts = dict(counting[0].counts)
    assert counting[0].writes == 0, counts
    assert summary.snapshot is None and summary.uploaded == 0
    # one request: this device's own head is not read by a pass with nothing to do (SPEC 4
    # step 1, `dropbeard.sync.recovery.quiet`); a device that reads no other device reads
    # the registry (a conditional GET: its grace period), the others list devices/
    if mode == "upload-only":
        assert counts == {"get_if_changed": 1}, counts
    else:  # no other device: one listing of devices/, nothing else
        assert counts == {"list_page": 1}, counts
    assert remote.snapshot() == bucket


@pytest.mark.s3
@pytest.mark.parametrize("mode", ["upload-only", "bidirectional"])
def test_an_idle_sync_is_one_request_on_the_wire(
    s3_remote: Remote, tmp_path: Path, mode: str
) -> None:
    """What SeaweedFS receives from an idle pass, seen by a proxy in front of it: one
    request (the listing of devices/, or the registry's conditional GET)."""
    root = new_root(s3_remote, tmp_path, mode)
    _tree(root)
    sync(root)
    sync(root)
    server = s3_remote.server
    assert server is not None

    async def idle() -> tuple[Summary, list[str]]:
        async with http_spy(server.endpoint) as spy:
            store = S3Store(
                server.bucket,
                s3_remote.prefix,
                endpoint_url=spy.endpoint,
                addressing_style="path",
                credentials=Credentials(server.access_key, server.secret_key),
            )
            done = await pass_in_process(root, store=store)
            return done, [f"{r.method} {r.target}" for r in spy.requests]

    summary, requests = arun(idle)
    assert summary.snapshot is None
    assert len(requests) == 1, requests
    want = "registry.json" if mode == "upload-only" else "list-type=2"
    assert want in requests[0], requests


# --- offline roots and unreachable remotes -------------------------------------------------


def _unmount_by_renaming(root: Path) -> None:
    root.rename(root.with_name("elsewhere"))


def _unmount_leaving_mountpoint(root: Path) -> None:
    root.rename(root.with_name("elsewhere"))
    root.mkdir()


def _lose_root_toml(root: Path) -> None:
    (root / ".dropbear" / "root.toml").unlink()


@pytest.mark.parametrize(
    "unmount", [_unmount_by_renaming, _unmount_leaving_mountpoint, _lose_root_toml]
)
def test_an_offline_root_touches_nothing(
    remote: Remote, tmp_path: Path, unmount: Callable[[Path], None]
) -> None:
    root = new_root(remote, tmp_path)
    for i in range(5):
        write(root, f"f{i}", f"{i}")
    sync(root)
    unmount(root)
    bucket = remote.snapshot()
    disk = (_dir_snapshot(tmp_path / "elsewhere"), _dir_snapshot(root))

    run = cli("sync", root)
    assert run.code == 3
    assert "offline" in run.err and len(run.err.strip().splitlines()) == 1
    assert remote.snapshot() == bucket
    assert (_dir_snapshot(tmp_path / "elsewhere"), _dir_snapshot(root)) == disk
    if unmount is _unmount_by_renaming:
        assert not root.exists()

    status = cli("status", root, "--json")
    assert status.code == 3
    report = status.json()
    assert report["online"] is False and "offline" in report["reason"]
    assert remote.snapshot() == bucket


@pytest.mark.s3
def test_wrong_credentials_exit_9_and_change_nothing(
    s3_remote: Remote, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = new_root(s3_remote, tmp_path)
    write(root, "a.txt", "first")
    sync(root)
    write(root, "a.txt", "second version")
    write(root, "b.txt", "new")
    bucket, state = s3_remote.snapshot(), state_dump(root)

    wrong = "wrong-secret-" + uuid.uuid4().hex
    monkeypatch.setenv("DROPBEAR_S3_SECRET_ACCESS_KEY", wrong)
    for mode_args in ([], ["--dry-run"]):
        run = cli("sync", root, *mode_args)
        assert run.code == 9, run.err
        assert len(run.err.strip().splitlines()) == 1
        assert wrong not in run.err and s3_remote.server is not None
        assert s3_remote.server.secret_key not in run.err
        assert "denied" in run.err or "credentials" in run.err
    assert state_dump(root) == state
    assert s3_remote.snapshot() == bucket

    # init with wrong credentials leaves no half-made root behind
    other = tmp_path / "desk"
    run = init(s3_remote, other, device="desk")
    assert run.code == 9
    assert not (other / ".dropbear").exists() and not (other / ".dropbear.init-tmp").exists()
    assert s3_remote.snapshot() == bucket


def _closed_port() -> int:
    return free_ports(1)[0]


@pytest.mark.parametrize("mode", ["upload-only", "bidirectional"])
def test_an_unreachable_remote_exits_10_quickly(remote: Remote, tmp_path: Path, mode: str) -> None:
    root = new_root(remote, tmp_path, mode)
    write(root, "a.txt", "one")
    sync(root)
    write(root, "b.txt", "two")
    state, bucket = state_dump(root), remote.snapshot()
    if remote.server is not None:  # the server is down: nothing listens on the endpoint
        toml = root / ".dropbear" / "root.toml"
        closed = f"http://127.0.0.1:{_closed_port()}"
        toml.write_text(toml.read_text().replace(remote.server.endpoint, closed))
        env = remote.subprocess_env()
    else:  # the NAS is not mounted: the remote folder is gone
        assert remote.directory is not None
        remote.directory.rename(tmp_path / "nas-offline")
        env = dict(os.environ)

    # Quickly: connection refused (or a missing folder) is transient, so RetryingStore
    # retries it with backoff, 5 attempts sleeping at most 0.2 + 0.4 + 0.8 + 1.6 s; with
    # interpreter start-up that is a few seconds. The bound is generous for a loaded
    # 2-core machine yet well under the retry deadline (60 s) and under five 10 s connect
    # timeouts: it fails if the CLI waits for either instead of giving up at once. The
    # subprocess timeout is larger, so the assertion, not the timeout, trips first.
    began = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "dropbeard", "sync", str(root)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.monotonic() - began
    assert elapsed < 30, f"an unreachable remote took {elapsed:.1f}s to report"
    assert proc.returncode == 10, proc.stderr
    # one error line; on a loaded machine the retries may outlast the "still retrying"
    # notice's delay, and that notice may come first
    lines = proc.stderr.strip().splitlines()
    assert [line for line in lines if "error" in line] == lines[-1:], proc.stderr
    assert all("still retrying" in line for line in lines[:-1]), proc.stderr
    assert state_dump(root) == state
    if remote.directory is not None:
        assert not remote.directory.exists()  # nothing written into the empty mountpoint
        remote.directory.with_name("nas-offline").rename(remote.directory)
    assert remote.snapshot() == bucket


@pytest.mark.s3
def test_init_against_a_server_that_is_not_there_exits_10(
    s3_remote: Remote, tmp_path: Path
) -> None:
    root = tmp_path / "root"
    began = time.monotonic()
    run = cli(
        "init", root, "--remote", "s3://bucket/prefix", "--endpoint-url",
        f"http://127.0.0.1:{_closed_port()}", "--root-id", ROOT_ID, "--device-id", DEVICE,
    )  # fmt: skip
    assert time.monotonic() - began < 60
    assert run.code == 10, run.err
    assert not (root / ".dropbear").exists() and not (root / ".dropbear.init-tmp").exists()


@pytest.mark.s3
def test_cli_subprocess_without_the_machine_tls_and_aws_env(
    s3_remote: Remote, tmp_path: Path
) -> None:
    """Every other test runs with the machine's AWS_CA_BUNDLE & co. set; this one runs the
    CLI in processes that have none of them (only the DROPBEAR_S3_* credentials)."""
    env = s3_remote.subprocess_env(machine_env=False)
    assert not any(k.startswith("AWS_") or "CA_BUNDLE" in k for k in env)

    def dropbeard(*args: str | Path) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "dropbeard", *map(str, args)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    root = tmp_path / DEVICE
    proc = dropbeard(
        "init", root, *s3_remote.init_args(), "--root-id", ROOT_ID, "--device-id", DEVICE
    )
    assert proc.returncode == 0, proc.stderr
    write(root, "hello.txt", "hello")
    proc = dropbeard("sync", root, "--json")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["uploaded"] == 1
    assert entries(s3_remote.objects())["hello.txt"].sha256 == sha(b"hello")
    proc = dropbeard("status", root, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["last_snapshot"] == summary["snapshot"]


# --- the safety guard and ignore rules -----------------------------------------------------


def test_a_mass_delete_halts_until_allowed_while_additions_still_sync(
    remote: Remote, tmp_path: Path
) -> None:
    root = new_root(remote, tmp_path)
    for i in range(120):
        write(root, f"f{i:03}.txt", f"content {i % 7}\n")
    sync(root)

    for i in range(100):
        (root / f"f{i:03}.txt").unlink()
    write(root, "added.txt", "arrived with the deletes")
    run = cli("sync", root, "--json")
    assert run.code == 1
    assert "halted" in run.err and "--allow-mass-delete" in run.err
    assert run.json()["halted"]
    objects = remote.objects()
    assert tombstone_batches(objects) == []
    listed = head_and_listing(objects)
    assert listed.head.tombstone_seq == 0
    published = {e.path for e in listed.entries}
    assert "added.txt" in published  # additions still sync
    assert {f"f{i:03}.txt" for i in range(120)} <= published  # the deletes did not go out
    assert objects[KEYS.blob(sha(b"arrived with the deletes"))] == b"arrived with the deletes"

    # still halted on the next pass, until the person says so
    assert cli("sync", root).code == 1
    assert tombstone_batches(remote.objects()) == []

    summary = sync(root, "--allow-mass-delete")
    assert summary["halted"] is None
    objects = remote.objects()
    (batch,) = tombstone_batches(objects)
    assert {d.path for d in batch.deletes} == {f"f{i:03}.txt" for i in range(100)}
    assert set(entries(objects)) == {"added.txt", *(f"f{i:03}.txt" for i in range(100, 120))}


@pytest.mark.parametrize("with_folder", [False, True], ids=["flat", "with-a-folder"])
def test_an_emptied_root_is_halted(remote: Remote, tmp_path: Path, with_folder: bool) -> None:
    root = new_root(remote, tmp_path)
    for name in ("a", "b", "c"):
        write(root, name, name)
    if with_folder:
        write(root, "sub/d", "d")
    sync(root)
    before = entries(remote.objects())

    for child in root.iterdir():
        if child.name != ".dropbear":
            shutil.rmtree(child) if child.is_dir() else child.unlink()
    run = cli("sync", root, "--json")
    assert run.code == 1, run.out
    assert "refusing to delete" in run.err
    objects = remote.objects()
    assert tombstone_batches(objects) == []
    assert entries(objects).keys() == before.keys()


def test_a_new_ignore_rule_untracks_without_a_tombstone(remote: Remote, tmp_path: Path) -> None:
    root = new_root(remote, tmp_path)
    write(root, "a.log", "noise")
    write(root, "keep.txt", "signal")
    sync(root)
    assert "a.log" in entries(remote.objects())

    write(root, ".dropbearignore", "*.log\n")
    summary = sync(root)
    assert summary["tombstones"] == 0
    objects = remote.objects()
    assert tombstone_batches(objects) == []
    listed = head_and_listing(objects)
    assert listed.head.tombstone_seq == 0
    assert [e.path for e in listed.entries] == [".dropbearignore", "keep.txt"]
    assert (root / "a.log").read_text() == "noise"

    write(root, "b.log", "more noise")
    assert sync(root)["snapshot"] is None  # an ignored file changes nothing
    assert (root / "a.log").exists()


# --- dry run and status ----------------------------------------------------------------------


def test_dry_run_reports_the_plan_and_writes_nothing(remote: Remote, tmp_path: Path) -> None:
    root = new_root(remote, tmp_path)
    write(root, "a.txt", "a")
    write(root, "b.txt", "b")
    sync(root)
    (root / "a.txt").unlink()
    write(root, "b.txt", "b, edited")
    write(root, "c.txt", "c")
    bucket, state, disk = remote.snapshot(), state_dump(root), _folder_snapshot(root)

    summary = sync(root, "--dry-run")
    assert summary["dry_run"] is True
    assert (summary["planned_uploads"], summary["planned_tombstones"]) == (2, 1)
    assert summary["uploaded"] == 0 and summary["snapshot"] is None
    human = cli("sync", root, "--dry-run")
    assert human.code == 0
    assert "would sync" in human.out and "2 to upload" in human.out
    assert "1 deletes to publish" in human.out

    assert remote.snapshot() == bucket
    assert state_dump(root) == state
    assert _folder_snapshot(root) == disk

    # and the real pass then does exactly that
    summary = sync(root)
    assert (summary["uploaded"], summary["tombstones"]) == (2, 1)


def test_dry_run_on_a_fresh_root_publishes_nothing(remote: Remote, tmp_path: Path) -> None:
    root = new_root(remote, tmp_path)
    _tree(root)
    bucket, state = remote.snapshot(), state_dump(root)
    summary = sync(root, "--dry-run")
    assert summary["planned_uploads"] == 4
    assert remote.snapshot() == bucket
    assert state_dump(root) == state


def test_status_after_sync_and_when_offline(remote: Remote, tmp_path: Path) -> None:
    root = new_root(remote, tmp_path)
    never = cli("status", root, "--json")
    assert never.code == 0 and never.json()["last_snapshot"] is None
    _tree(root)
    summary = sync(root)

    run = cli("status", root, "--json")
    assert run.code == 0, run.err
    report = run.json()
    assert report["online"] is True
    assert (report["root_id"], report["device_id"], report["mode"]) == (
        ROOT_ID,
        DEVICE,
        "bidirectional",
    )
    assert report["counts"] == {"clean": 6}
    assert report["last_snapshot"] == summary["snapshot"]
    assert report["devices"] == [] and report["devices_error"] is None
    assert report["conflicts"] == [] and report["problems"] == []
    human = cli("status", root)
    assert human.code == 0 and summary["snapshot"] in human.out and "online" in human.out

    (root / ".dropbear" / "root.toml").unlink()
    run = cli("status", root, "--json")
    assert run.code == 3
    report = run.json()
    assert report["online"] is False and "root.toml" in report["reason"]
    human = cli("status", root)
    assert human.code == 3 and "OFFLINE" in human.out


# --- crashes and files that change under us ------------------------------------------------


class SimulatedCrash(Exception):
    """Stands for the process dying in the middle of an upload."""


class CrashingS3Store(S3Store):
    """The real S3 store, except that the process "dies" once `survive` of the blobs in
    `chunks` were sent: every later one waits until those are on the server, then raises."""

    survive = 2

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.chunks: set[str] = set()
        self.started = self.chunks_done = 0
        self._enough = anyio.Event()

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if key not in self.chunks:
            return await super().put_if_absent(key, data, sha256=sha256)
        self.started += 1
        if self.started > self.survive:
            await self._enough.wait()
            raise SimulatedCrash(f"crash while sending {key}")
        etag = await super().put_if_absent(key, data, sha256=sha256)
        self.chunks_done += 1
        if self.chunks_done >= self.survive:
            self._enough.set()
        return etag


class ChunkCountingS3Store(S3Store):
    """The real S3 store, counting the blobs (chunks) it sends and their bytes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[str] = []
        self.sent_bytes = 0

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        etag = await super().put_if_absent(key, data, sha256=sha256)
        if "/blobs/" in key:
            self.sent.append(key)
            self.sent_bytes += len(data)
        return etag


def _s3_store_of(cls: type[S3T], remote: Remote) -> S3T:
    assert remote.server is not None
    server = remote.server
    return cls(
        server.bucket,
        remote.prefix,
        endpoint_url=server.endpoint,
        addressing_style="path",
        credentials=Credentials(server.access_key, server.secret_key),
    )


def _walk_exceptions(exc: BaseException) -> Iterator[BaseException]:
    yield exc
    if isinstance(exc, BaseExceptionGroup):
        for inner in exc.exceptions:
            yield from _walk_exceptions(inner)


BIG = 40 * MiB


def _chunk_keys(path: Path) -> dict[str, int]:
    """The blob key and size of each chunk of the file at `path`."""
    chunks = Chunker().digest_file(path).chunks
    assert chunks is not None
    return {KEYS.blob(c.sha256): c.size for c in chunks}


@pytest.mark.s3
def test_a_crashed_chunked_upload_resumes_with_the_missing_chunks(
    s3_remote: Remote, tmp_path: Path
) -> None:
    root = new_root(s3_remote, tmp_path, "upload-only")
    data = os.urandom(BIG)
    write(root, "big.bin", data)
    write(root, "small.txt", "small")
    chunks = _chunk_keys(root / "big.bin")
    assert len(chunks) > 3

    crashing = _s3_store_of(CrashingS3Store, s3_remote)
    crashing.chunks = set(chunks)
    with pytest.raises(BaseException) as info:
        arun(lambda: pass_in_process(root, store=crashing))
    assert any(isinstance(e, SimulatedCrash) for e in _walk_exceptions(info.value))
    objects = s3_remote.objects()
    there = set(chunks) & set(objects)
    assert len(there) == crashing.chunks_done == 2
    assert KEYS.head(DEVICE) not in objects  # nothing published
    assert "uploads" not in state_dump(root)  # no multipart state to resume

    counting = _s3_store_of(ChunkCountingS3Store, s3_remote)
    summary = arun(lambda: pass_in_process(root, store=counting))
    assert summary.uploaded >= 1 and summary.snapshot is not None
    missing = set(chunks) - there
    small = KEYS.blob(sha(b"small"))  # sent by the crashed pass, or now
    big_sent = [k for k in counting.sent if k != small]
    assert sorted(big_sent) == sorted(missing)  # only the missing chunks, each once
    small_bytes = len(b"small") if small in counting.sent else 0
    assert counting.sent_bytes == sum(chunks[k] for k in missing) + small_bytes
    objects = s3_remote.objects()
    assert b"".join(objects[k] for k in chunks) == data
    assert KEYS.blob(sha(data)) not in objects  # the file is its chunks, not one blob
    published = entries(objects)["big.bin"]
    assert published.sha256 == sha(data)
    assert [KEYS.blob(c.sha256) for c in published.chunks or ()] == list(chunks)


_HOLD_CHUNKS = """
import sys, anyio
from dropbeard.store.s3 import S3Store
_send = S3Store.put_if_absent
started = [0]
async def held(self, key, data, *, sha256=None):
    if "/blobs/" in key:
        started[0] += 1
        if started[0] > 2:
            await anyio.sleep(3600)  # chunks 3.. never leave: the process is killed meanwhile
    return await _send(self, key, data, sha256=sha256)
S3Store.put_if_absent = held
from dropbeard.cli.main import main
sys.exit(main(sys.argv[1:]))
"""

_COUNT_CHUNKS = """
import sys
from pathlib import Path
from dropbeard.store.s3 import S3Store
sent = []
_send = S3Store.put_if_absent
async def counted(self, key, data, *, sha256=None):
    etag = await _send(self, key, data, sha256=sha256)
    if "/blobs/" in key:
        sent.append(key)
    return etag
S3Store.put_if_absent = counted
from dropbeard.cli.main import main
code = main(sys.argv[2:])
Path(sys.argv[1]).write_text("\\n".join(sent))
sys.exit(code)
"""


@pytest.mark.s3
def test_sync_killed_mid_upload_resumes_on_the_next_run(s3_remote: Remote, tmp_path: Path) -> None:
    """`dropbeard sync` in a subprocess, SIGKILLed once two chunks of a large file are on
    the server (the others are held back so the kill always lands mid-upload), then run
    again: it sends only the chunks still missing."""
    root = new_root(s3_remote, tmp_path, "upload-only")
    data = os.urandom(BIG)
    write(root, "big.bin", data)
    chunks = _chunk_keys(root / "big.bin")
    env = s3_remote.subprocess_env()

    proc = subprocess.Popen(
        [sys.executable, "-c", _HOLD_CHUNKS, "sync", str(root), "-q"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )

    try:
        deadline = time.monotonic() + 60
        while len(set(chunks) & set(s3_remote.objects())) < 2:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "two chunks never reached the server"
            time.sleep(0.05)
    finally:
        os.kill(proc.pid, signal.SIGKILL)  # only the process this test started
        proc.communicate(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    there = set(chunks) & set(s3_remote.objects())
    assert len(there) == 2

    counted = tmp_path / "sent"
    rerun = subprocess.run(
        [sys.executable, "-c", _COUNT_CHUNKS, str(counted), "sync", str(root), "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert rerun.returncode == 0, rerun.stderr
    assert set(counted.read_text().split()) == set(chunks) - there
    objects = s3_remote.objects()
    assert b"".join(objects[k] for k in chunks) == data
    assert entries(objects)["big.bin"].sha256 == sha(data)


class EditingStore(FaultStore):
    """A FaultStore that runs `edit` when the first `head` (a large file's upload checks
    its blob) begins: after the scan hashed the files, before their bytes are read for
    the upload."""

    def __init__(self, inner: Store, on: str, edit: Callable[[str], object]) -> None:
        super().__init__(inner)
        self.on, self._edit, self.edited_at = on, edit, ""

    def _maybe_edit(self, op: str, key: str) -> None:
        if op == self.on and not self.edited_at:
            self.edited_at = key
            self._edit(key)

    async def head(self, key: str) -> ObjectInfo:
        self._maybe_edit("head", key)
        return await super().head(key)


class EditingMeter(PassMeter):
    """A pass meter that runs `edit` when the upload stage begins: after the scan hashed
    the files, before their bytes are read for the upload."""

    def __init__(self, edit: Callable[[str], object]) -> None:
        super().__init__()
        self._edit, self.edited_at = edit, ""

    def begin(self, name: StageName, files: int | None, nbytes: int | None) -> Stage | None:
        if name == "uploading" and not self.edited_at:
            self.edited_at = name
            self._edit(name)
        return super().begin(name, files, nbytes)


@pytest.mark.parametrize(
    ("size", "on"), [(9 * MiB, "head"), (100_000, "uploading")], ids=["large-file", "small-file"]
)
def test_a_file_modified_during_upload_is_not_published_with_a_wrong_hash(
    remote: Remote, tmp_path: Path, size: int, on: str
) -> None:
    """The file is rewritten (same size: only the bytes tell) after the scan hashed it and
    before the upload reads it; the pass must not publish it under the scanned hash. (The
    small file comes after a first sync: a first sync sends such files while it hashes,
    `sync.ahead`, and those bytes are the ones hashed, never read again.)"""
    root = new_root(remote, tmp_path)
    write(root, "other.txt", "other")
    if size <= LARGEST:
        assert sync(root)["uploaded"] == 1
    scanned, edited = os.urandom(size), os.urandom(size)
    big = write(root, "big.bin", scanned)
    stores: list[EditingStore] = []

    def edit(_at: str) -> None:
        big.write_bytes(edited)

    def wrap(store: Store) -> Store:
        stores.append(EditingStore(store, on, edit))
        return stores[0]

    meter = EditingMeter(edit) if on == "uploading" else None
    summary = arun(lambda: pass_in_process(root, wrap, meter=meter))
    edited_at = meter.edited_at if meter is not None else stores[0].edited_at
    assert edited_at == (KEYS.blob(sha(scanned)) if on == "head" else on)
    assert big.read_bytes() == edited
    assert summary.problems == 1
    objects = remote.objects()
    published = entries(objects)
    assert "big.bin" not in published and "other.txt" in published
    for k, v in blobs(objects).items():  # every blob is exactly the bytes its key names
        assert k == KEYS.blob(sha(v))
    assert KEYS.blob(sha(scanned)) not in objects

    summary_next = sync(root)
    assert summary_next["problems"] == 0
    objects = remote.objects()
    assert entries(objects)["big.bin"].sha256 == sha(edited)
    assert objects[KEYS.blob(sha(edited))] == edited
