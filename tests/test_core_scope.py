"""Which paths a pass reconciles (dropbeard.core.scope): what changed here against the
bases, what changed in another device's listing, the folders above, and what a pass over
some paths assumes of the folders it did not scan."""

from __future__ import annotations

import msgspec
import pytest

from dropbeard.core.model import Entry
from dropbeard.core.plan import Base, ConflictInfo
from dropbeard.core.scope import (
    assumed_local,
    changed_here,
    listing_changes,
    local_changes,
    with_folders,
)
from tests.test_reconcile_cases import COPY, D, F, gone, held


def here(entry: Entry) -> Entry:
    """`entry` as a scan reports it: no version."""
    return msgspec.structs.replace(entry, version={})


A1 = F("a.txt", "v1", {"laptop": 1})


@pytest.mark.parametrize(
    ("base", "content", "changed"),
    [
        pytest.param(None, None, False, id="nothing_anywhere"),
        pytest.param(None, here(A1), True, id="new_here"),
        pytest.param(Base(entry=A1), here(A1), False, id="agreed_and_unchanged"),
        pytest.param(Base(entry=A1), here(F("a.txt", "v2")), True, id="edited"),
        pytest.param(
            Base(entry=A1), msgspec.structs.replace(here(A1), mode=0o600), True, id="chmod"
        ),
        pytest.param(
            Base(entry=A1), msgspec.structs.replace(here(A1), mtime_ns=5), False, id="touched"
        ),
        pytest.param(Base(entry=A1), None, True, id="gone_here"),
        pytest.param(Base(entry=A1), here(D("a.txt")), True, id="now_a_folder"),
        pytest.param(Base(deleted=gone("a.txt", {"laptop": 2})), None, False, id="deleted_gone"),
        pytest.param(Base(deleted=gone("a.txt", {"laptop": 2})), here(A1), True, id="recreated"),
        pytest.param(
            Base(entry=A1, conflict=ConflictInfo(version={"laptop": 1})),
            here(A1),
            True,
            id="in_conflict_is_always_looked_at",
        ),
        pytest.param(
            Base(entry=A1, refused=gone("a.txt", {"desktop": 3})),
            here(A1),
            True,
            id="a_refused_delete_is_always_looked_at",
        ),
    ],
)
def test_changed_here(base: Base | None, content: Entry | None, changed: bool) -> None:
    assert changed_here(base, content) is changed


def test_local_changes_merges_the_bases_with_what_the_scan_found() -> None:
    base = held(F("a", "a"), F("b", "b"), F("d/x", "x"), F("e", "e"))
    local = {
        "a": here(F("a", "a")),  # unchanged
        "b": here(F("b", "edited")),
        "c": here(F("c", "new")),  # new, between bases
        "d/x": here(F("d/x", "x")),
        COPY: here(F(COPY, "copy")),  # a conflict copy is never tracked
        "z": here(F("z", "new")),  # new, after every base
    }  # e: gone
    changed = local_changes(sorted(base.items()), local)
    assert changed == {"b": base["b"], "c": None, "e": base["e"], "z": None}


def test_listing_changes_is_every_path_whose_entry_differs() -> None:
    old = {"a": F("a", "a", {"x": 1}), "b": F("b", "b", {"x": 1}), "gone": F("gone", "g")}
    new = {
        "a": F("a", "a", {"x": 1}),
        "b": F("b", "b", {"x": 1, "y": 1}),  # same bytes, newer version: changed
        "added": F("added", "n"),
    }
    assert listing_changes(old, new) == {"b", "gone", "added"}
    assert listing_changes(new, new) == set()


def test_with_folders_adds_every_folder_above() -> None:
    assert with_folders(["a/b/c.txt", "a/d", "e"]) == {"a", "a/b", "a/b/c.txt", "a/d", "e"}


def test_assumed_local_is_the_agreed_content_of_the_folders_not_scanned() -> None:
    base = held(D("d", {"x": 1}), F("f", "file", {"x": 2}))
    base["gone"] = Base(deleted=gone("gone", {"x": 3}))
    found = assumed_local(["d", "f", "gone", "new"], base, scanned=lambda p: p == "f")
    assert found == {"d": here(D("d", {"x": 1}))}
