"""The watcher drops events on ignored paths with the rules a pass uses
(dropbeard.daemon.watch.read_ignore_rules), and those in `.dropbear/` or on downloads in
progress (`relative_path`)."""

from __future__ import annotations

from pathlib import Path

from dropbeard.daemon.watch import read_ignore_rules, relative_path
from dropbeard.sync.partfiles import PREFIX, part_name


def test_the_watcher_reads_the_rules_as_far_as_they_decode(tmp_path: Path) -> None:
    assert read_ignore_rules(tmp_path).is_empty  # no ignore file
    (tmp_path / ".dropbearignore").write_bytes(b"# caf\xe9\n*.log\n")
    assert read_ignore_rules(tmp_path).matches("x.log", False)
    (tmp_path / ".dropbearignore").unlink()
    (tmp_path / ".dropbearignore").mkdir()
    assert read_ignore_rules(tmp_path).is_empty  # unreadable: every event is passed on


def test_events_on_downloads_in_progress_and_in_dropbear_are_dropped() -> None:
    root = "/home/me/Sync"
    assert relative_path(root, f"{root}/docs/a.txt") == "docs/a.txt"
    assert relative_path(root, f"{root}/docs/{part_name()}") is None
    assert relative_path(root, f"{root}/{PREFIX}0123-4") is None  # anyone's
    assert relative_path(root, f"{root}/.dropbear/tmp/x") is None
    assert relative_path(root, f"{root}/docs/x{PREFIX}1") == f"docs/x{PREFIX}1"
