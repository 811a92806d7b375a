"""Times as bucket objects write them, and snapshot ids that sort in publish order (SPEC 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.timestamps import (
    next_snapshot_id,
    parse_snapshot_id,
    parse_utc_iso,
    snapshot_id,
    utc_iso,
)


def test_time_formats() -> None:
    assert utc_iso(0) == "1970-01-01T00:00:00Z"
    assert utc_iso(1.999) == "1970-01-01T00:00:01Z"
    assert utc_iso(-0.5) == "1969-12-31T23:59:59Z"
    paris = timezone(timedelta(hours=2))
    assert utc_iso(datetime(2026, 5, 22, 20, 5, 0, 999999, tzinfo=paris)) == "2026-05-22T18:05:00Z"
    assert snapshot_id(datetime(2026, 5, 22, 18, 5, tzinfo=UTC)) == "20260522T180500Z"
    assert parse_snapshot_id("20260522T180500Z") == datetime(2026, 5, 22, 18, 5, tzinfo=UTC)
    assert parse_utc_iso("2026-05-22T18:05:00Z") == datetime(2026, 5, 22, 18, 5, tzinfo=UTC)
    with pytest.raises(ValueError, match="naive"):
        utc_iso(datetime(2026, 5, 22))
    for bad in ["2026522T18050Z", "20260522T180500", "２０２６0522T180500Z"]:
        with pytest.raises(ValueError):
            parse_snapshot_id(bad)


NOW = datetime(2026, 5, 22, 18, 5, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("previous", "expected"),
    [
        pytest.param(None, "20260522T180500Z", id="first"),
        pytest.param("20260522T180459Z", "20260522T180500Z", id="earlier"),
        pytest.param("20260522T180500Z", "20260522T180501Z", id="same-second"),
        pytest.param("20260522T190000Z", "20260522T190001Z", id="clock-went-back"),
        pytest.param("20261231T235959Z", "20270101T000000Z", id="year-rollover"),
    ],
)
def test_next_snapshot_id(previous: str | None, expected: str) -> None:
    assert next_snapshot_id(NOW, previous) == expected


def test_next_snapshot_id_refuses_garbage_previous() -> None:
    with pytest.raises(ValueError):
        next_snapshot_id(NOW, "latest")


@settings(max_examples=100, deadline=None)
@given(st.lists(st.integers(-(10**6), 10**6), min_size=1, max_size=20))
def test_snapshot_ids_always_sort_in_publish_order(offsets: list[int]) -> None:
    ids: list[str] = []
    for offset in offsets:  # an arbitrary, even backwards-running, clock
        ids.append(next_snapshot_id(NOW + timedelta(seconds=offset), ids[-1] if ids else None))
    assert ids == sorted(set(ids))
