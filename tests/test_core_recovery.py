"""Taking back what this device's own head names (dropbeard.core.recovery), case by case."""

from __future__ import annotations

from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import Base, ConflictInfo
from dropbeard.core.recovery import highest_own_counter, recovered_bases

ME = "laptop"


def file_entry(path: str, sha: str, version: dict[str, int]) -> Entry:
    return Entry(
        path=path, type="file", mode=0o644, version=version, size=1, mtime_ns=1, sha256=sha * 64
    )


def gone(path: str, version: dict[str, int]) -> Delete:
    return Delete(path=path, type="file", version=version, sha256="d" * 64)


def test_a_published_entry_the_commit_missed_becomes_the_base() -> None:
    old = {"a.txt": Base(entry=file_entry("a.txt", "1", {ME: 1}))}
    edited, new = file_entry("a.txt", "2", {ME: 5}), file_entry("new.txt", "3", {ME: 6})

    assert recovered_bases(old, [edited, new], []) == {
        "a.txt": Base(entry=edited),
        "new.txt": Base(entry=new),
    }


def test_bases_that_already_agree_are_left_out() -> None:
    same = file_entry("a.txt", "1", {ME: 1})
    assert recovered_bases({"a.txt": Base(entry=same)}, [same], []) == {}


def test_a_delete_the_commit_missed_becomes_a_deleted_base() -> None:
    old = {"x.txt": Base(entry=file_entry("x.txt", "1", {ME: 1}))}
    deleted = gone("x.txt", {ME: 4})

    assert recovered_bases(old, [], [deleted]) == {"x.txt": Base(deleted=deleted)}


def test_a_path_deleted_then_published_again_is_agreed_as_published() -> None:
    again = file_entry("x.txt", "2", {ME: 7})

    got = recovered_bases({}, [again], [gone("x.txt", {ME: 4})])

    assert got == {"x.txt": Base(entry=again)}


def test_the_later_of_two_deletes_of_one_path_is_kept() -> None:
    first, second = gone("x.txt", {ME: 2}), gone("x.txt", {ME: 9, "desk": 1})
    assert recovered_bases({}, [], [first, second]) == {"x.txt": Base(deleted=second)}


def test_a_conflict_the_published_tree_resolved_is_settled() -> None:
    held = file_entry("c.txt", "1", {ME: 1})
    resolved = file_entry("c.txt", "4", {ME: 8, "desk": 3})
    old = {"c.txt": Base(entry=held, conflict=ConflictInfo(version={ME: 2, "desk": 3}))}

    assert recovered_bases(old, [resolved], []) == {"c.txt": Base(entry=resolved)}


def test_paths_neither_object_mentions_keep_their_base() -> None:
    """A path in conflict (left out of the tree) or deleted by another device's
    tombstone is not this device's to decide here: the pass reconciles it again."""
    mine = Base(entry=file_entry("c.txt", "1", {ME: 1}), conflict=ConflictInfo(version={ME: 2}))
    assert recovered_bases({"c.txt": mine}, [], []) == {}


def test_the_highest_own_counter_spans_entries_and_deletes() -> None:
    entries = [file_entry("a", "1", {ME: 3, "desk": 40}), file_entry("b", "2", {"desk": 2})]
    deletes = [gone("c", {ME: 11})]

    assert highest_own_counter(ME, entries, deletes) == 11
    assert highest_own_counter(ME, entries, []) == 3
    assert highest_own_counter("nobody", entries, deletes) == 0
    assert highest_own_counter(ME, [], []) == 0
