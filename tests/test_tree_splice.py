"""Changing a paged directory reads only the nodes on the changed names' paths (plus a
neighbour where a cut moves) and still makes exactly what a build from scratch makes;
an update of one file in a folder of 40,000 reads and writes one node per level, and the
other device's diff of that change reads one node per level of each side."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.tree import FORMAT, Node, Page, TreeEntry
from dropbeard.core.treepages import FANOUT, apply_changes, build_directory
from dropbeard.core.treesplice import COUNT_BATCH, UnevenPages, splice_directory
from dropbeard.sync.treeread import diff
from dropbeard.sync.treewrite import update
from tests.treegen import decode, leaf_pages, shape_of, splice
from tests.treeio import build_map, local_trees

Changes = dict[str, TreeEntry | None]


def link(name: str, target: str = "t", counter: int = 1) -> TreeEntry:
    return TreeEntry(name=name, type="symlink", target=target, mode=0, version={"p": counter})


def listing(count: int) -> list[TreeEntry]:
    return [link(f"e{i}") for i in range(count)]


#: Directories of every shape a change meets: just paged, one index, two levels of index.
SIZES = (FANOUT + 1, 700, 5000, 40_000)
_BUILT = {n: build_directory(listing(n)) for n in SIZES}
_NODES = {n: dict(b.nodes) for n, b in _BUILT.items()}


def levels(count: int) -> int:
    """Nodes on one name's path in the directory of `count` entries (top to leaf)."""
    shape = shape_of(_NODES[count], _BUILT[count].key)
    assert shape is not None
    return len(shape.levels) + 1


names = st.integers(0, 40_100).map(lambda i: f"e{i}") | st.sampled_from(["a", "zz", "e1x"])
changes_lists = st.dictionaries(
    names, st.one_of(st.none(), st.sampled_from(["new", "v2"])), min_size=1, max_size=5
)


def _changes(raw: dict[str, str | None]) -> Changes:
    return {n: None if t is None else link(n, t, 2) for n, t in raw.items()}


@settings(deadline=None, max_examples=150)
@given(st.sampled_from(SIZES), changes_lists)
def test_a_splice_is_byte_identical_to_a_build_from_scratch(
    count: int, raw: dict[str, str | None]
) -> None:
    nodes, built, changes = _NODES[count], _BUILT[count], _changes(raw)
    result, read = splice(nodes, built.key, changes)
    expected = build_directory(apply_changes(listing(count), changes))
    assert result.key == expected.key
    assert result.top == expected.top
    assert not set(dict(result.nodes)) & set(nodes)  # what it calls new is new
    whole = nodes | dict(result.nodes)
    assert leaf_pages(whole, result.key) == leaf_pages(dict(expected.nodes), expected.key)
    if len(changes) == 1:  # a neighbour per level where a cut moves; more only to count
        counting = COUNT_BATCH if None in changes.values() else 0
        assert len(read) + 1 <= levels(count) + 2 + counting, (len(read), levels(count))


_EDGE = build_directory(listing(4160))  # 131 leaf pages: two index pages under a top


@settings(deadline=None, max_examples=60)
@given(
    st.sampled_from([FANOUT + 30, 4120, 4160]),
    st.integers(0, 4200),
    st.integers(1, 400),
    st.sampled_from(["delete", "insert"]),
)
def test_runs_of_changes_across_the_edges_of_levels_equal_a_build(
    count: int, start: int, length: int, kind: str
) -> None:
    """Around FANOUT entries, and around FANOUT leaf pages (where a level of index comes
    or goes), deleting or inserting a run of names equals a build from scratch."""
    built = _EDGE if count == 4160 else build_directory(listing(count))
    nodes = dict(built.nodes)
    if kind == "delete":
        changes: Changes = {f"e{i}": None for i in range(start, start + length)}
    else:
        changes = {f"e{start}y{i}": link(f"e{start}y{i}") for i in range(length)}
    result, _ = splice(nodes, built.key, changes)
    expected = build_directory(apply_changes(listing(count), changes))
    assert result.key == expected.key
    whole = nodes | dict(result.nodes)
    assert leaf_pages(whole, result.key) == leaf_pages(dict(expected.nodes), expected.key)


@settings(deadline=None, max_examples=80)
@given(st.sampled_from(SIZES[2:]), names, st.sampled_from(["insert", "edit"]))
def test_one_insert_or_edit_reads_the_path_and_at_most_two_nodes_more(
    count: int, name: str, kind: str
) -> None:
    name = name + "x" if kind == "insert" else name
    nodes, built = _NODES[count], _BUILT[count]
    result, read = splice(nodes, built.key, {name: link(name, "new", 2)})
    assert len(read) + 1 <= levels(count) + 2
    # one node per level, two where a cut moved
    assert len(result.nodes) <= 2 * levels(count)


def test_an_edit_in_forty_thousand_reads_and_writes_one_node_per_level() -> None:
    nodes, built = _NODES[40_000], _BUILT[40_000]
    assert levels(40_000) == 3  # a top, index pages, leaf pages
    for name in ("e0", "e20000", "e39999"):
        result, read = splice(nodes, built.key, {name: link(name, "new", 2)})
        assert len(read) == 2  # the index page and the leaf page on its path
        assert len(result.nodes) == 3


def test_deleting_down_to_fanout_makes_one_node_of_the_directory() -> None:
    count = FANOUT + 40
    nodes, built = dict(build_directory(listing(count)).nodes), build_directory(listing(count))
    gone: Changes = {f"e{i}": None for i in range(40)}
    result, _ = splice(nodes, built.key, gone)
    node = decode(dict(result.nodes), result.key)
    assert node.entries is not None and len(node.entries) == FANOUT


def test_a_level_shrinking_to_fanout_pages_becomes_the_top() -> None:
    # 5000 entries: ~156 leaf pages under a couple of index pages; deleting whole pages
    # until FANOUT or fewer remain makes the top index the leaf pages directly
    entries = listing(5000)
    built = build_directory(entries)
    nodes = dict(built.nodes)
    pages = leaf_pages(nodes, built.key)
    drop: Changes = {e.name: None for page in pages[: len(pages) - FANOUT] for e in page}
    result, _ = splice(nodes, built.key, drop)
    expected = build_directory(apply_changes(entries, drop))
    assert result.key == expected.key
    top = decode(dict(result.nodes) | nodes, result.key)
    assert top.pages is not None and len(top.pages) <= FANOUT
    assert decode(dict(result.nodes) | nodes, top.pages[0].tree).entries is not None


def test_a_top_growing_past_fanout_gets_a_level_of_index() -> None:
    entries = listing(3000)  # ~94 leaf pages: one top over them
    built = build_directory(entries)
    added: Changes = {f"f{i}": link(f"f{i}") for i in range(2000)}
    result, _ = splice(dict(built.nodes), built.key, added)
    assert result.key == build_directory(apply_changes(entries, added)).key


def test_leaf_pages_at_different_depths_are_not_spliced() -> None:
    small = build_directory(listing(FANOUT + 1))  # an index over leaf pages
    leaf = next(k for k, d in small.nodes if decode(dict(small.nodes), k).entries)
    nodes = {k: decode(dict(small.nodes), k) for k, _ in small.nodes}
    mixed = Node(format=FORMAT, pages=[Page("a", small.key), Page("z", leaf)])
    nodes["top"] = mixed
    with pytest.raises(UnevenPages):
        splice_directory("top", nodes, {"a1": link("a1"), "z1": link("z1")}, 8)
    with pytest.raises(UnevenPages):
        splice_directory("top", nodes, {"a1": link("a1")}, max_levels=1)


# --- through the bucket ------------------------------------------------------------------

pytestmark = pytest.mark.anyio


async def test_an_update_in_a_flat_folder_of_forty_thousand_reads_its_path(
    tmp_path: Path,
) -> None:
    files = {f"flat/{e.name}": e for e in listing(40_000)}
    folder = {"flat": TreeEntry(name="flat", type="dir", mode=0o755, version={"p": 1})}
    trees, _ = local_trees(tmp_path)
    root = await build_map(trees, folder | files)
    edited = link("e20000", "new", 2)
    writer, store = local_trees(tmp_path)
    new = await update(writer, root, {"flat/e20000": edited})
    # root, flat's top, its index page, its leaf page: read once each, written once each
    assert store.counts["get"] == 4, store.counts
    assert store.counts["put_if_absent"] == 4, store.counts

    reader, store = local_trees(tmp_path)
    assert [d async for d in diff(reader, root, new)] == [
        ("flat/e20000", files["flat/e20000"], edited)
    ]
    assert store.counts["get"] == 8, store.counts  # the same four nodes on each side
