"""Errors that say what to do (issue 13, item 5): each failure a person ran into is one
clear line with the right exit code, leaves nothing behind, and behaves in a pipe and
with --json as a script expects."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.converge import Bucket, Cli, Result, devices
from tests.seaweed import Seaweed


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def _one_line(result: Result) -> str:
    lines = [line for line in result.err.splitlines() if line.startswith("dropbeard: error:")]
    assert len(lines) == 1, result.err
    return lines[0]


def _s3_env(server: Seaweed, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DROPBEAR_S3_ACCESS_KEY_ID", server.access_key)
    monkeypatch.setenv("DROPBEAR_S3_SECRET_ACCESS_KEY", server.secret_key)


def test_an_endpoint_without_a_scheme_says_to_add_one(cli: Cli, tmp_path: Path) -> None:
    root = tmp_path / "Sync"
    got = cli("init", str(root), "--remote", "s3://bucket/x", "--endpoint-url", "127.0.0.1:9000")
    assert got.code == 2
    assert "add http:// or https://" in _one_line(got)
    assert "http://127.0.0.1:9000" in got.err
    assert not root.exists()


def test_a_mistyped_s3_url_is_not_taken_for_a_folder(
    cli: Cli, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    got = cli("init", str(tmp_path / "Sync"), "--remote", "s3:/bucket/x")
    assert got.code == 2
    assert "did you mean 's3://bucket/x'" in _one_line(got)
    assert sorted(os.listdir(tmp_path)) == []  # no folder named s3: made here


@pytest.mark.s3
def test_a_missing_bucket_is_named_with_its_endpoint(
    cli: Cli, tmp_path: Path, seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch
) -> None:
    _s3_env(seaweed, monkeypatch)
    bucket = f"no-such-{uuid.uuid4().hex[:8]}"
    root = tmp_path / "Sync"
    got = cli(
        "init", str(root), "--remote", f"s3://{bucket}/x", "--endpoint-url", seaweed.endpoint,
        "--addressing-style", "path",
    )  # fmt: skip
    assert got.code == 2, got.err
    line = _one_line(got)
    assert f"bucket {bucket!r} does not exist at {seaweed.endpoint}" in line
    assert "create it" in line
    assert not root.exists()


def _taken_device(cli: Cli, tmp_path: Path) -> list[str]:
    remote = tmp_path / "remote"
    first = cli("init", str(tmp_path / "first"), "--remote", str(remote), "--device-id", "d")
    assert first.code == 0, first.err
    return ["--remote", str(remote), "--device-id", "d"]


def _several_roots(cli: Cli, tmp_path: Path) -> list[str]:
    remote = tmp_path / "remote"
    for name in ("a", "b"):
        made = cli("init", str(tmp_path / name), "--remote", str(remote), "--new-root", "-q")
        assert made.code == 0, made.err
    return ["--remote", str(remote)]


@pytest.mark.parametrize("failure", [_taken_device, _several_roots])
def test_a_failed_init_leaves_no_folder_it_created(
    cli: Cli, tmp_path: Path, failure: object
) -> None:
    assert callable(failure)
    args = failure(cli, tmp_path)
    root = tmp_path / "new" / "Sync"
    root.parent.mkdir()
    got = cli("init", str(root), *args)
    assert got.code == 2, got.err
    assert os.listdir(root.parent) == []


@pytest.mark.s3
@pytest.mark.parametrize("failure", ["wrong credentials", "missing bucket", "server not there"])
def test_a_failed_s3_init_leaves_no_folder_it_created(
    cli: Cli, tmp_path: Path, seaweed: Seaweed, monkeypatch: pytest.MonkeyPatch, failure: str
) -> None:
    _s3_env(seaweed, monkeypatch)
    endpoint, bucket = seaweed.endpoint, seaweed.bucket
    if failure == "wrong credentials":
        monkeypatch.setenv("DROPBEAR_S3_SECRET_ACCESS_KEY", "wrong")
    elif failure == "missing bucket":
        bucket = "not-there-" + uuid.uuid4().hex[:8]
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            endpoint = f"http://127.0.0.1:{s.getsockname()[1]}"  # closed: refused
    root = tmp_path / "Sync"
    got = cli(
        "init", str(root), "--remote", f"s3://{bucket}/p-{uuid.uuid4().hex[:6]}",
        "--endpoint-url", endpoint, "--addressing-style", "path",
    )  # fmt: skip
    assert got.code in (2, 9, 10), got.err
    assert not root.exists()


def test_with_json_a_failure_is_a_json_object_on_stdout(cli: Cli, tmp_path: Path) -> None:
    got = cli("sync", str(tmp_path / "not-a-root"), "--json")
    assert got.code == 3
    reported = json.loads(got.out)
    assert reported["error"] == "offline" and reported["exit_code"] == 3
    assert "offline" in reported["message"]

    got = cli("status", "--json", "--no-such-flag")
    assert got.code == 2
    assert json.loads(got.out) == {
        "error": "usage",
        "exit_code": 2,
        "message": "unrecognized arguments: --no-such-flag",
    }


def test_output_to_a_closed_pipe_ends_quietly(cli: Cli, tmp_path: Path) -> None:
    root = tmp_path / "Sync"
    assert cli("init", str(root), "--remote", str(tmp_path / "remote"), "-q").code == 0
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "dropbeard", "status", str(root), "--offline"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()  # like `| head -1` that has already gone
        err = proc.stderr.read().decode()
        assert proc.wait(timeout=60) == 141
        assert err == ""


@pytest.fixture
def black_hole() -> Iterator[str]:
    """An endpoint that accepts connections and never answers."""
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(16)
        yield f"http://127.0.0.1:{server.getsockname()[1]}"


def test_a_server_that_does_not_answer_is_reported_within_seconds(
    tmp_path: Path, black_hole: str
) -> None:
    env = dict(os.environ, DROPBEAR_S3_ACCESS_KEY_ID="k", DROPBEAR_S3_SECRET_ACCESS_KEY="s")
    began = time.monotonic()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "dropbeard",
            "init",
            str(tmp_path / "Sync"),
            "--remote",
            "s3://bucket/x",
            "--endpoint-url",
            black_hole,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env=env,
        text=True,
    )
    try:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        waited = time.monotonic() - began
    finally:
        proc.kill()  # the process this test started, by its handle
        proc.wait()
    assert "does not answer" in line and "still retrying" in line, line
    assert black_hole in line
    assert waited < 15, f"told after {waited:.1f}s"


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_sync_json_ending_in_an_integrity_error_is_one_object(
    remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("x.txt", "the real bytes\n")
    a.sync()
    sha = hashlib.sha256(b"the real bytes\n").hexdigest()
    (Path(remote.url) / "roots" / "r1" / "blobs" / sha[:2] / sha[2:4] / sha).write_bytes(b"rot")
    got = remote.cli("sync", str(b.root), "--json")
    assert got.code == 11
    reported = json.loads(got.out)  # one object: the summary, and the failure
    assert reported["error"] == "integrity" and reported["exit_code"] == 11
    assert "x.txt" in reported["message"] and reported["problems"] == 1
    assert len(got.err.strip().splitlines()) == 1
    assert not b.path("x.txt").exists()
