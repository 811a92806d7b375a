"""Updating a tree in a bucket: the result is the tree a build of the changed path map
makes, and only the nodes on changed paths are written; building from scratch streams
nodes out while paths arrive."""

from __future__ import annotations

import json
import tempfile
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import anyio
import msgspec
import pytest
from hypothesis import given, settings

from dropbeard.core.tree import TreeEntry
from dropbeard.store.base import Store
from dropbeard.store.counting import CountingStore
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.treewrite import build, update
from tests.test_tree_walk import three_levels, two_maps
from tests.treegen import dir_entry, file_entry, link_entry
from tests.treeio import (
    KEYS,
    bucket,
    build_map,
    fresh,
    in_tree_order,
    local_trees,
    put_node,
    read_map,
    run,
)

__all__ = ["bucket"]
Paths = dict[str, TreeEntry]
Changes = dict[str, TreeEntry | None]


def changes_between(before: Paths, after: Paths) -> Changes:
    """The changes a caller would hand `update`: every differing path, except those
    under a folder the changes delete or turn into something else."""
    changed: Changes = {
        p: after.get(p) for p in before.keys() | after.keys() if before.get(p) != after.get(p)
    }
    gone = {p for p, e in changed.items() if before.get(p, e) and (e is None or e.type != "dir")}
    return {p: e for p, e in changed.items() if not any(p.startswith(g + "/") for g in gone)}


async def tree_keys(store: Store) -> set[str]:
    return {o.key async for page in store.list(KEYS.trees_prefix) for o in page.objects}


@settings(deadline=None, max_examples=60)
@given(two_maps())
def test_update_makes_the_tree_a_build_makes_writing_only_its_new_nodes(
    maps: tuple[Paths, Paths],
) -> None:
    before, after = maps

    async def go(tmp: Path) -> None:
        trees, store = local_trees(tmp / "one")
        old = await build_map(trees, before)
        had = await tree_keys(store)
        store.reset()
        updater = fresh(trees)
        new = await update(updater, old, changes_between(before, after))
        written = await tree_keys(store) - had
        # a node of the new tree may be in the bucket already (an empty folder, say)
        assert store.counts["put_if_absent"] == len(written) + updater.stats.existed
        assert store.counts["put"] == updater.stats.existed

        other, other_store = local_trees(tmp / "two")
        assert new == await build_map(other, after)
        assert written == await tree_keys(other_store) - had
        assert await read_map(fresh(trees), new) == in_tree_order(after)

    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "one").mkdir()
        (Path(tmp) / "two").mkdir()
        run(go, Path(tmp))


# --- on every store ----------------------------------------------------------------------

pytestmark = pytest.mark.anyio


async def test_one_edit_three_folders_deep_rewrites_the_three_folders(
    bucket: CountingStore,
) -> None:
    paths = three_levels()
    root = await build_map(TreeStore(bucket, KEYS), paths)
    bucket.reset()
    edit = file_entry("f3.txt", "edited", 2)
    new = await update(TreeStore(bucket, KEYS), root, {"a1/b2/f3.txt": edit})
    assert bucket.counts["put_if_absent"] == 3  # a1/b2, a1 and the root
    assert bucket.counts["get"] == 3
    bucket.reset()
    added = file_entry("n3500x", "added")
    await update(TreeStore(bucket, KEYS), new, {"flat/n3500x": added})
    assert bucket.counts["put_if_absent"] == 3  # flat's page and top, the root
    assert bucket.counts["get"] == 3
    assert bucket.writes == 3


async def test_a_node_another_device_wrote_already_is_success(bucket: CountingStore) -> None:
    paths = three_levels(files=3)
    root = await build_map(TreeStore(bucket, KEYS), paths)
    edit = file_entry("f1.txt", "same edit on two devices", 2)
    first = await update(TreeStore(bucket, KEYS), root, {"a0/b0/f1.txt": edit})
    bucket.reset()
    second_device = TreeStore(bucket, KEYS)
    assert await update(second_device, root, {"a0/b0/f1.txt": edit}) == first
    assert second_device.stats.existed == 3
    assert bucket.counts["put"] == 3  # written again: gc sees them as new (SPEC 8.2)
    assert await read_map(fresh(second_device), first) == in_tree_order(
        paths | {"a0/b0/f1.txt": edit}
    )


async def test_folders_come_and_go_with_everything_in_them(bucket: CountingStore) -> None:
    trees = TreeStore(bucket, KEYS)
    paths = three_levels(files=2)
    root = await build_map(trees, paths)
    changes: Changes = {
        "a0": None,  # and all it holds
        "a1/b1": file_entry("b1", "a file where a folder was"),
        "a2/b0/f0.txt": dir_entry("f0.txt"),  # a folder where a file was
        "a2/b0/f0.txt/inner": link_entry("inner"),
        "new": dir_entry("new"),
        "new/deeper": dir_entry("deeper"),
        "new/deeper/x": file_entry("x", "x"),
        "flat": msgspec.structs.replace(paths["flat"], mode=0o700),  # keeps what it holds
    }
    new = await update(trees, root, changes)
    expected = {p: e for p, e in paths.items() if not p.startswith(("a0", "a1/b1/"))} | {
        p: e for p, e in changes.items() if e is not None
    }
    assert await read_map(fresh(trees), new) == in_tree_order(expected)


async def test_changes_needing_a_folder_the_tree_lacks_are_refused(
    bucket: CountingStore,
) -> None:
    trees = TreeStore(bucket, KEYS)
    root = await build_map(trees, three_levels(files=1))
    for changes in (
        {"nowhere/x": file_entry("x")},
        {"a0/b0/f0.txt/x": file_entry("x")},  # under a file
        {"a0": file_entry("a0"), "a0/b0/new": file_entry("new")},
        {"a0": None, "a0/b0/new": file_entry("new")},
        {"a0/x": file_entry("not x")},
    ):
        with pytest.raises(ValueError):
            await update(trees, root, changes)
    # deleting what is not there is nothing to do
    assert await update(trees, root, {"nowhere/x": None, "a0/gone": None}) == root


async def test_an_update_skips_nodes_its_cache_has_seen_in_the_bucket(tmp_path: Path) -> None:
    trees, store = local_trees(tmp_path, cache=True)
    paths = three_levels(files=2)
    root = await build_map(trees, paths)
    edit = file_entry("f1.txt", "v2", 2)
    new = await update(trees, root, {"a0/b0/f1.txt": edit})
    store.reset()
    again, _ = local_trees(tmp_path, cache=True)  # the next pass: a new process
    undo = await update(again, new, {"a0/b0/f1.txt": paths["a0/b0/f1.txt"]})
    assert undo == root
    assert store.writes == 0 and again.stats.skipped == 3
    assert store.counts["get"] == 0  # every node it needed was in the cache


# --- building --------------------------------------------------------------------------


class Uploads(ForwardingStore):
    """Sets `reached` once `count` create-only writes have succeeded."""

    def __init__(self, inner: Store, count: int) -> None:
        super().__init__(inner)
        self.left = count
        self.reached = anyio.Event()

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        etag = await super().put_if_absent(key, data, sha256=sha256)
        self.left -= 1
        if self.left <= 0:
            self.reached.set()
        return etag


async def test_build_uploads_nodes_while_paths_still_arrive(bucket: CountingStore) -> None:
    uploads = Uploads(bucket, 10)
    trees = TreeStore(uploads, KEYS)
    paths = three_levels(files=300)

    async def slowly() -> AsyncIterator[tuple[str, TreeEntry]]:
        for i, item in enumerate(in_tree_order(paths)):
            if i == len(paths) - 100:  # folders done are uploaded while this one waits
                with anyio.fail_after(20):
                    await uploads.reached.wait()
            yield item

    root = await build(trees, slowly())
    assert await read_map(fresh(trees), root) == in_tree_order(paths)


async def test_build_refuses_paths_out_of_tree_order(bucket: CountingStore) -> None:
    trees = TreeStore(bucket, KEYS)
    ordered = in_tree_order({"a": dir_entry("a"), "a/x": file_entry("x"), "a-b": file_entry("a-b")})
    with pytest.raises(ValueError, match="not in tree order"):
        await build(trees, sorted(ordered))  # string order: "a-b" before "a/x"
    with pytest.raises(ValueError, match="its folder is missing"):
        await build(trees, [("missing/x", file_entry("x"))])
    with pytest.raises(ValueError, match="named"):
        await build(trees, [("y", file_entry("x"))])
    assert await build(trees, []) == await update(trees, None, {})


def generated(folders: int, flat: int) -> Iterator[tuple[str, TreeEntry]]:
    """A tree made on the fly, in tree order: `folders` folders of 100 files, and one
    folder of `flat` files."""
    for f in range(folders):
        yield f"f{f:04}", dir_entry(f"f{f:04}")
        for i in range(100):
            yield f"f{f:04}/n{i:03}", file_entry(f"n{i:03}", f"{f}/{i}")
    yield "flat", dir_entry("flat")
    for i in range(flat):
        yield f"flat/n{i:05}", file_entry(f"n{i:05}", str(i))


@pytest.mark.slow
async def test_build_holds_a_folder_at_a_time_not_every_path(tmp_path: Path) -> None:
    trees, _ = local_trees(tmp_path)
    tracemalloc.start()
    try:
        every_path = list(generated(250, 25_000))
        holding_all = tracemalloc.get_traced_memory()[0]
        del every_path
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        await build(trees, generated(250, 25_000))
        peak = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    assert peak < holding_all / 3, (peak, holding_all)


async def test_trees_another_writer_paged_differently_are_read_and_updated_canonically(
    bucket: CountingStore,
) -> None:
    files = {f"n{i:04}": file_entry(f"n{i:04}", str(i)) for i in range(1500)}
    plain = [json.loads(msgspec.json.encode(e)) for e in files.values()]
    unpaged = await put_node(bucket, {"format": 2, "entries": plain})  # ~300 KiB, one node
    halves = [
        await put_node(bucket, {"format": 2, "entries": plain[:700]}),
        await put_node(
            bucket,
            {
                "format": 2,
                "pages": [
                    {
                        "first": "n0700",
                        "tree": (await put_node(bucket, {"format": 2, "entries": plain[700:]})),
                    }
                ],
            },
        ),
    ]
    uneven = await put_node(  # one page a leaf, the other an index: depth not uniform
        bucket,
        {
            "format": 2,
            "pages": [{"first": "n0000", "tree": halves[0]}, {"first": "n0700", "tree": halves[1]}],
        },
    )
    added = file_entry("n0500x", "new")
    expected = await build_map(TreeStore(bucket, KEYS), files | {"n0500x": added})
    for top in (unpaged, uneven):
        trees = TreeStore(bucket, KEYS)
        assert await read_map(trees, top) == sorted(files.items())
        assert await update(trees, top, {"n0500x": added}) == expected
