"""The bucket-and-disk side of one daemon root (IO: root, state, store, engine): one locked
pass at a time, the root's store kept across passes (rebuilt when root.toml's remote
changes), the cheap head check between passes, the running pass's progress, and the log
events for changed paths, transfers and problems. `rootloop.RootRunner` decides *when*;
this does the work.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from dropbeard.core.changes import PathChange
from dropbeard.core.config import RemoteConfig, RootConfig
from dropbeard.core.daemonconfig import RootSettings
from dropbeard.core.errors import NotFound, PreconditionFailed, single_error
from dropbeard.core.keys import RootKeys
from dropbeard.core.problems import Problem
from dropbeard.core.summary import Summary
from dropbeard.store.base import Store
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.meter import PassMeter, Stage, Transfer
from dropbeard.sync.root import RootPaths, open_online, root_lock
from dropbeard.sync.state import Peer
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.upkeep import upkeep

#: Builds the store for a root's remote with the given transfer concurrency.
StoreFactory = Callable[[RemoteConfig, int], Store]
MAX_PROBLEM_EVENTS = 50


class RootSync:
    def __init__(
        self,
        root: Path,
        settings: RootSettings,
        *,
        store_factory: StoreFactory,
        log: Any,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.paths = RootPaths(root)
        self.settings = settings
        self.log = log
        self._store_factory = store_factory
        self._clock = clock
        self._cfg: RootConfig | None = None
        self._store: Store | None = None
        self._meter: PassMeter | None = None  # the running pass's
        self._heads: dict[str, str] = {}  # device -> head etag last seen
        self._seeded = False
        self._problems: set[tuple[str, str]] = set()
        #: `.dropbear/trees/`, its index read once for every pass rather than by each
        self._node_cache = NodeCache(self.paths.trees)

    @property
    def ready_to_poll(self) -> bool:
        return self._store is not None

    def in_flight(self) -> list[dict[str, Any]]:
        """The running pass's transfers, each named by its path."""
        return [] if self._meter is None else self._meter.in_flight()

    def progress(self) -> dict[str, Any] | None:
        """The running pass's stage: done/total files and bytes, rate, ETA, current file."""
        return None if self._meter is None else self._meter.view()

    async def aclose(self) -> None:
        if self._store is not None:
            await self._store.aclose()

    async def run(self, only: frozenset[str] | None, on_start: Callable[[], None]) -> Summary:
        """One pass: identity check (OfflineError), lock (Busy), engine. `on_start` is called
        once the root is known to be online and locked."""
        cfg, state = await anyio.to_thread.run_sync(open_online, self.paths)
        try:
            store = await self._store_for(cfg)
            with contextlib.ExitStack() as lock:
                await anyio.to_thread.run_sync(lock.enter_context, root_lock(self.paths))
                on_start()
                self._meter = PassMeter(listener=self, clock=self._clock)
                opts = PassOptions(
                    concurrency=self.settings.concurrency,
                    only=only,
                    meter=self._meter,
                    on_change=self._changed_path,
                    node_cache=self._node_cache,
                )
                try:
                    summary = await run_pass(self.paths, cfg, state, store, opts)
                except BaseExceptionGroup as group:  # a task group inside the pass failed
                    error = single_error(group)
                    if error is None:
                        raise
                    raise error from group
                finally:
                    self._meter = None
            problems = await anyio.to_thread.run_sync(state.problems)
            if not self._seeded:  # the head check starts from what the index processed
                peers: dict[str, Peer] = await anyio.to_thread.run_sync(state.peers)
                for dev, peer in peers.items():
                    if peer.head_etag:
                        self._heads.setdefault(dev, peer.head_etag)
                self._seeded = True
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(state.close)
        self._log_problems(problems)
        return summary

    async def maintain(self) -> None:
        """The daily upkeep (SPEC 7): gc, then the repair of this device's head, logged as
        the events `gc` and `verify` with their counts. Needs no lock: gc is safe beside
        passes (SPEC 8.2), and the repair only reads this root's files."""
        cfg, state = await anyio.to_thread.run_sync(open_online, self.paths)
        await anyio.to_thread.run_sync(state.close)
        done = await upkeep(self.paths, cfg, await self._store_for(cfg))
        if done.gc.warning:
            self.log.warning("gc_grace", message=done.gc.warning)
        self.log.info("gc", **done.gc_event())
        (self.log.info if done.repair.ok else self.log.warning)("verify", **done.verify_event())

    async def heads_changed(self) -> list[str]:
        """Other devices whose head moved since last seen: one LIST, one conditional GET
        each (a 304 when nothing changed). Empty until a pass has opened the store."""
        store, cfg = self._store, self._cfg
        if store is None or cfg is None:
            return []
        keys, me = RootKeys(cfg.root_id), cfg.device_id
        devices: set[str] = set()
        async for page in store.list(keys.devices_prefix, delimiter="/"):
            for prefix in page.prefixes:
                with contextlib.suppress(ValueError):
                    dev = keys.device_of(prefix)
                    if dev and dev != me:
                        devices.add(dev)
        changed = []
        for dev in sorted(devices):
            try:
                got = await store.get_if_changed(keys.head(dev), self._heads.get(dev))
            except NotFound:
                continue  # registered, never published
            if got is not None:
                self._heads[dev] = got[1]
                changed.append(dev)
        return changed

    async def _store_for(self, cfg: RootConfig) -> Store:
        if self._store is not None and self._cfg is not None and self._cfg.remote == cfg.remote:
            self._cfg = cfg
            return self._store
        if self._store is not None:
            await self._store.aclose()
        self._store = self._store_factory(cfg.remote, self.settings.concurrency)
        self._cfg = cfg
        self._heads, self._seeded = {}, False
        return self._store

    # -- PassMeter's listener, and on_change --------------------------------------------

    def changed(self, stage: Stage) -> None:
        pass  # status reads the meter when asked

    def ended(self) -> None:
        pass

    def _changed_path(self, change: PathChange) -> None:
        """One event per changed path; problems are logged once they settle (below)."""
        if change.event != "problem":
            fields = msgspec.to_builtins(change)
            del fields["event"]
            self.log.info(change.event, **fields)

    def transfer_ended(self, t: Transfer, error: BaseException | None) -> None:
        view = t.view(self._clock())
        if error is None:  # the path's `uploaded`/`downloaded` event says it at info
            self.log.debug("transfer", **view)
        elif isinstance(error, PreconditionFailed):  # the blob is there already: fine
            self.log.debug("transfer_skipped", reason="already in the bucket", **view)
        elif isinstance(error, Exception):
            self.log.warning("transfer_failed", error=str(error), **view)

    def _log_problems(self, problems: list[Problem]) -> None:
        """A `problem` event when one appears, not again on every pass while it stays."""
        now = {(p.path, p.kind) for p in problems}
        fresh = [p for p in problems if (p.path, p.kind) not in self._problems]
        for p in fresh[:MAX_PROBLEM_EVENTS]:
            self.log.warning("problem", path=p.path, kind=p.kind, message=p.message)
        if len(fresh) > MAX_PROBLEM_EVENTS:
            self.log.warning("problems_truncated", more=len(fresh) - MAX_PROBLEM_EVENTS)
        self._problems = now
