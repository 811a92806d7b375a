"""Client CPU per S3 request: small PUTs (create-only, known SHA-256), GETs and HEADs
through `S3Store` against SeaweedFS on loopback, `--concurrency` in flight. Prints the
process CPU time (user+sys, this process only: the server runs in another) per request,
the least and the median of `--rounds` rounds (on a shared machine the least is the
closest to the cost itself), and requests per second. `--profile DIR` writes a cProfile
of each kind of request instead (CPU time of the event-loop thread). `--compare`
alternates each round with one where botocore builds every request (no stamped requests,
dropbeard.store.s3objects), so both are measured under the same load. Asserts nothing.

  .venv/bin/python bench/bench_requests.py [--requests 1000] [--rounds 5] [--size 4096]
                                           [--compare]
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_sync import Bench
from dropbeard.core.daemonconfig import DEFAULT_CONCURRENCY
from dropbeard.store.s3 import S3Store
from dropbeard.store.s3objects import ObjectRequests
from dropbeard.store.s3shape import METHODS
from tests.seaweed import Seaweed


async def _round(
    count: int,
    offset: int,
    concurrency: int,
    one: Callable[[int], Awaitable[object]],
    profiler: cProfile.Profile | None,
) -> tuple[float, float]:
    """(CPU seconds, wall seconds) of `count` requests, `concurrency` at a time."""
    limiter = anyio.Semaphore(concurrency)

    async def run(i: int) -> None:
        async with limiter:
            await one(offset + i)

    cpu0, wall0 = time.process_time(), time.monotonic()
    if profiler:
        profiler.enable()
    async with anyio.create_task_group() as tg:
        for i in range(count):
            tg.start_soon(run, i)
    if profiler:
        profiler.disable()
    return time.process_time() - cpu0, time.monotonic() - wall0


async def _timed(
    name: str,
    args: argparse.Namespace,
    one: Callable[[int], Awaitable[object]],
    profile_dir: Path | None,
    objects: ObjectRequests,
) -> None:
    profiler = cProfile.Profile(time.thread_time) if profile_dir else None
    count, rounds = args.requests, args.rounds
    ways = ("stamped", "botocore") if args.compare else ("",)
    cpu: dict[str, list[float]] = {way: [] for way in ways}
    wall: dict[str, list[float]] = {way: [] for way in ways}
    learned = {k: v for k, v in objects._shapes.items() if v is not None}
    for r in range(rounds):
        for w, way in enumerate(ways):
            # botocore's rounds: no shape, so every request goes through botocore
            objects._shapes = dict.fromkeys(METHODS) if way == "botocore" else dict(learned)
            offset = (r * len(ways) + w) * count
            c, t = await _round(count, offset, args.concurrency, one, profiler)
            learned |= {k: v for k, v in objects._shapes.items() if v is not None}
            cpu[way].append(1000 * c / count)
            wall[way].append(t)
    objects._shapes = learned
    if profiler:
        assert profile_dir is not None
        profiler.dump_stats(profile_dir / f"{name}.prof")
    for way in ways:
        print(
            f"{name:5s} {way:8s} {rounds} x {count} requests: {min(cpu[way]):.3f} ms CPU each "
            f"at least, {statistics.median(cpu[way]):.3f} median; "
            f"{count / min(wall[way]):.0f}/s at best",
            flush=True,
        )


async def measure(store: S3Store, args: argparse.Namespace) -> None:
    total = args.requests * args.rounds * (2 if args.compare else 1)
    bodies = [os.urandom(args.size) for _ in range(total)]
    digests = [hashlib.sha256(b).hexdigest() for b in bodies]
    # one warm-up request: opens the client and its first connection
    await store.put("warm", b"x")
    profile = Path(args.profile) if args.profile else None
    if profile:
        profile.mkdir(parents=True, exist_ok=True)

    async def put(i: int) -> None:
        await store.put_if_absent(f"b/{digests[i]}", bodies[i], sha256=digests[i])

    async def get(i: int) -> None:
        await store.get(f"b/{digests[i]}")

    async def head(i: int) -> None:
        await store.head(f"b/{digests[i]}")

    objects = await store._connection.objects()
    await _timed("put", args, put, profile, objects)
    await _timed("get", args, get, profile, objects)
    await _timed("head", args, head, profile, objects)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--requests", type=int, default=1000, help="per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--concurrency", type=int, default=DEFAULT_CONCURRENCY)
    ap.add_argument(
        "--compare", action="store_true", help="alternate rounds with botocore-built requests"
    )
    ap.add_argument("--profile", help="write put/get/head cProfile stats (thread CPU) here")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="dropbeard-bench-") as tmp:
        server = Seaweed.start(Path(tmp) / "seaweed")
        try:
            bench = Bench(server, Path(tmp), args.concurrency)
            store = bench.s3("requests")

            async def go() -> None:
                try:
                    await measure(store, args)
                finally:
                    await store.aclose()

            anyio.run(go, backend="asyncio", backend_options={"use_uvloop": True})
        finally:
            server.stop()


if __name__ == "__main__":
    main()
