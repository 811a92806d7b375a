"""What a plan changes in this device's published tree (dropbeard.core.treechanges): the
listed entries that differ from what the bases published, a full reconcile's leftovers,
the paths no longer tracked, the file count and bytes they move, and the paths a tree
cannot hold (pure)."""

from __future__ import annotations

from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import Base, ConflictInfo, Plan, publishable
from dropbeard.core.treechanges import tree_changes
from tests.test_reconcile_cases import D, F


def agreed(*entries: Entry) -> dict[str, Base]:
    return {e.path: Base(entry=e) for e in entries}


A1, A2 = F("a.txt", "one", {"pc": 1}), F("a.txt", "two!", {"pc": 2})
DOCS, NOTE = D("docs", {"pc": 1}), F("docs/note.md", "note", {"pc": 1})


def test_only_entries_that_differ_from_the_bases_are_changes() -> None:
    base = agreed(A1, DOCS, NOTE)
    plan = Plan(publishes=True, listing={"a.txt": A2, "docs": DOCS, "docs/note.md": NOTE})

    found = tree_changes(plan, base)

    assert found.changes == {"a.txt": (A1, A2)}
    assert found.tree_entries() == {"a.txt": found.tree_entries()["a.txt"]}
    entry = found.tree_entries()["a.txt"]
    assert entry is not None and (entry.name, entry.sha256) == ("a.txt", A2.sha256)
    assert (found.files, found.bytes) == (0, 1)  # "two!" is one byte longer
    assert found.orphans == []


def test_adds_and_removals_count_files_and_bytes() -> None:
    base = agreed(A1, DOCS, NOTE)
    new = F("docs/new.md", "brand new", {"pc": 3})
    plan = Plan(publishes=True, listing={"a.txt": None, "docs/new.md": new})

    found = tree_changes(plan, base)

    assert found.changes == {"a.txt": (A1, None), "docs/new.md": (None, new)}
    assert found.tree_entries()["a.txt"] is None
    assert (found.files, found.bytes) == (0, len("brand new") - len("one"))


def test_a_complete_listing_removes_what_it_leaves_out() -> None:
    """A full reconcile names every path it lists: a path its bases published that it
    does not list leaves the tree."""
    base = agreed(A1, DOCS, NOTE)
    plan = Plan(publishes=True, complete=True, listing={"a.txt": A1, "docs": DOCS})

    found = tree_changes(plan, base)

    assert found.changes == {"docs/note.md": (NOTE, None)}
    assert (found.files, found.bytes) == (-1, -len("note"))


def test_paths_no_longer_tracked_leave_the_tree() -> None:
    plan = Plan(publishes=True, complete=True, listing={"a.txt": A1})
    found = tree_changes(plan, agreed(A1), untracked=agreed(F("x.log", "log", {"pc": 1})))
    assert list(found.changes) == ["x.log"] and found.changes["x.log"][1] is None


def test_what_the_bases_do_not_publish_is_not_in_the_tree() -> None:
    """A deleted path, or a file in conflict, was not in the last tree: listing it again
    as nothing changes nothing."""
    gone = Base(deleted=Delete(path="gone.txt", type="file", version={"pc": 2}))
    info = ConflictInfo(version={"pc": 2, "other": 1}, local=A1)
    base = {"gone.txt": gone, "a.txt": Base(entry=A1, conflict=info)}
    plan = Plan(publishes=True, listing={"gone.txt": None, "a.txt": None})

    assert tree_changes(plan, base).changes == {}


def test_a_folder_in_conflict_stays_listed_for_what_it_holds() -> None:
    """SPEC 4.4 leaves a conflicting path out of the tree; a folder kept against a file
    that was to replace it still holds synced paths, which a tree lists only under it."""
    kept = Base(entry=DOCS, conflict=ConflictInfo(version={"pc": 1, "b": 2}, local=DOCS))
    assert publishable(kept) == DOCS
    edited = F("docs/note.md", "edited", {"pc": 2})
    plan = Plan(publishes=True, listing={"docs": DOCS, "docs/note.md": edited})

    found = tree_changes(plan, {"docs": kept, **agreed(NOTE)})

    assert found.changes == {"docs/note.md": (NOTE, edited)} and found.orphans == []


def test_a_path_whose_folder_is_not_listed_is_left_out_not_published_orphaned() -> None:
    """A tree lists a path only under its folders: an entry whose folder the new tree
    does not hold as a folder is left out (and its old entry removed with it)."""
    base = agreed(F("f", "a file", {"pc": 1}), NOTE)
    below_a_file = F("f/x", "x", {"pc": 2})
    lost_folder = F("docs/note.md", "edited", {"pc": 2})
    plan = Plan(publishes=True, listing={"f/x": below_a_file, "docs/note.md": lost_folder})

    found = tree_changes(plan, base)

    assert found.orphans == ["docs/note.md", "f/x"]
    assert found.changes == {"docs/note.md": (NOTE, None)}
    assert (found.files, found.bytes) == (-1, -len("note"))


def test_a_complete_listing_is_compared_with_the_last_tree_itself_when_given() -> None:
    """Bases taken back from the bucket may not publish what the last tree lists: a full
    reconcile's listing is then compared with that tree's entries (`previous`)."""
    stale = F("stale.txt", "stale", {"pc": 1})
    gone = Base(deleted=Delete(path="stale.txt", type="file", version={"pc": 2}))
    plan = Plan(publishes=True, complete=True, listing={"a.txt": A2, "stale.txt": None})
    base = {**agreed(A1), "stale.txt": gone}

    assert tree_changes(plan, base).changes == {"a.txt": (A1, A2)}  # stale.txt: unseen
    found = tree_changes(plan, base, previous={"a.txt": A1, "stale.txt": stale})
    assert found.changes == {"a.txt": (A1, A2), "stale.txt": (stale, None)}
    assert (found.files, found.bytes) == (-1, 1 - len("stale"))
