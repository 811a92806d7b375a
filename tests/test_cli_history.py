"""The history and bucket commands through the command line, on a root whose bucket holds
format-2 history written by tests/format2.py (until dropbeard publishes format 2 itself):
versions, ls, restore (and its refusals), verify, gc, retention, devices."""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import anyio
import pytest

from dropbeard.core.timestamps import snapshot_id
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from tests.converge import Cli, Device, local_bucket
from tests.format2 import sha256
from tests.history import KEYS, File, Folder, World, blob_key, delete_of

T = TypeVar("T")
NOW = datetime.now(UTC).replace(microsecond=0)


def ago(**delta: float) -> str:
    return snapshot_id(NOW - timedelta(**delta))


def run(fn: Callable[[], Awaitable[T]]) -> T:
    return anyio.run(fn)


class Scene:
    """Device laptop, initialised through the CLI, and format-2 history in its bucket."""

    def __init__(self, tmp_path: Path, cli: Cli) -> None:
        bucket = local_bucket(tmp_path, cli)
        self.cli = cli
        self.laptop = Device(bucket, tmp_path / "root-laptop", "laptop").init()
        self.root = self.laptop.root
        self.world = World(CountingStore(LocalStore(Path(bucket.url))), tmp_path)

    def publish(self, device: str, folder: Folder, snapshot: str, **kw: Any) -> str:
        return run(lambda: self.world.publish(device, folder, snapshot, **kw))

    def __call__(self, *argv: str) -> Any:
        return self.cli(*argv)


@pytest.fixture
def scene(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Scene:
    return Scene(tmp_path, Cli(capsys))


def notes(text: bytes, *, extra: bytes | None = None) -> Folder:
    docs = {
        "a.md": File(b"doc a"),
        "b.md": File(b"doc b", mode=0o600, mtime_ns=1_700_000_000_000_000_000),
    }
    if extra is not None:
        docs["c.md"] = File(extra)
    return Folder({"notes.txt": File(text), "docs": Folder(docs)})


def test_versions_shows_each_version_and_the_delete(scene: Scene) -> None:
    scene.publish("laptop", notes(b"one"), ago(days=3))
    scene.publish("laptop", notes(b"two"), ago(days=2))
    gone = delete_of("notes.txt", b"two", {"laptop": 9})
    scene.publish(
        "laptop", Folder({"docs": notes(b"").children["docs"]}), ago(days=1), deletes=[gone]
    )
    got = scene("versions", str(scene.root / "notes.txt"), "--json")
    assert got.code == 0, got.err
    assert [(v["kind"], v["sha256"]) for v in got.json] == [
        ("file", sha256(b"one")), ("file", sha256(b"two")), ("deleted", sha256(b"two")),
    ]  # fmt: skip
    human = scene("versions", str(scene.root / "notes.txt"))
    assert "deleted" in human.out and sha256(b"two")[:12] in human.out
    assert "tombstone 1" in human.out


def test_restore_brings_a_deleted_file_back_into_the_root(scene: Scene) -> None:
    scene.publish("laptop", notes(b"the text"), ago(days=2))
    gone = delete_of("docs/b.md", b"doc b", {"laptop": 9})
    scene.publish("laptop", Folder({"notes.txt": File(b"the text")}), ago(days=1), deletes=[gone])
    got = scene("restore", str(scene.root / "docs" / "b.md"))
    assert got.code == 0, got.err
    b = scene.root / "docs" / "b.md"
    assert b.read_bytes() == b"doc b"
    assert (os.stat(b).st_mode & 0o777, os.stat(b).st_mtime_ns) == (
        0o600,
        1_700_000_000_000_000_000,
    )
    assert "the next sync publishes them" in got.out
    assert not any((scene.root / ".dropbear" / "tmp").iterdir())


def test_restore_of_an_overwritten_file_picks_a_version_by_sha(scene: Scene) -> None:
    scene.publish("laptop", notes(b"first"), ago(days=2))
    scene.publish("laptop", notes(b"second"), ago(days=1))
    scene.laptop.write("notes.txt", b"second")  # synced: the current version is on disk
    got = scene("restore", str(scene.root / "notes.txt"), "--version", sha256(b"first")[:8])
    assert got.code == 0, got.err
    assert scene.laptop.read("notes.txt") == b"first"
    # without --version: the newest version unlike the file now
    got = scene("restore", str(scene.root / "notes.txt"))
    assert got.code == 0 and scene.laptop.read("notes.txt") == b"second"


def test_restore_over_an_unsynced_edit_is_refused_and_to_dir_keeps_both(scene: Scene) -> None:
    scene.publish("laptop", notes(b"published"), ago(days=1))
    scene.laptop.write("notes.txt", b"an edit no device has seen")
    got = scene("restore", str(scene.root / "notes.txt"), "--version", sha256(b"published"))
    assert got.code == 2
    assert "notes.txt holds an edit no retained version has" in got.err and "--to" in got.err
    assert scene.laptop.read("notes.txt") == b"an edit no device has seen"
    out = scene.root.parent / "out"
    got = scene(
        "restore",
        str(scene.root / "notes.txt"),
        "--to",
        str(out),
        "--version",
        sha256(b"published"),
    )
    assert got.code == 0, got.err
    assert (out / "notes.txt").read_bytes() == b"published"
    assert scene.laptop.read("notes.txt") == b"an edit no device has seen"
    inside = scene("restore", str(scene.root / "notes.txt"), "--to", str(scene.root / "x"))
    assert inside.code == 2 and "inside the root" in inside.err


def test_restore_a_folder_as_it_was_between_two_edits(scene: Scene) -> None:
    scene.publish("laptop", notes(b"v1"), ago(days=3))
    scene.publish("laptop", notes(b"v2", extra=b"added"), ago(days=2))
    scene.publish("laptop", Folder({"notes.txt": File(b"v3")}), ago(days=1))  # docs deleted
    got = scene("restore", str(scene.root / "docs"), "--at", "60h", "--json")
    assert got.code == 0, got.err
    assert sorted(got.json["written"]) == ["docs/a.md", "docs/b.md"]
    assert not (scene.root / "docs" / "c.md").exists()
    got = scene("restore", str(scene.root / "docs"))  # the newest snapshot holding it
    assert got.code == 0, got.err
    assert (scene.root / "docs" / "c.md").read_bytes() == b"added"
    assert (scene.root / "docs" / "a.md").read_bytes() == b"doc a"


def test_ls_lists_a_snapshot_now_at_a_time_and_of_another_device(scene: Scene) -> None:
    scene.publish("laptop", notes(b"v1"), ago(days=3))
    scene.publish("laptop", notes(b"v2", extra=b"new"), ago(days=1))
    scene.publish("desk", Folder({"desk.txt": File(b"d")}), ago(days=1))
    got = scene("ls", str(scene.root / "docs"), "--json")
    assert [e["name"] for e in got.json["entries"]] == ["a.md", "b.md", "c.md"]
    got = scene("ls", str(scene.root / "docs"), "--at", "2d", "--json")
    assert [e["name"] for e in got.json["entries"]] == ["a.md", "b.md"]
    human = scene("ls", str(scene.root / "docs"))
    assert "-rw-------" in human.out and "b.md" in human.out
    got = scene("ls", str(scene.root), "--device", "desk", "--json")
    assert [e["name"] for e in got.json["entries"]] == ["desk.txt"]
    got = scene("ls", str(scene.root), "--device", "nobody")
    assert got.code == 2 and "no device 'nobody'" in got.err


def test_verify_passes_then_names_a_flipped_blob_and_a_missing_node(scene: Scene) -> None:
    root = scene.publish("laptop", notes(b"v1"), ago(days=1))
    assert scene("verify", "--root", str(scene.root)).code == 0
    run(lambda: scene.world.store.inner.put(blob_key(b"doc a"), b"dod a"))
    assert scene("verify", "--root", str(scene.root)).code == 0  # same size: needs --full
    got = scene("verify", "--root", str(scene.root), "--full")
    assert got.code == 11
    assert f"CORRUPT blob {blob_key(b'doc a')}" in got.out and "docs/a.md (laptop head)" in got.out
    run(lambda: scene.world.store.inner.delete(KEYS.tree(root)))
    got = scene("verify", "--root", str(scene.root), "--json")
    assert got.code == 11
    assert [p["key"] for p in got.json["problems"]] == [KEYS.tree(root)]


def test_retention_shows_and_changes_the_policy(scene: Scene) -> None:
    got = scene("retention", "--root", str(scene.root), "--json")
    assert got.json["retention"] == {"all": "48h", "hourly": "7d", "daily": "90d", "weekly": "2y"}
    got = scene("retention", "--root", str(scene.root), "--daily", "1y", "--grace", "30m")
    assert got.code == 0 and "daily      1y" in got.out
    assert "for tests only" in got.err
    got = scene("retention", "--root", str(scene.root), "--json")
    assert (got.json["retention"]["daily"], got.json["grace"]) == ("1y", "30m")
    bad = scene("retention", "--root", str(scene.root), "--weekly", "forever")
    assert bad.code == 2 and "--weekly" in bad.err


def test_gc_verify_and_retention_take_the_root_as_sync_does(scene: Scene, tmp_path: Path) -> None:
    """`dropbeard gc ~/Sync`, from any folder, as `dropbeard sync ~/Sync`."""
    got = scene("retention", str(scene.root), "--json")
    assert got.code == 0 and got.json["grace"] == "24h"
    assert scene("verify", str(scene.root)).code == 0
    got = scene("gc", str(scene.root), "--dry-run")
    assert got.code == 0 and "would free" in got.out
    other = tmp_path / "other"
    other.mkdir()
    two = scene("gc", str(scene.root), "--root", str(other), "--dry-run")
    assert two.code == 2 and "two roots given" in two.err


def test_gc_shrinks_the_bucket_to_live_and_retained_content(scene: Scene) -> None:
    big = {f"f{i}.bin": os.urandom(512 * 1024) for i in range(20)}  # 10 MiB
    scene.publish("laptop", Folder({k: File(v) for k, v in big.items()}), ago(days=2))
    scene.publish("laptop", Folder({"small.txt": File(b"what is left")}), ago(days=1))
    assert scene("retention", "--root", str(scene.root), "--all", "0", "--hourly", "0",
                 "--daily", "0", "--weekly", "0", "--grace", "1s").code == 0  # fmt: skip
    time.sleep(1.1)
    dry = scene("gc", "--root", str(scene.root), "--dry-run", "--json")
    assert dry.code == 0 and dry.json["deleted"]["blobs"] == 20
    assert "for tests only" in dry.err
    got = scene("gc", "--root", str(scene.root))
    assert got.code == 0, got.err
    assert "deleted 1 snapshots, 1 tree nodes, 20 blobs" in got.out and "10.5 MB" in got.out
    left = run(lambda: scene.world.keys_under(KEYS.blobs_prefix))
    assert left == [blob_key(b"what is left")]
    assert scene("verify", "--root", str(scene.root), "--all", "--full").code == 0


def test_devices_lists_and_retires(scene: Scene) -> None:
    scene.publish("laptop", notes(b"v1"), ago(days=1))
    run(lambda: scene.world.register("desk"))
    scene.publish("desk", notes(b"v1"), ago(hours=1), seen={"laptop": (ago(days=1), 0)})
    got = scene("devices", "--root", str(scene.root), "--json")
    rows = {r["device_id"]: r for r in got.json}
    assert rows["desk"]["seen_our_latest"] is True and rows["desk"]["files"] == 3
    assert rows["laptop"]["this_device"] and rows["laptop"]["seen_our_latest"] is None
    human = scene("devices", "--root", str(scene.root))
    assert "laptop (this device)" in human.out and "desk" in human.out
    got = scene("devices", "--root", str(scene.root), "retire", "laptop")
    assert got.code == 2 and "this device" in got.err
    got = scene("devices", "--root", str(scene.root), "retire", "desk")
    assert got.code == 0 and "retired desk" in got.out
    got = scene("devices", "--root", str(scene.root), "--json")
    assert {r["device_id"]: r["status"] for r in got.json} == {
        "desk": "retired",
        "laptop": "active",
    }


def test_the_commands_refuse_a_folder_outside_any_root(scene: Scene, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    got = scene("versions", str(elsewhere / "x"))
    assert got.code == 3 and "offline" in got.err
    got = scene("gc", "--root", str(elsewhere), "--json")
    assert got.code == 3 and got.json["exit_code"] == 3


def test_restore_reassembles_a_file_stored_in_chunks(scene: Scene) -> None:
    big = os.urandom(1 << 20) * 17  # 17 MiB: chunks of 4 MiB
    scene.publish("laptop", Folder({"big.bin": File(big)}), ago(days=2))
    scene.publish("laptop", Folder({}), ago(days=1))
    got = scene("restore", str(scene.root / "big.bin"))
    assert got.code == 0, got.err
    assert scene.laptop.read("big.bin") == big


def test_verify_repair_uploads_again_from_this_device_s_disk(scene: Scene) -> None:
    scene.laptop.write("notes.txt", b"on disk here")
    scene.publish("laptop", Folder({"notes.txt": File(b"on disk here")}), ago(hours=1))
    run(lambda: scene.world.store.inner.delete(blob_key(b"on disk here")))
    assert scene("verify", "--root", str(scene.root)).code == 11
    got = scene("verify", "--root", str(scene.root), "--repair")
    assert got.code == 0, got.out + got.err
    assert f"REPAIRED {blob_key(b'on disk here')}" in got.out
    assert scene("verify", "--root", str(scene.root), "--full").code == 0
    both = scene("verify", "--root", str(scene.root), "--repair", "--all")
    assert both.code == 2


class ListLog:
    """A structlog-like logger keeping (level, event, fields)."""

    def __init__(self) -> None:
        self.events: list[tuple[str, str, dict[str, Any]]] = []

    def bind(self, **_fields: Any) -> ListLog:
        return self

    def __getattr__(self, level: str) -> Any:
        return lambda event, **fields: self.events.append((level, event, fields))


def test_the_daemon_s_upkeep_runs_gc_then_repairs_this_device_s_head(scene: Scene) -> None:
    from dropbeard.core.daemonconfig import RootSettings
    from dropbeard.daemon.rootpass import RootSync

    scene.publish("laptop", Folder({"old.txt": File(b"old")}), ago(days=3))
    scene.laptop.write("notes.txt", b"mine")
    scene.publish("laptop", Folder({"notes.txt": File(b"mine")}), ago(days=2))
    assert scene("retention", "--root", str(scene.root), "--all", "0", "--hourly", "0",
                 "--daily", "0", "--weekly", "0", "--grace", "1s").code == 0  # fmt: skip
    run(lambda: scene.world.store.inner.delete(blob_key(b"mine")))
    time.sleep(1.1)
    settings = RootSettings(path=str(scene.root), poll_interval=30, interval=300, debounce=1,
                            max_delay=10, concurrency=2)  # fmt: skip
    log = ListLog()
    bucket = scene.world.store.inner
    sync = RootSync(scene.root, settings, store_factory=lambda *_: bucket, log=log)
    run(sync.maintain)
    events = {event: (level, fields) for level, event, fields in log.events}
    assert events["gc"][1]["blobs"] == 1 and events["gc"][1]["snapshots"] == 1
    assert events["verify"] == ("info", events["verify"][1])
    assert events["verify"][1]["reuploaded"] == 1 and events["verify"][1]["ok"] is True
    assert "gc_grace" in events
    assert run(lambda: scene.world.keys_under(KEYS.blobs_prefix)) == [blob_key(b"mine")]


def test_restoring_a_folder_where_a_file_now_stands_is_refused(scene: Scene) -> None:
    scene.publish("laptop", notes(b"v1"), ago(days=2))
    scene.laptop.write("docs", b"a file where the folder was")
    got = scene("restore", str(scene.root / "docs"), "--at", "1d")
    assert got.code == 2 and "docs" in got.err and "--to" in got.err
    assert scene.laptop.read("docs") == b"a file where the folder was"
