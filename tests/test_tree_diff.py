"""Differences between two listings of a directory, tree order, and the conversions
between path-keyed format-1 entries and name-keyed tree entries (pure)."""

from __future__ import annotations

import msgspec
from hypothesis import given
from hypothesis import strategies as st

from dropbeard.core.chunking import Chunk
from dropbeard.core.model import Entry
from dropbeard.core.tree import TreeEntry
from dropbeard.core.treediff import diff_entries, same_entry, to_entry, to_tree_entry, tree_order
from tests.treegen import file_entry, leaf_entries, names, sha

listings = st.lists(names, unique=True, max_size=10).flatmap(
    lambda ns: st.tuples(*map(leaf_entries, ns))
)


@given(listings, listings)
def test_diff_entries_is_the_difference_of_the_two_name_maps(
    old: tuple[TreeEntry, ...], new: tuple[TreeEntry, ...]
) -> None:
    a = {e.name: e for e in old}
    b = {e.name: e for e in new}
    found = list(diff_entries(sorted(old, key=lambda e: e.name), sorted(new, key=lambda e: e.name)))
    expected = [
        (n, a.get(n), b.get(n)) for n in sorted(a.keys() | b.keys()) if a.get(n) != b.get(n)
    ]
    assert found == expected


def test_tree_order_puts_a_folder_before_its_siblings_that_sort_between() -> None:
    paths = ["a-b", "a/c", "a", "a/c/d", "a.txt", "b"]
    assert sorted(paths) == ["a", "a-b", "a.txt", "a/c", "a/c/d", "b"]  # as strings
    assert sorted(paths, key=tree_order) == ["a", "a/c", "a/c/d", "a-b", "a.txt", "b"]


def test_a_folder_is_the_same_entry_whatever_its_contents() -> None:
    folder = TreeEntry(name="d", type="dir", mode=0o755, version={"pc": 1}, tree=sha("1"))
    assert same_entry(folder, msgspec.structs.replace(folder, tree=sha("2")))
    assert not same_entry(folder, msgspec.structs.replace(folder, mode=0o700, tree=sha("2")))
    assert not same_entry(file_entry("a", "x"), file_entry("a", "y"))


def test_format_1_entries_convert_to_tree_entries_and_back() -> None:
    entries = [
        Entry(
            path="docs/a.md",
            type="file",
            mode=0o644,
            version={"pc": 2},
            size=3,
            mtime_ns=7,
            sha256=sha("abc"),
        ),
        Entry(path="docs", type="dir", mode=0o755, version={"pc": 1}),
        Entry(path="docs/link", type="symlink", mode=0o777, version={"pc": 1}, target="a.md"),
    ]
    for entry in entries:
        key = sha("node") if entry.type == "dir" else None
        converted = to_tree_entry(entry, key)
        assert converted.name == entry.path.rpartition("/")[2]
        assert converted.tree == key
        assert to_entry(entry.path, converted) == entry


def test_a_chunk_list_survives_the_way_into_a_tree_entry_and_back() -> None:
    chunks = [Chunk(sha("1"), 10 << 20), Chunk(sha("2"), 7 << 20)]
    entry = Entry(
        path="films/big.iso",
        type="file",
        mode=0o644,
        version={"pc": 2},
        size=17 << 20,
        mtime_ns=5,
        sha256=sha("big"),
        chunks=chunks,
    )
    as_node = to_tree_entry(entry)
    assert as_node.name == "big.iso" and as_node.chunks == chunks
    assert to_entry("films/big.iso", as_node) == entry
