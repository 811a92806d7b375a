"""Batching change events: quiet period, maximum delay, coalescing, full rescans."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.debounce import Batch, Debouncer


def test_nothing_pending_nothing_due() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    assert deb.due(0.0) == Batch()
    assert not deb.due(1e9)
    assert deb.next_deadline() is None
    assert deb.pending == 0
    assert deb.pending_paths() == frozenset()


def test_adding_no_paths_starts_no_batch() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    deb.add([], 0.0)
    assert deb.next_deadline() is None
    assert not deb.due(100.0)


def test_quiet_period_counts_from_the_last_event() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    deb.add(["a"], 0.0)
    deb.add(["b"], 0.5)
    assert deb.next_deadline() == 1.5
    assert not deb.due(1.0)
    assert not deb.due(1.49)
    assert deb.pending == 2
    batch = deb.due(1.5)
    assert batch == Batch(frozenset({"a", "b"}), full=False)
    assert batch
    # Handed out once: afterwards nothing is pending.
    assert not deb.due(2.0)
    assert deb.next_deadline() is None
    assert deb.pending == 0


def test_repeated_event_on_a_pending_path_extends_the_quiet_period() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    deb.add(["a"], 0.0)
    deb.add(["a"], 0.8)
    assert not deb.due(1.0)
    assert deb.due(1.8).paths == {"a"}


def test_max_delay_flushes_a_continuous_stream() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    flushed_at: list[float] = []
    for step in range(0, 61):  # an event every 0.5 s for 30 s
        now = step * 0.5
        if deb.due(now):
            flushed_at.append(now)
        deb.add([f"file{step}"], now)
    assert flushed_at == [10.0, 20.0, 30.0]


def test_max_delay_batch_holds_every_path_seen_so_far() -> None:
    deb = Debouncer(quiet=1.0, max_delay=3.0)
    for step in range(6):
        deb.add([f"f{step}"], step * 0.5)
    assert deb.next_deadline() == 3.0
    assert deb.due(3.0).paths == {f"f{step}" for step in range(6)}


def test_next_deadline_is_the_earlier_of_quiet_and_max_delay() -> None:
    deb = Debouncer(quiet=2.0, max_delay=5.0)
    deb.add(["a"], 10.0)
    assert deb.next_deadline() == 12.0
    deb.add(["b"], 11.5)
    assert deb.next_deadline() == 13.5
    deb.add(["c"], 14.0)
    assert deb.next_deadline() == 15.0  # first event at 10 + max_delay 5
    assert not deb.due(14.99)
    assert deb.due(15.0).paths == {"a", "b", "c"}
    deb.add(["d"], 20.0)
    assert deb.next_deadline() == 22.0  # a new batch starts its own clock


def test_zero_quiet_is_due_at_once() -> None:
    deb = Debouncer(quiet=0.0, max_delay=10.0)
    deb.add(["a"], 5.0)
    assert deb.due(5.0).paths == {"a"}


def test_same_path_is_one_entry() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    deb.add(["a/b", "a/b", "c/"], 0.0)
    deb.add(["a/b", "c"], 0.1)
    assert deb.pending == 2
    assert deb.pending_paths() == {"a/b", "c"}


def test_paths_below_a_pending_directory_collapse_into_it() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    deb.add(["docs/a.txt", "docs/sub/b.txt", "docs2/c.txt", "doc"], 0.0)
    deb.add(["docs"], 0.1)
    deb.add(["docs/later.txt"], 0.2)
    assert deb.pending_paths() == {"docs", "docs2/c.txt", "doc"}
    assert deb.due(5.0).paths == {"docs", "docs2/c.txt", "doc"}


def test_absolute_paths_collapse_too() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    deb.add(["/home/u/Sync/a/b", "/home/u/Sync/a", "/home/u/Sync/a b"], 0.0)
    assert deb.pending_paths() == {"/home/u/Sync/a", "/home/u/Sync/a b"}
    deb.add(["/"], 0.0)
    assert deb.pending_paths() == {"/"}


def test_full_rescan_is_debounced_and_reported() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    deb.add(["a"], 0.0)
    deb.add_full_rescan(0.5)
    assert deb.full_rescan_pending
    assert deb.next_deadline() == 1.5
    assert not deb.due(1.0)
    batch = deb.due(1.5)
    assert batch.full
    assert batch.paths == {"a"}
    assert not deb.full_rescan_pending
    deb.add(["b"], 2.0)
    assert deb.due(3.0) == Batch(frozenset({"b"}), full=False)


def test_full_rescan_alone_is_a_batch() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    deb.add_full_rescan(3.0)
    assert deb.pending == 0
    assert deb.next_deadline() == 4.0
    batch = deb.due(4.0)
    assert batch == Batch(frozenset(), full=True)
    assert batch


def test_flush_hands_out_everything_now() -> None:
    deb = Debouncer(quiet=1.0, max_delay=10.0)
    deb.add(["a"], 0.0)
    assert deb.flush().paths == {"a"}
    assert deb.next_deadline() is None
    assert not deb.flush()


@pytest.mark.parametrize(("quiet", "max_delay"), [(-1.0, 10.0), (1.0, -1.0), (float("nan"), 1.0)])
def test_invalid_settings(quiet: float, max_delay: float) -> None:
    with pytest.raises(ValueError):
        Debouncer(quiet, max_delay)


_names = st.sampled_from(["a", "a/b", "a/b/c", "b", "ab", "a b", "/x", "/x/y", "c/", "", "/"])
_events = st.lists(
    st.tuples(st.floats(min_value=0, max_value=3), st.lists(_names, max_size=4)), max_size=30
)


def _covered(path: str, returned: set[str]) -> bool:
    path = path.rstrip("/") or path[:1]
    return any(
        path == got or path.startswith(got + "/") or (got == "/" and path.startswith("/"))
        for got in returned
    )


@settings(max_examples=200, deadline=None)
@given(
    quiet=st.floats(min_value=0, max_value=2),
    max_delay=st.floats(min_value=0, max_value=5),
    events=_events,
    full_at=st.one_of(st.none(), st.integers(min_value=0, max_value=29)),
)
def test_no_path_is_ever_lost(
    quiet: float,
    max_delay: float,
    events: list[tuple[float, list[str]]],
    full_at: int | None,
) -> None:
    deb = Debouncer(quiet, max_delay)
    now = 0.0
    added: set[str] = set()
    returned: set[str] = set()
    saw_full = False
    first_pending: float | None = None
    for index, (gap, paths) in enumerate(events):
        now += gap
        batch = deb.due(now)
        if batch:
            assert first_pending is not None
            returned |= batch.paths
            saw_full |= batch.full
            first_pending = None
        deb.add(paths, now)
        if index == full_at:
            deb.add_full_rescan(now)
        if paths or index == full_at:
            first_pending = now if first_pending is None else first_pending
            added |= set(paths)
            deadline = deb.next_deadline()
            assert deadline is not None
            assert deadline <= first_pending + max_delay  # never later than max_delay
    deadline = deb.next_deadline()
    assert (deadline is None) == (first_pending is None)
    final = deb.due(now + max_delay)
    returned |= final.paths
    saw_full |= final.full
    assert deb.next_deadline() is None
    assert all(_covered(path, returned) for path in added)
    assert saw_full == (full_at is not None and full_at < len(events))
