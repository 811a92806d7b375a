"""`dropbeard daemon` end to end: real daemons (subprocesses, or in-process where a pass must
be made slow through a wrapped store), real roots made with `dropbeard init`, a local
directory remote and SeaweedFS."""

from __future__ import annotations

import io
import json
import os
import shutil
import signal
import socket
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from dropbeard.core.config import RemoteConfig
from dropbeard.daemon.service import Daemon as InProcessDaemon
from dropbeard.daemon.settings import DaemonOptions
from dropbeard.store.base import Store
from dropbeard.store.factory import open_store
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.root import RootPaths, open_online
from tests.daemonproc import (
    FAST_CONFIG,
    Daemon,
    cli,
    init_root,
    s3_env,
    sha256_of,
    wait_for,
    write_config,
)
from tests.faults import FaultStore
from tests.seaweed import Seaweed


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    """A short directory for control sockets (a Unix socket path has ~100 bytes at most)."""
    path = Path(tempfile.mkdtemp(prefix="dbd-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _has(path: Path, text: str) -> bool:
    try:
        return path.read_text() == text
    except OSError:
        return False


# --- two daemons, one local-directory remote -----------------------------------------------


def test_two_daemons_carry_creates_renames_and_deletes_both_ways(
    tmp_path: Path, sock_dir: Path
) -> None:
    remote = str(tmp_path / "remote")
    a = tmp_path / "a"
    b = tmp_path / "b"
    roots = {
        "a": [init_root(a / n, remote, root_id=n, device_id="laptop") for n in ("docs", "pics")],
        "b": [init_root(b / n, remote, root_id=n, device_id="desktop") for n in ("docs", "pics")],
    }
    for name in ("keep1.txt", "keep2.txt", "keep3.txt"):  # so a rename never empties the root
        (a / "docs" / name).write_text(name)
    da = Daemon(write_config(tmp_path / "a.toml", roots["a"]), sock_dir / "a", tmp_path / "a.log")
    db = Daemon(write_config(tmp_path / "b.toml", roots["b"]), sock_dir / "b", tmp_path / "b.log")
    try:
        da.wait_ready()
        db.wait_ready()
        wait_for("the seed files on b", lambda: _has(b / "docs" / "keep3.txt", "keep3.txt"))

        (a / "docs" / "note.txt").write_text("written on a")
        (b / "pics" / "cat.jpg").write_bytes(b"\xff\xd8 a cat")
        wait_for("note.txt on b", lambda: _has(b / "docs" / "note.txt", "written on a"))
        wait_for("cat.jpg on a", lambda: (a / "pics" / "cat.jpg").exists())
        assert (a / "pics" / "cat.jpg").read_bytes() == b"\xff\xd8 a cat"

        (a / "docs" / "note.txt").rename(a / "docs" / "renamed.txt")
        (a / "docs" / "keep1.txt").unlink()
        wait_for("the rename on b", lambda: _has(b / "docs" / "renamed.txt", "written on a"))
        wait_for("the deletes on b", lambda: not (b / "docs" / "keep1.txt").exists())
        assert not (b / "docs" / "note.txt").exists()
        assert sorted(p.name for p in (b / "docs").iterdir() if p.name != ".dropbear") == [
            "keep2.txt",
            "keep3.txt",
            "renamed.txt",
        ]

        # status through the daemon: both roots, the daemon's pid, the source said
        shown = cli("status", "--socket", str(da.sock), "--json")
        reply = json.loads(shown.stdout)
        assert reply["source"] == "daemon"
        assert reply["daemon"]["pid"] == da.pid
        assert sorted(r["path"] for r in reply["roots"]) == sorted(str(r) for r in roots["a"])
        assert all(
            r["report"]["online"] and r["state"] in ("idle", "syncing") for r in reply["roots"]
        )
        human = cli("status", "--socket", str(da.sock), str(a / "docs")).stdout
        assert f"daemon: pid {da.pid}" in human and str(a / "docs") in human
        assert str(a / "pics") not in human  # only the root asked about

        assert {"tick_start", "tick_end", "daemon_start"} <= {e["event"] for e in da.events()}
        ends = [e for e in da.events("tick_end") if e["root"] == str(a / "docs")]
        assert any(e["summary"]["uploaded"] >= 1 for e in ends)
        da.signal(signal.SIGTERM)
        db.signal(signal.SIGTERM)
        assert da.wait() == 0 and db.wait() == 0
        assert not da.sock.exists()  # the socket is removed on a clean exit
    finally:
        da.stop()
        db.stop()


def test_status_without_a_daemon_reads_the_root_and_says_so(tmp_path: Path, sock_dir: Path) -> None:
    root = init_root(tmp_path / "solo", str(tmp_path / "remote"), root_id="solo", device_id="x")
    done = cli("status", "--socket", str(sock_dir / "nobody"), str(root))
    assert "no daemon answered" in done.stdout and "reading the root directly" in done.stdout
    assert f"{root}: online" in done.stdout


# --- an offline root never stops the others ------------------------------------------------


def test_a_removed_root_is_skipped_while_the_other_keeps_syncing(
    tmp_path: Path, sock_dir: Path
) -> None:
    remote = str(tmp_path / "remote")
    docs = init_root(tmp_path / "docs", remote, root_id="docs", device_id="laptop")
    pics = init_root(tmp_path / "pics", remote, root_id="pics", device_id="laptop")
    peer = init_root(tmp_path / "peer", remote, root_id="docs", device_id="desktop")
    d = Daemon(write_config(tmp_path / "d.toml", [docs, pics]), sock_dir / "d", tmp_path / "d.log")
    try:
        d.wait_ready()
        pics.rename(tmp_path / "pics-unmounted")

        def skipped() -> list[dict[str, Any]]:
            return [e for e in d.events("tick_skip") if e["root"] == str(pics)]

        skip = wait_for("tick_skip for the removed root", skipped)[0]
        assert "missing" in skip["reason"]
        by_path = {r["path"]: r for r in d.status()["roots"]}
        assert by_path[str(pics)]["state"] == "offline"

        (docs / "still-syncing.txt").write_text("yes")

        def arrived() -> bool:
            cli("sync", str(peer), "-q", check=False)
            return _has(peer / "still-syncing.txt", "yes")

        wait_for("the other root's file at the peer", arrived, step=0.3)
        assert d.proc.poll() is None  # the daemon did not stop
        assert not (tmp_path / "pics").exists()  # nothing was created in the missing root's place

        (tmp_path / "pics-unmounted").rename(pics)  # mounted again: it is picked up
        wait_for(
            "the root back online",
            lambda: {r["path"]: r for r in d.status()["roots"]}[str(pics)]["state"] == "idle",
        )
    finally:
        d.stop()


# --- SIGHUP: roots added and removed without a restart -------------------------------------


def test_sighup_adds_and_removes_roots(tmp_path: Path, sock_dir: Path) -> None:
    remote = str(tmp_path / "remote")
    one = init_root(tmp_path / "one", remote, root_id="one", device_id="laptop")
    two = init_root(tmp_path / "two", remote, root_id="two", device_id="laptop")
    config = write_config(tmp_path / "d.toml", [one])
    d = Daemon(config, sock_dir / "d", tmp_path / "d.log")
    try:
        d.wait_ready()
        assert [r["path"] for r in d.status()["roots"]] == [str(one)]
        write_config(config, [two])
        d.signal(signal.SIGHUP)
        wait_for(
            "the reloaded roots", lambda: [r["path"] for r in d.status()["roots"]] == [str(two)]
        )
        (two / "new.txt").write_text("synced by the added root")
        wait_for(
            "a pass of the added root",
            lambda: any(
                e["root"] == str(two) and e["summary"]["uploaded"] == 1
                for e in d.events("tick_end")
            ),
        )
        config.write_text("this is = not [valid toml")
        d.signal(signal.SIGHUP)
        wait_for("the reload error", lambda: d.events("reload_failed"))
        assert [r["path"] for r in d.status()["roots"]] == [str(two)]  # kept running as it was
    finally:
        d.stop()


# --- signals: a slow pass, made slow by a wrapped store, in-process -------------------------


class _SlowUploads:
    """Builds real stores wrapped in FaultStore with a latency on every blob upload (small
    files go up with put_if_absent, big ones with put_file); `started` is set when the
    first upload begins."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.started = anyio.Event()

    def __call__(self, remote: RemoteConfig, concurrency: int) -> Store:
        started = self.started

        class Slow(FaultStore):
            async def put_file(self, key: str, path: Path, **kwargs: Any) -> str:
                started.set()
                return await super().put_file(key, path, **kwargs)

            async def put_if_absent(self, key: str, data: bytes, **kwargs: Any) -> str:
                if "/blobs/" in key:
                    started.set()
                return await super().put_if_absent(key, data, **kwargs)

        store = Slow(open_store(remote, concurrency=concurrency))
        store.add_latency(self.seconds, "put_file")
        store.add_latency(self.seconds, "put_if_absent")
        return store


def _notify_socket(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.setblocking(False)
    return sock


def _received(sock: socket.socket) -> list[str]:
    lines = []
    while True:
        try:
            lines += sock.recv(65536).decode().splitlines()
        except BlockingIOError:
            return lines


@pytest.mark.anyio
async def test_sigterm_lets_the_running_pass_finish_then_exits_0(
    tmp_path: Path, sock_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    remote = tmp_path / "remote"
    root = await anyio.to_thread.run_sync(
        lambda: init_root(tmp_path / "root", str(remote), root_id="r", device_id="laptop")
    )
    (root / "report.txt").write_text("the pass uploading me must finish")
    notify = _notify_socket(sock_dir / "notify")
    monkeypatch.setenv("NOTIFY_SOCKET", str(sock_dir / "notify"))
    slow = _SlowUploads(1.5)
    log = io.StringIO()
    daemon = InProcessDaemon(
        DaemonOptions(
            config_path=str(write_config(tmp_path / "d.toml", [root])), socket=str(sock_dir / "c")
        ),
        store_factory=slow,
        log_stream=log,
    )
    outcome: dict[str, Any] = {}

    async def run() -> None:
        outcome["code"] = await daemon.run(signals=True)
        outcome["at"] = time.monotonic()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(20):
            await daemon.ready.wait()
            await slow.started.wait()
        sent = time.monotonic()
        os.kill(os.getpid(), signal.SIGTERM)
    assert outcome["code"] == 0
    assert outcome["at"] - sent > 1.0  # it waited for the slow upload...
    lines = log.getvalue()
    assert '"tick_end"' in lines  # ...and the pass completed and was logged
    assert lines.index('"shutdown"') < lines.index('"tick_end"')
    heads = list(remote.glob("roots/r/devices/laptop/head.json"))
    assert heads, "the pass that was running published its head"
    blob = sha256_of(root / "report.txt")
    assert (remote / "roots/r/blobs" / blob[:2] / blob[2:4] / blob).exists()
    messages = _received(notify)
    assert "READY=1" in messages and "STOPPING=1" in messages
    assert messages.index("READY=1") < messages.index("STOPPING=1")
    assert any(m.startswith("STATUS=1 roots") for m in messages)
    assert not (sock_dir / "c").exists()
    notify.close()


@pytest.mark.anyio
async def test_a_second_signal_cancels_and_exits_130_within_a_second(
    tmp_path: Path, sock_dir: Path
) -> None:
    remote = tmp_path / "remote"
    root = await anyio.to_thread.run_sync(
        lambda: init_root(tmp_path / "root", str(remote), root_id="r", device_id="laptop")
    )
    (root / "big.bin").write_bytes(os.urandom(1 << 20))
    slow = _SlowUploads(60.0)  # the pass would take a minute
    daemon = InProcessDaemon(
        DaemonOptions(
            config_path=str(write_config(tmp_path / "d.toml", [root])), socket=str(sock_dir / "c")
        ),
        store_factory=slow,
        log_stream=io.StringIO(),
    )
    outcome: dict[str, Any] = {}

    async def run() -> None:
        outcome["code"] = await daemon.run(signals=True)
        outcome["at"] = time.monotonic()

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(20):
            await daemon.ready.wait()
            await slow.started.wait()
        os.kill(os.getpid(), signal.SIGTERM)
        await anyio.sleep(0.3)
        assert "code" not in outcome  # still waiting for the pass
        second = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)
    assert outcome["code"] == 130
    assert outcome["at"] - second < 1.0
    assert not list(remote.glob("roots/r/devices/laptop/head.json"))  # the pass was cut short
    # Cutting a pass short is safe: the next one finishes the job.
    await anyio.to_thread.run_sync(lambda: cli("sync", str(root), "-q"))
    blob = sha256_of(root / "big.bin")
    assert (remote / "roots/r/blobs" / blob[:2] / blob[2:4] / blob).exists()


# --- a watcher-triggered pass never loses a remote delete -----------------------------------


@pytest.mark.anyio
async def test_a_pass_over_some_paths_applies_what_other_devices_changed(tmp_path: Path) -> None:
    """A daemon pass with `only=` sees a tombstone (and an edit) for paths outside `only`:
    it scans those paths too and applies them now (once marked processed, they would
    never be offered again)."""
    remote = str(tmp_path / "remote")
    a = await anyio.to_thread.run_sync(
        lambda: init_root(tmp_path / "a", remote, root_id="r", device_id="a")
    )
    b = await anyio.to_thread.run_sync(
        lambda: init_root(tmp_path / "b", remote, root_id="r", device_id="b")
    )
    for name in ("f", "g", "h"):
        (a / name).write_text(name)
    await anyio.to_thread.run_sync(lambda: cli("sync", str(a), "-q"))
    await anyio.to_thread.run_sync(lambda: cli("sync", str(b), "-q"))
    (a / "f").unlink()
    (a / "g").write_text("g, edited")
    await anyio.to_thread.run_sync(lambda: cli("sync", str(a), "-q"))

    (b / "new").write_text("x")
    paths = RootPaths(b)
    cfg, state = open_online(paths)
    store = open_store(cfg.remote)
    try:
        await run_pass(paths, cfg, state, store, PassOptions(only=frozenset({"new"})))
    finally:
        state.close()
        await store.aclose()
    assert not (b / "f").exists() and (b / "g").read_text() == "g, edited"
    assert (b / "h").read_text() == "h"
    await anyio.to_thread.run_sync(lambda: cli("sync", str(a), "-q"))
    assert (a / "new").read_text() == "x"  # and what it was asked to scan went out


# --- SeaweedFS: SIGKILL mid-transfer, restart, nothing lost ---------------------------------


@pytest.mark.s3
def test_sigkill_mid_upload_then_restart_converges_on_s3(
    tmp_path: Path, sock_dir: Path, seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = s3_env(seaweed)
    for name in ("DROPBEAR_S3_ACCESS_KEY_ID", "DROPBEAR_S3_SECRET_ACCESS_KEY"):
        monkeypatch.setenv(name, env[name])
    remote = f"s3://{seaweed.bucket}/daemon-{uuid.uuid4().hex[:10]}"
    s3 = ("--endpoint-url", seaweed.endpoint, "--addressing-style", "path")
    a = init_root(tmp_path / "a", remote, root_id="r", device_id="laptop", extra=s3)
    b = init_root(tmp_path / "b", remote, root_id="r", device_id="desktop", extra=s3)
    big = os.urandom(24 << 20)  # several chunks, at 8 MiB/s: caught mid-way
    (a / "big.bin").write_bytes(big)
    for i in range(5):
        (a / f"small{i}.txt").write_text(f"small {i}")
    config_a = write_config(tmp_path / "a.toml", [a], FAST_CONFIG + 'bandwidth_limit = "8M"\n')
    da = Daemon(config_a, sock_dir / "a", tmp_path / "a.log", env=env)
    db: Daemon | None = None
    try:
        da.wait_ready()

        def uploading_big() -> list[dict[str, Any]]:
            transfers = da.status()["roots"][0]["transfers"]
            return [t for t in transfers if t["path"] == "big.bin"]  # one of its chunks

        seen = wait_for("big.bin being uploaded", uploading_big, timeout=30, step=0.02)
        da.proc.kill()  # SIGKILL, mid-transfer: no cleanup at all
        da.wait()
        assert seen[0]["direction"] == "upload" and seen[0]["bytes_done"] < len(big)
        assert (sock_dir / "a").exists()  # left behind by the killed daemon

        da.stop()
        da = Daemon(config_a, sock_dir / "a", tmp_path / "a2.log", env=env)  # stale socket
        db = Daemon(
            write_config(tmp_path / "b.toml", [b]), sock_dir / "b", tmp_path / "b.log", env=env
        )
        da.wait_ready()
        db.wait_ready()
        wait_for(
            "every file on b",
            lambda: (
                (b / "big.bin").exists()
                and all(_has(b / f"small{i}.txt", f"small {i}") for i in range(5))
            ),
            timeout=60,
            step=0.2,
            logs=(da, db),
        )
        assert (b / "big.bin").read_bytes() == big
        assert (a / "big.bin").read_bytes() == big  # nothing lost on the killed side either
        assert da.events("tick_end")
    finally:
        da.stop()
        if db is not None:
            db.stop()


@pytest.mark.anyio
async def test_a_pass_over_some_paths_keeps_the_other_paths_problems(tmp_path: Path) -> None:
    """`status` shows a problem until it clears: a daemon pass over other paths must not
    drop it."""
    root = await anyio.to_thread.run_sync(
        lambda: init_root(tmp_path / "a", str(tmp_path / "remote"), root_id="r", device_id="a")
    )
    (root / "Caf\u00e9.txt").write_text("1")
    (root / "Cafe\u0301.txt").write_text("2")  # one name spelled twice: a problem
    await anyio.to_thread.run_sync(lambda: cli("sync", str(root), "-q", check=False))
    (root / "other.txt").write_text("x")
    paths = RootPaths(root)
    cfg, state = open_online(paths)
    store = open_store(cfg.remote)
    try:
        await run_pass(paths, cfg, state, store, PassOptions(only=frozenset({"other.txt"})))
        kinds = sorted((p.path, p.kind) for p in state.problems())
    finally:
        state.close()
        await store.aclose()
    assert kinds == [("Caf\u00e9.txt", "name_collision")]


def test_a_truncated_blob_left_by_a_killed_upload_is_replaced(tmp_path: Path) -> None:
    """Seen with SeaweedFS when the daemon was SIGKILLed mid-upload: an empty object at a
    small file's blob key. The next pass must replace it, or no device ever gets the file."""
    remote = tmp_path / "remote"
    a = init_root(tmp_path / "a", str(remote), root_id="r", device_id="a")
    b = init_root(tmp_path / "b", str(remote), root_id="r", device_id="b")
    (a / "note.txt").write_text("the real bytes")
    sha = sha256_of(a / "note.txt")
    blob = remote / "roots/r/blobs" / sha[:2] / sha[2:4] / sha
    blob.parent.mkdir(parents=True)
    blob.write_bytes(b"")  # what the interrupted write left behind
    cli("sync", str(a), "-q")
    assert blob.read_bytes() == b"the real bytes"
    cli("sync", str(b), "-q")
    assert (b / "note.txt").read_text() == "the real bytes"


def test_a_second_sigterm_mid_hash_exits_130_within_a_second(
    tmp_path: Path, sock_dir: Path
) -> None:
    """The real process: a worker thread deep in hashing cannot be cancelled, so the daemon
    must still be gone within a second of the second signal."""
    root = init_root(tmp_path / "root", str(tmp_path / "remote"), root_id="r", device_id="x")
    with open(root / "huge.bin", "wb") as f:
        f.truncate(8 << 30)  # sparse: costs no disk, but hashing it takes seconds
    d = Daemon(write_config(tmp_path / "d.toml", [root]), sock_dir / "d", tmp_path / "d.log")
    try:
        wait_for("the first pass to start", lambda: d.events("tick_start"), timeout=30)
        d.signal(signal.SIGTERM)
        wait_for("the first signal to be handled", lambda: d.events("shutdown"))
        assert d.proc.poll() is None  # still hashing: the pass is allowed to finish
        second = time.monotonic()
        d.signal(signal.SIGTERM)
        assert d.wait(timeout=5) == 130
        assert time.monotonic() - second < 1.0
        assert not d.sock.exists()
    finally:
        d.stop()
