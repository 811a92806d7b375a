"""verify: the structural check from one listing of trees/ and blobs/ (no HEAD or GET per
object), `--full` re-hashing what it reaches, `--sample` a share, `--all` every snapshot;
missing and corrupt objects named with the paths that reference them."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.verify import verify_bucket
from tests.history import KEYS, File, Folder, World, blob_key, world

__all__ = ["world"]
pytestmark = pytest.mark.anyio


def folder(version: bytes = b"1") -> Folder:
    return Folder(
        {
            "a.txt": File(b"alpha " + version),
            "docs": Folder({f"d{i}.md": File(f"doc {i}".encode()) for i in range(10)}),
        }
    )


async def test_a_complete_bucket_verifies_from_one_listing(world: World) -> None:
    await world.publish("laptop", folder(), "20260101T000000Z")
    await world.publish("desk", folder(b"2"), "20260101T000000Z")
    world.store.counts.clear()
    report = await verify_bucket(world.store, KEYS, world.trees())
    assert report.ok and report.findings == []
    assert (report.roots, report.nodes, report.blobs) == (2, 4, 12)  # versions differ
    assert world.store.counts["head"] == 0  # no HEAD per object
    assert world.store.counts["get"] == 4  # the nodes (the heads by conditional GET)


async def test_full_finds_flipped_bytes_the_structural_check_cannot_see(world: World) -> None:
    await world.publish("laptop", folder(), "20260101T000000Z")
    await world.store.inner.put(blob_key(b"doc 3"), b"dod 3")  # same size, other bytes
    assert (await verify_bucket(world.store, KEYS, world.trees())).ok
    report = await verify_bucket(world.store, KEYS, world.trees(), share=1.0)
    assert report.rehashed == 11
    [finding] = report.findings
    assert finding.key == blob_key(b"doc 3")
    assert finding.problem.startswith("corrupt: its bytes hash to ")
    assert [str(w) for w in finding.where] == ["docs/d3.md (laptop head)"]


async def test_a_missing_node_is_found_even_when_the_cache_holds_it(
    world: World, tmp_path: Path
) -> None:
    root = await world.publish("laptop", folder(), "20260101T000000Z")
    cached = TreeStore(world.store, KEYS, NodeCache(tmp_path / "trees"))
    assert (await verify_bucket(world.store, KEYS, cached)).ok  # fills the cache
    docs = next(e.tree for e in (await cached.node(root)).entries or () if e.name == "docs")
    assert docs is not None
    await world.store.inner.delete(KEYS.tree(docs))
    report = await verify_bucket(world.store, KEYS, cached)
    assert [f.line() for f in report.findings] == [
        f"tree {KEYS.tree(docs)}: missing; referenced by docs (laptop head)"
    ]


async def test_all_checks_every_snapshot_and_the_heads_only_their_own(world: World) -> None:
    await world.publish("laptop", folder(b"old"), "20260101T000000Z")
    await world.publish("laptop", folder(b"new"), "20260102T000000Z")
    await world.store.inner.delete(blob_key(b"alpha old"))
    assert (await verify_bucket(world.store, KEYS, world.trees())).ok
    report = await verify_bucket(world.store, KEYS, world.trees(), all_snapshots=True)
    assert report.roots == 3
    assert [f.line() for f in report.findings] == [
        f"blob {blob_key(b'alpha old')}: missing; referenced by a.txt (laptop 20260101T000000Z)"
    ]


async def test_sample_rehashes_a_share_of_the_blobs(world: World) -> None:
    big = Folder({f"f{i}": File(f"content {i}".encode()) for i in range(200)})
    await world.publish("laptop", big, "20260101T000000Z")
    report = await verify_bucket(world.store, KEYS, world.trees(), share=0.25, rng=random.Random(7))
    assert 25 <= report.rehashed <= 75 and report.ok


async def test_an_unreadable_head_or_snapshot_fails_verify_naming_it(world: World) -> None:
    await world.publish("laptop", folder(), "20260101T000000Z")
    await world.store.inner.put(KEYS.head("desk"), b"{}")
    await world.store.inner.put(KEYS.snapshot("laptop", "20251231T000000Z"), b"[]")
    report = await verify_bucket(world.store, KEYS, world.trees(), all_snapshots=True)
    assert not report.ok
    assert [line.split(":")[0] for line in report.unreadable] == [
        f"invalid head {KEYS.head('desk')}",
        f"invalid snapshot {KEYS.snapshot('laptop', '20251231T000000Z')}",
    ]
