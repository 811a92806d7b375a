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
    assert drift[0].startswith("1 blobs our tree references are missing")
    assert sha in drift[0]


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_status_of_an_offline_root_exits_3_with_the_reason(remote: Bucket, tmp_path: Path) -> None:
    (a,) = devices(remote, tmp_path, "a")
    (a.root / ".dropbear" / "root.toml").unlink()
    result = remote.cli("status", str(a.root), "--json")
    assert result.code == 3
    assert "root.toml is missing" in result.json["reason"]


# --- status tells the truth (issue 9, item 12) ---------------------------------------


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_status_shows_a_halted_delete_with_what_to_run_and_exits_4(
    remote: Bucket, tmp_path: Path
) -> None:
    (a,) = devices(remote, tmp_path, "a")
    for i in range(60):
        a.write(f"f{i:02}.txt", f"{i}\n")
    a.sync()
    for i in range(55):
        a.path(f"f{i:02}.txt").unlink()
    a.sync(code=1)

    got = remote.cli("status", str(a.root), "--json", "--offline")
    assert got.code == 4, got.err
    assert "refusing to delete 55 of 60" in got.json["halted"]
    assert "--allow-mass-delete" in got.json["halted"]
    human = remote.cli("status", str(a.root), "--offline")
    assert human.code == 4
    assert "HALTED: refusing to delete" in human.out and "--allow-mass-delete" in human.out

    a.sync("--allow-mass-delete")
    got = remote.cli("status", str(a.root), "--json", "--offline")
    assert got.code == 0 and got.json["halted"] is None


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_status_exits_4_while_a_conflict_or_a_problem_remains(
    remote: Bucket, tmp_path: Path
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("x.txt", "base\n")
    a.sync()
    b.sync()
    a.write("x.txt", "a's edit\n")
    b.write("x.txt", "b's edit\n")
    a.sync()
    b.sync(code=4)
    got = remote.cli("status", str(b.root), "--json")
    assert got.code == 4
    assert [c["path"] for c in got.json["conflicts"]] == ["x.txt"]

    # a problem: a blob b needs is missing from the bucket
    a.write("y.txt", "lost on the way\n")
    a.sync()
    sha = hashlib.sha256(b"lost on the way\n").hexdigest()
    (Path(remote.url) / "roots" / "r1" / "blobs" / sha[:2] / sha[2:4] / sha).unlink()
    b.sync(code=4)
    for conflict_copy in b.root.glob("x.conflict-*"):
        conflict_copy.unlink()  # b settles the conflict; the problem stays
    b.sync(code=4)
    got = remote.cli("status", str(b.root), "--json", "--offline")
    assert got.code == 4
    assert got.json["conflicts"] == []
    assert [p["kind"] for p in got.json["problems"]] == ["missing_blob"]


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_status_offline_says_other_devices_were_not_checked(remote: Bucket, tmp_path: Path) -> None:
    (a,) = devices(remote, tmp_path, "a")
    offline = remote.cli("status", str(a.root), "--offline")
    assert offline.code == 0
    assert "other devices: not checked" in offline.out and "none" not in offline.out
    assert remote.cli("status", str(a.root), "--json", "--offline").json["devices_checked"] is False
    checked = remote.cli("status", str(a.root))
    assert "other devices: none" in checked.out


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_without_path_outside_a_root_status_and_sync_use_the_configured_roots(
    remote: Bucket, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    a.write("x.txt", "x\n")
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "run"))

    for command in ("status", "sync"):
        got = remote.cli(command)
        assert got.code == 2, got.err
        assert "not inside a dropbeard folder; give PATH" in got.err
        assert "OFFLINE" not in got.out + got.err

    config = tmp_path / "xdg" / "dropbeard" / "config.toml"
    config.parent.mkdir(parents=True)
    config.write_text(f'[[roots]]\npath = "{a.root}"\n\n[[roots]]\npath = "{b.root}"\n')
    got = remote.cli("sync")
    assert got.code == 0, got.err
    assert str(a.root) in got.out and str(b.root) in got.out
    assert b.read("x.txt") == b"x\n"  # a published it, then b received it
    got = remote.cli("status", "--json")
    assert got.code == 0, got.err
    assert [r["root"] for r in got.json["roots"]] == [str(a.root), str(b.root)]

    monkeypatch.chdir(a.root)  # inside a root: that root alone
    got = remote.cli("status", "--json", "--offline")
    assert got.json["root"] == str(a.root)
