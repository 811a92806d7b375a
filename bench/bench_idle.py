"""A big tree against the local-directory remote: first sync, idle sync, memory per file.
Prints numbers; asserts nothing.

  .venv/bin/python bench/bench_idle.py [--files 100000] [--idle-runs 7]

Each `dropbeard sync` runs as its own process (as a person runs it), so its peak RSS is
measured alone (RUSAGE_CHILDREN of a fresh helper process per run).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

MEASURE = """
import resource, subprocess, sys, time
began = time.perf_counter()
out = subprocess.run(sys.argv[1:], capture_output=True, text=True)
wall = time.perf_counter() - began
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(wall, usage.ru_maxrss, usage.ru_utime + usage.ru_stime, out.returncode)
sys.stdout.write(out.stdout)
sys.stderr.write(out.stderr)
"""


def run(*argv: str) -> tuple[float, int, float, dict[str, object]]:
    """(wall seconds, peak RSS KiB, CPU seconds, summary JSON) of one command."""
    done = subprocess.run(
        [sys.executable, "-c", MEASURE, sys.executable, "-m", "dropbeard", *argv],
        capture_output=True,
        text=True,
        check=False,
    )
    first, _, rest = done.stdout.partition("\n")
    wall, rss, cpu, code = first.split()
    if int(code) != 0:
        raise SystemExit(f"{argv} exited {code}: {done.stderr.strip()}")
    summary = json.loads(rest) if rest.strip().startswith("{") else {}
    return float(wall), int(rss), float(cpu), summary


def make_tree(root: Path, files: int) -> None:
    for i in range(files):
        d = root / f"d{i // 100:04d}"
        if i % 100 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06d}.txt").write_bytes(i.to_bytes(8, "big") * 16)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--idle-runs", type=int, default=7)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="dropbeard-idle-"))
    try:
        root, remote = work / "A", work / "remote"
        began = time.perf_counter()
        make_tree(root, args.files)
        print(
            f"tree: {args.files} files of 128 B in {args.files // 100} folders "
            f"({time.perf_counter() - began:.1f}s to build)"
        )
        run("init", str(root), "--remote", str(remote), "--device-id", "laptop", "-q")
        wall, rss, cpu, s = run("sync", str(root), "--json")
        print(
            f"first sync:  {wall:7.2f}s wall {cpu:6.2f}s CPU  peak RSS {rss / 1024:6.0f} MiB "
            f"({rss * 1024 / args.files:.0f} B/file)  uploaded {s.get('uploaded')} "
            f"-> {args.files / wall:.0f} files/s"
        )
        idle_walls, idle_cpus, find_walls = [], [], []
        for i in range(args.idle_runs):  # alternating with find: the same machine moment
            wall, rss, cpu, s = run("sync", str(root), "--json")
            print(
                f"idle sync {i + 1}: {wall:7.2f}s wall {cpu:6.2f}s CPU  peak RSS "
                f"{rss / 1024:6.0f} MiB ({rss * 1024 / args.files:.0f} B/file)  pass "
                f"{s.get('duration_s')}s, hashed {s.get('hashed')}, "
                f"published {s.get('snapshot')}"
            )
            t0 = time.perf_counter()
            subprocess.run(
                ["find", str(root), "-printf", "%s %T@ %i\\n"],
                stdout=subprocess.DEVNULL,
                check=True,
            )
            find_walls.append(time.perf_counter() - t0)
            print(f"find -printf over the same tree: {find_walls[-1]:.2f}s")
            if i:  # the first idle sync may still hash files written in the tree's last second
                idle_walls.append(wall)
                idle_cpus.append(cpu)
        if idle_walls:
            w, c, f = (statistics.median(x) for x in (idle_walls, idle_cpus, find_walls[1:]))
            print(
                f"idle sync median (runs 2-{args.idle_runs}): {w:.2f}s wall {c:.2f}s CPU; "
                f"find median {f:.2f}s -> {w / f:.2f}x find's wall"
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONDONTWRITEBYTECODE", "1")
    main()
