"""The repair of SPEC 8.2: this device's verify of its own head puts back, from its own
disk and node cache, what a gc removed in the one window no lock-free scheme closes; a
file edited since, or a node no longer cached, is reported instead."""

from __future__ import annotations

from pathlib import Path

import pytest

from dropbeard.sync.repair import repair_own_head
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.verify import verify_bucket
from tests.format2 import describe, sha256
from tests.history import KEYS, World, blob_key, world

__all__ = ["world"]
pytestmark = pytest.mark.anyio


def disk(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "docs").mkdir(parents=True)
    (root / "a.txt").write_bytes(b"alpha")
    (root / "docs" / "b.md").write_bytes(b"bravo")
    (root / "big.bin").write_bytes(bytes(range(256)) * (17 * 4096))  # 17 MiB: chunked
    return root


async def test_the_owner_puts_back_missing_blobs_chunks_and_nodes(
    world: World, tmp_path: Path
) -> None:
    root = disk(tmp_path)
    tree = await world.publish("laptop", describe(root), "20260101T000000Z")
    cache = NodeCache(tmp_path / "written")
    trees = world.trees()
    docs = next(e.tree for e in (await trees.node(tree)).entries or () if e.name == "docs")
    assert docs is not None
    cache.write(docs, await world.store.get(KEYS.tree(docs)))
    big = (root / "big.bin").read_bytes()
    second_chunk = sha256(big[4 << 20 : 8 << 20])
    for key in (blob_key(b"alpha"), KEYS.blob(second_chunk), KEYS.tree(docs)):
        await world.store.inner.delete(key)
    await world.store.inner.put(blob_key(b"bravo"), b"brav")  # cut short: corrupt
    report = await repair_own_head(world.store, KEYS, "laptop", root, world.trees(), cache)
    assert sorted(report.reuploaded) == sorted(
        [blob_key(b"alpha"), KEYS.blob(second_chunk), KEYS.tree(docs), blob_key(b"bravo")]
    )
    assert report.ok and report.unrepaired == []
    assert (await verify_bucket(world.store, KEYS, world.trees(), share=1.0)).ok


async def test_an_edited_file_or_an_uncached_node_is_reported_not_guessed(
    world: World, tmp_path: Path
) -> None:
    root = disk(tmp_path)
    tree = await world.publish("laptop", describe(root), "20260101T000000Z")
    docs = next(e.tree for e in (await world.trees().node(tree)).entries or () if e.name == "docs")
    assert docs is not None
    await world.store.inner.delete(blob_key(b"alpha"))
    await world.store.inner.delete(KEYS.tree(docs))
    (root / "a.txt").write_bytes(b"ALPHA, edited since")
    report = await repair_own_head(world.store, KEYS, "laptop", root, world.trees(), None)
    assert report.reuploaded == [] and not report.ok
    assert sorted(line.split(":")[0] for line in report.unrepaired) == sorted(
        [f"blob {blob_key(b'alpha')}", f"tree {KEYS.tree(docs)}"]
    )
    assert blob_key(b"alpha") not in await world.keys_under(KEYS.blobs_prefix)
