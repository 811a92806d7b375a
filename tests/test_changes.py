"""Which files changed, named (issue 13, item 2): every changed path of a pass reaches
the person — `sync -v`, `sync --dry-run`, the daemon's log and status — by its path."""

from __future__ import annotations

import io
import json
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import msgspec
import pytest

from dropbeard.core.changes import PathChange, fetches, path_changes
from dropbeard.core.chunking import Chunk
from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import Conflict, ConflictCopy, Download, LocalDelete, Plan
from dropbeard.core.problems import Problem
from dropbeard.core.summary import Summary
from dropbeard.daemon.console import console_line
from dropbeard.daemon.logs import configure_logging, get_logger
from tests.converge import Bucket, devices


def _file(path: str, data: bytes = b"x", sha: str = "a" * 64) -> Entry:
    return Entry(
        path=path, type="file", mode=0o644, version={"a": 1}, size=len(data), mtime_ns=1,
        sha256=sha,
    )  # fmt: skip


# --- the plan, read as changes (pure) ------------------------------------------------


def test_path_changes_names_every_change_of_a_plan_and_skips_what_failed() -> None:
    plan = Plan(
        publishes=True,
        uploads=[_file("up.txt", b"12345")],
        downloads=[Download(path="down.txt", entry=_file("down.txt")), Download(
            path="failed.txt", entry=_file("failed.txt"))],
        local_deletes=[LocalDelete(path="gone.txt", expected=_file("gone.txt"))],
        tombstones=[Delete(path="mine.txt", type="file", version={"a": 2}, sha256="b" * 64)],
        conflicts=[Conflict(path="c.md", device_id="d", copy_path="c.conflict-d-X.md")],
    )  # fmt: skip
    problems = [Problem(path="p.txt", kind="permission", message="cannot read p.txt")]
    got = path_changes(plan, failed={"failed.txt"}, published=True, problems=problems)
    assert got == [
        PathChange(event="uploaded", path="up.txt", type="file", bytes=5),
        PathChange(event="downloaded", path="down.txt", type="file", bytes=1),
        PathChange(event="deleted", path="gone.txt", type="file", where="here"),
        PathChange(event="deleted", path="mine.txt", type="file", where="everywhere"),
        PathChange(event="conflict", path="c.md", detail="c.conflict-d-X.md"),
        PathChange(event="problem", path="p.txt", detail="cannot read p.txt"),
    ]
    unpublished = path_changes(plan, published=False)
    assert [c.event for c in unpublished] == ["downloaded", "downloaded", "deleted", "conflict"]


def test_fetches_lists_each_blob_once_and_none_already_on_disk() -> None:
    plan = Plan(
        publishes=True,
        downloads=[
            Download(path="a", entry=_file("a", b"1", "1" * 64)),
            Download(path="b", entry=_file("b", b"1", "1" * 64)),  # same bytes: once
            Download(path="c", entry=_file("c", b"22", "2" * 64)),  # on disk: copied
        ],
        conflict_copies=[
            ConflictCopy(path="d", copy_path="d.conflict", device_id="x",
                         entry=_file("d", b"333", "3" * 64)),
        ],
    )  # fmt: skip
    assert fetches(plan, {"2" * 64}) == [("1" * 64, "a", 1), ("3" * 64, "d.conflict", 3)]


def test_fetches_of_a_file_in_chunks_are_the_chunks_no_local_file_holds() -> None:
    chunks = [Chunk("4" * 64, 2), Chunk("5" * 64, 1), Chunk("4" * 64, 2)]
    big = msgspec.structs.replace(_file("big", b"12345", "6" * 64), chunks=chunks)
    other = msgspec.structs.replace(big, path="other", chunks=[Chunk("7" * 64, 5)])
    plan = Plan(
        publishes=True,
        downloads=[Download(path="big", entry=big), Download(path="other", entry=other)],
    )
    assert fetches(plan, {"5" * 64}) == [("4" * 64, "big", 2)]  # "other": the same file


# --- sync -v and --dry-run -----------------------------------------------------------


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_sync_verbose_names_every_changed_path(remote: Bucket, tmp_path: Path) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("notes/todo.md", "buy milk\n")
    a.write("old.txt", "old\n")
    got = remote.cli("sync", str(a.root), "-v")
    assert got.code == 0, got.err
    assert "uploaded        notes/todo.md (9 B)" in got.out
    assert "uploaded        old.txt (4 B)" in got.out

    got = remote.cli("sync", str(b.root), "-v")
    assert "downloaded      notes/todo.md (9 B)" in got.out

    a.path("old.txt").unlink()
    assert "deleted         old.txt (everywhere)" in remote.cli("sync", str(a.root), "-v").out
    assert "deleted         old.txt (here)" in remote.cli("sync", str(b.root), "-v").out

    a.write("notes/todo.md", "a's\n")
    b.write("notes/todo.md", "b's\n")
    a.sync()
    got = remote.cli("sync", str(b.root), "-v")
    assert got.code == 4
    assert "conflict        notes/todo.md -> notes/todo.conflict-a-" in got.out

    quiet = remote.cli("sync", str(a.root))  # without -v: counts only
    assert "notes/todo.md" not in quiet.out


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_dry_run_lists_the_paths_it_would_change(remote: Bucket, tmp_path: Path) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("new.txt", "new\n")
    got = remote.cli("sync", str(a.root), "--dry-run")
    assert "would upload    new.txt (4 B)" in got.out
    a.sync()
    got = remote.cli("sync", str(b.root), "--dry-run", "--json")
    assert got.json["changes"] == [
        {"event": "downloaded", "path": "new.txt", "type": "file", "bytes": 4}
    ]
    assert not b.path("new.txt").exists()


# --- the daemon: an event per path, transfers and progress by path --------------------


QUIET = """\
log_format = "json"
poll_interval = "1h"
interval = "1h"
debounce = "100ms"
max_delay = "500ms"
"""


@pytest.mark.anyio
async def test_the_daemon_logs_each_changed_path_and_shows_transfers_by_path(
    tmp_path: Path, small_ahead: int
) -> None:
    from dropbeard.core.config import RemoteConfig
    from dropbeard.daemon.control import ask
    from dropbeard.daemon.service import Daemon, default_store_factory
    from dropbeard.daemon.settings import DaemonOptions
    from dropbeard.store.base import Store
    from tests.daemonproc import init_root, write_config
    from tests.faults import FaultStore

    def slow_uploads(remote: RemoteConfig, concurrency: int) -> Store:
        store = FaultStore(default_store_factory(remote, concurrency))
        store.add_latency(1.5, "put_if_absent")  # each upload stays in flight a while
        return store

    root = await anyio.to_thread.run_sync(
        partial(init_root, tmp_path / "root", str(tmp_path / "remote"), root_id="r",
                device_id="laptop")
    )  # fmt: skip
    (root / "docs").mkdir()
    # larger than a first sync sends while it hashes (`sync.ahead`): sent while uploading
    (root / "docs" / "report.md").write_text("# report\n" * 8000)
    assert (root / "docs" / "report.md").stat().st_size > small_ahead
    sock = tmp_path / "c.sock"
    log = io.StringIO()
    daemon = Daemon(
        DaemonOptions(config_path=str(write_config(tmp_path / "d.toml", [root], QUIET)),
                      socket=str(sock)),
        log_stream=log,
        store_factory=slow_uploads,
    )  # fmt: skip
    seen: dict[str, Any] = {}
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(daemon.run, signals=False))
        with anyio.fail_after(30):
            await daemon.ready.wait()
            while not seen:
                reply = await ask(str(sock), {"op": "status", "offline": True})
                (state,) = reply["roots"]
                if state["transfers"]:
                    seen = state
                await anyio.sleep(0.05)
            while True:
                if '"uploaded"' in log.getvalue():
                    break
                await anyio.sleep(0.05)
        daemon.shutdown()
    (transfer,) = seen["transfers"]
    assert transfer["path"] == "docs/report.md" and transfer["direction"] == "upload"
    assert seen["progress"]["stage"] == "uploading"
    assert seen["progress"]["files_total"] == 1 and seen["progress"]["current"] == "docs/report.md"
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    uploaded = [e for e in events if e["event"] == "uploaded"]
    assert [(e["path"], e["bytes"], e["root"]) for e in uploaded] == [
        ("docs/report.md", 72000, str(root))
    ]
    assert not any("blobs/" in str(e.get("path", "")) for e in events)


# --- readable console lines (issue 13, item 4) ----------------------------------------


def test_a_pass_is_one_readable_line_on_a_terminal() -> None:
    summary = Summary(root="/home/me/Sync", root_id="sync", device_id="laptop",
                      mode="bidirectional", scanned=120, uploaded=3, uploaded_bytes=4200,
                      downloaded=1, downloaded_bytes=10, duration_s=0.42)  # fmt: skip
    import msgspec

    line = console_line(
        {"event": "tick_end", "level": "info", "timestamp": "2026-05-22T18:05:00.123Z",
         "root": "/home/me/Sync", "reason": "watch", "scope": "3 paths",
         "summary": msgspec.to_builtins(summary)},
        colors=False,
    )  # fmt: skip
    assert line == (
        "18:05:00 synced /home/me/Sync (sync/laptop): scanned 120, hashed 0, uploaded 3 "
        "(4.2 KB), downloaded 1 (10 B); nothing to publish in 0.42s (watch)"
    )
    assert "\n" not in line and "{" not in line

    path = console_line(
        {"event": "uploaded", "level": "info", "timestamp": "2026-05-22T18:05:01Z",
         "root": "/home/me/Sync", "path": "notes/todo.md", "type": "file", "bytes": 1234},
        colors=False,
    )  # fmt: skip
    assert path == "18:05:01 /home/me/Sync: uploaded notes/todo.md (1.2 KB) type=file"


def test_console_logs_honour_no_color(monkeypatch: pytest.MonkeyPatch) -> None:
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    for no_color, coloured in (("", True), ("1", False)):
        monkeypatch.setenv("NO_COLOR", no_color)
        out = Terminal()
        configure_logging("auto", "info", out)
        get_logger().warning("poll_error", error="server unreachable")
        line = out.getvalue()
        assert "poll_error error=server unreachable" in line and "{" not in line
        assert ("\033[" in line) is coloured
