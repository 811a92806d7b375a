"""The daemon warns before it silently misses changes (issue 13, item 7): when a root
holds more folders than inotify may watch, it says so at start and in `status`, with the
command that raises the limit; the periodic rescan covers the rest meanwhile."""

from __future__ import annotations

import io
import json
import sys
from functools import partial
from pathlib import Path

import anyio
import pytest

from dropbeard.daemon import inotify
from dropbeard.daemon.control import ask
from dropbeard.daemon.service import Daemon
from dropbeard.daemon.settings import DaemonOptions
from tests.daemonproc import cli, init_root, write_config


def _folders(root: Path, n: int) -> None:
    for i in range(n):
        (root / f"d{i}" / "sub").mkdir(parents=True)


def test_folders_are_counted_without_following_links_or_entering_dropbear(
    tmp_path: Path,
) -> None:
    _folders(tmp_path, 3)  # 6 folders, plus the root
    (tmp_path / ".dropbear" / "tmp").mkdir(parents=True)
    (tmp_path / "link").symlink_to(tmp_path / "d0")
    assert inotify.count_folders(tmp_path, stop_after=100) == 7
    assert inotify.count_folders(tmp_path, stop_after=2) == 3  # stops once past the limit


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="inotify is Linux's")
def test_the_limit_is_read_from_the_kernel() -> None:
    limit = inotify.watch_limit()
    assert isinstance(limit, int) and limit > 0


def test_a_shortage_says_what_to_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _folders(tmp_path, 5)
    monkeypatch.setattr(inotify, "watch_limit", lambda: 8)
    shortage = inotify.watch_shortage(tmp_path)
    assert shortage is not None
    assert "fs.inotify.max_user_watches = 8" in shortage.message
    assert "sudo sysctl fs.inotify.max_user_watches=524288" in shortage.command
    monkeypatch.setattr(inotify, "watch_limit", lambda: 11)
    assert inotify.watch_shortage(tmp_path) is None


QUIET = """\
log_format = "json"
poll_interval = "1h"
interval = "1h"
"""


@pytest.mark.anyio
async def test_the_daemon_warns_at_start_and_in_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(inotify, "watch_limit", lambda: 4)
    root = await anyio.to_thread.run_sync(
        partial(init_root, tmp_path / "root", str(tmp_path / "remote"), root_id="r",
                device_id="laptop")
    )  # fmt: skip
    _folders(root, 3)
    sock = tmp_path / "c.sock"
    log = io.StringIO()
    config = write_config(tmp_path / "d.toml", [root], QUIET)
    daemon = Daemon(DaemonOptions(config_path=str(config), socket=str(sock)), log_stream=log)
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(daemon.run, signals=False))
        with anyio.fail_after(30):
            await daemon.ready.wait()
            while True:
                reply = await ask(str(sock), {"op": "status", "offline": True})
                if reply["roots"][0]["warnings"]:
                    break
                await anyio.sleep(0.05)
        shown = await anyio.to_thread.run_sync(
            partial(cli, "status", "--socket", str(sock), "--offline", check=False)
        )
        daemon.shutdown()
    (warning,) = reply["roots"][0]["warnings"]
    assert "inotify" in warning and "sudo sysctl" in warning
    events = [json.loads(line) for line in log.getvalue().splitlines()]
    (logged,) = [e for e in events if e["event"] == "inotify_limit"]
    assert logged["level"] == "warning" and "sudo sysctl" in logged["command"]
    assert "WARNING: " in shown.stdout and "sudo sysctl" in shown.stdout
