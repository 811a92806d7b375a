"""Benchmark of the format-2 tree layer on a local-directory store (a script, not a test).

    .venv/bin/python bench/bench_trees.py [--paths N] [--dir PATH]

Builds the tree of issue 10's benchmark (N paths: ~100 files per folder three levels
deep, plus one flat folder of 50,000 files and one folder of 1,000 sub-folders) in a
store under a temporary directory, then measures: the build; a one-file edit three
folders deep and one inside the flat folder (nodes and bytes written, requests, CPU),
as the editing device does it (its node cache holds what it wrote); the other device
reading that edit with `diff` (its cache holds the old tree); a full walk, cold and
warm. Prints numbers; never asserts. CPU seconds count worker threads too.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Iterator
from pathlib import Path
from typing import TypeVar

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dropbeard.core.keys import RootKeys
from dropbeard.core.tree import TreeEntry
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.treeread import diff, walk
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.treewrite import build, update

KEYS = RootKeys("bench")
FLAT = 50_000
SUBFOLDERS = 1_000
PER_SUBFOLDER = 10
T = TypeVar("T")


def entry(name: str, path: str, counter: int = 1) -> TreeEntry:
    digest = hashlib.sha256(path.encode()).hexdigest()
    return TreeEntry(
        name=name,
        type="file",
        size=len(path) * 37,
        mode=0o644,
        mtime_ns=1_747_936_150_000_000_000 + counter,
        sha256=digest,
        version={"laptop": counter, "desktop": 3},
    )


def folder(name: str) -> TreeEntry:
    return TreeEntry(name=name, type="dir", mode=0o755, version={"laptop": 1})


def paths(total: int) -> Iterator[tuple[str, TreeEntry]]:
    """The benchmark tree, in tree order (names zero-padded, so string order is it):
    `docs/dNNNN/eN/fN/` folders of 100 files, then `flat/`, then `many/sNNNN/`."""
    deep_files = max(0, total - FLAT - SUBFOLDERS * (PER_SUBFOLDER + 1))
    yield "docs", folder("docs")
    made = 0
    for leaf in range(-(-deep_files // 100)):
        a, b, c = leaf // 100, leaf // 10 % 10, leaf % 10
        if leaf % 100 == 0:
            yield f"docs/d{a:04}", folder(f"d{a:04}")
        if leaf % 10 == 0:
            yield f"docs/d{a:04}/e{b}", folder(f"e{b}")
        base = f"docs/d{a:04}/e{b}/f{c}"
        yield base, folder(f"f{c}")
        for i in range(min(100, deep_files - made)):
            name = f"file{i:03}.txt"
            yield f"{base}/{name}", entry(name, f"{base}/{name}")
            made += 1
    yield "flat", folder("flat")
    for i in range(FLAT):
        name = f"photo{i:05}.jpg"
        yield f"flat/{name}", entry(name, f"flat/{name}")
    yield "many", folder("many")
    for s in range(SUBFOLDERS):
        yield f"many/s{s:04}", folder(f"s{s:04}")
        for i in range(PER_SUBFOLDER):
            name = f"n{i}"
            yield f"many/s{s:04}/{name}", entry(name, f"many/s{s:04}/{name}")


def cpu() -> tuple[float, float]:
    """User and system CPU seconds of this process, worker threads included."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime, usage.ru_stime


async def measured(label: str, work: Awaitable[T]) -> T:
    """`work` awaited (a coroutine does nothing before), timed and printed."""
    wall, (user, system) = time.perf_counter(), cpu()
    result = await work
    wall = time.perf_counter() - wall
    user, system = cpu()[0] - user, cpu()[1] - system
    print(f"{label:<34} wall {wall:7.3f} s  cpu {user:6.3f} s user + {system:6.3f} s system")
    return result


def report_writes(trees: TreeStore, store: CountingStore) -> None:
    s = trees.stats
    print(
        f"{'':<34} {s.written} nodes / {s.written_bytes / 1024:.1f} KiB written"
        f" (largest {s.largest_written / 1024:.1f} KiB), {store.counts['get']} GETs,"
        f" {s.cache_hits} cache hits, {store.writes} writes"
    )


async def main(total: int, where: Path) -> None:
    store = CountingStore(LocalStore(where / "bucket"))
    writer = TreeStore(store, KEYS, NodeCache(where / "writer-cache"))
    counted = sum(1 for _ in paths(total))
    print(f"{counted} paths; load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    root = await measured("build", build(writer, paths(total)))
    objects = [o async for page in store.list(KEYS.trees_prefix) for o in page.objects]
    size = sum(o.size for o in objects)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    largest = max(o.size for o in objects) / 1024
    print(f"{'':<34} {len(objects)} nodes, {size / 2**20:.1f} MiB, largest {largest:.1f} KiB;")
    print(f"{'':<34} peak RSS so far {rss:.0f} MiB")

    reader = TreeStore(store, KEYS, NodeCache(where / "reader-cache", budget=2**30))
    count = await measured("walk (other device, cold)", _count(walk(reader, root)))
    print(f"{'':<34} {count} paths, {reader.stats.fetched} nodes fetched")
    warm = TreeStore(store, KEYS, NodeCache(where / "reader-cache", budget=2**30))
    await measured("walk (warm disk cache)", _count(walk(warm, root)))

    for label, path in (
        ("edit 3 folders deep", "docs/d0000/e5/f5/file050.txt"),
        ("edit in the 50,000-file folder", "flat/photo25000.jpg"),
        ("add to the 50,000-file folder", "flat/photo25000b.jpg"),
    ):
        name = path.rpartition("/")[2]
        store.reset()
        editor = TreeStore(store, KEYS, NodeCache(where / "writer-cache"))
        new = await measured(f"{label}: update", update(editor, root, {path: entry(name, path, 2)}))
        report_writes(editor, store)
        store.reset()
        other = TreeStore(store, KEYS, NodeCache(where / "reader-cache", budget=2**30))
        found = await measured(f"{label}: diff", _count(diff(other, root, new)))
        print(
            f"{'':<34} {found} difference(s), {other.stats.fetched} nodes /"
            f" {other.stats.fetched_bytes / 1024:.1f} KiB fetched, {store.counts['get']} GETs"
        )


async def _count(items: AsyncIterator[object]) -> int:
    n = 0
    async for _ in items:
        n += 1
    return n


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--paths", type=int, default=100_000)
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        (Path(tmp) / "bucket").mkdir()
        anyio.run(main, args.paths, Path(tmp))
