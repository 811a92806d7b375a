"""`dropbeard resolve PATH --keep local|DEVICE`: the chosen version wins everywhere."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.converge import Bucket, Device, devices


def _conflict(bucket: Bucket, tmp_path: Path) -> tuple[Device, Device, str]:
    a, b = devices(bucket, tmp_path, "a", "b")
    a.write("doc.txt", "base\n")
    a.sync()
    b.sync()
    a.write("doc.txt", "from a\n")
    b.write("doc.txt", "from b\n")
    a.sync()
    assert b.sync(code=4).code == 4
    (conflict,) = b.status()["conflicts"]
    (copy,) = conflict["copies"]
    return a, b, copy


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_keep_other_device_replaces_local_and_converges(remote: Bucket, tmp_path: Path) -> None:
    a, b, copy = _conflict(remote, tmp_path)
    result = remote.cli("resolve", str(b.path("doc.txt")), "--keep", "a")
    assert result.code == 0, result.err
    assert b.read("doc.txt") == b"from a\n"
    assert not b.path(copy).exists()
    assert b.status()["conflicts"] == []
    a.sync()
    assert a.read("doc.txt") == b"from a\n"


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_keep_local_publishes_a_dominating_version(remote: Bucket, tmp_path: Path) -> None:
    a, b, copy = _conflict(remote, tmp_path)
    assert remote.cli("resolve", str(b.path("doc.txt")), "--keep", "local").code == 0
    assert not b.path(copy).exists()
    assert b.read("doc.txt") == b"from b\n"
    assert a.sync().code == 0  # b's resolution dominates: no new conflict
    assert a.read("doc.txt") == b"from b\n"
    assert a.status()["conflicts"] == []


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_resolve_refuses_a_path_not_in_conflict(remote: Bucket, tmp_path: Path) -> None:
    (a,) = devices(remote, tmp_path, "a")
    a.write("fine.txt", "ok\n")
    a.sync()
    result = remote.cli("resolve", str(a.path("fine.txt")), "--keep", "local")
    assert result.code == 2
    assert "not in conflict" in result.err


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_resolve_names_the_devices_that_have_copies(remote: Bucket, tmp_path: Path) -> None:
    _a, b, _copy = _conflict(remote, tmp_path)
    result = remote.cli("resolve", str(b.path("doc.txt")), "--keep", "zed")
    assert result.code == 2
    assert "copies from: a" in result.err
    assert b.read("doc.txt") == b"from b\n"  # untouched
