"""The daemon's control socket: server and client (IO: a Unix stream socket).

Protocol: newline-delimited JSON, one request object per line, one reply object per line,
any number per connection. Every reply has `"ok"`; a failure has `"error"` (one line).

    {"op": "status"[, "offline": true]}  -> {"ok": true, "daemon": {...}, "roots": [...]}
    {"op": "sync-now"[, "root": PATH]}   -> {"ok": true, "roots": {PATH: "queued"|"paused"}}
    {"op": "pause"[, "root": PATH]}      -> {"ok": true, "roots": {PATH: "paused"}}
    {"op": "resume"[, "root": PATH]}     -> {"ok": true, "roots": {PATH: "resumed"}}

The socket is mode 0600; a directory created for it is 0700. A socket left behind by a
daemon that died is replaced; one a live daemon answers on is never touched.
"""

from __future__ import annotations

import contextlib
import errno
import os
import socket
import stat
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import msgspec
from anyio.streams.buffered import BufferedByteReceiveStream

from dropbeard.core.errors import DropbeardError, UsageError
from dropbeard.daemon.settings import default_socket, load_config

MAX_LINE = 1 << 16
CLIENT_TIMEOUT_S = 20.0
#: Longest Unix socket path (sun_path is 108 bytes on Linux, 104 on macOS, NUL included).
MAX_SOCKET_PATH = 103

Handler = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


class ControlError(DropbeardError):
    """The control socket cannot be set up (another daemon runs, or the path is unusable)."""


class NoDaemon(Exception):
    """Nobody answered on the socket (no file, refused, or no reply in time)."""


def error_reply(message: str) -> dict[str, Any]:
    return {"ok": False, "error": message}


# --- server ------------------------------------------------------------------------------


def _prepare_dir(folder: Path, *, private: bool) -> None:
    """Create the socket's folder 0700. An existing one must be ours; a dedicated one
    (`private`: the default location) is made 0700 again if someone loosened it."""
    try:
        folder.mkdir(mode=0o700, parents=True)
        os.chmod(folder, 0o700)
        return
    except FileExistsError:
        pass
    st = folder.stat()
    if not stat.S_ISDIR(st.st_mode):
        raise ControlError(f"control socket folder {folder} is not a directory")
    if st.st_uid != os.getuid():
        raise ControlError(
            f"control socket folder {folder} belongs to another user (uid {st.st_uid}); "
            "choose another --socket"
        )
    if private and stat.S_IMODE(st.st_mode) != 0o700:
        os.chmod(folder, 0o700)


def _claim(path: str) -> None:
    """Make `path` free for our socket: remove a dead daemon's socket, refuse a live one."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISSOCK(st.st_mode):
        raise ControlError(
            f"{path} exists and is not a socket; remove it or choose another --socket"
        )
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(2.0)
    try:
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        os.unlink(path)  # stale: its daemon is gone
        return
    except OSError as exc:
        if exc.errno != errno.EAGAIN:  # backlog full means alive and busy
            raise ControlError(f"cannot probe control socket {path}: {exc}") from None
    finally:
        probe.close()
    raise ControlError(
        f"another dropbeard daemon is already running (it answers on {path}); "
        "stop it first, or give this one another --socket"
    )


def _bind(path: str, *, private_dir: bool) -> socket.socket:
    if len(os.fsencode(path)) > MAX_SOCKET_PATH:
        raise ControlError(
            f"control socket path {path} is too long for a Unix socket "
            f"(at most {MAX_SOCKET_PATH} bytes); choose a shorter --socket"
        )
    _prepare_dir(Path(path).parent, private=private_dir)
    _claim(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)  # no window in which the socket is reachable by others
    try:
        sock.bind(path)
    except OSError as exc:
        sock.close()
        raise ControlError(f"cannot listen on {path}: {exc}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    sock.listen(16)
    sock.setblocking(False)
    return sock


class ControlServer:
    """Listens on `path` and answers requests with `handler` until cancelled."""

    def __init__(self, path: str, sock: socket.socket, handler: Handler, log: Any) -> None:
        self.path = path
        self._sock = sock
        self._inode = os.stat(path).st_ino
        self._handler = handler
        self._log = log

    @classmethod
    async def bind(
        cls, path: str, handler: Handler, log: Any, *, private_dir: bool = False
    ) -> ControlServer:
        sock = await anyio.to_thread.run_sync(lambda: _bind(path, private_dir=private_dir))
        return cls(path, sock, handler, log)

    async def serve(self) -> None:
        listener = await anyio.abc.SocketListener.from_socket(self._sock)
        async with listener:
            await listener.serve(self._client)

    def remove(self) -> None:
        """Delete the socket file, unless another daemon has replaced it since."""
        with contextlib.suppress(OSError):
            if os.stat(self.path).st_ino == self._inode:
                os.unlink(self.path)

    async def _client(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:
            reader = BufferedByteReceiveStream(stream)
            while True:
                try:
                    line = await reader.receive_until(b"\n", MAX_LINE)
                except anyio.DelimiterNotFound:
                    with contextlib.suppress(anyio.BrokenResourceError, anyio.ClosedResourceError):
                        await stream.send(_encode(error_reply("request line too long")))
                    return
                except (anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError):
                    return
                reply = await self._answer(line)
                try:
                    await stream.send(_encode(reply))
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return

    async def _answer(self, line: bytes) -> dict[str, Any]:
        try:
            request = msgspec.json.decode(line)
        except msgspec.DecodeError as exc:
            return error_reply(f"malformed request (not JSON): {exc}")
        if not isinstance(request, dict) or not isinstance(request.get("op"), str):
            return error_reply('malformed request: expected an object like {"op": "status"}')
        try:
            return await self._handler(request)
        except DropbeardError as exc:
            return error_reply(str(exc))
        except Exception as exc:
            self._log.exception("control_error", op=request.get("op"))
            return error_reply(f"internal error: {type(exc).__name__}: {exc}")


def _encode(reply: dict[str, Any]) -> bytes:
    return msgspec.json.encode(reply) + b"\n"


# --- client ------------------------------------------------------------------------------


async def ask(path: str, request: dict[str, Any], *, within: float = CLIENT_TIMEOUT_S) -> Any:
    """Send one request and return the decoded reply; NoDaemon if no reply came `within`."""
    try:
        with anyio.fail_after(within):
            stream = await anyio.connect_unix(path)
            async with stream:
                await stream.send(_encode(request))
                reader = BufferedByteReceiveStream(stream)
                line = await reader.receive_until(b"\n", 1 << 26)
    except (FileNotFoundError, ConnectionRefusedError):
        raise NoDaemon(f"no daemon answered on {path}") from None
    except TimeoutError:
        raise NoDaemon(f"no daemon answered on {path} within {within:g}s") from None
    except (OSError, anyio.EndOfStream, anyio.IncompleteRead, anyio.BrokenResourceError) as exc:
        raise NoDaemon(f"no daemon answered on {path} ({type(exc).__name__})") from None
    except anyio.DelimiterNotFound:
        raise NoDaemon(f"the daemon on {path} sent a reply too long to read") from None
    try:
        return msgspec.json.decode(line)
    except msgspec.DecodeError:
        raise NoDaemon(f"the daemon on {path} sent a malformed reply") from None


def socket_for_client(explicit: str | None, config_path: str | None) -> str:
    """The socket `dropbeard status` asks: `--socket`, else the `-c` config's (or the default
    config's) `socket`, else the default path. A bad `-c` config is a usage error."""
    if explicit:
        return os.path.abspath(os.path.expanduser(explicit))
    try:
        cfg, _ = load_config(config_path)
    except UsageError:
        if config_path is not None:
            raise
        cfg = None
    if cfg is not None and cfg.socket:
        return cfg.socket
    return default_socket()
