"""`dropbeard status`: what a person sees about a root, read without writing anything."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from tests.converge import Bucket, devices


def _snapshot(folder: Path) -> dict[str, str]:
    out = {}
    for dirpath, _dirs, files in os.walk(folder):
        for name in files:
            p = Path(dirpath) / name
            out[str(p.relative_to(folder))] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_status_reports_devices_and_writes_nothing(remote: Bucket, tmp_path: Path) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("x.txt", "x\n")
    a.sync()
    b.sync()
    bucket_dir = Path(remote.url)
    before = _snapshot(bucket_dir)
    report = a.status()
    assert report["online"] is True
    assert report["drift"] == []
    (other,) = report["devices"]
    assert other["device_id"] == "b"
    assert _snapshot(bucket_dir) == before


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_status_shows_blobs_missing_from_the_bucket_as_drift(
    remote: Bucket, tmp_path: Path
) -> None:
    (a,) = devices(remote, tmp_path, "a")
    a.write("x.txt", "precious\n")
    a.sync()
    sha = hashlib.sha256(b"precious\n").hexdigest()
    (Path(remote.url) / "roots" / "r1" / "blobs" / sha[:2] / sha[2:4] / sha).unlink()
    drift = a.status()["drift"]
    assert len(drift) == 1
    assert drift[0].startswith("1 blobs our manifest references are missing")
    assert sha in drift[0]


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_status_of_an_offline_root_exits_3_with_the_reason(remote: Bucket, tmp_path: Path) -> None:
    (a,) = devices(remote, tmp_path, "a")
    (a.root / ".dropbear" / "root.toml").unlink()
    result = remote.cli("status", str(a.root), "--json")
    assert result.code == 3
    assert "root.toml is missing" in result.json["reason"]
