"""Sync benchmarks against a real SeaweedFS on loopback. Prints numbers; asserts nothing.

  .venv/bin/python bench/bench_sync.py [--files 20000] [--size 2048] [--concurrency 16]

Measures, each next to its limit measured in the same run:
- publishing N new small files (files/s, requests per file, client CPU per request) vs a
  plain concurrent PUT loop of the same objects through the same client library;
- a second device bootstrapping them (files/s) vs a plain concurrent GET loop;
- requests made by an idle `sync` with 3 other devices;
- peak RSS.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from dropbeard.core.config import RemoteConfig, RootConfig
from dropbeard.core.daemonconfig import DEFAULT_CONCURRENCY
from dropbeard.store.counting import CountingStore
from dropbeard.store.retry import RetryingStore
from dropbeard.store.s3 import S3Store
from dropbeard.store.s3client import Credentials
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.enroll import InitRequest, init_root
from dropbeard.sync.root import RootPaths, open_online
from tests.seaweed import Seaweed


def cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_tree(root: Path, files: int, size: int) -> None:
    for i in range(files):
        d = root / f"d{i // 200:04d}"
        if i % 200 == 0:
            d.mkdir(parents=True, exist_ok=True)
        (d / f"f{i:06d}.bin").write_bytes(i.to_bytes(8, "big") + os.urandom(max(0, size - 8)))


class Bench:
    def __init__(self, server: Seaweed, work: Path, concurrency: int) -> None:
        self.server = server
        self.work = work
        self.concurrency = concurrency

    def s3(self, prefix: str) -> S3Store:
        return S3Store(
            self.server.bucket,
            prefix,
            endpoint_url=self.server.endpoint,
            addressing_style="path",
            credentials=Credentials(self.server.access_key, self.server.secret_key),
            concurrency=self.concurrency,
        )

    def remote(self, prefix: str) -> RemoteConfig:
        url = f"s3://{self.server.bucket}/{prefix}"
        return RemoteConfig(url=url, endpoint_url=self.server.endpoint, addressing_style="path")

    async def init(
        self, folder: Path, prefix: str, device: str, mode: str = "bidirectional"
    ) -> RootPaths:
        remote = self.remote(prefix)
        req = InitRequest(path=folder, remote=remote, root_id="bench", device_id=device, mode=mode)
        cfg = RootConfig(
            root_id="bench",
            device_id=device,
            mode=mode,  # type: ignore[arg-type]
            remote=remote,
        )
        store = self.s3(prefix)
        try:
            return (await init_root(req, cfg, store)).paths
        finally:
            await store.aclose()

    async def sync(self, paths: RootPaths, prefix: str) -> tuple[float, float, CountingStore]:
        cfg, state = open_online(paths)
        counting = CountingStore(self.s3(prefix))
        store = RetryingStore(counting)
        began_cpu, began = cpu(), time.perf_counter()
        try:
            await run_pass(paths, cfg, state, store, PassOptions(concurrency=self.concurrency))
        finally:
            state.close()
            await store.aclose()
        return time.perf_counter() - began, cpu() - began_cpu, counting


async def plain_put_loop(
    store: S3Store, folder: Path, concurrency: int
) -> tuple[float, float, int]:
    files = await anyio.to_thread.run_sync(lambda: sorted(folder.rglob("*.bin")))
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(i: int, p: Path) -> None:
        async with limiter:
            data = await anyio.to_thread.run_sync(p.read_bytes)
            await store.put(f"plain/{i:06d}", data)

    began_cpu, began = cpu(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i, p in enumerate(files):
            tg.start_soon(one, i, p)
    return time.perf_counter() - began, cpu() - began_cpu, len(files)


async def plain_get_loop(store: S3Store, count: int, concurrency: int) -> tuple[float, float]:
    limiter = anyio.CapacityLimiter(concurrency)

    async def one(i: int) -> None:
        async with limiter:
            await store.get(f"plain/{i:06d}")

    began_cpu, began = cpu(), time.perf_counter()
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(one, i)
    return time.perf_counter() - began, cpu() - began_cpu


async def main(args: argparse.Namespace) -> None:
    work = Path(tempfile.mkdtemp(prefix="dropbeard-bench-"))
    server = Seaweed.start(work / "seaweed")
    try:
        await server.wait_writable()
        print(f"SeaweedFS ready in {server.startup_seconds:.2f}s")
        b = Bench(server, work, args.concurrency)
        n = args.files
        src = work / "a"
        make_tree(src, n, args.size)
        print(f"tree: {n} files of {args.size} B in {n // 200 + 1} folders")

        plain = b.s3("plainloop")
        secs, cpus, count = await plain_put_loop(plain, src, args.concurrency)
        print(
            f"plain PUT loop:      {count / secs:8.0f} files/s  "
            f"client CPU {cpus / count * 1e3:.2f} ms/request"
        )

        a = await b.init(src, "bench", "laptop")
        secs, cpus, counting = await b.sync(a, "bench")
        reqs = sum(counting.counts.values())
        print(
            f"dropbeard publish:   {n / secs:8.0f} files/s  {reqs / n:.3f} requests/file  "
            f"client CPU {cpus / max(reqs, 1) * 1e3:.2f} ms/request "
            f"({cpus / n * 1e3:.2f} ms/file incl. scan+hash)  [{dict(counting.counts)}]"
        )
        print(f"  peak RSS so far {peak_rss_mb():.0f} MB")

        secs, cpus, counting = await b.sync(a, "bench")
        print(f"idle sync (no other devices): {secs:.2f}s, requests {dict(counting.counts)}")

        secs_g, cpus_g = await plain_get_loop(plain, count, args.concurrency)
        print(
            f"plain GET loop:      {count / secs_g:8.0f} files/s  "
            f"client CPU {cpus_g / count * 1e3:.2f} ms/request"
        )
        dst = work / "b"
        bb = await b.init(dst, "bench", "desktop")
        secs, cpus, counting = await b.sync(bb, "bench")
        print(
            f"dropbeard bootstrap: {n / secs:8.0f} files/s  "
            f"client CPU {cpus / n * 1e3:.2f} ms/file  [{dict(counting.counts)}]"
        )

        for dev in ("server", "usb"):
            extra = await b.init(work / dev, "bench", dev)
            await b.sync(extra, "bench")
        await b.sync(a, "bench")
        secs, cpus, counting = await b.sync(a, "bench")
        print(
            f"idle sync with 3 other devices: {secs:.2f}s, "
            f"{sum(counting.counts.values())} requests {dict(counting.counts)}"
        )
        print(f"peak RSS {peak_rss_mb():.0f} MB")
        await plain.aclose()
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    anyio.run(main, parser.parse_args())
