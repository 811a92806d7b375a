"""gc after deleting 1 GiB, end to end (issue 11's test): a device syncs 1 GiB of large
files (stored in chunks), deletes them and syncs again; with retention set through
`retention` to keep only what the grace period requires, `gc` shrinks the bucket to the
live content plus the history retention still keeps, and every current head verifies
with `verify --full`."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chunkfiles import MiB, noise
from tests.converge import Bucket, Cli, devices, local_bucket

pytestmark = pytest.mark.slow
GIB = 1024 * MiB


def bucket_bytes(bucket: Bucket, prefix: str) -> int:
    return sum(p.stat().st_size for p in (Path(bucket.url) / prefix).rglob("*") if p.is_file())


def test_gc_after_deleting_a_gib_keeps_only_live_and_retained_content(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bucket = local_bucket(tmp_path, Cli(capsys))
    a, b = devices(bucket, tmp_path, "a", "b")
    a.write("notes/live.txt", b"what stays")
    a.write("notes/draft.txt", b"draft 1")
    a.sync()
    b.sync()  # b's head names draft 1 until b syncs again: retained, as b's current
    for i in range(4):
        a.write(f"videos/take{i}.bin", noise(f"take {i}", GIB // 4))
    a.sync()
    blobs = bucket.keys.blobs_prefix
    assert bucket_bytes(bucket, blobs) > GIB
    for i in range(4):
        a.path(f"videos/take{i}.bin").unlink()
    a.path("videos").rmdir()
    a.write("notes/draft.txt", b"draft 2")
    a.sync()
    got = a.cli(
        "retention", "--root", str(a.root), "--all", "0", "--hourly", "0", "--daily", "0",
        "--weekly", "0", "--grace", "2s",
    )  # fmt: skip
    assert got.code == 0, got.err
    time.sleep(2.2)  # every snapshot but the current ones superseded longer ago than that
    got = a.cli("gc", "--root", str(a.root), "--json")
    assert got.code == 0, got.err
    assert got.json["deleted"]["blobs"] >= GIB // (16 * MiB)  # the chunks, 16 MiB at most
    assert got.json["freed_bytes"] >= GIB
    live, retained = len(b"what stays") + len(b"draft 2"), len(b"draft 1")
    assert bucket_bytes(bucket, blobs) == live + retained
    assert a.cli("verify", "--root", str(a.root), "--all", "--full").code == 0
    b.sync()
    assert b.read("notes/draft.txt") == b"draft 2" and not b.path("videos").exists()
    assert b.cli("verify", "--root", str(b.root), "--full").code == 0
