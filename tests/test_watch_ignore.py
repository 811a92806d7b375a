"""The watcher drops events on ignored paths with the rules a pass uses
(dropbeard.daemon.watch.read_ignore_rules)."""

from __future__ import annotations

from pathlib import Path

from dropbeard.daemon.watch import read_ignore_rules


def test_the_watcher_reads_the_rules_as_far_as_they_decode(tmp_path: Path) -> None:
    assert read_ignore_rules(tmp_path).is_empty  # no ignore file
    (tmp_path / ".dropbearignore").write_bytes(b"# caf\xe9\n*.log\n")
    assert read_ignore_rules(tmp_path).matches("x.log", False)
    (tmp_path / ".dropbearignore").unlink()
    (tmp_path / ".dropbearignore").mkdir()
    assert read_ignore_rules(tmp_path).is_empty  # unreadable: every event is passed on
