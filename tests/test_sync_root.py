"""`.dropbear/tmp/` housekeeping at the start of a pass (dropbeard.sync.root.reset_tmp)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropbeard.core.errors import OfflineError
from dropbeard.sync.root import RootPaths, reset_tmp


def test_reset_tmp_empties_the_folder_of_partial_downloads(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path)
    (paths.tmp / "sub").mkdir(parents=True)
    (paths.tmp / "partial-download").write_bytes(b"half")
    (paths.tmp / "sub" / "x").write_bytes(b"x")
    (tmp_path / "user-file.txt").write_bytes(b"mine")

    reset_tmp(paths)

    assert paths.tmp.is_dir() and list(paths.tmp.iterdir()) == []
    assert (tmp_path / "user-file.txt").read_bytes() == b"mine"


def test_reset_tmp_never_recreates_a_root_that_went_away(tmp_path: Path) -> None:
    paths = RootPaths(tmp_path / "usb" / "photos")

    with pytest.raises(OfflineError):
        reset_tmp(paths)

    assert not (tmp_path / "usb").exists()
