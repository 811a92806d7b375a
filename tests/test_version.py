"""Version vectors: the spec's dominance rule, and the algebraic laws reconcile relies on."""

from __future__ import annotations

import copy

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.version import Order, bump, compare, dominates, maximal, merge

vectors = st.dictionaries(st.sampled_from(["a", "b", "c", "old-phone"]), st.integers(1, 6))
laws = settings(max_examples=150, deadline=None)


@pytest.mark.parametrize(
    ("a", "b", "order"),
    [
        pytest.param({"laptop": 2}, {"laptop": 2}, Order.EQUAL, id="equal"),
        pytest.param({}, {}, Order.EQUAL, id="both-empty"),
        pytest.param({"laptop": 3}, {"laptop": 2}, Order.DOMINATES, id="later-counter"),
        pytest.param(
            {"laptop": 1, "desktop": 1}, {"laptop": 1}, Order.DOMINATES, id="extra-device"
        ),
        pytest.param(
            {"laptop": 1}, {"laptop": 1, "desktop": 1}, Order.DOMINATED, id="missing-device"
        ),
        pytest.param({"laptop": 2}, {"desktop": 1}, Order.CONCURRENT, id="disjoint"),
        pytest.param(
            {"laptop": 2, "desktop": 1}, {"laptop": 1, "desktop": 2}, Order.CONCURRENT, id="crossed"
        ),
        pytest.param({"laptop": 1, "desktop": 0}, {"laptop": 1}, Order.EQUAL, id="zero-is-missing"),
    ],
)
def test_compare_follows_the_spec(a: dict[str, int], b: dict[str, int], order: Order) -> None:
    assert compare(a, b) is order
    assert dominates(a, b) is (order is Order.DOMINATES)


def test_merge_is_element_wise_max() -> None:
    assert merge({"laptop": 7, "desktop": 2}, {"laptop": 3, "server": 5}) == {
        "laptop": 7,
        "desktop": 2,
        "server": 5,
    }
    assert merge() == {}


def test_bump_sets_the_device_counter() -> None:
    assert bump({"laptop": 7, "desktop": 2}, "desktop", 9) == {"laptop": 7, "desktop": 9}
    assert bump({}, "laptop", 1) == {"laptop": 1}


@pytest.mark.parametrize("counter", [2, 1, 0, -1])
def test_bump_refuses_a_counter_that_does_not_increase(counter: int) -> None:
    with pytest.raises(ValueError, match="not greater than 2"):
        bump({"laptop": 2}, "laptop", counter)


@laws
@given(vectors, vectors)
def test_merge_is_commutative(a: dict[str, int], b: dict[str, int]) -> None:
    assert merge(a, b) == merge(b, a)


@laws
@given(vectors, vectors, vectors)
def test_merge_is_associative(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    assert merge(merge(a, b), c) == merge(a, merge(b, c)) == merge(a, b, c)


@laws
@given(vectors)
def test_merge_is_idempotent(a: dict[str, int]) -> None:
    assert merge(a, a) == a
    assert merge(a) == a


@laws
@given(vectors, vectors)
def test_merge_dominates_or_equals_each_input(a: dict[str, int], b: dict[str, int]) -> None:
    m = merge(a, b)
    assert compare(m, a) in (Order.DOMINATES, Order.EQUAL)
    assert compare(m, b) in (Order.DOMINATES, Order.EQUAL)


@laws
@given(vectors, vectors)
def test_compare_is_antisymmetric(a: dict[str, int], b: dict[str, int]) -> None:
    assert compare(b, a) is compare(a, b).mirror()
    assert not (dominates(a, b) and dominates(b, a))


@laws
@given(vectors, st.sampled_from(["a", "b", "new"]), st.integers(1, 3))
def test_bump_dominates_its_input(a: dict[str, int], device: str, step: int) -> None:
    bumped = bump(a, device, a.get(device, 0) + step)
    assert dominates(bumped, a)
    assert compare(a, bumped) is Order.DOMINATED


@laws
@given(vectors, vectors, vectors)
def test_dominance_is_transitive(a: dict[str, int], b: dict[str, int], c: dict[str, int]) -> None:
    # Build a chain a < ab < abc so the premise holds on every example.
    ab = merge(a, b)
    ab = bump(ab, "a", ab.get("a", 0) + 1)
    abc = merge(ab, c)
    abc = bump(abc, "b", abc.get("b", 0) + 1)
    assert dominates(ab, a) and dominates(abc, ab)
    assert dominates(abc, a)


@laws
@given(vectors, vectors)
def test_inputs_are_never_mutated(a: dict[str, int], b: dict[str, int]) -> None:
    a0, b0 = copy.deepcopy(a), copy.deepcopy(b)
    merged = merge(a, b)
    compare(a, b)
    dominates(a, b)
    bumped = bump(a, "a", a.get("a", 0) + 1)
    assert (a, b) == (a0, b0)
    merged["zzz"] = 1
    bumped["zzz"] = 1
    assert (a, b) == (a0, b0)


@given(st.lists(st.tuples(vectors, st.integers(0, 9)), max_size=12))
def test_maximal_keeps_exactly_the_undominated_items(
    items: list[tuple[dict[str, int], int]],
) -> None:
    """Same items, in the same order, as comparing every pair (equal vectors, including
    ones equal only by a zero counter, are all kept or all dropped)."""
    naive = [i for i in items if not any(dominates(o[0], i[0]) for o in items)]
    assert maximal(items, lambda item: item[0]) == naive


def test_maximal_compares_no_pair_when_every_device_holds_the_same_version() -> None:
    same = [({"a": 3, "b": 1}, n) for n in range(50)]
    calls = []
    with pytest.MonkeyPatch.context() as mp:
        import dropbeard.core.version as version

        mp.setattr(version, "compare", lambda *args: calls.append(args))
        assert maximal(same, lambda item: item[0]) == same
    assert calls == []
