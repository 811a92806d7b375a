"""What a pass scans and reconciles (dropbeard.sync.passscope.choose_scope): every path
only when what the last pass left open is unknown, the ignore rules changed, or a person
asked; a whole-root rescan for a one-shot sync; else the paths asked for, those changed
elsewhere and those left open."""

from __future__ import annotations

import pytest

from dropbeard.sync.passscope import Scope, choose_scope

ELSEWHERE = {"b/edited.txt", "b/deleted.txt"}


@pytest.mark.parametrize(
    ("forced", "pending", "ignore_changed", "only", "scope"),
    [
        pytest.param(True, set(), False, {"x"}, Scope(True, None), id="asked_for"),
        pytest.param(False, None, False, {"x"}, Scope(True, None), id="nothing_recorded"),
        pytest.param(False, set(), True, {"x"}, Scope(True, None), id="ignore_rules_changed"),
        pytest.param(False, {"open"}, False, None, Scope(False, None), id="a_whole_root_rescan"),
        pytest.param(
            False,
            {"open.txt", "../../escape"},
            False,
            {"x", "./y/", "Cafe\u0301", "../escape", "/abs"},
            Scope(False, frozenset({"x", "y", "Caf\u00e9", "open.txt", *ELSEWHERE})),
            id="some_paths",
        ),
        pytest.param(False, set(), False, {"x", ""}, Scope(False, None), id="the_root_itself"),
    ],
)
def test_choose_scope(
    forced: bool,
    pending: set[str] | None,
    ignore_changed: bool,
    only: set[str] | None,
    scope: Scope,
) -> None:
    got = choose_scope(
        forced=forced,
        pending=pending,
        ignore_changed=ignore_changed,
        only=only,
        elsewhere=ELSEWHERE,
    )
    assert got == scope


def test_a_scope_says_what_its_scan_covered() -> None:
    some = Scope(False, frozenset({"d", "e/f.txt"}))
    assert some.scanned("d") and some.scanned("d/x/y") and some.scanned("e/f.txt")
    assert not some.scanned("e") and not some.scanned("dd") and not some.scanned("e/g.txt")
    assert Scope(False, None).scanned("anything")
