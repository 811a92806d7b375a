"""Recording what a scan's walk lists (IO: one lstat per entry, readlink, on the walk
thread): each entry of a folder becomes an item, or a file queued for hashing, or (a
scan compared with state.sqlite, `dropbeard.sync.folderrows`) a file vouched for,
counted and dropped; a folder whose stamps are as recorded is vouched for whole.
"""

from __future__ import annotations

import os
import queue
from collections.abc import Callable, Iterable
from itertools import repeat
from stat import S_IFDIR, S_IFLNK, S_IFREG
from typing import Literal

import msgspec

from dropbeard.core.chunking import Chunk, is_chunked
from dropbeard.core.conflictname import MARKER
from dropbeard.core.ignore import IgnoreRules
from dropbeard.core.model import PERMISSIONS
from dropbeard.sync.folderrows import TRACKED, UNTRACKED, VOUCHES, Compare, folder_stamps
from dropbeard.sync.hashing import StatKey
from dropbeard.sync.walk import Listing, Walk, is_utf8

# Shared int objects for permission bits: 0o644 and friends are not small-int cached, and
# a tracked file should not pay 28 bytes for its own copy.
_MODES = tuple(range(PERMISSIONS + 1))

ItemType = Literal["file", "dir", "symlink"]
Chunks = tuple[Chunk, ...]
#: The stat cache's (stamps, sha256, chunk list) of a path, or None.
Cache = Callable[[str], "tuple[StatKey, str, Chunks | None] | None"]


class LocalItem(msgspec.Struct, frozen=True, gc=False):
    """One tracked-able path on disk. `stat`/`sha256` for files only (and `chunks` for a
    file over 16 MiB), `target` for symlinks only; `disk_path` is the on-disk relative
    name when it is not the NFC `path`."""

    path: str
    type: ItemType
    mode: int
    stat: StatKey | None
    sha256: str | None
    target: str | None
    disk_path: str | None = None
    chunks: Chunks | None = None


#: A file to hash: path, on-disk path (None if the same), permission bits, stamps
Job = tuple[str, str | None, int, StatKey]


class Recorder(Walk):
    """The walk thread's half of a scan: what it records (`items`, files queued on
    `jobs`, counts) as it lists each folder."""

    def __init__(
        self, root_fd: int, ignore: IgnoreRules, cache: Cache, compare: Compare | None
    ) -> None:
        super().__init__(root_fd, ignore)
        self.cache = cache
        self.compare = compare
        self.jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self.items: dict[str, LocalItem] = {}
        self.scanned = 0
        self.queued = 0
        self.queued_bytes = 0

    def forget(self, path: str) -> None:
        self.items.pop(path, None)

    def record(
        self,
        prefix: str,
        disk_dir: str | None,
        listing: Listing,
        entries: list[os.DirEntry[str]],
        names: list[str],
    ) -> None:
        """Record a folder's entries; a comparing scan first checks the folder's stamps
        (`folderrows.folder_stamps`): the same stamps as recorded vouch for all of it."""
        compare = self.compare
        stamps = None
        if compare is not None and disk_dir is None and listing.plain:
            known = compare.stamps(prefix, names)
            stats = None if known is None else _stat_all(entries)
            if stats is not None:
                stamps = folder_stamps(names, stats)
                if stamps == known:
                    self.record_unchanged(prefix, names, stats)
                    return
        whole = self.record_each(prefix, disk_dir, listing, entries, names)
        if whole and stamps is not None:
            assert compare is not None
            compare.fresh[prefix] = stamps

    def record_unchanged(self, prefix: str, names: list[str], stats: list[os.stat_result]) -> None:
        """A folder whose stamps vouch for it: its files unchanged, its folders items."""
        items, stack = self.items, self.stack
        files = 0
        for name, st in zip(names, stats, strict=True):
            mode = st.st_mode
            if mode & 0o170000 == S_IFDIR:
                path = prefix + name
                items[path] = LocalItem(path, "dir", _MODES[mode & PERMISSIONS], None, None, None)
                stack.append((path, None))
            else:  # stamps are recorded only when every other entry is a vouched file
                files += 1
        assert self.compare is not None
        self.compare.unchanged += files
        self.scanned += len(names)

    def record_each(
        self,
        prefix: str,
        disk_dir: str | None,
        listing: Listing,
        entries: list[os.DirEntry[str]],
        names: list[str],
    ) -> bool:
        """The hot loop: one lstat per entry, cache hits recorded, the rest queued. True
        if each entry was a file vouched for or a folder, and none tracked is missing."""
        items, cache, jobs, stack = self.items, self.cache, self.jobs, self.stack
        fd = listing.fd
        disks: Iterable[str | None]
        if disk_dir is None and listing.plain:
            disks = repeat(None)
        else:
            disk_prefix = disk_dir + "/" if disk_dir else prefix
            disks = [
                None if disk_dir is None and n == e.name else disk_prefix + e.name
                for e, n in zip(entries, names, strict=True)
            ]
        skipped = queued = unchanged = folders = 0
        compare = self.compare
        rows, kept = ({}, True) if compare is None else compare.folder(prefix)
        keep = frozenset() if compare is None else compare.keep
        count_only = compare is not None and not compare.keep_all
        for entry, name, disk in zip(entries, names, disks, strict=False):
            path = prefix + name
            row = rows.pop(path, None)
            try:
                st = entry.stat(follow_symlinks=False)
            except OSError as e:
                self.entry_failed(path, e)
                self.missed(path)
                skipped += 1
                continue
            mode = st.st_mode
            kind = mode & 0o170000
            if row is not None and row[5] == VOUCHES and kind == S_IFREG:
                # the common case of an idle rescan, kept cheap: an unchanged file
                stamps = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
                if row[1:5] == stamps and not (kept or disk or path in keep or MARKER in name):
                    unchanged += 1
                    if not count_only:
                        self.vouched(path, _MODES[mode & PERMISSIONS], st)
                    continue
            elif row is not None and kind != S_IFDIR and row[5] >= TRACKED:
                assert compare is not None  # a tracked folder may be a file now:
                compare.maybe_emptied(path, row)  # what it held is gone
            if kind == S_IFREG:
                mtime, ctime = st.st_mtime_ns, st.st_ctime_ns
                key = StatKey(st.st_size, mtime, st.st_ino, mtime if ctime == mtime else ctime)
                hit = cache(path) if compare is None else compare.file(path, row, key)
                if hit is not None and hit[0] == key and (hit[2] or not is_chunked(key.size)):
                    items[path] = LocalItem(
                        path, "file", _MODES[mode & PERMISSIONS], hit[0], hit[1], None, disk, hit[2]
                    )
                else:
                    jobs.put((path, disk, _MODES[mode & PERMISSIONS], key))
                    queued += 1
                    self.queued_bytes += key.size
            elif kind == S_IFDIR:
                bits = _MODES[mode & PERMISSIONS]
                items[path] = LocalItem(path, "dir", bits, None, None, None, disk)
                stack.append((path, disk))
                folders += 1
            elif kind == S_IFLNK:
                if not self.record_symlink(path, disk, fd, entry.name, mode):
                    skipped += 1
            else:
                skipped += 1  # sockets, FIFOs, devices: never tracked
            if row is not None and row[5] != UNTRACKED:  # kept, and has a base
                assert compare is not None
                compare.tracked.add(path)
        self.queued += queued
        self.scanned += len(entries) - skipped
        if compare is None:
            return False
        compare.unchanged += unchanged
        whole = unchanged + folders == len(entries)
        whole = whole and all(r[5] < TRACKED for r in rows.values())  # none vanished
        compare.done(rows)
        return whole

    def vouched(self, path: str, mode: int, st: os.stat_result) -> None:
        """A file the comparison vouches for, when every item is kept
        (`Compare.keep_all`): its item, marked as vouched for."""
        compare = self.compare
        assert compare is not None
        mtime, ctime = st.st_mtime_ns, st.st_ctime_ns
        key = StatKey(st.st_size, mtime, st.st_ino, mtime if ctime == mtime else ctime)
        if (hit := compare.hit(path, key)) is not None:
            self.items[path] = LocalItem(path, "file", mode, key, hit[1], None, None, hit[2])
            compare.vouched.add(path)

    def record_symlink(self, path: str, disk: str | None, fd: int, name: str, mode: int) -> bool:
        try:
            target = os.readlink(name, dir_fd=fd)
        except OSError as e:
            self.entry_failed(path, e)
            return False
        if not is_utf8(target):
            self.problem(path, "invalid_name", "symlink target is not valid UTF-8")
            return False
        self.items[path] = LocalItem(
            path, "symlink", _MODES[mode & PERMISSIONS], None, None, target, disk
        )
        return True

    def missed(self, path: str) -> None:
        """`path` is on disk but was not recorded (it could not be read now): a change,
        for a comparison (what reconcile leaves alone, as unknown)."""
        if self.compare is not None:
            self.compare.vanished.append(path)

    def entry_failed(self, path: str, e: OSError) -> None:
        if isinstance(e, FileNotFoundError):
            self.unreadable.add(path)  # vanished since the listing: next pass knows
        elif isinstance(e, PermissionError):
            self.problem(path, "permission", f"cannot read {path}: permission denied")
        else:
            self.problem(path, "unreadable", f"cannot read {path}: {e.strerror}")


def _stat_all(entries: list[os.DirEntry[str]]) -> list[os.stat_result] | None:
    """Each entry's lstat (cached on the entry), or None if one cannot be read now."""
    try:
        return [e.stat(follow_symlinks=False) for e in entries]
    except OSError:
        return None
