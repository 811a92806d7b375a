"""The edit passes of bench/bench_format.py at a size whose first syncs take too long to
run through the CLI (a million files: ~50 min under load): two devices are seeded with
the state a first sync leaves, then an edit is measured as daemons make it, by the real
code (`bench.formatpass`: a's pass after its watcher event, b's after a's head moved).

  .venv/bin/python bench/bench_million.py [--files 1000000] [--work DIR] [--keep]
      [--check] [--again]

Seeding (not measured) builds the tree of bench_format.py on disk for both devices, runs
`dropbeard init` for each, then without the scan/hash/upload pipeline: hashes each
file's content in this process, builds the tree from that path map through the real
writer (`sync.treewrite.build`), publishes it for both devices (`sync.publish.publish`),
reads it through b's node cache (`sync.treeread.walk`, as b's bootstrap reads it), and
records in each state.sqlite what a first sync records (`State.put_stats`, `put_bases`,
`replace_pending`, the meta keys and peers that `sync.commit` sets), versions counted in
tree order as a first sync counts them. The blobs of unedited files are not written (the
measured passes neither read nor ask for them: `verify` would report them missing).

`--check` then runs a full one-shot CLI `sync` on each device and fails unless it
uploads, downloads and publishes nothing: the seeded state is what a first sync leaves.
`--again --work DIR` measures more edits on the devices a `--keep` run left in DIR.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import anyio
import msgspec

from bench.bench_format import Bench, Shape, build
from bench.formatpass import daemonlike
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Entry, SeenMark
from dropbeard.core.plan import Base
from dropbeard.core.treediff import to_tree_entry, tree_order
from dropbeard.store.local import LocalStore
from dropbeard.sync.publish import LastIds, Listing, Published, publish
from dropbeard.sync.root import RootPaths
from dropbeard.sync.state import Peer, State
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.treeread import walk
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.treewrite import build as build_tree

ROOT_ID = "bench"


def path_map(root: Path, shape: Shape) -> list[Entry]:
    """Every folder and file of the tree at `root`, in tree order, as a first sync on a
    records them: versions {"a": n} counted in tree order."""
    files = shape.paths()
    folders = {f.rpartition("/")[0] for f in files}
    for folder in list(folders):
        while "/" in folder:
            folder = folder.rpartition("/")[0]
            folders.add(folder)
    entries: list[Entry] = []
    content = {rel: n for n, rel in enumerate(files)}
    for counter, rel in enumerate(sorted(folders | set(files), key=tree_order), start=1):
        st = os.lstat(root / rel)
        mode = st.st_mode & 0o777
        if rel in folders:
            entries.append(Entry(path=rel, type="dir", mode=mode, version={"a": counter}))
            continue
        data = b"%08d tiny file\n" % content[rel] * 4  # as bench_format.build wrote it
        entries.append(
            Entry(
                path=rel,
                type="file",
                mode=mode,
                version={"a": counter},
                size=len(data),
                mtime_ns=st.st_mtime_ns,
                sha256=hashlib.sha256(data).hexdigest(),
            )
        )
    return entries


def stat_rows(root: Path, entries: list[Entry]) -> list[tuple[str, tuple[object, ...]]]:
    rows: list[tuple[str, tuple[object, ...]]] = []
    for e in entries:
        if e.type == "file":
            st = os.lstat(root / e.path)
            rows.append(
                (e.path, (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, e.sha256, None))
            )
    return rows


def match_mtimes(b: Path, entries: list[Entry]) -> None:
    """b's files carry a's mtimes, as b's downloads set them."""
    for e in entries:
        if e.type == "file":
            assert e.mtime_ns is not None
            os.utime(b / e.path, ns=(e.mtime_ns, e.mtime_ns), follow_symlinks=False)


async def seed(remote: Path, a: Path, b: Path, entries: list[Entry]) -> None:
    store = LocalStore(remote)
    keys = RootKeys(ROOT_ID)
    files = [e for e in entries if e.type == "file"]
    listed = Listing("", len(files), sum(e.size or 0 for e in files))
    began = time.perf_counter()
    trees_a = TreeStore(store, keys, NodeCache(RootPaths(a).trees))
    tree = await build_tree(trees_a, ((e.path, to_tree_entry(e)) for e in entries))
    listed = Listing(tree, listed.files, listed.bytes)
    print(f"  tree built and written: {time.perf_counter() - began:.0f} s")
    began = time.perf_counter()
    trees_b = TreeStore(store, keys, NodeCache(RootPaths(b).trees))
    read = sum([1 async for _ in walk(trees_b, tree)])
    assert read == len(entries), (read, len(entries))
    print(f"  tree read through b's node cache: {time.perf_counter() - began:.0f} s")
    now = datetime.now(UTC)
    pub_a = await publish(
        store,
        keys,
        device_id="a",
        listing=listed,
        tombstones=[],
        last=LastIds(0, 0, None),
        seen={},
        now=now,
        counter=len(entries),
    )
    pub_b = await publish(
        store,
        keys,
        device_id="b",
        listing=listed,
        tombstones=[],
        last=LastIds(0, 0, pub_a.snapshot),
        seen={"a": SeenMark(snapshot=pub_a.snapshot)},
        now=now,
        counter=0,
    )
    for root, mine, theirs, other, counter in (
        (a, pub_a, pub_b, "b", len(entries)),
        (b, pub_b, pub_a, "a", 0),
    ):
        record(root, entries, mine, theirs, other, counter, now)


def record(
    root: Path,
    entries: list[Entry],
    mine: Published,
    theirs: Published,
    other: str,
    counter: int,
    now: datetime,
) -> None:
    """What `sync.commit.commit_pass` records after a first sync that settled with
    `other` (its meta keys, as a first sync of bench_format.py leaves them)."""
    state = State.open(RootPaths(root).state)
    try:
        with state.transaction():
            state.put_bases((e.path, Base(entry=e)) for e in entries)
            state.put_stats(stat_rows(root, entries))  # type: ignore[arg-type]
            state.replace_pending(set())
            state.set_meta("ignore_digest", "none")
            state.set_meta("counter", str(counter))
            state.set_meta("tombstone_seq", "0")
            state.set_meta("last_snapshot", mine.snapshot)
            state.set_meta("last_tree", mine.listing.tree)
            state.set_meta("last_files", str(mine.listing.files))
            state.set_meta("last_bytes", str(mine.listing.bytes))
            state.set_meta("head_etag", mine.head_etag)
            seen = {other: SeenMark(snapshot=theirs.snapshot)} if other == "a" else {}
            state.set_meta("head_seen", msgspec.json.encode(seen).decode())
            state.set_meta("head_written_at", msgspec.json.encode(now).decode())
            state.put_peer(Peer(other, theirs.head_etag, theirs.snapshot, theirs.listing.tree, 0))
    finally:
        state.close()


def make(bench: Bench, shape: Shape) -> None:
    """Both devices' trees on disk, initialised, seeded."""
    remote, a, b = bench.remote, bench.work / "a", bench.work / "b"
    began = time.perf_counter()
    build(a, shape)
    build(b, shape)
    took = time.perf_counter() - began
    print(f"tree: {shape.files} files on each device, built in {took:.0f} s")
    for root, device in ((a, "a"), (b, "b")):
        bench.cli(
            "init", str(root), "--remote", str(remote), "--root-id", ROOT_ID,
            "--device-id", device, "-q",
        )  # fmt: skip
    began = time.perf_counter()
    entries = path_map(a, shape)
    match_mtimes(b, entries)
    print(f"  path map of {len(entries)} paths: {time.perf_counter() - began:.0f} s")
    anyio.run(seed, remote, a, b, entries)
    print(f"seeded in {time.perf_counter() - began:.0f} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--work", type=Path, help="an empty directory (default: temporary)")
    parser.add_argument("--keep", action="store_true", help="keep the trees and the remote")
    parser.add_argument("--check", action="store_true", help="a CLI sync of each must do nothing")
    parser.add_argument("--again", action="store_true", help="measure on the kept --work")
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # type: ignore[union-attr]  # progress, live
    shape = Shape.of(args.files)
    work = args.work or Path(tempfile.mkdtemp(prefix="dropbeard-million-"))
    work.mkdir(exist_ok=True)
    a, b = work / "a", work / "b"
    bench = Bench(work, work / "remote")
    try:
        if not args.again:
            make(bench, shape)
        if args.check:
            for root in (a, b):
                run, out = bench.sync(root)
                moved = {k: out.get(k) for k in ("uploaded", "downloaded", "snapshot", "problems")}
                print(f"check: full sync of {root.name}: {run.cpu:.1f} s CPU, {moved}")
                assert not any(moved.values()), out
        os.environ.update({k: v for k, v in bench.env.items() if k.startswith("XDG_")})
        row = daemonlike(bench.env, a, b, shape.deep_path(shape.deep // 3), "3 deep")
        if shape.flat:
            row |= daemonlike(bench.env, a, b, f"flat/f{shape.flat // 3:06d}.txt", "in flat/")
        print(f"\n| tracked files | {' | '.join(row)} |")
        print(f"| --- |{' --- |' * len(row)}")
        print(f"| {shape.files:,} | {' | '.join(row.values())} |")
    finally:
        if args.keep:
            print(f"kept {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
