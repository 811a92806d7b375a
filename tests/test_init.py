"""`dropbeard init` as a person meets it: the second device joins the root the remote
already holds (SPEC 5), several roots make it ask, typed ids are normalised, and the
output says what happened."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropbeard.core.config import parse_root_config
from tests.converge import Cli, Result


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str]) -> Cli:
    return Cli(capsys)


def _init(cli: Cli, root: Path, remote: Path, *extra: str) -> Result:
    return cli("init", str(root), "--remote", str(remote), *extra)


def _root_id(root: Path) -> str:
    return parse_root_config((root / ".dropbear" / "root.toml").read_text(), "root.toml").root_id


def test_a_second_device_joins_the_root_the_remote_holds(cli: Cli, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    laptop = tmp_path / "laptop" / "Sync"
    laptop.mkdir(parents=True)
    first = _init(cli, laptop, remote, "--device-id", "laptop")
    assert first.code == 0, first.err
    assert "created root 'sync'" in first.out
    (laptop / "notes.md").write_text("remember\n")
    (laptop / "todo.txt").write_text("x" * 2000)
    assert cli("sync", str(laptop)).code == 0

    desktop = tmp_path / "Documents" / "Sync-desktop"  # another name: still the same root
    desktop.parent.mkdir()
    second = _init(cli, desktop, remote, "--device-id", "desktop")
    assert second.code == 0, second.err
    assert _root_id(desktop) == "sync"
    assert "joined root 'sync'" in second.out
    assert "2 files (2.0 KB) to receive from laptop" in second.out
    assert cli("sync", str(desktop)).code == 0
    assert (desktop / "notes.md").read_text() == "remember\n"


def test_with_several_roots_init_lists_them_and_asks(cli: Cli, tmp_path: Path) -> None:
    remote = tmp_path / "remote"
    made = _init(cli, tmp_path / "photos", remote, "--device-id", "laptop")
    assert made.code == 0, made.err
    made = _init(cli, tmp_path / "work", remote, "--device-id", "laptop", "--new-root")
    assert made.code == 0, made.err
    assert "created root 'work'" in made.out

    third = tmp_path / "Music"
    asked = _init(cli, third, remote, "--device-id", "desktop")
    assert asked.code == 2
    assert "several roots (photos, work)" in asked.err
    assert "--root-id" in asked.err and "--new-root" in asked.err
    assert not third.exists()  # nothing left behind

    joined = _init(cli, third, remote, "--device-id", "desktop", "--root-id", "Work")
    assert joined.code == 0, joined.err
    assert _root_id(third) == "work" and "joined root 'work'" in joined.out

    fourth = tmp_path / "Music2"
    created = _init(cli, fourth, remote, "--device-id", "desktop", "--new-root")
    assert created.code == 0, created.err
    assert _root_id(fourth) == "music2" and "created root 'music2'" in created.out

    again = _init(cli, tmp_path / "x" / "photos", remote, "--device-id", "d2", "--new-root")
    assert again.code == 2
    assert "already holds a root 'photos'" in again.err


def test_typed_ids_are_normalised_like_derived_ones(cli: Cli, tmp_path: Path) -> None:
    root = tmp_path / "root"
    made = _init(
        cli, root, tmp_path / "remote", "--root-id", "My Sync", "--device-id", "Work Laptop"
    )
    assert made.code == 0, made.err
    cfg = parse_root_config((root / ".dropbear" / "root.toml").read_text(), "root.toml")
    assert (cfg.root_id, cfg.device_id) == ("my-sync", "work-laptop")
    assert "created root 'my-sync'" in made.out and "device 'work-laptop'" in made.out
