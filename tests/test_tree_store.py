"""Reading and writing single nodes: verified against their key, cached on disk under
`.dropbear/trees/` within a byte budget, uploaded create-only and only when not known to
be in the bucket already."""

from __future__ import annotations

import gc
import os
import threading
import tracemalloc
from pathlib import Path

import anyio
import pytest

from dropbeard.core.errors import FormatError, IntegrityError, NotFound
from dropbeard.core.tree import entries_node, node_key
from dropbeard.store.counting import CountingStore
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.sync import treecache
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.trees import TreeStore
from tests.treegen import file_entry
from tests.treeio import KEYS, bucket, put_node

__all__ = ["bucket"]
pytestmark = pytest.mark.anyio


def node_bytes(tag: str, count: int = 1) -> tuple[str, bytes]:
    data = entries_node([file_entry(f"{tag}{i}", tag) for i in range(count)])
    return node_key(data), data


async def test_a_node_is_read_verified_and_then_from_the_cache(
    bucket: CountingStore, tmp_path: Path
) -> None:
    digest, data = node_bytes("a")
    await bucket.put(KEYS.tree(digest), data)
    trees = TreeStore(bucket, KEYS, NodeCache(tmp_path / "trees"))
    node = await trees.node(digest)
    assert node.entries is not None and node.entries[0].name == "a0"
    bucket.reset()
    later = TreeStore(bucket, KEYS, NodeCache(tmp_path / "trees"))  # the next pass
    assert await later.node(digest) == node
    assert bucket.counts["get"] == 0 and later.stats.cache_hits == 1


async def test_a_node_whose_bytes_do_not_match_its_key_is_an_integrity_error(
    bucket: CountingStore, tmp_path: Path
) -> None:
    digest, _ = node_bytes("a")
    _, other = node_bytes("b")
    await bucket.put(KEYS.tree(digest), other)
    trees = TreeStore(bucket, KEYS, NodeCache(tmp_path / "trees"))
    with pytest.raises(IntegrityError, match=f"reading tree {KEYS.tree(digest)}: "):
        await trees.node(digest)
    assert not (tmp_path / "trees" / digest).exists()  # never cached


async def test_a_missing_node_is_not_found_naming_its_key(bucket: CountingStore) -> None:
    digest, _ = node_bytes("a")
    with pytest.raises(NotFound, match=f"reading tree {KEYS.tree(digest)}: it is missing"):
        await TreeStore(bucket, KEYS).node(digest)


async def test_a_hostile_node_is_refused_with_its_key(bucket: CountingStore) -> None:
    digest = await put_node(bucket, {"format": 2, "entries": [{"name": "../x"}]})
    with pytest.raises(FormatError, match=f"^invalid tree {KEYS.tree(digest)}: "):
        await TreeStore(bucket, KEYS).node(digest)


async def test_a_damaged_cache_file_is_dropped_and_read_from_the_bucket_again(
    bucket: CountingStore, tmp_path: Path
) -> None:
    digest, data = node_bytes("a")
    await bucket.put(KEYS.tree(digest), data)
    cache = tmp_path / "trees"
    await TreeStore(bucket, KEYS, NodeCache(cache)).node(digest)
    (cache / digest).write_bytes(data[:-3])  # torn by a crash
    bucket.reset()
    trees = TreeStore(bucket, KEYS, NodeCache(cache))
    assert (await trees.node(digest)).entries is not None
    assert bucket.counts["get"] == 1
    assert (cache / digest).read_bytes() == data


async def test_many_readers_of_one_node_share_one_request(bucket: CountingStore) -> None:
    digest, data = node_bytes("a")
    await bucket.put(KEYS.tree(digest), data)
    bucket.reset()
    trees = TreeStore(bucket, KEYS)
    await trees.prefetch([digest] * 20 + [digest])
    await trees.node(digest)
    assert bucket.counts["get"] == 1


def test_the_cache_evicts_the_least_recently_used_past_its_budget(tmp_path: Path) -> None:
    nodes = [node_bytes(tag, 20) for tag in "abcde"]
    size = len(nodes[0][1])
    clock = iter(range(100, 200)).__next__
    cache = NodeCache(tmp_path, budget=int(size * 3.5), clock=lambda: float(clock()))
    for digest, data in nodes[:3]:
        cache.write(digest, data)
    assert cache.read(nodes[0][0]) == nodes[0][1]  # a is now the most recent
    cache.write(*nodes[3])
    assert nodes[1][0] not in cache and nodes[0][0] in cache
    cache.write(*nodes[4])
    assert [d for d, _ in nodes if d in cache] == [nodes[0][0], nodes[3][0], nodes[4][0]]
    assert sorted(os.listdir(tmp_path)) == sorted(d for d, _ in nodes if d in cache)
    assert cache.size <= cache.budget
    reopened = NodeCache(tmp_path, budget=size * 2)  # a smaller budget: the oldest go
    assert reopened.size <= size * 2 and nodes[4][0] in reopened


async def test_the_cache_never_makes_the_folders_above_it(
    bucket: CountingStore, tmp_path: Path
) -> None:
    """A root unmounted while its daemon runs: the cache works without a folder (every
    node from the bucket) and never makes the root again in its place."""
    digest, data = node_bytes("a")
    await bucket.put(KEYS.tree(digest), data)
    gone = tmp_path / "unmounted-root" / ".dropbear" / "trees"
    trees = TreeStore(bucket, KEYS, NodeCache(gone))

    assert (await trees.node(digest)).entries is not None
    await trees.write([node_bytes("b")])
    assert not (tmp_path / "unmounted-root").exists()


def test_the_cache_clears_leftovers_and_ignores_strangers(tmp_path: Path) -> None:
    digest, data = node_bytes("a")
    (tmp_path / f".tmp-{digest}-1-0").write_bytes(data[:5])  # a write cut short
    (tmp_path / "README").write_text("not a node")
    (tmp_path / digest).write_bytes(data)
    cache = NodeCache(tmp_path)
    assert cache.read(digest) == data
    assert cache.size == len(data)  # counting what it holds clears what is not a node
    assert not (tmp_path / f".tmp-{digest}-1-0").exists()
    assert cache.read("0" * 64) is None
    assert (tmp_path / "README").exists()


def test_reading_and_writing_a_few_nodes_never_lists_the_cache(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pass after one edit touches a handful of nodes: it opens those, not an index of
    the thousands a cache of a large tree holds, until it has written budget // 8."""
    nodes = [node_bytes(f"n{i}", 20) for i in range(40)]
    size = len(nodes[0][1])
    for digest, data in nodes[:30]:
        (tmp_path / digest).write_bytes(data)
    os.utime(tmp_path / nodes[0][0], (1000.0, 1000.0))
    cache = NodeCache(tmp_path, budget=size * 8 * 3 + size // 2, clock=lambda: 5000.0)

    def listed(path: object) -> None:
        raise AssertionError("the cache listed its folder")

    with monkeypatch.context() as patched:
        patched.setattr("dropbeard.sync.treecache.os.scandir", listed)
        assert cache.read(nodes[1][0]) == nodes[1][1]
        assert cache.read(nodes[35][0]) is None
        assert nodes[2][0] in cache and nodes[35][0] not in cache
        assert cache.seen_at(nodes[0][0]) == 1000.0
        for digest, data in nodes[30:33]:  # three nodes: up to budget // 8
            cache.write(digest, data)
        assert cache.seen_at(nodes[31][0]) == 5000.0
        cache.write(*nodes[0])  # already here: seen again now
        assert cache.seen_at(nodes[0][0]) == 5000.0
    cache.write(*nodes[33])  # past budget // 8: it lists, and evicts down to its budget
    assert cache.size <= cache.budget
    assert nodes[1][0] in cache  # read since it opened: kept before older ones
    assert nodes[33][0] in cache and nodes[2][0] not in cache


# --- writing ---------------------------------------------------------------------------


async def test_nodes_are_written_create_only_once_each(
    bucket: CountingStore, tmp_path: Path
) -> None:
    nodes = [node_bytes(tag) for tag in "abc"]
    trees = TreeStore(bucket, KEYS, NodeCache(tmp_path / "trees"))
    await trees.write(nodes + nodes[:1])
    assert bucket.counts["put_if_absent"] == 3 and bucket.counts["put"] == 0
    for digest, data in nodes:
        assert await bucket.get(KEYS.tree(digest)) == data
    bucket.reset()
    await trees.write(nodes)
    later = TreeStore(bucket, KEYS, NodeCache(tmp_path / "trees"))
    await later.write(nodes)
    assert bucket.writes == 0 and later.stats.skipped == 3


class InFlight(ForwardingStore):
    """Counts the create-only PUTs in flight, each held a moment."""

    def __init__(self, inner: CountingStore) -> None:
        super().__init__(inner)
        self.now = self.most = 0

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await anyio.sleep(0.02)
            return await super().put_if_absent(key, data, sha256=sha256)
        finally:
            self.now -= 1


async def test_node_writes_take_a_budgets_small_request_slots_as_blobs_do(
    bucket: CountingStore,
) -> None:
    nodes = [node_bytes(f"n{i}-") for i in range(40)]
    store = InFlight(bucket)
    budget = TransferBudget(2)  # 2 requests of any size, or 8 small ones
    trees = TreeStore(store, KEYS, concurrency=2, budget=budget)
    await trees.write(nodes)
    assert store.most == budget.small_requests == 8
    assert trees.stats.written == 40

    async with budget.request(nbytes=100), budget.request(nbytes=100):  # 2 taken by blobs
        store.most = 0
        await TreeStore(store, KEYS, budget=budget).write([node_bytes(f"m{i}-") for i in range(40)])
    assert store.most == 6


async def test_a_node_already_in_the_bucket_is_written_again_not_an_error(
    bucket: CountingStore,
) -> None:
    digest, data = node_bytes("a")
    await bucket.put(KEYS.tree(digest), data)
    bucket.reset()
    trees = TreeStore(bucket, KEYS)
    await trees.write([(digest, data)])
    assert trees.stats.existed == 1
    assert bucket.counts["put"] == 1  # a fresh LastModified for gc (SPEC 8.2)
    assert await bucket.get(KEYS.tree(digest)) == data


async def test_a_node_seen_long_ago_is_uploaded_again(
    bucket: CountingStore, tmp_path: Path
) -> None:
    digest, data = node_bytes("a")
    now = [1000.0]
    cache = NodeCache(tmp_path / "trees", clock=lambda: now[0])
    await TreeStore(bucket, KEYS, cache, clock=lambda: now[0]).write([(digest, data)])
    now[0] += 11 * 3600
    soon = TreeStore(bucket, KEYS, cache, clock=lambda: now[0])
    await soon.write([(digest, data)])
    assert soon.stats.skipped == 1
    now[0] += 2 * 3600  # past half the grace period: gc may have taken it since
    bucket.reset()
    late = TreeStore(bucket, KEYS, cache, clock=lambda: now[0])
    await late.write([(digest, data)])
    assert late.stats.skipped == 0 and bucket.counts["put_if_absent"] == 1


async def test_the_decoded_nodes_kept_in_memory_take_at_most_the_budget(
    bucket: CountingStore,
) -> None:
    budget = 1024 * 1024
    digests = []
    for tag in range(40):  # 40 nodes of 256 entries: ~1 MB of JSON, ~3 MB decoded
        digest, data = node_bytes(f"n{tag}-", 256)
        await bucket.put(KEYS.tree(digest), data)
        digests.append(digest)
    trees = TreeStore(bucket, KEYS, memory_budget=budget)
    gc.collect()
    tracemalloc.start()
    try:
        for digest in digests:
            await trees.node(digest)
        gc.collect()
        held, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert held <= budget * 1.2  # the nodes it keeps, and what reading them left
    bucket.reset()
    await trees.node(digests[-1])  # the last one read is still kept
    assert bucket.counts["get"] == 0


async def test_written_behind_a_node_is_returned_before_its_file_is_written(
    bucket: CountingStore, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A walk never waits for the disk cache (a file create costs up to a millisecond on
    a busy file system); the node reaches the disk by `settle`, and a later pass finds it
    there. Meanwhile the cache answers for it from memory."""
    digests = []
    for tag in "abc":
        digest, data = node_bytes(tag)
        await bucket.put(KEYS.tree(digest), data)
        digests.append(digest)
    release = threading.Event()
    real = NodeCache._put_file

    def held(self: NodeCache, path: Path, data: bytes, now: float) -> bool:
        assert release.wait(10)
        return real(self, path, data, now)

    monkeypatch.setattr(NodeCache, "_put_file", held)
    cache = NodeCache(tmp_path / "trees")
    trees = TreeStore(bucket, KEYS, cache, write_behind=True)
    with anyio.fail_after(5):
        nodes = [await trees.node(d) for d in digests]
    assert not any((tmp_path / "trees" / d).exists() for d in digests)
    assert all(cache.read(d) is not None and cache.seen_at(d) is not None for d in digests)
    release.set()
    await trees.settle()
    assert all((tmp_path / "trees" / d).is_file() for d in digests)
    bucket.reset()
    later = TreeStore(bucket, KEYS, NodeCache(tmp_path / "trees"))  # the next pass
    assert [await later.node(d) for d in digests] == nodes
    assert bucket.counts["get"] == 0


def test_a_full_backlog_is_refused_and_a_failed_write_still_settles(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real = NodeCache.write

    def held(self: NodeCache, digest: str, data: bytes, now: float | None = None) -> None:
        assert release.wait(10)
        real(self, digest, data, now)

    monkeypatch.setattr(NodeCache, "write", held)
    cache = NodeCache(tmp_path / "missing" / "trees")  # never made: every write fails
    digest, data = node_bytes("a", 300)
    room = treecache.BACKLOG // len(data)
    queued = [cache.write_later(f"{n:064x}", data) for n in range(room + 5)]
    assert all(queued[:room]) and not any(queued[room + 1 :])  # the caller writes those
    assert cache.read(f"{0:064x}") == data  # queued: answered from memory
    release.set()
    cache.settle()  # the writer gave up on each
    assert cache.read(f"{0:064x}") is None
    assert cache.write_later(digest, data)  # room again
    cache.settle()
