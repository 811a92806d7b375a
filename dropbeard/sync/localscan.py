"""The root as one pass scans it (IO: the root, state.sqlite, worker threads): the whole
root or some paths, the stat cache vouching for files whose stamps did not change; a scan
of the whole root that need not see every path compares each folder with state.sqlite and
keeps only what changed (`dropbeard.sync.folderrows`).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable
from pathlib import Path

import anyio
import msgspec

from dropbeard.core.chunking import Chunk
from dropbeard.core.ignore import IgnoreRules
from dropbeard.core.model import Entry
from dropbeard.core.passrules import StatRow, local_entries, racy_after_ns
from dropbeard.core.plan import Plan
from dropbeard.core.problems import Problem
from dropbeard.sync.ahead import Ahead
from dropbeard.sync.apply import Applied, apply_plan
from dropbeard.sync.folderrows import Compare, Flush, FolderRows
from dropbeard.sync.hashing import HashCounts, StatKey
from dropbeard.sync.meter import PassMeter
from dropbeard.sync.passrun import PassRun
from dropbeard.sync.passscope import Scope
from dropbeard.sync.scan import LocalItem, ScanResult, scan
from dropbeard.sync.state import State


class LocalScan(msgspec.Struct, frozen=True):
    """The root as this pass found it, within its scope. `entries` is the scan as
    reconcile's `local`; `cache` the stat-cache rows the scan trusted (of the paths it
    covered), and `racy_after_ns` the cut-off for trusting new rows
    (`core.passrules.stat_rows`); `targets` the paths it covered (None: the whole root)."""

    result: ScanResult
    entries: dict[str, Entry]
    cache: dict[str, StatRow]
    racy_after_ns: int
    targets: frozenset[str] | None

    @property
    def changed(self) -> dict[str, Entry] | None:
        """What a scan that compared each folder with state.sqlite found changed (or kept
        for the pass): `entries` without the files it vouched for; None for a scan that
        did not compare (every entry may have changed)."""
        compared = self.result.compared
        if compared is None:
            return None
        if not compared.vouched:
            return self.entries
        return {p: e for p, e in self.entries.items() if p not in compared.vouched}

    @property
    def vanished(self) -> list[str]:
        """The tracked paths a comparing scan no longer found (or could not read now)."""
        compared = self.result.compared
        return [] if compared is None else compared.vanished


async def scan_root(
    run: PassRun,
    scope: Scope,
    ignore: IgnoreRules,
    problem: Problem | None = None,
    keep: frozenset[str] | None = None,
    flush: Flush | None = None,
    ahead: Ahead | None = None,
) -> LocalScan:
    """Walk the root (or the scope's targets), re-hashing only files the stat cache cannot
    vouch for, with the ignore rules `ignore` (`problem`: why they could not be read).
    `keep` (a whole-root scan that need not see every path: not a full reconcile):
    compare each folder with what state.sqlite tracks in it and keep only what changed
    and the items of `keep` and below (`dropbeard.sync.folderrows`), offering `ahead` the
    new small files' bytes."""
    targets = scope.targets
    if targets is None and keep is not None:
        return await _compared_scan(run, ignore, problem, keep, flush, ahead)
    if targets is None:
        cache = await anyio.to_thread.run_sync(run.state.stat_cache)
    else:
        cache = await anyio.to_thread.run_sync(run.state.stat_cache_below, targets)

    def cached(path: str) -> tuple[StatKey, str, tuple[Chunk, ...] | None] | None:
        row = cache.get(path)
        return None if row is None else (StatKey(row[0], row[1], row[2], row[3]), row[4], row[5])

    meter = run.opts.meter
    hashing = None if meter is None else _meter_hashing(meter)
    result = await scan(run.paths.root, ignore=ignore, cache=cached, only=targets, hashing=hashing)
    if problem is not None:
        result.problems.append(problem)
    entries = local_entries(result.items)
    return LocalScan(result, entries, cache, racy_after_ns(run.now), targets)


async def _compared_scan(
    run: PassRun,
    ignore: IgnoreRules,
    problem: Problem | None,
    keep: frozenset[str],
    flush: Flush | None,
    ahead: Ahead | None,
) -> LocalScan:
    """A whole-root scan compared folder by folder with state.sqlite: only what changed
    (or `keep` asks for) becomes an item and an entry; every item, for a pass checked
    against a full reconcile (`--check-full`), the vouched-for ones marked as such. The
    stamps of the folders it found unchanged are recorded (unless a row was written
    meanwhile, as a first sync's batches do), so the next scan need not read their rows."""
    rows = await anyio.to_thread.run_sync(FolderRows, run.state.path)
    compare = Compare(rows, keep, run.opts.check_full, flush, run.opts.batch_paths)
    meter = run.opts.meter
    try:
        result = await scan(
            run.paths.root,
            ignore=ignore,
            cache=lambda _: None,
            hashing=None if meter is None else _meter_hashing(meter),
            compare=compare,
            ahead=ahead,
        )
        if compare.fresh and not run.opts.dry_run:
            await anyio.to_thread.run_sync(_record_stamps, run.state, compare.fresh, rows)
    finally:
        await anyio.to_thread.run_sync(rows.close)
    if problem is not None:
        result.problems.append(problem)
    cache = {
        p: (k.size, k.mtime_ns, k.inode, k.ctime_ns, sha, c)
        for p, (k, sha, c) in compare.cached.items()
    }
    return LocalScan(result, local_entries(result.items), cache, racy_after_ns(run.now), None)


def _record_stamps(state: State, stamps: dict[str, bytes], rows: FolderRows) -> None:
    """Record the stamps of the folders a scan found unchanged, if no row was written
    meanwhile. They only spare the next scan work: an index that cannot take them now
    (locked past its timeout) costs that, not the pass."""
    with contextlib.suppress(sqlite3.OperationalError):
        state.set_folder_stamps(stamps, rows.unwritten)


def add_sources(state: State, plan: Plan, local: LocalScan) -> None:
    """Give a scan that compared each folder (and so kept no item of the files it vouched
    for) the unchanged files holding blobs `plan` downloads, as items: apply copies them
    instead of fetching them (a rename or a copy elsewhere costs no download). It verifies
    what it copies, so a stale row costs a download, never wrong bytes. Worker thread."""
    items = local.result.items
    if local.result.compared is None:
        return
    held = {i.sha256 for i in items.values() if i.sha256}
    entries = [d.entry for d in plan.downloads] + [c.entry for c in plan.conflict_copies]
    wanted = {e.sha256 for e in entries if e.type == "file" and e.sha256 and e.sha256 not in held}
    for path, row in state.clean_files_holding(wanted) if wanted else ():
        if path not in items:
            key = StatKey(row[0], row[1], row[2], row[3])
            items[path] = LocalItem(path, "file", 0, key, row[4], None)


async def apply_to_folder(run: PassRun, plan: Plan, local: LocalScan) -> Applied:
    """Apply a plan's local deletes, downloads and conflict copies to the folder (a pass,
    or one batch of a first sync)."""
    return await apply_plan(
        run.paths,
        run.store,
        run.keys,
        plan,
        local.result,
        budget=run.budget,
        local_chunks=run.state.chunked_files,
    )


def holds_something(folder: Path) -> bool:
    """True if `folder` is not empty (what it holds was not scanned: ignored or special)."""
    try:
        with os.scandir(folder) as found:
            return any(True for _ in found)
    except OSError:
        return False


def _meter_hashing(meter: PassMeter) -> Callable[[HashCounts], None]:
    def report(counts: HashCounts) -> None:
        if counts.files or counts.files_total:  # nothing to hash: no stage to show
            meter.hashing(
                (counts.files, counts.files_total),
                (counts.bytes, counts.bytes_total),
                counts.current,
            )

    return report
