"""Which snapshots gc keeps (SPEC 8.1), as the pure rules in `core.retention`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from dropbeard.core.retention import (
    Policy,
    format_period,
    kept_snapshots,
    parse_period,
    retired_keeps,
)
from dropbeard.core.timestamps import parse_snapshot_id, snapshot_id

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)


def ago(**delta: float) -> str:
    return snapshot_id(NOW - timedelta(**delta))


def test_periods_parse_as_the_registry_writes_them() -> None:
    assert parse_period("48h") == timedelta(hours=48)
    assert parse_period("90d") == timedelta(days=90)
    assert parse_period("2w") == timedelta(days=14)
    assert parse_period("2y") == timedelta(days=730)
    assert parse_period("0") == timedelta(0)
    for bad in ("", "forever", "-1d", "2x", "1y2d"):
        with pytest.raises(ValueError, match="invalid period"):
            parse_period(bad)
    for period in ("48h", "7d", "2w", "2y", "90d", "1h30m"):
        assert format_period(parse_period(period)) in (period, format_period(parse_period(period)))
        assert parse_period(format_period(parse_period(period))) == parse_period(period)


def test_the_policy_defaults_and_a_registry_that_names_some_rules() -> None:
    assert Policy.from_fields({}, None) == Policy()
    p = Policy.from_fields({"all": "1h", "weekly": "0"}, "2h")
    assert (p.all, p.hourly, p.weekly, p.grace) == (
        timedelta(hours=1),
        timedelta(days=7),
        timedelta(0),
        timedelta(hours=2),
    )
    assert Policy.from_fields(*Policy().fields()) == Policy()
    with pytest.raises(ValueError, match="unknown retention rule 'monthly'"):
        Policy.from_fields({"monthly": "1y"}, None)


def test_each_rule_keeps_what_it_names_and_nothing_else() -> None:
    policy = Policy(
        all=timedelta(hours=2),
        hourly=timedelta(hours=6),
        daily=timedelta(days=3),
        weekly=timedelta(days=30),
        grace=timedelta(minutes=30),
    )
    snaps = {
        "recent": ago(minutes=90),  # younger than `all`
        "h3-old": ago(hours=3, minutes=40),  # two in the hour 08:00-09:00: the newer stays
        "h3-new": ago(hours=3, minutes=10),
        "d1-old": ago(days=1, hours=5),  # two on Dec 1: the newer one stays
        "d1-new": ago(days=1, hours=1),
        "w2": ago(days=10),  # alone in its ISO week
        "w2-older": ago(days=10, hours=3),  # same day and week as w2: dropped
        "ancient": ago(days=60),  # older than every rule
    }
    kept = kept_snapshots(snaps.values(), snaps["recent"], NOW, policy)
    assert {k for k, v in snaps.items() if v in kept} == {
        "recent",
        "h3-new",
        "d1-new",
        "w2",
    }


def test_the_head_and_every_snapshot_current_within_the_grace_period_stay() -> None:
    none = Policy(
        all=timedelta(0),
        hourly=timedelta(0),
        daily=timedelta(0),
        weekly=timedelta(0),
        grace=timedelta(hours=1),
    )
    old, replaced_recently, newest = ago(days=9), ago(days=5), ago(minutes=20)
    # `replaced_recently` was current until 20 minutes ago: a reader may still be on it
    assert kept_snapshots([old, replaced_recently, newest], newest, NOW, none) == {
        replaced_recently,
        newest,
    }
    # a head naming an older snapshot (its newer one not committed yet) keeps both
    assert kept_snapshots([old, newest], old, NOW, none) == {old, newest}
    assert kept_snapshots([], None, NOW, none) == set()


def test_a_retired_device_keeps_its_last_snapshot_for_the_grace_period_only() -> None:
    policy = Policy(grace=timedelta(hours=24))
    snaps = [ago(days=3), ago(days=2)]
    assert retired_keeps(snaps, NOW - timedelta(hours=5), NOW, policy) == {snaps[-1]}
    assert retired_keeps(snaps, NOW - timedelta(hours=25), NOW, policy) is None


@given(
    ages=st.lists(st.integers(min_value=0, max_value=800 * 24 * 60), min_size=1, max_size=40),
    all_h=st.integers(0, 100),
    grace_m=st.integers(0, 3000),
)
def test_keeping_is_idempotent_and_every_kept_snapshot_has_a_reason(
    ages: list[int], all_h: int, grace_m: int
) -> None:
    policy = Policy(all=timedelta(hours=all_h), grace=timedelta(minutes=grace_m))
    snaps = sorted({ago(minutes=m) for m in ages})
    current = snaps[-1]
    kept = kept_snapshots(snaps, current, NOW, policy)
    assert current in kept and kept <= set(snaps)
    # gc deletes the rest; running it again at the same time deletes nothing more
    assert kept_snapshots(kept, current, NOW, policy) == kept
    for s in set(snaps) - kept:
        age = NOW - parse_snapshot_id(s)
        assert age >= policy.all
        newer = [t for t in snaps if t > s]
        assert newer and NOW - parse_snapshot_id(newer[0]) >= policy.grace
        # and a newer snapshot stands for it in every bucket it belongs to
        hour = parse_snapshot_id(s).replace(minute=0, second=0)
        if age < policy.hourly:
            assert any(
                parse_snapshot_id(t).replace(minute=0, second=0) == hour for t in kept if t > s
            )
