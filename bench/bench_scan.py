"""Benchmark of the local scan against `find` and plain hashlib (a script, not a test).

    .venv/bin/python bench/bench_scan.py [--files N] [--dirs D] [--dir PATH] [--ignore]
    .venv/bin/python bench/bench_scan.py --big [--size-mib M] [--dir PATH]

Tree mode builds N small files in D directories (reused if `--dir` already holds them),
then times `find DIR -printf '%s %T@ %i\\n'`, a first scan (hashing every file) and a
rescan with a warm stat cache. Big mode hashes one large file with the scan and with
plain hashlib in the same process. Prints numbers; never asserts.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dropbeard.core.ignore import IgnoreRules
from dropbeard.sync.scan import ScanResult, StatKey, scan

BENCH_IGNORE = (
    "*.log\nnode_modules/\n.DS_Store\nbuild/\n!build/keep\n/dist\n*.tmp\n**/cache/**\n*~\n"
)


def build_tree(root: Path, files: int, dirs: int) -> None:
    marker = root / f".bench-tree-{files}-{dirs}"
    if marker.exists():
        return
    per_dir = max(1, files // dirs)
    made = 0
    for d in range(dirs):
        sub = root / f"d{d // 32:03}" / f"d{d:04}"
        sub.mkdir(parents=True, exist_ok=True)
        for f in range(per_dir if d < dirs - 1 else files - made):
            (sub / f"file{f:05}.txt").write_bytes(b"content of %d/%d\n" % (d, f))
            made += 1
    marker.touch()


def best_of(runs: int, fn: Callable[[], float]) -> float:
    return min(fn() for _ in range(runs))


def load() -> str:
    """The machine's load: on a shared machine wall times are noisy, CPU times less so."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def time_find(root: Path) -> tuple[float, float]:
    """Wall and CPU seconds of one `find` run."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    subprocess.run(
        ["find", str(root), "-printf", "%s %T@ %i\\n"], stdout=subprocess.DEVNULL, check=True
    )
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return wall, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


Cache = dict[str, tuple[StatKey, str, Any]]


def run_scan(root: Path, rules: IgnoreRules, cache: Cache) -> ScanResult:
    return anyio.run(lambda: scan(root, ignore=rules, cache=cache.get))


def timed_scan(root: Path, rules: IgnoreRules, cache: Cache) -> tuple[ScanResult, float, float]:
    cpu, start = cpu_seconds(), time.perf_counter()
    result = run_scan(root, rules, cache)
    wall = time.perf_counter() - start
    return result, wall, cpu_seconds() - cpu


def cache_of(result: ScanResult) -> Cache:
    return {
        p: (i.stat, i.sha256, i.chunks)
        for p, i in result.items.items()
        if i.stat is not None and i.sha256 is not None
    }


def tree_mode(root: Path, files: int, dirs: int, with_ignore: bool) -> None:
    print(f"building {files} files in {dirs} dirs under {root} ...", flush=True)
    build_tree(root, files, dirs)
    rules = IgnoreRules.parse(BENCH_IGNORE) if with_ignore else IgnoreRules.empty()
    time_find(root)  # warm the inode cache
    find_s, find_cpu = min(time_find(root) for _ in range(5))
    print(f"{load()}, {os.cpu_count()} CPUs")
    print(f"find -printf            {find_s * 1000:8.1f} ms  cpu {find_cpu * 1000:.0f} ms")

    first, wall, cpu = timed_scan(root, rules, {})
    n = len(first.items)
    print(
        f"first scan (hash all)   {wall * 1000:8.1f} ms  {first.scanned / wall:9.0f} entries/s"
        f"  {first.hashed_files} files hashed, cpu/wall {cpu / wall:.2f}"
    )
    cache = cache_of(first)
    del first
    rescans = [timed_scan(root, rules, cache) for _ in range(5)]
    result = rescans[0][0]
    wall, cpu = min(r[1] for r in rescans), min(r[2] for r in rescans)
    print(
        f"rescan (warm cache)     {wall * 1000:8.1f} ms  cpu {cpu * 1000:.0f} ms"
        f"  {result.scanned / wall:9.0f} entries/s, hashed {result.hashed_files}"
    )
    print(f"rescan / find           {wall / find_s:8.2f}x wall  {cpu / find_cpu:.2f}x cpu")
    del result, rescans

    tracemalloc.start()
    result = run_scan(root, rules, cache)
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"result memory (rescan)  {held / n:8.0f} bytes per tracked entry ({n} entries)")
    del result
    tracemalloc.start()
    fresh = run_scan(root, rules, {})  # held while measuring
    held, _ = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    print(f"result memory (fresh)   {held / len(fresh.items):8.0f} bytes per tracked entry")
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    print(f"peak RSS                {peak / 1024:8.1f} MiB")


def plain_hash(path: Path) -> float:
    start = time.perf_counter()
    with open(path, "rb") as f:
        hashlib.file_digest(f, "sha256")
    return time.perf_counter() - start


def big_mode(root: Path, size_mib: int) -> None:
    big = root / "big.bin"
    if not big.exists() or big.stat().st_size != size_mib << 20:
        print(f"writing {size_mib} MiB to {big} ...", flush=True)
        block = os.urandom(1 << 20)
        with open(big, "wb") as f:
            for _ in range(size_mib):
                f.write(block)
    plain_hash(big)  # warm the page cache
    plain = best_of(3, lambda: plain_hash(big))

    def scanned() -> float:
        start = time.perf_counter()
        result = run_scan(root, IgnoreRules.empty(), {})
        assert result.hashed_bytes >= size_mib << 20
        return time.perf_counter() - start

    ours = best_of(3, scanned)
    mb = size_mib * (1 << 20) / 1e6
    print(f"hashlib.file_digest     {mb / plain:8.0f} MB/s")
    print(f"scan                    {mb / ours:8.0f} MB/s  ({plain / ours:.0%} of hashlib)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--dirs", type=int, default=1_000)
    parser.add_argument("--dir", type=Path, help="where to build (kept); default a temp dir")
    parser.add_argument("--ignore", action="store_true", help="scan with typical ignore rules")
    parser.add_argument("--big", action="store_true", help="hash one big file instead")
    parser.add_argument("--size-mib", type=int, default=1024)
    args = parser.parse_args()
    root = args.dir or Path(tempfile.mkdtemp(prefix="dropbeard-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    try:
        if args.big:
            big_mode(root, args.size_mib)
        else:
            tree_mode(root, args.files, args.dirs, args.ignore)
    finally:
        if args.dir is None:
            shutil.rmtree(root)


if __name__ == "__main__":
    main()
