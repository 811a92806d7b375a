"""What state.sqlite tracks in one folder, read while a whole-root scan walks it, so the
scan compares each folder's listing with its rows and keeps only what changed (IO: its own
read-only sqlite connection, on the scan's walk thread).

A file whose stamps equal its stat-cache row and whose agreed base publishes those very
bytes is *vouched for*: unchanged since the pass that recorded both, so it costs no item,
no entry and no hashing. The rows of a folder are read when the walk lists it (one query
on the `files_parent` index) and dropped once it is recorded; tracked paths its listing
no longer holds (and everything tracked below them) are *vanished*: changes too.

A folder whose every file was vouched for leaves its *stamps* (`folder_stamps`: a digest
of its names and each entry's mode, size, mtime, inode and ctime) in state.sqlite; a
later scan that finds the same stamps vouches for the whole folder without reading its
rows. Triggers drop a folder's stamps when any row in it is written, so stamps that
differ, or none, only cost the row compare.
"""

from __future__ import annotations

import hashlib
import os
import sqlite3
import sys
import time
from collections.abc import Callable
from pathlib import Path
from threading import Event
from typing import Any

import msgspec

from dropbeard.core.chunking import Chunk
from dropbeard.core.conflictname import MARKER
from dropbeard.core.scope import with_folders
from dropbeard.sync.hashing import StatKey
from dropbeard.sync.stateschema import PARENT

#: What a row says of its path: not tracked (stat-cache row only), an agreed delete,
#: tracked, or tracked clean and publishing exactly the bytes its stat-cache row hashed
#: (a file whose stamps equal the row's is then vouched for).
UNTRACKED, DELETED, TRACKED, VOUCHES = 0, 1, 2, 3

_ROWS = (
    "SELECT path, size, mtime_ns, inode, ctime_ns, CASE WHEN base IS NULL THEN 0 "
    "WHEN status = 'deleted' THEN 1 WHEN status = 'clean' AND blob = sha256 THEN 3 ELSE 2 END "
    f"FROM files WHERE {PARENT} = ?"
)
_HIT = "SELECT sha256, chunks FROM files WHERE path = ? AND sha256 IS NOT NULL"
_BELOW = "SELECT path FROM files WHERE path > ? AND path < ? AND base IS NOT NULL AND status != ?"
_CHUNKS = msgspec.json.Decoder(tuple[Chunk, ...])
_STAMPS = "SELECT parent, stamps FROM folder_stamps"
#: Python's hash of a tuple of ints is the same in every process, but may change between
#: versions: stamps of another version only differ (and cost the row compare).
_VERSION = f"{sys.version_info[0]}.{sys.version_info[1]}/".encode()

#: (path, size, mtime_ns, inode, ctime_ns, what: UNTRACKED ... VOUCHES); stamps None for
#: a path never hashed
Row = tuple[str, int | None, int | None, int | None, int | None, int]


def folder_stamps(names: list[str], stats: list[os.stat_result]) -> bytes:
    """The stamps of a folder's listing: its names (none holds a '/') and each entry's
    mode, size, mtime, inode and ctime. Any edit, chmod, rename or replacement moves a
    ctime to the time it happened, so a changed folder cannot give the same ints to the
    64-bit hash (they are not chosen by an adversary, and ctime cannot be set)."""
    ints = hash(
        tuple([(s.st_mode, s.st_size, s.st_mtime_ns, s.st_ino, s.st_ctime_ns) for s in stats])
    )
    digest = hashlib.blake2b(_VERSION, digest_size=16)
    digest.update("/".join(names).encode("utf-8", "surrogateescape"))
    digest.update(ints.to_bytes(8, "big", signed=True))
    return digest.digest()


def decode_chunks(data: bytes | None) -> tuple[Chunk, ...] | None:
    """A stored chunk list, or None if there is none or it does not decode (the file is
    then read again, as if never hashed)."""
    if data is None:
        return None
    try:
        return _CHUNKS.decode(data)
    except msgspec.DecodeError:
        return None


class FolderRows:
    """Reads the rows of one folder at a time from `state.sqlite` (see the module
    docstring), on its own read-only connection; `close` when done."""

    def __init__(self, path: Path) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._version = 0

    @property
    def _db(self) -> sqlite3.Connection:
        """Opened on first use, on the walk thread, after the scan opened the root (so an
        unmounted root is offline, not an index that cannot be opened)."""
        if self._connection is None:
            uri = f"file:{self._path}?mode=ro"
            self._connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
            self._connection.execute("PRAGMA busy_timeout=10000")
            self._version = self._connection.execute("PRAGMA data_version").fetchone()[0]
        return self._connection

    def unwritten(self) -> bool:
        """True if no other connection wrote state.sqlite since this one was opened (so
        every row it read is still as it read it)."""
        return bool(self._db.execute("PRAGMA data_version").fetchone()[0] == self._version)

    def stamps(self) -> dict[str, bytes]:
        """folder -> the stamps recorded for it (`folder_stamps`)."""
        return {str(r[0]): bytes(r[1]) for r in self._db.execute(_STAMPS)}

    def close(self) -> None:
        if self._connection is not None:
            self._connection.close()

    def of(self, prefix: str) -> dict[str, Row]:
        """path -> row of each path directly in the folder whose paths start with `prefix`
        ('' for the top, else the folder's path and '/'): plain tuples, as sqlite makes
        them (a folder of a million rows costs no object per row but these)."""
        return {r[0]: r for r in self._db.execute(_ROWS, (prefix,))}

    def hit(self, path: str) -> tuple[str, tuple[Chunk, ...] | None] | None:
        """The sha256 and chunk list the stat cache holds for `path`, if any."""
        row = self._db.execute(_HIT, (path,)).fetchone()
        return None if row is None else (str(row[0]), decode_chunks(row[1]))

    def below(self, folder: str) -> list[str]:
        """The paths below `folder` whose base says something is there."""
        rows = self._db.execute(_BELOW, (folder + "/", folder + "0", "deleted"))
        return [str(r[0]) for r in rows]


#: New paths a whole-root pass reconciles, uploads, publishes and commits at a time when
#: its scan finds more (a first sync): what it holds of them is bounded by this (at most
#: about twice it, with what the hash threads finish between two looks, and the largest
#: folder), not by the size of the root.
BATCH_PATHS = 20_000


def with_slack(batch_paths: int) -> int:
    """The most paths the last batch of other devices' changes takes (`sync.catchup`),
    and the most a pass reconciles without batches: a quarter more than a batch, so that
    a few paths past a batch (20,000 files in 800 folders) are not a batch of their own,
    with its own plan, apply, publish and commit after the others drained."""
    return batch_paths + batch_paths // 4


#: A file's stat-cache stamps, sha256 and chunk list
Cached = tuple[StatKey, str, tuple[Chunk, ...] | None]


#: Runs one batch (`Compare.batch`) on the walk thread: new items, their folders' items,
#: their stat-cache rows; returns once they are committed.
Flush = Callable[[dict[str, Any], dict[str, Any], dict[str, Cached]], None]


class Compare:
    """One whole-root scan's comparison with state.sqlite, folder by folder (on the walk
    thread). `keep` are paths whose items the pass needs whatever their stamps say (other
    devices changed them, or the last pass left them open), with everything below them;
    `keep_all` keeps every item (a pass checked against a full reconcile), the vouched-for
    ones listed in `vouched`. `unchanged` counts the files vouched for; `vanished` are the
    tracked paths no longer on disk (or whose file could not be read now), `cached` the
    stat-cache rows of the files kept."""

    def __init__(
        self,
        rows: FolderRows,
        keep: frozenset[str],
        keep_all: bool,
        flush: Flush | None = None,
        bound: int = BATCH_PATHS,
    ) -> None:
        self.rows = rows
        self.keep = keep
        self.keep_all = keep_all
        self.unchanged = 0
        self.vanished: list[str] = []
        self.vouched: set[str] = set()
        self.cached: dict[str, Cached] = {}
        #: the paths recorded that have a base (changed, so not vouched for)
        self.tracked: set[str] = set()
        self.flush = flush
        self.bound = bound
        self.next_check = bound
        #: the stamps of each folder found with every file vouched for, to record
        self.fresh: dict[str, bytes] = {}
        self._stamps: dict[str, bytes] | None = None

    def file(self, path: str, row: Row | None, key: StatKey) -> Cached | None:
        """The stat cache's stamps, sha256 and chunk list of a regular file stamped `key`
        whose row is `row` (a file kept, that the scan did not vouch for), if the
        stamps are the row's; else None."""
        if row is None or row[1:5] != (key.size, key.mtime_ns, key.inode, key.ctime_ns):
            return None
        return self.hit(path, key)

    def stamps(self, prefix: str, names: list[str]) -> bytes | None:
        """The stamps recorded for the folder `prefix` names (b"" if none), or None if
        it cannot be vouched for whole: every item is kept, or some of this folder's, or
        it holds a conflict copy (whose item is always kept)."""
        if self.keep_all or MARKER in "/".join(names):
            return None
        if self.keep and (self.folder_kept(prefix) or any(prefix + n in self.keep for n in names)):
            return None
        if self._stamps is None:
            self._stamps = self.rows.stamps()
        return self._stamps.get(prefix, b"")

    def listed(self, items: dict[str, Any], queued: Callable[[], int], stop: Event) -> None:
        """After each folder: wait while more than `bound` files wait to be hashed, then
        hand the new paths of `items` to `flush` if there are `bound` of them."""
        while queued() > self.bound and not stop.is_set():
            time.sleep(0.002)  # the hash threads are behind: do not queue more
        if len(items) >= self.next_check:
            self.batch(items)

    def batch(self, items: dict[str, Any]) -> None:
        """If `items` holds at least `bound` new paths (no base, not kept, not a folder,
        not a conflict copy), take them out and hand them to `flush`, with the folders
        above them (left in `items`) and their stat-cache rows (taken out of `cached`)."""
        new = [p for p, item in list(items.items()) if item.type != "dir" and self.new(p)]
        if len(new) < self.bound:
            self.next_check = len(items) + max(1, self.bound // 4)
            return
        assert self.flush is not None
        batch = {p: items.pop(p) for p in new}
        folders = {f: items[f] for f in with_folders(batch) if f in items and f not in batch}
        cached = {p: self.cached.pop(p) for p in batch if p in self.cached}
        self.flush(batch, folders, cached)
        self.next_check = len(items) + self.bound

    def new(self, path: str) -> bool:
        """True if the item of `path` may go in a batch: no base, not kept."""
        if path in self.tracked or self.keeps(path):
            return False
        return not (self.keep and _under(path, self.keep))

    def folder(self, prefix: str) -> tuple[dict[str, Row], bool]:
        """The rows of the folder `prefix` names, and whether all of it is kept."""
        return self.rows.of(prefix), self.folder_kept(prefix)

    def folder_kept(self, prefix: str) -> bool:
        """True if all of the folder `prefix` names is kept."""
        folder = prefix[:-1]
        return bool(self.keep) and (folder in self.keep or _under(folder, self.keep))

    def done(self, rows: dict[str, Row]) -> None:
        """The folder is recorded: what is left of its rows was not on disk."""
        for path, row in rows.items():
            if row[5] >= TRACKED:
                self.vanished.append(path)
                self.vanished.extend(self.rows.below(path))

    def hit(self, path: str, key: StatKey) -> Cached | None:
        """The stat cache's row of a file stamped `key` as its stamps were recorded (the
        caller compared them), remembered for the commit (`cached`)."""
        found = self.rows.hit(path)
        if found is None:
            return None
        self.cached[path] = hit = (key, *found)
        return hit

    def maybe_emptied(self, path: str, row: Row) -> None:
        """`path` is no folder on disk now but tracked: if its row does not vouch for a
        file (which never was a folder), what is tracked below it vanished."""
        if row[5] != VOUCHES:
            self.vanished.extend(self.rows.below(path))

    def keeps(self, path: str) -> bool:
        """True if the item of `path` is kept though vouched for."""
        return path in self.keep or MARKER in path.rpartition("/")[2]


def _under(path: str, roots: frozenset[str]) -> bool:
    parts = path.split("/")
    return any("/".join(parts[:i]) in roots for i in range(1, len(parts)))
