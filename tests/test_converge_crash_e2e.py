"""A device that dies between its head write and its local commit, or between a tombstone
batch and the head, or whose `.dropbear/` is restored from an older backup, forgets
nothing (SPEC 4 step 1, 1.2), end to end through the real CLI; and an upload killed
midway leaves nothing behind in a directory remote once a later pass ran.

Every write any device makes is logged (key and SHA-256 of its bytes), and the log is
checked: no snapshot or batch is ever written twice, and no object a head named is ever
rewritten or deleted.
"""

from __future__ import annotations

import functools
import os
import shutil
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import pytest

import dropbeard.cli.sync as cli_sync
from dropbeard.core.chunking import MiB
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import decode_head
from dropbeard.store.base import Store
from dropbeard.store.localwriter import STALE_TEMP_SECONDS, TMP_DIR
from dropbeard.sync.passrun import PassOptions
from tests.converge import Bucket, Cli, Device, devices, local_bucket
from tests.faults import FaultStore, WriteLog, Written


class Wire:
    """Every store `dropbeard sync` opens, as the test arranges it: each write that reached
    the bucket logged in `log`, and a device's next pass made to die at its head write."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, bucket: Bucket) -> None:
        self.log: list[Written] = []
        self.keys = bucket.keys
        self._crash: tuple[str, str] | None = None
        real = cli_sync.open_store

        def opener(*args: object, **kwargs: object) -> Store:
            faults = FaultStore(WriteLog(real(*args, **kwargs), self.log))  # type: ignore[arg-type]
            if self._crash is not None:
                device, when = self._crash
                self._crash = None
                if when == "after":  # the head is written, then the process dies
                    faults.lose_reply("put", prefix=self.keys.head(device))
                else:  # the process dies just before the head write
                    faults.fail("put", prefix=self.keys.head(device))
            return faults

        monkeypatch.setattr(cli_sync, "open_store", opener)

    def crash(self, device: Device, when: str) -> None:
        """Run `device`'s next sync and let it die right `when` ("after" or "before") its
        head write: the pass fails (exit 10) with nothing committed locally."""
        self._crash = (device.id, when)
        device.sync(code=10)
        assert self._crash is None

    def check(self) -> None:
        """No snapshot or tombstone batch was written twice, and no object a head named
        was ever rewritten or deleted afterwards."""
        check_log(self.log, self.keys)


def check_log(log: list[Written], keys: RootKeys) -> None:
    present: dict[str, str | None] = {}
    named: set[str] = set()
    written: dict[str, list[str | None]] = {}
    for w in log:
        published = "/snapshots/" in w.key or "/tombstones/" in w.key
        if w.op == "delete":
            assert w.key not in named, f"{w.key} was deleted after a head named it"
            present.pop(w.key, None)
            continue
        if published:
            written.setdefault(w.key, []).append(w.sha256)
        present[w.key] = w.sha256
        if w.key.endswith("/head.json"):
            assert w.data is not None
            head = decode_head(w.data, w.key)
            dev = keys.device_of(w.key)
            assert dev is not None
            if head.snapshot is not None:
                named.add(keys.snapshot(dev, head.snapshot))
            batches = keys.tombstones_prefix(dev)
            named.update(
                k for k in present if k.startswith(batches) and keys.seq_of(k) <= head.tombstone_seq
            )
    twice = {k: shas for k, shas in written.items() if len(shas) > 1}
    assert not twice, f"written more than once: {twice}"


@pytest.fixture
def wire(remote: Bucket, monkeypatch: pytest.MonkeyPatch) -> Wire:
    return Wire(monkeypatch, remote)


def freeze_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pass from now on runs at the same second, as passes in quick succession do:
    every publish must still take a snapshot id of its own."""
    now = datetime.now(UTC)
    monkeypatch.setattr(cli_sync, "PassOptions", functools.partial(PassOptions, now=lambda: now))


def conflicts(d: Device) -> list[str]:
    return [p for p in d.tree() if ".conflict-" in p]


def test_a_crash_right_after_the_head_write_forgets_nothing(
    remote: Bucket, tmp_path: Path, wire: Wire, monkeypatch: pytest.MonkeyPatch
) -> None:
    freeze_clock(monkeypatch)
    a, b = devices(remote, tmp_path, "a", "b")
    (m,) = devices(remote, tmp_path, "m", mode="download-only")
    for name in ("keep.txt", "gone.txt", "f1.txt", "f2.txt"):
        a.write(name, f"{name} from a\n")
    for d in (a, b, m):
        d.sync()

    # a publishes the delete of f1 (tombstone 1) and a new y, and dies before its commit
    a.path("f1.txt").unlink()
    a.write("y.txt", "y, first version\n")
    wire.crash(a, "after")
    m.sync()  # the mirror takes both: tombstone 1 is read and done with
    assert not m.path("f1.txt").exists() and m.read("y.txt") == b"y, first version\n"

    # a dies again after its next head write, in the same second
    a.path("f2.txt").unlink()
    a.write("y.txt", "y, second version\n")
    wire.crash(a, "after")
    m.sync()  # a new seq for f2's delete, a new counter for y: no conflict on the mirror
    assert not m.path("f2.txt").exists() and m.read("y.txt") == b"y, second version\n"
    assert conflicts(m) == []

    # y was only ever published by passes that died: its delete still travels
    a.path("y.txt").unlink()
    a.sync()
    b.sync()
    assert sorted(b.tree()) == ["gone.txt", "keep.txt"]
    b.write("from-b.txt", "b's own file\n")
    b.path("gone.txt").unlink()
    b.sync()
    for d in (a, m, b, a, m):
        d.sync()

    assert a.tree() == b.tree() == m.tree()
    assert sorted(a.tree()) == ["from-b.txt", "keep.txt"]
    assert all(d.status()["conflicts"] == [] for d in (a, b, m))
    before = remote.objects()
    assert a.sync().json["snapshot"] is None  # settled: idle
    assert remote.objects() == before
    wire.check()


def test_a_crash_before_the_head_write_leaves_no_delete_behind(
    remote: Bucket, tmp_path: Path, wire: Wire
) -> None:
    """The batch of a publish that never reached its head is an orphan: it must not act
    later, when the head's seq passes it, on a file the person brought back meanwhile."""
    a, b = devices(remote, tmp_path, "a", "b")
    for name in ("keep.txt", "h.txt", "k.txt"):
        a.write(name, f"{name} from a\n")
    a.sync()
    b.sync()

    a.path("h.txt").unlink()
    wire.crash(a, "before")
    orphan = remote.keys.tombstone("a", 1)
    assert orphan in remote.objects()
    a.write("h.txt", "h.txt from a\n")  # undone: the same bytes are back
    a.path("k.txt").unlink()
    a.sync()
    b.sync()

    assert sorted(b.tree()) == sorted(a.tree()) == ["h.txt", "keep.txt"]
    assert orphan not in remote.objects()
    a.sync()
    b.sync()
    assert sorted(b.tree()) == sorted(a.tree()) == ["h.txt", "keep.txt"]
    wire.check()


def test_a_dropbear_folder_restored_from_an_older_backup_forgets_nothing(
    remote: Bucket, tmp_path: Path, wire: Wire
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    (m,) = devices(remote, tmp_path, "m", mode="download-only")
    for name in ("f1.txt", "f2.txt", "f3.txt"):
        a.write(name, f"{name} from a\n")
    for d in (a, b, m):
        d.sync()
    backup = tmp_path / "backup"
    shutil.copytree(a.path(".dropbear"), backup)

    a.path("f1.txt").unlink()
    a.write("g.txt", "g, first version\n")
    a.sync()
    a.write("g.txt", "g, second version\n")
    a.sync()
    for d in (b, m):
        d.sync()

    shutil.rmtree(a.path(".dropbear"))
    shutil.copytree(backup, a.path(".dropbear"))
    a.path("f2.txt").unlink()
    a.write("g.txt", "g, third version\n")
    a.write("n.txt", "new on a\n")
    a.sync()
    for d in (b, m, a, b, m):
        d.sync()

    assert a.tree() == b.tree() == m.tree()
    assert sorted(a.tree()) == ["f3.txt", "g.txt", "n.txt"]
    assert m.read("g.txt") == b"g, third version\n"
    assert all(d.status()["conflicts"] == [] for d in (a, b, m))
    wire.check()


def test_a_restored_dropbear_folder_the_disk_matches_takes_back_before_its_next_change(
    remote: Bucket, tmp_path: Path, wire: Wire
) -> None:
    """The backup's state agrees with the disk (the file was changed and changed back
    since), so the first pass has nothing to do and does not read the head (SPEC 4 step
    1): it writes nothing. The next change is published after the head's counter, so the
    mirror, which holds the later version of the file, takes it."""
    (a,) = devices(remote, tmp_path, "a")
    (m,) = devices(remote, tmp_path, "m", mode="download-only")
    a.write("g.txt", "g, first version\n")
    a.sync()
    m.sync()
    backup = tmp_path / "backup"
    shutil.copytree(a.path(".dropbear"), backup)
    for version in ("g, second version\n", "g, first version\n"):
        a.write("g.txt", version)
        a.sync()
        m.sync()

    shutil.rmtree(a.path(".dropbear"))
    shutil.copytree(backup, a.path(".dropbear"))
    before = remote.objects()
    assert a.sync().json["snapshot"] is None
    assert remote.objects() == before
    a.write("g.txt", "g, third version\n")
    assert a.sync().json["snapshot"] is not None
    m.sync()

    assert m.read("g.txt") == b"g, third version\n"
    assert conflicts(m) == [] and conflicts(a) == []
    wire.check()


def test_a_crash_after_applying_many_remote_deletes_does_not_trip_the_guard(
    remote: Bucket, tmp_path: Path, wire: Wire
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    for i in range(60):
        b.write(f"many/{i:02}.txt", f"file {i}\n")
    b.write("keep.txt", "kept\n")
    b.sync()
    a.sync()
    for i in range(60):
        b.path(f"many/{i:02}.txt").unlink()
    b.path("many").rmdir()
    b.sync("--allow-mass-delete")

    wire.crash(a, "after")  # a applied the 60 deletes and published, then died
    got = a.sync().json
    assert got["halted"] is None and got["tombstones"] == 0, got
    b.sync()
    assert sorted(a.tree()) == sorted(b.tree()) == ["keep.txt"]
    wire.check()


_STALLED_UPLOAD = """
import sys, time
from dropbeard.store import localcopy
_step = localcopy.HashingCopy.step
def stalled(self):
    n = _step(self)
    print("copying", flush=True)
    time.sleep(3600)  # never finishes: the process is killed meanwhile
    return n
localcopy.HashingCopy.step = stalled
from dropbeard.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


def test_a_later_pass_removes_what_a_killed_upload_left_in_a_directory_remote(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = local_bucket(tmp_path, Cli(capsys))
    a, b = devices(bucket, tmp_path, "a", "b")
    big = os.urandom(9 * MiB)  # streamed through a temp file, not written in one go
    a.write("big.bin", big)
    child = subprocess.Popen(
        [sys.executable, "-c", _STALLED_UPLOAD, "sync", str(a.root), "-q"],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        assert child.stdout.readline().strip() == "copying"
    finally:
        child.send_signal(signal.SIGKILL)  # only the process this test started
        child.wait()
    temp_dir = Path(bucket.url) / TMP_DIR
    # the stalled blob's, and maybe a tree node's cut short (they go up beside the blobs)
    left = list(temp_dir.glob("put-*"))
    assert any(f.stat().st_size > 0 for f in left)

    an_hour_later = time.time() - STALE_TEMP_SECONDS - 60
    for f in left:
        os.utime(f, (an_hour_later, an_hour_later))
    a.sync()
    b.sync()

    assert list(temp_dir.glob("put-*")) == []
    assert b.read("big.bin") == big
