"""Benchmark of `gc`, `versions` and `ls` on a root with a month of history (a script,
not a test).

    .venv/bin/python bench/bench_gc.py [--files N] [--days D] [--every H] [--edits E]

Simulates one device on a local-directory bucket: N files (default 100,000) in folders
of 1,000, then a publish every H hours (default 2) for D days (default 30), each editing
E files (default 20); each day also adds a 4 MB download that is deleted 6 hours later.
Trees are written with dropbeard's tree writer, snapshots and heads as format-2 JSON,
blobs straight into the bucket folder; every object's LastModified is set to the
simulated time it was written. Then `gc` runs with the default policy (48h all, 7d
hourly, 90d daily, 2y weekly, 24h grace) at the end of the month, and this measures:
its requests (LIST pages, GETs, HEADs, DELETEs) and wall time; bucket bytes against
the live content plus what only retained snapshots reference (computed from the
simulation, not by gc's own marking); then `versions` and `ls` with the nodes cached.
Prints numbers; never asserts.
"""

from __future__ import annotations

import argparse
import bisect
import hashlib
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dropbeard.core.keys import RootKeys
from dropbeard.core.retention import Policy, kept_snapshots
from dropbeard.core.timestamps import snapshot_id, utc_iso
from dropbeard.core.tree import TreeEntry
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.devicelog import SnapshotReader
from dropbeard.sync.gc import collect_garbage
from dropbeard.sync.history import load_history
from dropbeard.sync.reach import Marker
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.treeread import folder_entries
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.treewrite import build, update

KEYS = RootKeys("bench")
DEVICE = "laptop"
PER_FOLDER = 1_000
BIG = 4_000_000


@dataclass
class Sim:
    """The bucket being written, and what the simulation knows of it."""

    bucket: Path
    store: CountingStore
    trees: TreeStore
    now: datetime
    counter: int = 0
    current: dict[str, tuple[str, int]] = field(default_factory=dict)  # path -> (sha, size)
    since: dict[str, int] = field(default_factory=dict)  # path -> snapshot index it appeared
    spans: list[tuple[str, int, int, int]] = field(default_factory=list)  # sha, size, from, to
    snapshots: list[tuple[str, str]] = field(default_factory=list)  # (id, root)

    def raw(self, key: str, data: bytes) -> None:
        """Write an object straight into the bucket folder, dated `now`."""
        path = self.bucket / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        stamp = self.now.timestamp()
        os.utime(path, (stamp, stamp))

    def blob(self, path: str, size: int, gen: int) -> TreeEntry:
        seed = hashlib.sha256(f"{path}:{gen}".encode()).digest()
        data = (seed * (size // 32 + 1))[:size]
        sha = hashlib.sha256(data).hexdigest()
        self.raw(KEYS.blob(sha), data)
        self.counter += 1
        self.current[path] = (sha, size)
        name = path.rpartition("/")[2]
        return TreeEntry(name=name, type="file", size=size, mode=0o644,
                         mtime_ns=int(self.now.timestamp() * 1e9), sha256=sha,
                         version={DEVICE: self.counter})  # fmt: skip

    def gone(self, path: str) -> None:
        sha, size = self.current.pop(path)
        self.spans.append((sha, size, self.since.pop(path), len(self.snapshots) - 1))

    async def publish(self, root: str, changed: list[str]) -> None:
        for path in changed:
            self.since[path] = len(self.snapshots)
        sid = snapshot_id(self.now)
        self.snapshots.append((sid, root))
        at = utc_iso(self.now)
        snap = {"format": 2, "device_id": DEVICE, "snapshot": sid, "tree": root,
                "created_at": at, "files": len(self.current),
                "bytes": sum(s for _, s in self.current.values())}  # fmt: skip
        head = {"format": 2, "device_id": DEVICE, "snapshot": sid, "tree": root,
                "published_at": at, "tombstone_seq": 0, "seen": {}}  # fmt: skip
        self.raw(KEYS.snapshot(DEVICE, sid), json.dumps(snap).encode())
        self.raw(KEYS.head(DEVICE), json.dumps(head).encode())
        for key in self.trees.fresh:  # the nodes this publish wrote, dated now
            stamp = self.now.timestamp()
            os.utime(self.bucket / KEYS.tree(key), (stamp, stamp))
        self.trees.fresh.clear()


class DatedTrees(TreeStore):
    """A TreeStore that remembers the nodes it uploads, so the simulation can date them."""

    fresh: list[str]

    async def _put(self, item: tuple[str, bytes]) -> None:
        await super()._put(item)
        self.fresh.append(item[0])


async def simulate(where: Path, files: int, days: int, every: int, edits: int) -> Sim:
    bucket = where / "bucket"
    store = CountingStore(LocalStore(bucket))
    trees = DatedTrees(store, KEYS, NodeCache(where / "writer-cache", budget=2**30))
    trees.fresh = []
    end = datetime.now(UTC).replace(microsecond=0)
    sim = Sim(bucket, store, trees, end - timedelta(days=days))
    rng = random.Random(1)
    folders = -(-files // PER_FOLDER)
    paths = [f"d{i // PER_FOLDER:03}/file{i % PER_FOLDER:04}.txt" for i in range(files)]

    def first() -> list[tuple[str, TreeEntry]]:
        out = []
        for f in range(folders):
            out.append((f"d{f:03}", TreeEntry(name=f"d{f:03}", type="dir", mode=0o755,
                                              version={DEVICE: 1})))  # fmt: skip
            for p in paths[f * PER_FOLDER : (f + 1) * PER_FOLDER]:
                out.append((p, sim.blob(p, rng.randrange(200, 2000), 0)))
        out.append(("downloads", TreeEntry(name="downloads", type="dir", mode=0o755,
                                           version={DEVICE: 1})))  # fmt: skip
        return out

    root = await build(trees, first())
    await sim.publish(root, list(sim.current))
    steps = days * 24 // every
    for step in range(1, steps + 1):
        sim.now += timedelta(hours=every)
        changes: dict[str, TreeEntry | None] = {}
        for p in rng.sample(paths, edits):
            sim.gone(p)
            changes[p] = sim.blob(p, rng.randrange(200, 2000), step)
        day_file = f"downloads/day{step * every // 24:03}.bin"
        if step * every % 24 == 0:
            changes[day_file] = sim.blob(day_file, BIG, step)
        elif step * every % 24 == 6:
            gone = f"downloads/day{(step * every - 6) // 24:03}.bin"
            if gone in sim.current:
                sim.gone(gone)
                changes[gone] = None
        root = await update(trees, root, changes)
        await sim.publish(root, [p for p, e in changes.items() if e is not None])
    for path in list(sim.current):
        sim.gone(path)
    return sim


def retained_bytes(sim: Sim, policy: Policy) -> tuple[int, set[str]]:
    """Bytes of the distinct blobs some kept snapshot holds (from the simulation)."""
    ids = [s for s, _ in sim.snapshots]
    kept = kept_snapshots(ids, ids[-1], sim.now, policy)
    kept_at = sorted(i for i, s in enumerate(ids) if s in kept)
    held: dict[str, int] = {}
    for sha, size, start, stop in sim.spans:
        at = bisect.bisect_left(kept_at, start)
        if at < len(kept_at) and kept_at[at] <= stop:
            held[sha] = size
    return sum(held.values()), kept


def sizes(bucket: Path, nodes: set[str]) -> int:
    return sum((bucket / KEYS.tree(d)).stat().st_size for d in nodes)


async def bucket_bytes(store: CountingStore, prefix: str) -> tuple[int, int]:
    count = size = 0
    async for page in store.inner.list(prefix):
        count += len(page.objects)
        size += sum(o.size for o in page.objects)
    return count, size


def requests(store: CountingStore) -> str:
    c = store.counts
    return (f"{c['list_page']} LIST pages, {c['get'] + c['get_if_changed']} GETs, "
            f"{c['head']} HEADs, {c['delete']} DELETEs")  # fmt: skip


async def main(where: Path, files: int, days: int, every: int, edits: int) -> None:
    load = " ".join(f"{x:.2f}" for x in os.getloadavg())
    print(f"{files:,} files, {days} days, a publish every {every}h editing {edits}; load {load}")
    began = time.perf_counter()
    sim = await simulate(where, files, days, every, edits)
    print(f"simulated {len(sim.snapshots)} snapshots in {time.perf_counter() - began:.0f} s")
    store = sim.store
    before = {p: await bucket_bytes(store, KEYS.prefix + p) for p in ("blobs/", "trees/", "")}
    policy = Policy()
    retained, kept = retained_bytes(sim, policy)
    store.reset()
    trees = TreeStore(store, KEYS, NodeCache(where / "gc-cache", budget=2**30))
    began = time.perf_counter()
    report = await collect_garbage(store, KEYS, trees, now=lambda: sim.now)
    wall = time.perf_counter() - began
    print(f"gc: {wall:.2f} s wall; {requests(store)}")
    print(f"    deleted {len(report.snapshots)} snapshots, {len(report.trees)} nodes, "
          f"{len(report.blobs)} blobs; kept {report.kept_snapshots} snapshots "
          f"(the policy keeps {len(kept)}); spared {report.spared_young} young")  # fmt: skip
    after = {p: await bucket_bytes(store, KEYS.prefix + p) for p in ("blobs/", "trees/", "")}
    for label, p in (("blobs", "blobs/"), ("nodes", "trees/"), ("all", "")):
        print(f"    {label:<5} {before[p][0]:>8,} objects {before[p][1] / 1e6:9.1f} MB -> "
              f"{after[p][0]:>8,} objects {after[p][1] / 1e6:9.1f} MB")  # fmt: skip
    marker = Marker(TreeStore(store, KEYS, NodeCache(where / "gc-cache", budget=2**30)))
    await marker.mark([(s, r) for s, r in sim.snapshots if s in kept])
    node_bytes = sizes(sim.bucket, marker.nodes)
    live = retained + node_bytes
    print(f"    live + retained: blobs {retained / 1e6:.1f} MB + nodes {node_bytes / 1e6:.1f} MB;"
          f" bucket/that = {after[''][1] / live:.3f} (blobs alone "
          f"{after['blobs/'][1] / retained:.3f})")  # fmt: skip
    store.reset()
    began = time.perf_counter()
    again = await collect_garbage(store, KEYS, trees, now=lambda: sim.now)
    print(f"gc again (nothing to do, nodes cached): {time.perf_counter() - began:.2f} s; "
          f"{requests(store)}; deleted {len(again.deleted)}")  # fmt: skip
    await history_reads(where, store, sim)


async def history_reads(where: Path, store: CountingStore, sim: Sim) -> None:
    path = "d000/file0500.txt"
    for attempt in ("cold", "cached"):
        store.reset()
        trees = TreeStore(store, KEYS, NodeCache(where / "history-cache", budget=2**30))
        reader = SnapshotReader(store, KEYS, where / "log-cache")
        began = time.perf_counter()
        history = await load_history(store, KEYS, trees, reader)
        rows = await history.versions(path)
        wall = time.perf_counter() - began
        print(f"versions {path} ({attempt}): {wall:.3f} s, {len(rows)} rows; {requests(store)}")
        store.reset()
        began = time.perf_counter()
        head = history.heads.heads[DEVICE]
        assert head.tree is not None
        entry = await history.entry(head.tree, "d000")
        assert entry is not None and entry.tree is not None
        listed = [e async for e in folder_entries(trees, entry.tree)]
        wall = time.perf_counter() - began
        print(f"ls d000 ({attempt}, after versions): {wall:.3f} s, {len(listed)} entries; "
              f"{requests(store)}")  # fmt: skip


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--every", type=int, default=2, help="hours between publishes")
    parser.add_argument("--edits", type=int, default=20, help="files edited per publish")
    parser.add_argument("--dir", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        anyio.run(main, Path(tmp), args.files, args.days, args.every, args.edits)
