"""When a device writes its head for its seen-marks alone (dropbeard.core.heads, SPEC 1.3):
when they moved, at most every 10 minutes (pure)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dropbeard.core.heads import HEAD_EVERY, head_due
from dropbeard.core.model import SeenMark

NOW = datetime(2026, 5, 22, 18, 5, tzinfo=UTC)
OLD = {"b": SeenMark(snapshot="20260522T170000Z", tombstone_seq=1)}
NEW = {"b": SeenMark(snapshot="20260522T180000Z", tombstone_seq=1)}


@pytest.mark.parametrize(
    ("seen", "written", "ago", "due"),
    [
        pytest.param(NEW, OLD, HEAD_EVERY, True, id="moved_and_ten_minutes_since"),
        pytest.param(NEW, OLD, HEAD_EVERY - timedelta(seconds=1), False, id="moved_too_soon"),
        pytest.param(NEW, NEW, timedelta(days=3), False, id="unchanged_never_rewritten"),
        pytest.param(NEW, None, None, True, id="never_written"),
        pytest.param(NEW, None, timedelta(minutes=1), False, id="marks_unknown_but_recent"),
        pytest.param({}, None, None, False, id="nothing_processed_nothing_to_say"),
        pytest.param(
            {"b": SeenMark(snapshot="20260522T170000Z", tombstone_seq=2)},
            OLD,
            HEAD_EVERY,
            True,
            id="a_new_tombstone_seq_is_a_move_too",
        ),
    ],
)
def test_head_due(
    seen: dict[str, SeenMark],
    written: dict[str, SeenMark] | None,
    ago: timedelta | None,
    due: bool,
) -> None:
    written_at = None if ago is None else NOW - ago
    assert head_due(seen, written, written_at, NOW) is due
