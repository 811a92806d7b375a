"""The control socket: status / sync-now / pause / resume round trips against a real daemon
(in-process, real roots and a local-directory remote), malformed requests, and who may own
the socket path."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import stat
import sys
import tempfile
from collections.abc import AsyncIterator, Iterator
from functools import partial
from pathlib import Path
from typing import Any

import anyio
import pytest
from anyio.streams.buffered import BufferedByteReceiveStream

from dropbeard.core.config import RemoteConfig
from dropbeard.core.errors import Unauthorized
from dropbeard.daemon.control import ControlError, ask
from dropbeard.daemon.rootpass import StoreFactory
from dropbeard.daemon.service import Daemon, default_store_factory
from dropbeard.daemon.settings import DaemonOptions
from dropbeard.store.base import Store
from tests.daemonproc import cli, init_root, sha256_of, write_config
from tests.faults import FaultStore

# Nothing but the watcher, sync-now and resume start passes here.
QUIET = """\
log_format = "json"
poll_interval = "1h"
interval = "1h"
debounce = "100ms"
max_delay = "500ms"
"""


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="dbc-", dir="/tmp"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def root(tmp_path: Path) -> Path:
    remote = str(tmp_path / "remote")
    return await anyio.to_thread.run_sync(
        lambda: init_root(tmp_path / "root", remote, root_id="r", device_id="laptop")
    )


@contextlib.asynccontextmanager
async def serving(
    config: Path, sock: Path, store_factory: StoreFactory = default_store_factory
) -> AsyncIterator[Daemon]:
    daemon = Daemon(
        DaemonOptions(config_path=str(config), socket=str(sock)),
        log_stream=io.StringIO(),
        store_factory=store_factory,
    )
    async with anyio.create_task_group() as tg:
        tg.start_soon(partial(daemon.run, signals=False))
        with anyio.fail_after(20):
            await daemon.ready.wait()
        try:
            yield daemon
        finally:
            daemon.shutdown()


async def _root_status(sock: Path) -> dict[str, Any]:
    reply = await ask(str(sock), {"op": "status", "offline": True})
    assert reply["ok"], reply
    root: dict[str, Any] = reply["roots"][0]
    return root


async def _until(sock: Path, what: str, check: Any, limit: float = 15) -> dict[str, Any]:
    with anyio.fail_after(limit):
        while True:
            root = await _root_status(sock)
            if check(root):
                return root
            await anyio.sleep(0.05)
    raise AssertionError(what)  # pragma: no cover


def _blob(remote: Path, path: Path) -> Path:
    sha = sha256_of(path)
    return remote / "roots/r/blobs" / sha[:2] / sha[2:4] / sha


@pytest.mark.anyio
async def test_status_pause_resume_and_sync_now_round_trip(
    tmp_path: Path, root: Path, sock_dir: Path
) -> None:
    sock = sock_dir / "c"
    remote = tmp_path / "remote"
    async with serving(write_config(tmp_path / "d.toml", [root], QUIET), sock):
        reply = await ask(str(sock), {"op": "status"})
        assert reply["ok"] and reply["daemon"]["pid"] == os.getpid()
        assert reply["roots"][0]["path"] == str(root)
        assert reply["roots"][0]["report"]["root_id"] == "r"
        first = await _until(sock, "the start pass", lambda r: r["last_pass"] is not None)
        assert first["state"] == "idle" and first["last_pass"]["reason"] == "start"
        assert first["next_pass_reason"] == "interval"

        assert await ask(str(sock), {"op": "pause"}) == {"ok": True, "roots": {str(root): "paused"}}
        (root / "while-paused.txt").write_text("wait for resume")
        waiting = await _until(sock, "the change pending", lambda r: r["pending_count"] >= 1)
        await anyio.sleep(0.8)  # well past debounce and max_delay
        waiting = await _root_status(sock)
        assert waiting["state"] == "paused" and waiting["next_pass_at"] is None
        assert "while-paused.txt" in waiting["pending_paths"]
        assert waiting["last_pass"] == first["last_pass"]  # no pass while paused
        assert (await ask(str(sock), {"op": "sync-now"}))["roots"] == {str(root): "paused"}
        assert not _blob(remote, root / "while-paused.txt").exists()

        assert (await ask(str(sock), {"op": "resume"}))["roots"] == {str(root): "resumed"}
        done = await _until(
            sock, "the pass after resume", lambda r: r["last_pass"] != first["last_pass"]
        )
        assert done["last_pass"]["summary"]["uploaded"] == 1
        assert _blob(remote, root / "while-paused.txt").exists()

        asked = await ask(str(sock), {"op": "sync-now", "root": str(root / "sub" / "dir")})
        assert asked == {"ok": True, "roots": {str(root): "queued"}}
        await _until(
            sock, "the sync-now pass", lambda r: "sync-now" in (r["last_pass"] or {})["reason"]
        )
        wrong = await ask(str(sock), {"op": "pause", "root": str(tmp_path / "elsewhere")})
        assert wrong["ok"] is False and "not a root this daemon syncs" in wrong["error"]


@pytest.mark.anyio
async def test_malformed_requests_get_an_error_and_the_server_keeps_serving(
    tmp_path: Path, root: Path, sock_dir: Path
) -> None:
    sock = sock_dir / "c"
    async with serving(write_config(tmp_path / "d.toml", [root], QUIET), sock):
        stream = await anyio.connect_unix(str(sock))
        async with stream:
            reader = BufferedByteReceiveStream(stream)

            async def exchange(line: bytes) -> dict[str, Any]:
                await stream.send(line)
                reply: dict[str, Any] = json.loads(await reader.receive_until(b"\n", 1 << 24))
                return reply

            for bad, says in [
                (b"this is not json\n", "not JSON"),
                (b"[1, 2]\n", "expected an object"),
                (b'{"op": 5}\n', "expected an object"),
                (b'{"op": "explode"}\n', "unknown op"),
                (b'{"op": "pause", "root": "relative/path"}\n', "absolute path"),
            ]:
                reply = await exchange(bad)
                assert reply["ok"] is False and says in reply["error"], (bad, reply)
            assert (await exchange(b'{"op": "status", "offline": true}\n'))["ok"] is True

        # A line longer than any request: refused, connection closed, server unharmed.
        stream = await anyio.connect_unix(str(sock))
        async with stream:
            await stream.send(b"x" * (1 << 17))
            reader = BufferedByteReceiveStream(stream)
            reply_line = await reader.receive_until(b"\n", 1 << 16)
            assert b"too long" in reply_line
        # A client that hangs up mid-request.
        stream = await anyio.connect_unix(str(sock))
        await stream.send(b'{"op": "sta')
        await stream.aclose()
        assert (await ask(str(sock), {"op": "status", "offline": True}))["ok"] is True


@pytest.mark.anyio
async def test_a_stale_socket_is_replaced_and_a_live_one_is_refused(
    tmp_path: Path, root: Path, sock_dir: Path
) -> None:
    sock = sock_dir / "c"
    dead = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    dead.bind(str(sock))  # what a killed daemon leaves behind: a socket nobody listens on
    dead.close()
    config = write_config(tmp_path / "d.toml", [root], QUIET)
    async with serving(config, sock):
        assert (await ask(str(sock), {"op": "status", "offline": True}))["ok"]
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600

        other = tmp_path / "other"
        other.mkdir()
        other_config = write_config(tmp_path / "other.toml", [other], QUIET)
        argv = [sys.executable, "-m", "dropbeard", "daemon", "-c", str(other_config)]
        second = await anyio.run_process([*argv, "--socket", str(sock)], check=False)
        assert second.returncode == 1
        assert b"already running" in second.stderr
        # the first daemon still answers on its socket
        assert (await ask(str(sock), {"op": "status", "offline": True}))["ok"]
    assert not sock.exists()


@pytest.mark.anyio
async def test_a_file_in_the_sockets_place_is_never_removed(
    tmp_path: Path, root: Path, sock_dir: Path
) -> None:
    sock = sock_dir / "c"
    sock.write_text("my notes, not a socket")
    daemon = Daemon(
        DaemonOptions(
            config_path=str(write_config(tmp_path / "d.toml", [root], QUIET)), socket=str(sock)
        ),
        log_stream=io.StringIO(),
    )
    with pytest.raises(ControlError, match="is not a socket"):
        await daemon.run(signals=False)
    assert sock.read_text() == "my notes, not a socket"


@pytest.mark.anyio
async def test_the_socket_folder_is_created_private(
    tmp_path: Path, root: Path, sock_dir: Path
) -> None:
    sock = sock_dir / "run" / "dropbeard" / "control.sock"
    async with serving(write_config(tmp_path / "d.toml", [root], QUIET), sock):
        assert stat.S_IMODE(os.stat(sock.parent).st_mode) == 0o700
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600


def _rejecting(remote: RemoteConfig, concurrency: int) -> Store:
    """The root's store, except that the server rejects the credentials on every read."""
    store = FaultStore(default_store_factory(remote, concurrency))
    for op in ("get", "get_if_changed", "list_page", "head"):
        store.fail(op, Unauthorized, times=1000)
    return store


@pytest.mark.anyio
async def test_status_shows_a_failed_daemon_pass_with_its_exit_code_and_exits_1(
    tmp_path: Path, root: Path, sock_dir: Path
) -> None:
    sock = sock_dir / "c"
    config = write_config(tmp_path / "d.toml", [root], QUIET)
    async with serving(config, sock, store_factory=_rejecting):
        failed = await _until(sock, "the start pass", lambda r: r["last_pass"] is not None)
        assert failed["state"] == "failed"
        assert failed["last_pass"]["outcome"] == "error"
        assert failed["last_pass"]["exit_code"] == 9

        ran = await anyio.to_thread.run_sync(
            partial(cli, "status", "--socket", str(sock), "--offline", check=False)
        )
        assert ran.returncode == 1, ran.stdout + ran.stderr
        assert "daemon state: failed" in ran.stdout
        assert "injected fault" in ran.stdout and "(exit 9)" in ran.stdout
        ran = await anyio.to_thread.run_sync(
            partial(cli, "status", "--socket", str(sock), "--json", "--offline", check=False)
        )
        assert ran.returncode == 1
        (reported,) = json.loads(ran.stdout)["roots"]
        assert reported["last_pass"]["exit_code"] == 9
