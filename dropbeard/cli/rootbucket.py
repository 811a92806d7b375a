"""The bucket of the root a command names, for the commands that read history or look
after the bucket (ls, versions, restore, verify, gc, retention, devices) (IO: the
root's config, its caches, the store).

They read the root's identity (an offline root exits 3) but not its sync state, and
hold no lock: they write nothing into the root but what `restore` brings back, and the
bucket is safe for them without one (SPEC 8.2). Nodes read from old snapshots go to a
cache of their own (`RootPaths.history_trees`): the sync pass's cache records when it
last saw a node in the bucket, which a writer relies on (SPEC 8.2), and seeing a node in
an old snapshot must not count.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import msgspec

from dropbeard.cli.patience import watched
from dropbeard.core.config import RootConfig
from dropbeard.core.errors import UsageError
from dropbeard.core.keys import RootKeys
from dropbeard.core.paths import normalize_path
from dropbeard.store.base import Store
from dropbeard.store.factory import open_store
from dropbeard.sync.devicelog import SnapshotReader
from dropbeard.sync.root import RootPaths, enclosing_root, find_root, open_online
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.trees import TreeStore


class RootBucket(msgspec.Struct):
    """An online root's config, paths and bucket."""

    paths: RootPaths
    cfg: RootConfig
    store: Store

    @property
    def keys(self) -> RootKeys:
        return RootKeys(self.cfg.root_id)

    @property
    def device_id(self) -> str:
        return self.cfg.device_id

    def trees(self, *, cached: bool = True) -> TreeStore:
        """Nodes through the history cache, or (`cached` False) all from the bucket."""
        cache = NodeCache(self.paths.history_trees) if cached else None
        return TreeStore(self.store, self.keys, cache)

    def reader(self) -> SnapshotReader:
        return SnapshotReader(self.store, self.keys, self.paths.log_cache)


def _root_of(path: Path | None) -> RootPaths:
    if path is not None:
        return RootPaths(find_root(path))
    here = enclosing_root(Path.cwd())
    if here is None:
        raise UsageError("not inside a dropbeard folder: cd into one, or give --root DIR")
    return RootPaths(here)


def _online(paths: RootPaths) -> RootConfig:
    cfg, state = open_online(paths)
    state.close()
    return cfg


@contextlib.asynccontextmanager
async def open_root_bucket(path: Path | None) -> AsyncIterator[RootBucket]:
    """The root holding `path` (else the current folder), checked online, with its store."""
    paths = await anyio.to_thread.run_sync(_root_of, path)
    cfg = await anyio.to_thread.run_sync(_online, paths)
    store = watched(open_store(cfg.remote))
    try:
        yield RootBucket(paths, cfg, store)
    finally:
        await store.aclose()


def root_relative(root: Path, path: Path) -> str:
    """`path` (absolute, or relative to the current folder) as a path inside `root`
    ("" for the root itself); UsageError outside it."""
    full = Path(os.path.abspath(path))
    try:
        rel = full.relative_to(root).as_posix()
    except ValueError:
        raise UsageError(f"{full} is not inside the root {root}") from None
    if rel == ".":
        return ""
    if rel == ".dropbear" or rel.startswith(".dropbear/"):
        raise UsageError(f"{full} is dropbeard's own folder, never synced")
    return normalize_path(rel)
