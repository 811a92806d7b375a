"""A pass's first steps (`dropbeard.sync.engine._gather`): a scan of the whole root runs
while the other devices are read, so its local work overlaps the store's first request
(and, for S3, the import and creation of its client)."""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

import dropbeard.sync.engine as engine
from dropbeard.cli.main import main
from dropbeard.store.base import SMALL_REQUESTS_PER_SLOT, ListPage, Store
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.engine import run_pass
from dropbeard.sync.passrun import PassOptions
from dropbeard.sync.root import RootPaths, open_online, root_lock

pytestmark = pytest.mark.anyio


class HeldListing(ForwardingStore):
    """Holds every listing until `go` is set (for at most 5 s)."""

    def __init__(self, inner: Store, go: anyio.Event) -> None:
        super().__init__(inner)
        self.go = go

    def list(
        self, prefix: str, *, start_after: str | None = None, delimiter: str | None = None
    ) -> AsyncIterator[ListPage]:
        return self._held(prefix, start_after, delimiter)

    async def _held(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[ListPage]:
        with anyio.fail_after(5):
            await self.go.wait()
        async for page in self.inner.list(prefix, start_after=start_after, delimiter=delimiter):
            yield page


@pytest.fixture
def root(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    code = main(["init", str(root), "--remote", str(tmp_path / "remote"), "--root-id", "r1",
                 "--device-id", "laptop", "-q"])  # fmt: skip
    assert code == 0
    (root / "a.txt").write_text("a\n")
    return root


async def one_pass(root: Path, store: Store, **opts: Any) -> Any:
    paths = RootPaths(root)
    cfg, state = open_online(paths)
    try:
        with root_lock(paths):
            return await run_pass(paths, cfg, state, store, PassOptions(**opts))
    finally:
        state.close()


async def test_a_whole_root_scan_runs_while_the_other_devices_are_read(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A scan that keeps every item (a full reconcile). One that compares each folder
    with state.sqlite (`sync.folderrows`) keeps the items of what the other devices
    changed, so it comes after they are read."""
    scanning = anyio.Event()
    real = engine.scan_root

    async def scan_root(*args: Any) -> Any:
        scanning.set()  # the listing of devices/ is still held
        return await real(*args)

    monkeypatch.setattr(engine, "scan_root", scan_root)
    store = HeldListing(LocalStore(root.parent / "remote"), scanning)
    done = await one_pass(root, store, full_reconcile=True)
    assert done.snapshot is not None and done.uploaded == 1


async def test_a_scan_of_some_paths_comes_after_the_other_devices(
    root: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """It covers the paths they changed too, so it needs them first."""
    await one_pass(root, LocalStore(root.parent / "remote"))
    order: list[str] = []
    real_scan, real_read = engine.scan_root, engine.read_other_devices

    async def scan_root(*args: Any) -> Any:
        order.append("scan")
        return await real_scan(*args)

    async def read_other_devices(*args: Any) -> Any:
        read = await real_read(*args)
        order.append("read")
        return read

    monkeypatch.setattr(engine, "scan_root", scan_root)
    monkeypatch.setattr(engine, "read_other_devices", read_other_devices)
    go = anyio.Event()
    store = HeldListing(LocalStore(root.parent / "remote"), go)
    async with anyio.create_task_group() as tg:
        tg.start_soon(functools.partial(one_pass, root, store, only=["a.txt"]))
        await anyio.sleep(0.3)  # a scan that did not wait would have begun
        go.set()
    assert order == ["read", "scan"]


class TreeReadsInFlight(ForwardingStore):
    """Holds each GET of a tree node 20 ms (a link's round trip) and records how many were
    in flight at once (`most`)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.now = self.most = 0

    async def get(self, key: str) -> bytes:
        if "/trees/" not in key:
            return await self.inner.get(key)
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await anyio.sleep(0.02)
            return await self.inner.get(key)
        finally:
            self.now -= 1


async def test_a_new_device_reads_the_other_devices_folders_as_many_at_once_as_small_requests(
    root: Path, tmp_path: Path
) -> None:
    """Tree nodes are small requests: a device joining a tree of many folders reads them
    as many at a time as the budget runs small requests (64 by default), not one per
    large-request slot (16), which over a 30 ms link made 800 folders cost 50 round
    trips instead of about 13."""
    for i in range(200):
        (root / f"d{i:03d}").mkdir()
        (root / f"d{i:03d}" / "f.txt").write_text(f"{i}\n")
    await one_pass(root, LocalStore(tmp_path / "remote"))
    other = tmp_path / "other"
    joining = ["init", str(other), "--remote", str(tmp_path / "remote"), "--root-id", "r1",
               "--device-id", "desktop", "-q"]  # fmt: skip
    assert await anyio.to_thread.run_sync(main, joining) == 0  # main runs its own loop
    store = TreeReadsInFlight(LocalStore(tmp_path / "remote"))
    done = await one_pass(other, store, concurrency=16)
    assert done.downloaded == 201
    assert 16 < store.most <= 16 * SMALL_REQUESTS_PER_SLOT, store.most
