"""What gc may delete (SPEC 8.2), as the pure rules in `core.sweep`."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from dropbeard.core.sweep import Listed, prunable_tombstones, still_garbage, sweep

NOW = datetime(2026, 12, 2, 12, 0, 0, tzinfo=UTC)
G = timedelta(hours=24)


def obj(key: str, hours_old: float, size: int = 10) -> Listed:
    return Listed(key=key, size=size, last_modified=NOW - timedelta(hours=hours_old))


def test_only_unreached_objects_older_than_the_grace_period_go() -> None:
    listed = [
        obj("reached-old", 100),
        obj("garbage-old", 30, size=7),
        obj("garbage-young", 2),  # a writer may be about to name it
        obj("garbage-at-grace", 24, size=5),
    ]
    done = sweep(listed, {"reached-old"}, NOW, G)
    assert [o.key for o in done.delete] == ["garbage-old", "garbage-at-grace"]
    assert done.freed_bytes == 12 and done.spared_young == 1


def test_a_candidate_is_checked_again_just_before_it_is_deleted() -> None:
    candidate = obj("k", 30)
    assert still_garbage(candidate, candidate.last_modified, set(), NOW, G)
    refreshed = NOW - timedelta(minutes=1)  # a writer found it present and refreshed it
    assert not still_garbage(candidate, refreshed, set(), NOW, G)
    assert not still_garbage(candidate, candidate.last_modified, {"k"}, NOW, G)  # new head
    assert not still_garbage(candidate, None, set(), NOW, G)  # another gc deleted it


def test_tombstones_go_once_everyone_has_seen_them_and_they_are_old() -> None:
    batches = [(1, NOW - timedelta(days=3)), (2, NOW - timedelta(days=2)), (3, NOW)]
    assert prunable_tombstones(batches, {"b": 3, "c": 2}, NOW, G) == [1, 2]
    assert prunable_tombstones(batches, {"b": 3, "c": 1}, NOW, G) == [1]
    assert prunable_tombstones(batches, {"b": 3, "new": 0}, NOW, G) == []  # not processed yet
    assert prunable_tombstones(batches, {"b": 9}, NOW, G) == [1, 2]  # 3 is too young
    assert prunable_tombstones(batches, {}, NOW, G) == [1, 2]


@given(
    ages=st.lists(st.floats(min_value=0, max_value=200), max_size=30),
    reached=st.sets(st.integers(0, 29)),
)
def test_nothing_reached_or_young_is_ever_deleted(ages: list[float], reached: set[int]) -> None:
    listed = [obj(f"k{i}", age) for i, age in enumerate(ages)]
    keys = {f"k{i}" for i in reached}
    done = sweep(listed, keys, NOW, G)
    for o in done.delete:
        assert o.key not in keys and NOW - o.last_modified >= G
    kept = len(listed) - len(done.delete)
    assert kept == sum(1 for o in listed if o.key in keys) + done.spared_young
