"""Walking, looking up and diffing trees in a bucket: a tree built from a path map reads
back as that map, and `diff(a, b)` is exactly the difference of the two maps, reading
only the nodes on changed paths."""

from __future__ import annotations

import tempfile
from pathlib import Path

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.tree import TreeEntry
from dropbeard.core.treediff import tree_order
from dropbeard.store.counting import CountingStore
from dropbeard.sync.treeread import diff, lookup, walk
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.treewrite import build
from tests.format2 import File, Folder, Link, Writer
from tests.treegen import dir_entry, file_entry, link_entry, names, path_maps
from tests.treeio import (
    KEYS,
    bare,
    bucket,
    build_map,
    fresh,
    in_tree_order,
    local_trees,
    read_map,
    run,
)

__all__ = ["bucket"]
Paths = dict[str, TreeEntry]


def with_big_folder(paths: Paths, count: int, name: str = "big") -> Paths:
    """`paths` plus a folder of `count` files (paged when over 128)."""
    if count:
        paths = dict(paths)
        paths[name] = dir_entry(name)
        for i in range(count):
            paths[f"{name}/n{i}"] = file_entry(f"n{i}", str(i % 3))
    return paths


@settings(deadline=None, max_examples=60)
@given(path_maps(), st.sampled_from([0, 0, 3, 300, 700]))
def test_a_built_tree_walks_back_as_its_path_map(paths: Paths, big: int) -> None:
    paths = with_big_folder(paths, big)

    async def go(tmp: Path) -> None:
        trees, _ = local_trees(tmp)
        root = await build_map(trees, paths)
        assert await read_map(fresh(trees), root) == in_tree_order(paths)

    with tempfile.TemporaryDirectory() as tmp:
        run(go, Path(tmp))


@st.composite
def two_maps(draw: st.DrawFn) -> tuple[Paths, Paths]:
    """A tree, and the same tree after deletes (subtrees with them), edits, type
    changes and additions."""
    before = with_big_folder(draw(path_maps()), draw(st.sampled_from([0, 300, 600])))
    after = dict(before)
    for path in draw(st.lists(st.sampled_from(sorted(before)), max_size=5)) if before else []:
        if path not in after:
            continue  # went with its folder
        action = draw(st.sampled_from(["delete", "edit", "retype"]))
        name = path.rpartition("/")[2]
        if action == "delete" or (action == "retype" and before[path].type == "dir"):
            for other in [p for p in after if p == path or p.startswith(path + "/")]:
                del after[other]
        if action == "edit":
            entry = after[path]
            after[path] = msgspec.structs.replace(entry, version={"laptop": 9}, mode=0o600)
        if action == "retype":
            after[path] = dir_entry(name) if before[path].type != "dir" else link_entry(name)
    for path, entry in draw(path_maps(max_dirs=3, max_files=6)).items():
        parent = path.rpartition("/")[0]
        if path not in after and (not parent or getattr(after.get(parent), "type", "") == "dir"):
            after[path] = entry
    for name in draw(st.lists(names, max_size=3)):
        if getattr(after.get("big"), "type", "") == "dir" and f"big/{name}" not in after:
            after[f"big/{name}"] = file_entry(name, "new")
    return before, after


@settings(deadline=None, max_examples=60)
@given(two_maps())
def test_diff_is_the_difference_of_the_two_path_maps(maps: tuple[Paths, Paths]) -> None:
    before, after = maps
    expected = [
        (path, before.get(path), after.get(path))
        for path in sorted(before.keys() | after.keys(), key=tree_order)
        if before.get(path) != after.get(path)
    ]

    async def go(tmp: Path) -> None:
        trees, _ = local_trees(tmp)
        old, new = await build_map(trees, before), await build_map(trees, after)
        found = [
            (path, a and bare(a), b and bare(b))
            async for path, a, b in diff(fresh(trees), old, new)
        ]
        assert found == expected
        backwards = [
            (path, a and bare(a), b and bare(b))
            async for path, a, b in diff(fresh(trees), new, old)
        ]
        assert backwards == [(path, b, a) for path, a, b in expected]

    with tempfile.TemporaryDirectory() as tmp:
        run(go, Path(tmp))


# --- on every store ----------------------------------------------------------------------

pytestmark = pytest.mark.anyio


def three_levels(files: int = 10) -> Paths:
    paths: Paths = {}
    for a in range(3):
        paths[f"a{a}"] = dir_entry(f"a{a}")
        for b in range(3):
            paths[f"a{a}/b{b}"] = dir_entry(f"b{b}")
            for c in range(files):
                paths[f"a{a}/b{b}/f{c}.txt"] = file_entry(f"f{c}.txt", f"{a}{b}{c}")
    return with_big_folder(paths, 3000, "flat")  # ~94 pages: one index


async def test_walk_and_lookup_on_a_store(bucket: CountingStore) -> None:
    trees = TreeStore(bucket, KEYS)
    paths = three_levels()
    root = await build_map(trees, paths)
    reader = TreeStore(bucket, KEYS)
    assert await read_map(reader, root) == in_tree_order(paths)
    assert await lookup(reader, root, "a1/b2/f3.txt") == paths["a1/b2/f3.txt"]
    assert await lookup(reader, root, "flat/n2321") == paths["flat/n2321"]
    found = await lookup(reader, root, "a1")
    assert found is not None and bare(found) == paths["a1"] and found.tree is not None
    for missing in ("a1/b2/nope", "nope", "a1/b2/f3.txt/below", "flat/n23210", "flat/0"):
        assert await lookup(reader, root, missing) is None


async def test_a_diff_reads_only_the_nodes_on_changed_paths(bucket: CountingStore) -> None:
    trees = TreeStore(bucket, KEYS)
    before = three_levels()
    after = dict(before)
    after["a1/b2/f3.txt"] = file_entry("f3.txt", "edited", 2)
    after["flat/n3500x"] = file_entry("n3500x", "added")  # its page is not full
    old, new = await build_map(trees, before), await build_map(trees, after)
    bucket.reset()
    found = [(p, a, b) async for p, a, b in diff(TreeStore(bucket, KEYS), old, new)]
    assert [(p, a and bare(a), b and bare(b)) for p, a, b in found] == [
        ("a1/b2/f3.txt", before["a1/b2/f3.txt"], after["a1/b2/f3.txt"]),
        ("flat/n3500x", None, after["flat/n3500x"]),
    ]
    # both sides of: the root, a1, a1/b2; flat's top index and the one leaf page changed
    assert bucket.counts["get"] == 2 * 3 + 2 * 2
    assert bucket.writes == 0


async def test_a_diff_with_nothing_on_one_side_lists_the_whole_other_side(
    bucket: CountingStore,
) -> None:
    trees = TreeStore(bucket, KEYS)
    paths = three_levels(files=2)
    root = await build_map(trees, paths)
    added = [(p, a, b and bare(b)) async for p, a, b in diff(fresh(trees), None, root)]
    assert added == [(p, None, e) for p, e in in_tree_order(paths)]
    removed = [(p, a and bare(a), b) async for p, a, b in diff(fresh(trees), root, None)]
    assert removed == [(p, e, None) for p, e in in_tree_order(paths)]
    assert [d async for d in diff(fresh(trees), root, root)] == []


async def test_a_folder_removed_or_turned_into_a_file_lists_everything_it_held(
    bucket: CountingStore,
) -> None:
    trees = TreeStore(bucket, KEYS)
    before = three_levels(files=2)
    after = {p: e for p, e in before.items() if not p.startswith("a0")}
    after["a0"] = file_entry("a0", "now a file")
    old, new = await build_map(trees, before), await build_map(trees, after)
    found = [(p, a is not None, b is not None) async for p, a, b in diff(fresh(trees), old, new)]
    gone = [p for p in in_tree_order(before) if p[0].startswith("a0/")]
    assert found == [("a0", True, True)] + [(p, True, False) for p, _ in gone]


async def test_a_tree_from_the_independent_writer_reads_back_and_builds_to_the_same_key(
    bucket: CountingStore,
) -> None:
    written: dict[str, bytes] = {}
    big = Folder({f"p{i}.jpg": File(b"%d" % i) for i in range(700)})
    docs = Folder({"a.md": File(b"a"), "link": Link("../a.md"), "\u00e9t\u00e9": Folder()})
    writer = Writer(put=written.__setitem__, root_id=KEYS.root_id)
    root = writer.directory(Folder({"docs": docs, "big": big, "empty": Folder()}))
    for key, data in written.items():
        await bucket.put(key, data)
    trees = TreeStore(bucket, KEYS)
    read = [(path, entry) async for path, entry in walk(trees, root)]
    assert [p for p, _ in read][:4] == ["big", "big/p0.jpg", "big/p1.jpg", "big/p10.jpg"]
    assert len(read) == 1 + 700 + 1 + 3 + 1  # big and its files, docs and its 3, empty
    assert await build(TreeStore(bucket, KEYS), [(p, bare(e)) for p, e in read]) == root
