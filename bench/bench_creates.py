"""What a file create costs the kernel just after a folder beside it was deleted: the cost a
download pays per file in the anchor benchmark's second and third runs. Prints numbers;
asserts nothing.

  .venv/bin/python bench/bench_creates.py [--files 5000] [--dir DIR] [--runs 3]

ext4 without a journal (this project's benchmark machine) does not reuse an inode freed
in the last 60 s (360 s while its inode table block is still dirty): every create walks
past each such inode of the group it allocates from (`recently_deleted` in
fs/ext4/ialloc.c), and a file goes to its folder's group. So after `rm -rf` of a
download, each create of the next download into a folder beside it walks past every
file just deleted: the cost per file grows with the files deleted, for any program.
The anchor benchmark deletes each run's download before the next run (of either tool).

Like the benchmark's runs: each run creates FILES files of 16 KiB (open, write, close, as
a download writes its temporary file) in a new folder, then deletes that folder; the next
run starts at once, beside it. Printed per create: the process's system CPU (getrusage)
and wall time in each run, and whether the file system has a journal.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path

BODY = os.urandom(16 * 1024)
FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC


def create(folder: Path, files: int) -> tuple[float, float]:
    """Seconds of system CPU and of wall time to create `files` files in `folder`."""
    folder.mkdir()
    sys_before, wall_before = resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.monotonic()
    for i in range(files):
        fd = os.open(folder / f"f{i:06d}.tmp", FLAGS, 0o644)
        try:
            os.write(fd, BODY)
        finally:
            os.close(fd)
    sys_after, wall_after = resource.getrusage(resource.RUSAGE_SELF).ru_stime, time.monotonic()
    return sys_after - sys_before, wall_after - wall_before


def journal(path: Path) -> str:
    """'yes', 'no' or 'unknown': whether the ext4 file system holding `path` has a journal
    (jbd2 lists the devices it journals in /proc/fs/jbd2)."""
    dev = os.stat(path).st_dev
    try:
        name = Path(f"/sys/dev/block/{os.major(dev)}:{os.minor(dev)}").resolve().name
        journals = os.listdir("/proc/fs/jbd2")
    except OSError:
        return "unknown"
    return "yes" if any(j.startswith(f"{name}-") for j in journals) else "no"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--files", type=int, default=5000)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--dir", type=Path, default=None, help="where to work (default: a temp dir)")
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench-creates-", dir=args.dir))
    print(f"{args.files} files of 16 KiB in {work} (journal: {journal(work)})")
    try:
        for run in range(args.runs):
            folder = work / f"dst{run}"
            cpu, wall = create(folder, args.files)
            state = "a fresh folder" if run == 0 else f"after {run} deletes"
            print(
                f"run {run + 1} ({state}): {1e6 * cpu / args.files:6.1f} us system CPU, "
                f"{1e6 * wall / args.files:6.1f} us wall per create"
            )
            shutil.rmtree(folder)  # as the benchmark deletes each download
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
