"""Reachability: marking from root trees reaches every node (pages included), blob and
chunk, reads each distinct node once across snapshots, and, against a listing, names
what is missing or corrupt with the paths that reference it."""

from __future__ import annotations

import pytest

from dropbeard.sync.reach import Marker, list_contents
from tests.format2 import sha256
from tests.history import KEYS, File, Folder, World, blob_key, world

__all__ = ["world"]
pytestmark = pytest.mark.anyio


def notes(n: int = 3, extra: bytes = b"") -> Folder:
    docs = Folder({f"d{i}.md": File(f"doc {i}".encode()) for i in range(n)})
    return Folder(
        {"a.txt": File(b"alpha" + extra), "docs": docs, "deep": Folder({"x": Folder({})})}
    )


async def test_marking_reaches_every_node_and_blob_of_a_tree(world: World) -> None:
    big = Folder({f"n{i:04d}": File(str(i).encode()) for i in range(700)})  # paged
    root = await world.publish("laptop", Folder({"big": big, "n": notes()}), "20260101T000000Z")
    listed = await list_contents(world.store, KEYS)
    marker = Marker(world.trees())
    await marker.mark([("laptop head", root)])
    assert marker.nodes == listed.listing.trees  # every node, index and pages included
    assert marker.blobs == set(listed.listing.blobs)
    assert len(marker.blobs) == 700 + 4
    assert marker.findings == {}


async def test_a_chunked_file_reaches_each_of_its_chunks(world: World) -> None:
    data = bytes(range(256)) * (17 * 4096)  # 17 MiB: stored as chunks
    root = await world.publish("laptop", Folder({"big.bin": File(data)}), "20260101T000000Z")
    marker = Marker(world.trees())
    await marker.mark([("laptop head", root)])
    chunks = {sha256(data[i : i + (4 << 20)]) for i in range(0, len(data), 4 << 20)}
    assert marker.blobs == chunks
    assert sha256(data) not in marker.blobs  # the whole file's digest is no blob


async def test_snapshots_sharing_subtrees_read_each_node_once(world: World) -> None:
    roots = []
    for day in range(1, 8):  # one file changes a day: one folder and the root change
        roots.append(
            await world.publish("laptop", notes(30, bytes([day])), f"202601{day:02d}T000000Z")
        )
    listed = await list_contents(world.store, KEYS)
    trees = world.trees()
    marker = Marker(trees)
    await marker.mark((f"laptop {i}", r) for i, r in enumerate(roots))
    assert marker.nodes == listed.listing.trees
    assert trees.stats.fetched == len(listed.listing.trees)  # not 7 walks: 7 roots + shared
    assert len(listed.listing.trees) == 7 + 3  # a root a day; docs, deep, deep/x once
    fetched = trees.stats.fetched
    await marker.mark([("again", roots[-1])])
    assert trees.stats.fetched == fetched  # marked already: nothing read


async def test_a_listing_names_missing_and_corrupt_objects_with_their_paths(
    world: World,
) -> None:
    root = await world.publish("laptop", notes(), "20260101T000000Z")
    trees = world.trees()
    docs = next(e for e in (await trees.node(root)).entries or () if e.name == "docs").tree
    assert docs is not None
    await world.store.inner.delete(blob_key(b"alpha"))
    await world.store.inner.put(blob_key(b"doc 1"), b"doc 1 but longer")
    listed = await list_contents(world.store, KEYS)
    await world.store.inner.delete(KEYS.tree(docs))
    listed_after = await list_contents(world.store, KEYS)
    marker = Marker(world.trees(), listing=listed_after.listing)
    await marker.mark([("laptop head", root)])
    lines = sorted(f.line() for f in marker.findings.values())
    assert lines == sorted(
        [
            f"blob {blob_key(b'alpha')}: missing; referenced by a.txt (laptop head)",
            f"tree {KEYS.tree(docs)}: missing; referenced by docs (laptop head)",
        ]
    )
    assert not marker.complete
    # the node listed but gone, and a blob of the wrong size, under the older listing
    marker = Marker(world.trees(), listing=listed.listing)
    await marker.mark([("laptop head", root)])
    assert marker.findings[KEYS.tree(docs)].problem == "missing"


async def test_a_blob_of_the_wrong_size_and_a_node_with_other_bytes_are_corrupt(
    world: World,
) -> None:
    root = await world.publish("laptop", notes(), "20260101T000000Z")
    trees = world.trees()
    deep = next(e for e in (await trees.node(root)).entries or () if e.name == "deep").tree
    assert deep is not None
    await world.store.inner.put(blob_key(b"doc 1"), b"doc 1 but longer")
    await world.store.inner.put(KEYS.tree(deep), b'{"format":2,"entries":[]}')
    listed = await list_contents(world.store, KEYS)
    marker = Marker(world.trees(), listing=listed.listing)
    await marker.mark([("laptop head", root)])
    blob = marker.findings[blob_key(b"doc 1")]
    assert blob.problem == "corrupt: 16 bytes, not 5"
    assert [str(w) for w in blob.where] == ["docs/d1.md (laptop head)"]
    node = marker.findings[KEYS.tree(deep)]
    assert node.problem.startswith("corrupt: ") and KEYS.tree(deep) in node.problem
    assert [str(w) for w in node.where] == ["deep (laptop head)"]


async def test_listing_counts_keys_that_are_no_node_or_blob_and_leaves_them(
    world: World,
) -> None:
    await world.publish("laptop", notes(), "20260101T000000Z")
    await world.store.inner.put(KEYS.trees_prefix + "zz/notes.txt", b"hello")
    listed = await list_contents(world.store, KEYS, keep=True)
    assert listed.strays == 1
    assert all("notes.txt" not in o.key for o in listed.trees)


async def test_light_marking_reaches_the_same_and_refuses_other_bytes(world: World) -> None:
    big = Folder({f"n{i:04d}": File(str(i).encode()) for i in range(300)})
    data = bytes(range(256)) * (17 * 4096)
    root = await world.publish(
        "laptop", Folder({"big": big, "n": notes(), "c": File(data)}), "20260101T000000Z"
    )
    strict, light = Marker(world.trees()), Marker(world.trees(), light=True)
    await strict.mark([("laptop head", root)])
    await light.mark([("laptop head", root)])
    assert (light.nodes, light.blobs) == (strict.nodes, strict.blobs)
    assert light.read == len(light.nodes)
    deep = next(e.tree for e in (await world.trees().node(root)).entries or () if e.name == "n")
    assert deep is not None
    await world.store.inner.put(KEYS.tree(deep), b'{"format":2,"entries":[]}')
    light = Marker(world.trees(), light=True)
    await light.mark([("laptop head", root)])
    assert light.findings[KEYS.tree(deep)].problem.startswith("corrupt: ")
    assert not light.complete
