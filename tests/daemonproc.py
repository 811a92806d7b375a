"""Test support for the daemon: roots made with the real CLI, `dropbeard daemon` run as a
subprocess with its JSON log in a file, a tiny control-socket client, and polling waits
(no mocks: everything here drives the real program)."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from dropbeard.cli.main import main

T = TypeVar("T")

FAST_CONFIG = """\
log_format = "json"
log_level = "debug"
poll_interval = "500ms"
debounce = "200ms"
max_delay = "1s"
interval = "1m"
"""


@dataclass
class Ran:
    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, check: bool = True) -> Ran:
    """Run the real command line in-process (`dropbeard.cli.main`), output captured; with
    `check`, fail the test on a non-zero exit. Not from inside an event loop: use a thread."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(args))
    if check and code != 0:
        raise AssertionError(f"dropbeard {' '.join(args)} exited {code}: {err.getvalue()}")
    return Ran(code, out.getvalue(), err.getvalue())


def init_root(
    path: Path,
    remote: str,
    *,
    root_id: str,
    device_id: str,
    extra: tuple[str, ...] = (),
) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    cli(
        "init",
        str(path),
        "--remote",
        remote,
        "--root-id",
        root_id,
        "--device-id",
        device_id,
        "-q",
        *extra,
    )
    return path


def write_config(path: Path, roots: list[Path], body: str = FAST_CONFIG) -> Path:
    text = body + "".join(f'\n[[roots]]\npath = "{root}"\n' for root in roots)
    path.write_text(text, encoding="utf-8")
    return path


def wait_for(
    what: str,
    check: Callable[[], T | None],
    *,
    timeout: float = 60.0,  # generous: only a failing test waits this long
    step: float = 0.05,
    logs: tuple[Daemon, ...] = (),
) -> T:
    """Poll `check` until it returns something truthy; fail naming `what` after `timeout`
    (with the tail of the `logs` daemons' logs, to see why)."""
    deadline = time.monotonic() + timeout
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            tails = "".join(f"\n--- {d.log_path.name}:\n{d.log_text()[-4000:]}" for d in logs)
            raise AssertionError(f"timed out after {timeout}s waiting for {what}{tails}")
        time.sleep(step)


def sha256_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def request(sock_path: str | Path, req: dict[str, Any], *, timeout: float = 20.0) -> Any:
    """One request over the control socket (a plain blocking client)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.settimeout(timeout)
        sock.connect(str(sock_path))
        sock.sendall(json.dumps(req).encode() + b"\n")
        data = b""
        while not data.endswith(b"\n"):
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            data += chunk
    return json.loads(data)


class Daemon:
    """`dropbeard daemon` in a subprocess; its stderr (JSON events) goes to `log_path`."""

    def __init__(
        self,
        config: Path,
        sock: Path,
        log_path: Path,
        *,
        roots: tuple[str, ...] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.sock, self.log_path = sock, log_path
        self._log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "dropbeard",
                "daemon",
                "-c",
                str(config),
                "--socket",
                str(sock),
                *roots,
            ],
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=dict(env) if env is not None else None,
        )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def wait_ready(self, timeout: float = 30.0) -> None:
        def answers() -> bool:
            if self.proc.poll() is not None:
                raise AssertionError(f"daemon exited {self.proc.returncode}: {self.log_text()}")
            try:
                return bool(request(self.sock, {"op": "status", "offline": True}).get("ok"))
            except (OSError, ValueError):
                return False

        wait_for("the daemon's control socket", answers, timeout=timeout, step=0.1)

    def status(self, *, offline: bool = True) -> dict[str, Any]:
        reply: dict[str, Any] = request(self.sock, {"op": "status", "offline": offline})
        assert reply["ok"], reply
        return reply

    def log_text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def events(self, name: str | None = None) -> list[dict[str, Any]]:
        found = []
        for line in self.log_text().splitlines():
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and (name is None or event.get("event") == name):
                found.append(event)
        return found

    def signal(self, signum: int) -> None:
        self.proc.send_signal(signum)

    def wait(self, timeout: float = 30.0) -> int:
        return self.proc.wait(timeout)

    def stop(self) -> None:
        """SIGTERM, then SIGKILL if it does not go; always by our own PID."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()


def daemons(*items: Daemon) -> Iterator[None]:
    """Stop every daemon when the test ends, whatever happened."""
    try:
        yield
    finally:
        for item in items:
            item.stop()


def s3_env(server: Any) -> dict[str, str]:
    """The environment a subprocess needs to reach the test SeaweedFS."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DROPBEAR_S3_"))}
    env["DROPBEAR_S3_ACCESS_KEY_ID"] = server.access_key
    env["DROPBEAR_S3_SECRET_ACCESS_KEY"] = server.secret_key
    return env
