"""S3 servers that lack features SeaweedFS has, for the compatibility tests: s3rver (npm;
no ListParts or multipart abort, ignores If-None-Match and If-Match on writes) and moto's
standalone server (PyPI). Each runs on a loopback port we chose and checked, once per test
session, and is stopped by the PID we started (never by name) (test support).

s3rver is installed by the tests themselves, once, with `npm install --prefix` into a
cache folder (`$XDG_CACHE_HOME/dropbeard-tests/`), so a fresh machine needs nothing but
npm; without npm its tests are skipped, saying so.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from tests.seaweed import free_ports

S3RVER_VERSION = "3.7.1"
BUCKET = "dropbeard-test"


class NoNpm(RuntimeError):
    """npm is not installed: the s3rver tests cannot run here."""


@dataclass
class S3Server:
    """A running server, with what `tests.conftest.make_s3_store` and the CLI need."""

    name: str
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    pid: int
    log: Path
    _proc: subprocess.Popen[bytes] | None = None

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        os.kill(proc.pid, signal.SIGTERM)  # only the PID we started
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])


def _cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")
    return Path(base) / "dropbeard-tests"


def install_s3rver() -> Path:
    """The s3rver entry script, installed once with npm (NoNpm if npm is missing)."""
    npm = shutil.which("npm")
    if npm is None or shutil.which("node") is None:
        raise NoNpm("npm (and node) are not installed: `apt-get install npm` to run these")
    prefix = _cache_dir() / f"s3rver-{S3RVER_VERSION}"
    script = prefix / "node_modules" / "s3rver" / "bin" / "s3rver.js"
    prefix.mkdir(parents=True, exist_ok=True)
    with open(prefix / ".lock", "w") as lock:  # test workers install one at a time
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not script.exists():
            quiet = ("--no-audit", "--no-fund", "--no-save", "--loglevel=error")
            package = f"s3rver@{S3RVER_VERSION}"
            subprocess.run(
                [npm, "install", "--prefix", str(prefix), package, *quiet],
                check=True,
                timeout=600,
            )
    return script


def _start(name: str, args: list[str], port: int, data_dir: Path, **keys: str) -> S3Server:
    log = data_dir / f"{name}.log"
    out = open(log, "wb")  # noqa: SIM115 - lives as long as the server
    proc = subprocess.Popen(
        args, cwd=data_dir, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
    )
    server = S3Server(
        name, f"http://127.0.0.1:{port}", BUCKET, keys["access"], keys["secret"], proc.pid, log
    )
    server._proc = proc
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:  # e.g. the port was taken meanwhile
            raise RuntimeError(f"{name} exited with {proc.returncode}: {server.log_tail()}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return server
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"{name} did not listen in time: {server.log_tail()}") from None
            time.sleep(0.1)


def start_s3rver(data_dir: Path) -> S3Server:
    script = install_s3rver()
    node = shutil.which("node")
    assert node is not None
    (data_dir / "data").mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    args = [node, str(script), "-d", str(data_dir / "data"), "-a", "127.0.0.1"]
    args += ["-p", str(port), "--configure-bucket", BUCKET, "-s"]
    # s3rver's one account: the keys are fixed, and public by design
    return _start("s3rver", args, port, data_dir, access="S3RVER", secret="S3RVER")


def start_moto(data_dir: Path) -> S3Server:
    data_dir.mkdir(parents=True, exist_ok=True)
    (port,) = free_ports(1)
    args = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    server = _start("moto", args, port, data_dir, access="moto-test", secret="moto-test")
    try:
        _create_bucket(server)
    except BaseException:
        server.stop()
        raise
    return server


def _create_bucket(server: S3Server) -> None:
    import botocore.session

    client = botocore.session.get_session().create_client(
        "s3",
        endpoint_url=server.endpoint,
        aws_access_key_id=server.access_key,
        aws_secret_access_key=server.secret_key,
        region_name="us-east-1",
    )
    try:
        client.create_bucket(Bucket=server.bucket)
    finally:
        client.close()
