"""Throughput of a mixed ~1 GiB tree through SeaweedFS on loopback: publish (MB/s) and a
second device bootstrapping it (MB/s), each next to a plain concurrent transfer of the same
bytes with the same client library in the same run. Prints numbers; asserts nothing.

  .venv/bin/python bench/bench_transfer.py [--mib 1024] [--concurrency 16]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_sync import Bench
from dropbeard.core.daemonconfig import DEFAULT_CONCURRENCY
from tests.seaweed import Seaweed

MiB = 1024 * 1024


def make_mixed(root: Path, total_mib: int) -> list[Path]:
    """Half the bytes in 64 MiB files, half in 256 KiB files."""
    files: list[Path] = []
    big = max(1, total_mib // 2 // 64)
    for i in range(big):
        p = root / "video" / f"clip{i:03d}.bin"
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "wb") as f:
            for _ in range(64):
                f.write(os.urandom(MiB))
        files.append(p)
    small = total_mib // 2 * 4
    for i in range(small):
        p = root / "photos" / f"{i // 100:03d}" / f"img{i:05d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(os.urandom(256 * 1024))
        files.append(p)
    return files


async def plain_roundtrip(b: Bench, files: list[Path], work: Path) -> tuple[float, float]:
    """MB/s of a plain concurrent upload (put_file) and download (get_file) of `files`."""
    store = b.s3("plain-mixed")
    limiter = anyio.CapacityLimiter(b.concurrency)
    total = sum(p.stat().st_size for p in files)

    async def up(i: int, p: Path) -> None:
        async with limiter:
            await store.put_file(f"o/{i:06d}", p)

    async def down(i: int) -> None:
        async with limiter:
            await store.get_file(f"o/{i:06d}", work / "plain-down" / f"{i:06d}")

    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i, p in enumerate(files):
            tg.start_soon(up, i, p)
    up_secs = time.perf_counter() - began
    (work / "plain-down").mkdir()
    began = time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(len(files)):
            tg.start_soon(down, i)
    down_secs = time.perf_counter() - began
    await store.aclose()
    shutil.rmtree(work / "plain-down", ignore_errors=True)
    return total / up_secs / 1e6, total / down_secs / 1e6


def tree_digest(root: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and ".dropbear" not in p.parts:
            h.update(str(p.relative_to(root)).encode())
            h.update(hashlib.sha256(p.read_bytes()).digest())
    return h.hexdigest()


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="dropbeard-xfer-"))
    server = Seaweed.start(work / "seaweed")
    try:
        await server.wait_writable()
        b = Bench(server, work, args.concurrency)
        src = work / "a"
        files = make_mixed(src, args.mib)
        total = sum(p.stat().st_size for p in files)
        print(f"tree: {len(files)} files, {total / 1e6:.0f} MB (half 64 MiB files, half 256 KiB)")
        plain_up, plain_down = await plain_roundtrip(b, files, work)
        print(f"plain concurrent put_file: {plain_up:7.1f} MB/s   get_file: {plain_down:7.1f} MB/s")
        a = await b.init(src, "mixed", "laptop")
        secs, cpu, _ = await b.sync(a, "mixed")
        print(
            f"dropbeard publish:         {total / secs / 1e6:7.1f} MB/s  ({secs:.1f}s, "
            f"CPU {cpu:.1f}s incl. hashing)"
        )
        dst = work / "b"
        bb = await b.init(dst, "mixed", "desktop")
        secs, cpu, _ = await b.sync(bb, "mixed")
        print(
            f"dropbeard bootstrap:       {total / secs / 1e6:7.1f} MB/s  ({secs:.1f}s, "
            f"CPU {cpu:.1f}s incl. verifying)"
        )
        same = tree_digest(src) == tree_digest(dst)
        print(f"trees identical: {same}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--mib", type=int, default=1024)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    anyio.run(main, parser.parse_args())
