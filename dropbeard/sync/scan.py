"""Local scan: walk a root, reuse the stat cache, hash new or changed files (IO: filesystem,
worker threads).

One worker thread walks the tree (`dropbeard.sync.walk`: os.scandir on directory fds, never
following symlinks) and records each entry (`dropbeard.sync.scanrecord`): one lstat, a
compact result, and files whose stat differs from the cache go on a queue that
`hash_workers` other threads drain (`dropbeard.sync.hashing`) while the walk continues. A
file over 16 MiB is digested with a `Chunker` (SPEC 1.6: its SHA-256 and its chunk list
from one read). The event loop only waits.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Collection
from pathlib import Path
from typing import TYPE_CHECKING

import anyio
import msgspec

from dropbeard.core.chunking import is_chunked
from dropbeard.core.ignore import IgnoreRules
from dropbeard.core.problems import Problem
from dropbeard.sync.chunking import Chunker
from dropbeard.sync.folderrows import Compare
from dropbeard.sync.hashing import Changed, HashCounts, Hasher, StatKey
from dropbeard.sync.scanrecord import Cache, LocalItem, Recorder
from dropbeard.sync.walk import holds_nothing, only_targets, open_root

if TYPE_CHECKING:
    from dropbeard.sync.ahead import Ahead

_PROGRESS_EVERY_S = 0.25
__all__ = ["Cache", "LocalItem", "ScanResult", "scan"]


class ScanResult(msgspec.Struct):
    """`unreadable` holds paths whose state is unknown this pass: nothing at or under them may
    be treated as deleted. A directory that exists but could not be listed is in both
    `items` and `unreadable`. With `only=`, everything here covers just those paths, but
    `root_empty` (the root holds nothing but `.dropbear/`, or could not be listed: the
    mass-delete guard's emptied root, SPEC 6) always describes the whole root."""

    items: dict[str, LocalItem]
    problems: list[Problem]
    unreadable: set[str]
    complete: bool
    scanned: int
    hashed_files: int
    hashed_bytes: int
    root_empty: bool = False
    compared: Compare | None = None

    def __repr__(self) -> str:  # a summary: the full item list can be 100,000 lines
        return (
            f"ScanResult({len(self.items)} items, {len(self.problems)} problems,"
            f" {len(self.unreadable)} unreadable, complete={self.complete},"
            f" hashed {self.hashed_files} files / {self.hashed_bytes} bytes)"
        )


async def scan(
    root: Path,
    *,
    ignore: IgnoreRules,
    cache: Cache,
    only: Collection[str] | None = None,
    hash_workers: int = 2,
    progress: Callable[[int], None] | None = None,
    hashing: Callable[[HashCounts], None] | None = None,
    compare: Compare | None = None,
    ahead: Ahead | None = None,
    _before_final_check: Callable[[str], None] | None = None,
) -> ScanResult:
    """Scan `root`: every file, directory and symlink not ignored, files hashed unless
    their StatKey equals the cached one.

    `only`: relative paths (NFC or on-disk spelling) to rescan instead of the whole root,
    with the subtrees of the directories among them and the conflict copies beside them.
    The result then covers only those paths: a given path absent from `items`, and not
    at or under anything in `unreadable`, no longer exists as a trackable entry (deleted,
    ignored, or its parent became a symlink). `cache(path)` is called on the walk thread
    once per regular file: keep it to a dict lookup (load the stat cache up front, not
    one sqlite query per file). `progress(n)` is called in the event loop with the
    entries settled so far, `hashing(counts)` with the hashing done so far (`HashCounts`).
    `_before_final_check(path)` is a test hook run after a file's bytes were read, before
    the final fstat. Raises OfflineError if `root` is missing, not a directory or cannot
    be opened: an unmounted root must never look like an empty one.

    `compare` (a whole-root scan only): compare each folder with what state.sqlite tracks
    in it instead of asking `cache`, keep only the items that changed and those it asks
    for, and list the tracked paths that vanished (`dropbeard.sync.folderrows`); the
    result's `compared` is then `compare`; and `ahead` (with `compare`: a first sync)
    is offered the bytes of the new small files as they are hashed (`sync.ahead`).
    """
    if compare is not None and only is not None:
        raise ValueError("scan(compare=...) covers the whole root")
    targets = None if only is None else only_targets(only)
    root_fd = await anyio.to_thread.run_sync(open_root, os.fspath(root))
    try:
        run = _Scan(root_fd, ignore, cache, max(1, hash_workers), _before_final_check, compare)
        run.ahead = ahead if compare is not None else None
        async with anyio.create_task_group() as outer:
            outer.start_soon(_stop_on_cancel, run.stop)
            if progress is not None or hashing is not None:
                outer.start_soon(_report_progress, run, progress, hashing)
            async with anyio.create_task_group() as workers:
                workers.start_soon(anyio.to_thread.run_sync, run.walk, targets)
                for slot in range(run.workers):
                    workers.start_soon(anyio.to_thread.run_sync, run.hash_worker, slot)
            outer.cancel_scope.cancel()
        if progress is not None:
            progress(run.settled())
        if hashing is not None:
            hashing(run.hash_counts())
        result = run.result()
        result.root_empty = await anyio.to_thread.run_sync(holds_nothing, root_fd)
        return result
    finally:
        os.close(root_fd)


async def _stop_on_cancel(stop: threading.Event) -> None:
    """Threads cannot be cancelled; they poll `stop`, which this sets when the scan is."""
    try:
        await anyio.sleep_forever()
    finally:
        stop.set()


async def _report_progress(
    run: _Scan,
    progress: Callable[[int], None] | None,
    hashing: Callable[[HashCounts], None] | None,
) -> None:
    while True:
        await anyio.sleep(_PROGRESS_EVERY_S)
        if progress is not None:
            progress(run.settled())
        if hashing is not None:
            hashing(run.hash_counts())


class _Scan(Recorder):
    """State of one scan, shared by the walk thread and the hash threads. Each container
    is only appended to or set item by item, which the GIL keeps consistent."""

    def __init__(
        self,
        root_fd: int,
        ignore: IgnoreRules,
        cache: Cache,
        workers: int,
        hook: Callable[[str], None] | None,
        compare: Compare | None = None,
    ) -> None:
        super().__init__(root_fd, ignore, cache, compare)
        self.workers = workers
        self.hook = hook
        self.walked = False
        self.hashed = [(0, 0)] * workers
        self.done = [0] * workers
        self.hashers: list[Hasher] = []
        self.ahead: Ahead | None = None

    def settled(self) -> int:
        return self.scanned - self.queued + sum(self.done)

    def hash_counts(self) -> HashCounts:
        walked = self.walked
        current = next((h.current for h in self.hashers if h.current), None)
        return HashCounts(
            sum(self.done),
            self.queued if walked else None,
            sum(h.read_bytes for h in self.hashers),
            self.queued_bytes if walked else None,
            current,
        )

    def result(self) -> ScanResult:
        return ScanResult(
            items=self.items,
            problems=self.problems,
            unreadable=self.unreadable,
            complete=self.complete,
            scanned=self.scanned,
            hashed_files=sum(f for f, _ in self.hashed),
            hashed_bytes=sum(b for _, b in self.hashed),
            compared=self.compare,
        )

    # --- recording (the walk thread) -------------------------------------------------

    def walk(self, targets: set[str] | None) -> None:
        try:
            super().walk(targets)
        finally:
            self.walked = True
            for _ in range(self.workers):
                self.jobs.put(None)

    def listed(self) -> None:
        """After each folder: hand the new paths recorded so far to the comparison's
        `flush` once there are `bound` of them (`Compare.batch`), and let the hashing
        queue hold no more than that."""
        compare = self.compare
        if compare is not None and compare.flush is not None:
            compare.listed(self.items, lambda: self.queued - sum(self.done), self.stop)

    # --- hashing (hash_workers threads) ----------------------------------------------

    def hash_worker(self, slot: int) -> None:
        hasher = Hasher(self.root_fd, self.hook)
        self.hashers.append(hasher)
        chunker: Chunker | None = None  # its buffer is large: made for the first big file
        files = nbytes = 0
        while (job := self.jobs.get()) is not None:
            if is_chunked(job[3].size) and chunker is None:
                chunker = Chunker()
            if not self.stop.is_set() and self.hash_file(hasher, chunker, *job):
                files += 1
                nbytes += job[3].size
            self.done[slot] += 1
            hasher.current = None
        self.hashed[slot] = (files, nbytes)

    def hash_file(
        self,
        hasher: Hasher,
        chunker: Chunker | None,
        path: str,
        disk: str | None,
        mode: int,
        key: StatKey,
    ) -> bool:
        """Hash one file (a large one into chunks) and record it; False if it could not
        be read consistently."""
        chunks = None
        ahead = self._ahead_for(path)
        try:
            if chunker is not None and is_chunked(key.size):
                taker = None if ahead is None else ahead.chunks_of(path)
                digest = hasher.chunked(path, disk, key, chunker, taker)
                sha256, chunks = digest.sha256, digest.chunks
            else:
                # a file `ahead` has room for is read in one call, its bytes kept to offer
                # (before its item is recorded: no batch takes it before its blob is offered)
                keep = ahead is not None and ahead.room(key.size)
                sha256 = hasher.sha256(path, disk, key, keep=keep)
                if ahead is not None and keep and hasher.whole is not None:
                    ahead.offer(path, sha256, hasher.whole)
        except Changed as e:
            self.problem(path, "changed_while_reading", f"{path} {e}; it is read again next pass")
            self.missed(path)
            return False
        except OSError as e:
            self.entry_failed(path, e)
            self.missed(path)
            return False
        self.items[path] = LocalItem(path, "file", mode, key, sha256, None, disk, chunks)
        return True

    def _ahead_for(self, path: str) -> Ahead | None:
        """`ahead`, if it is offered the bytes of `path` (a new path of a first sync)."""
        if self.ahead is None or self.compare is None or not self.compare.new(path):
            return None
        return self.ahead
