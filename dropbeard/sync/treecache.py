"""The local cache of tree nodes, `.dropbear/trees/` (SPEC 2): one file per node, named
by its key, bounded in bytes by evicting the least recently used (IO: local files;
blocking, so callers run it in worker threads).

Nodes are immutable, so a cached node is never stale. Files are written atomically
(a temporary file renamed into place), and every hit is hashed again against its name
before it is returned: a node is tens of KiB, so that costs a small part of decoding it,
and a file damaged on disk (a crash before the data reached it, a bad sector) is
dropped and read from the bucket again instead of being trusted.

A file's mtime records when the node was last seen in the bucket (written there, or
read from it), which is what a writer asks before skipping an upload (SPEC 8.2).

The index of every cached file (size, mtime: what eviction needs) is read from the
directory only once this process has written `budget // 8` bytes into it (or asks its
size): a pass that reads and writes a few nodes (a daemon's, a one-shot sync after an
edit) opens the files it needs and never lists the thousands of others. The cache may
so exceed its budget by an eighth before its first eviction.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import os
import re
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from pathlib import Path

DEFAULT_BUDGET = 64 * 1024 * 1024
#: Bytes of nodes `write_later` may hold in memory before callers write them themselves.
BACKLOG = 16 * 1024 * 1024
#: Seconds the background writer waits for more nodes before it stops.
WRITER_IDLE = 2.0
_NAME = re.compile(r"[0-9a-f]{64}")
_TEMP_PREFIX = ".tmp-"


class NodeCache:
    """Tree nodes on disk under `directory`, at most `budget` bytes of them. Every
    method blocks; all are safe to call from several threads at once."""

    def __init__(
        self,
        directory: Path,
        budget: int = DEFAULT_BUDGET,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.directory = directory
        self.budget = budget
        self._clock = clock
        self._lock = threading.Lock()
        #: key -> (size, when last seen in the bucket), least recently used first
        self._index: OrderedDict[str, tuple[int, float]] | None = None
        self._bytes = 0
        #: bytes written, and nodes read (least recent first), before the index was read
        self._added = 0
        self._touched: list[str] = []
        self._temp_names = itertools.count()
        #: nodes `write_later` queued, not yet written: key -> (bytes, when seen)
        self._backlog: dict[str, tuple[bytes, float]] = {}
        self._backlog_bytes = 0
        self._writer: threading.Thread | None = None
        self._queued = threading.Condition(self._lock)  # the writer waits for work
        self._written = threading.Condition(self._lock)  # `settle` waits for an empty backlog

    @property
    def size(self) -> int:
        """Bytes held now."""
        self._ensure_index()
        return self._bytes

    def __contains__(self, digest: str) -> bool:
        if self._index is None:
            return _NAME.fullmatch(digest) is not None and (self.directory / digest).is_file()
        return digest in self._index

    def read(self, digest: str) -> bytes | None:
        """The node's bytes if cached and intact, else None (a damaged file is removed)."""
        with self._lock:
            queued = self._backlog.get(digest)
        if queued is not None:
            return queued[0]
        index = self._index
        if (index is not None and digest not in index) or not _NAME.fullmatch(digest):
            return None
        try:
            data = (self.directory / digest).read_bytes()
        except FileNotFoundError:
            return None
        except OSError:
            data = None
        if data is None or hashlib.sha256(data).hexdigest() != digest:
            self._drop(digest)
            return None
        with self._lock:
            if self._index is None:
                self._touched.append(digest)
            elif digest in self._index:
                self._index.move_to_end(digest)
        return data

    def write(self, digest: str, data: bytes, now: float | None = None) -> None:
        """Keep `data`, the verified bytes of node `digest`, just written to or read from
        the bucket (at `now`, default: now); then evict the least recently used nodes
        beyond the budget."""
        now = self._clock() if now is None else now
        path = self.directory / digest
        if self._index is None and self._write_unindexed(path, data, now):
            return
        index = self._ensure_index()
        if digest in index:
            with contextlib.suppress(OSError):
                os.utime(path, (now, now))
            with self._lock:
                if digest in index:
                    index[digest] = (index[digest][0], now)
                    index.move_to_end(digest)
            return
        if not self._put_file(path, data, now):
            return  # a cache that cannot be written is only slower
        with self._lock:
            if digest not in index:
                self._bytes += len(data)
            index[digest] = (len(data), now)
            index.move_to_end(digest)
            victims = self._evict(keep=digest)
        for victim in victims:
            with contextlib.suppress(OSError):
                (self.directory / victim).unlink()

    def write_later(self, digest: str, data: bytes) -> bool:
        """`write`, done by a background thread so the caller need not wait for the file
        system (a node fetched in a walk is needed now, its file only by a later pass);
        meanwhile `read` and `seen_at` answer from memory. False, and nothing queued, when
        BACKLOG bytes are queued already: the caller then writes it itself."""
        with self._lock:
            if digest in self._backlog:
                return True
            if self._backlog_bytes + len(data) > BACKLOG:
                return False
            self._backlog[digest] = (data, self._clock())
            self._backlog_bytes += len(data)
            if self._writer is None:
                self._writer = threading.Thread(
                    target=self._write_backlog, name="dropbeard-node-cache", daemon=True
                )
                self._writer.start()
            else:
                self._queued.notify()
        return True

    def settle(self) -> None:
        """Return once every node `write_later` queued is written (or failed to be)."""
        with self._lock:
            while self._backlog:
                self._written.wait()

    def _write_backlog(self) -> None:
        """The background writer: the backlog's nodes in the order queued; it stops once
        nothing was queued for WRITER_IDLE seconds. Never raises: a node that cannot be
        cached is only read again from the bucket later."""
        try:
            while True:
                with self._lock:
                    if not self._backlog:
                        self._queued.wait(WRITER_IDLE)
                        if not self._backlog:
                            self._writer = None  # the next `write_later` starts another
                            return
                    digest, (data, when) = next(iter(self._backlog.items()))
                with contextlib.suppress(Exception):  # a cache: best effort
                    self.write(digest, data, when)
                with self._lock:
                    del self._backlog[digest]
                    self._backlog_bytes -= len(data)
                    if not self._backlog:
                        self._written.notify_all()
        finally:
            with self._lock:
                if self._writer is threading.current_thread():  # stopped by a failure
                    self._writer = None
                    self._backlog.clear()
                    self._backlog_bytes = 0
                self._written.notify_all()

    def _write_unindexed(self, path: Path, data: bytes, now: float) -> bool:
        """`write` before the index is read: True if done (a node already here only gets
        its mtime), False once the bytes written would pass `budget // 8`."""
        try:
            os.utime(path, (now, now))
        except OSError:
            pass
        else:
            with self._lock:
                self._touched.append(path.name)
            return True
        if self._added + len(data) > self.budget // 8:
            return False
        if self._put_file(path, data, now):
            with self._lock:
                self._added += len(data)
                self._touched.append(path.name)
        return True

    def _put_file(self, path: Path, data: bytes, now: float) -> bool:
        """Write `path` atomically, with mtime `now`; False if that failed. The cache's
        folder is made if missing, never its parents (a root unmounted stays gone)."""
        temp = self.directory / f"{_TEMP_PREFIX}{path.name}-{os.getpid()}-{next(self._temp_names)}"
        try:
            try:
                temp.write_bytes(data)
            except FileNotFoundError:
                self.directory.mkdir(exist_ok=True)
                temp.write_bytes(data)
            os.utime(temp, (now, now))
            os.replace(temp, path)
        except OSError:
            with contextlib.suppress(OSError):
                temp.unlink()
            return False
        return True

    def seen_at(self, digest: str) -> float | None:
        """When node `digest` was last written to or read from the bucket, if cached."""
        with self._lock:
            queued = self._backlog.get(digest)
        if queued is not None:
            return queued[1]
        if self._index is None:
            if not _NAME.fullmatch(digest):
                return None
            try:
                return os.stat(self.directory / digest).st_mtime
            except OSError:
                return None
        entry = self._index.get(digest)
        return None if entry is None else entry[1]

    def _evict(self, keep: str) -> list[str]:
        """Remove from the index the least recently used keys beyond the budget (lock
        held); the caller deletes their files."""
        assert self._index is not None
        victims = []
        while self._bytes > self.budget and len(self._index) > 1:
            digest, (size, _) = next(iter(self._index.items()))
            if digest == keep:
                self._index.move_to_end(digest)
                continue
            del self._index[digest]
            self._bytes -= size
            victims.append(digest)
        return victims

    def _drop(self, digest: str) -> None:
        with self._lock:
            entry = None if self._index is None else self._index.pop(digest, None)
            if entry is not None:
                self._bytes -= entry[0]
        with contextlib.suppress(OSError):
            (self.directory / digest).unlink()

    def _ensure_index(self) -> OrderedDict[str, tuple[int, float]]:
        """The index, read from the directory on first use (oldest first); leftover
        temporary files of an interrupted write are removed."""
        if self._index is not None:
            return self._index
        with self._lock:
            if self._index is None:
                index = self._scan()
                for digest in self._touched:  # read since: more recent than the rest
                    if digest in index:
                        index.move_to_end(digest)
                self._index, self._touched = index, []
                self._bytes = sum(size for size, _ in index.values())
            victims = self._evict(keep="")
        for victim in victims:
            with contextlib.suppress(OSError):
                (self.directory / victim).unlink()
        return self._index

    def _scan(self) -> OrderedDict[str, tuple[int, float]]:
        try:
            # never its parents: a root that vanished (unmounted) is not made again here
            self.directory.mkdir(exist_ok=True)
        except OSError:
            return OrderedDict()  # no cache: every node is read from the bucket
        found: list[tuple[float, str, int]] = []
        with contextlib.suppress(OSError), os.scandir(self.directory) as entries:
            for entry in entries:
                if entry.name.startswith(_TEMP_PREFIX):
                    with contextlib.suppress(OSError):
                        os.unlink(entry.path)
                elif _NAME.fullmatch(entry.name) and entry.is_file(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        st = entry.stat(follow_symlinks=False)
                        found.append((st.st_mtime, entry.name, st.st_size))
        found.sort()
        return OrderedDict((name, (size, mtime)) for mtime, name, size in found)
