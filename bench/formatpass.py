"""Passes as the daemon runs them, in this process, for bench/bench_format.py: after a
watcher event (a pass over the edited path) and after another device's head moved (a pass
over nothing local), each with the node cache kept across passes as the daemon keeps it.
Counts every request, the bytes read and written, and the CPU of the pass alone
(`time.process_time`: every thread of this process, no interpreter start-up).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

from dropbeard.core.config import RemoteConfig
from dropbeard.core.summary import Summary
from dropbeard.store.base import Store
from dropbeard.store.counting import CountingStore
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.root import RootPaths, open_online, root_lock
from dropbeard.sync.treecache import NodeCache


class Tally(CountingStore):
    """Counts requests (as CountingStore), the bytes read and written, and each object
    written with its size."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.read = 0
        self.written: dict[str, int] = {}

    def reset(self) -> None:
        super().reset()
        self.read, self.written = 0, {}

    async def get(self, key: str) -> bytes:
        data = await super().get(key)
        self.read += len(data)
        return data

    async def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        got = await super().get_if_changed(key, etag)
        self.read += 0 if got is None else len(got[0])
        return got

    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.written[key] = len(data)
        return await super().put(key, data, sha256=sha256)

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.written[key] = len(data)
        return await super().put_if_absent(key, data, sha256=sha256)

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        self.written[key] = len(data)
        return await super().put_if_match(key, data, etag)


@dataclass
class PassCost:
    """One pass: its CPU and wall time, requests by kind, bytes read, objects written."""

    cpu: float
    wall: float
    requests: Counter[str]
    read: int
    written: dict[str, int]
    summary: Summary

    @property
    def trees_written(self) -> list[int]:
        """The sizes of the tree nodes it wrote, largest first."""
        return sorted((n for k, n in self.written.items() if "/trees/" in k), reverse=True)

    def describe(self) -> str:
        kinds = ", ".join(f"{k} {n}" for k, n in sorted(self.requests.items()))
        nodes = ", ".join(f"{n / 1024:.1f}" for n in self.trees_written) or "none"
        return (
            f"{self.cpu:.3f} s CPU ({self.wall:.3f} s wall); {sum(self.requests.values())} "
            f"requests ({kinds}); read {self.read / 1024:.1f} KiB; wrote "
            f"{len(self.written)} objects, {sum(self.written.values()) / 1024:.1f} KiB "
            f"(tree nodes, KiB: {nodes})"
        )


@dataclass
class Daemonlike:
    """Runs passes on roots as one daemon process would: one store per remote, one node
    cache per root, kept across passes."""

    open_store: Callable[[RemoteConfig], Store]
    caches: dict[Path, NodeCache] = field(default_factory=dict)
    stores: dict[Path, Tally] = field(default_factory=dict)

    async def one(self, root: Path, only: Iterable[str]) -> PassCost:
        paths = RootPaths(root)
        cfg, state = open_online(paths)
        store = self.stores.get(root)
        if store is None:
            store = self.stores[root] = Tally(self.open_store(cfg.remote))
        cache = self.caches.setdefault(root, NodeCache(paths.trees))
        store.reset()
        opts = PassOptions(only=frozenset(only), node_cache=cache)
        try:
            with root_lock(paths):
                began, cpu = time.perf_counter(), time.process_time()
                summary = await run_pass(paths, cfg, state, store, opts)
                cpu, wall = time.process_time() - cpu, time.perf_counter() - began
        finally:
            state.close()
        return PassCost(cpu, wall, Counter(store.counts), store.read, store.written, summary)

    async def aclose(self) -> None:
        for store in self.stores.values():
            await store.aclose()


def edit_and_pull(
    device: Daemonlike, a: Path, b: Path, rel: str, label: str
) -> dict[str, PassCost]:
    """Warm both devices up with an idle pass each, then edit `rel` on a: a's pass over
    it, then b's pass over what a's head changed."""

    async def go() -> dict[str, PassCost]:
        try:
            await device.one(a, [])
            await device.one(b, [])
            (a / rel).write_bytes((a / rel).read_bytes() + f"{label}\n".encode())
            push = await device.one(a, [rel])
            pull = await device.one(b, [])
            return {"push": push, "pull": pull}
        finally:
            await device.aclose()

    costs = anyio.run(go, backend_options={"use_uvloop": True})
    assert costs["push"].summary.uploaded == 1, costs["push"].summary
    assert costs["pull"].summary.downloaded == 1, costs["pull"].summary
    assert (b / rel).read_bytes() == (a / rel).read_bytes(), rel
    return costs


def daemonlike(env: dict[str, str], a: Path, b: Path, rel: str, label: str) -> dict[str, str]:
    """The edit as daemons make it: a's pass after its watcher event, b's after a's head
    moved; each pass's CPU, requests, bytes (S3 credentials from `env`)."""
    from dropbeard.store.factory import open_store

    saved = dict(os.environ)
    os.environ.update({k: v for k, v in env.items() if k.startswith("DROPBEAR_S3_")})
    try:
        costs = edit_and_pull(Daemonlike(open_store), a, b, rel, label)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    push, pull = costs["push"], costs["pull"]
    levels = len(push.trees_written)
    print(
        f"edit {label} as daemons make it ({rel}):\n  a's pass: {push.describe()}\n"
        f"  b's pass: {pull.describe()}\n  levels rewritten {levels}: requests "
        f"{sum(push.requests.values())} (target <= {2 * levels + 4}), largest node "
        f"{max(push.trees_written, default=0) / 1024:.1f} KiB (target < 32), b read "
        f"{pull.read / 1024:.1f} KiB (target <= {32 * levels})"
    )
    requests = sum(push.requests.values())
    return {
        f"daemon: edit {label}: a's pass CPU / requests": f"{push.cpu:.3f} s / {requests}",
        f"daemon: edit {label}: b's pass CPU / KiB read": (
            f"{pull.cpu:.3f} s / {pull.read / 1024:.1f}"
        ),
    }
