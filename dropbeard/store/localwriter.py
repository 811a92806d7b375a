"""The writes of a `LocalStore`: atomic replacement through temp files, conditional writes
under a cross-process lock, deletes (IO: files; the store calls it in worker threads).

A write fills a temp file in `<root>/.dropbeard-tmp/`, fsyncs it and renames it into
place, so readers see the old or the new object and a crash leaves no partial one (at
worst an orphan temp file, never listed, which a later writer removes once it is stale).
Conditional writes hold an exclusive `flock` on `<root>/.dropbeard-tmp/lock` around
check + rename, serializing them across processes (and across machines on NAS mounts
that honour flock). Plain `put`/`delete` take no lock: dropbeard never mixes them with
conditional writes on one key.

The etag (`localroot.etag_of`) is made of inode, mtime and size. Every write makes a new
inode (temp file + rename) and stamps it with a process-wide strictly increasing
nanosecond mtime, so a rewrite changes the etag even when the filesystem hands the freed
inode out again at once. On filesystems with coarse timestamps (FAT: 2 s) two same-size
rewrites of one key within that window may share an etag; only `registry.json` is
conditionally rewritten, rarely.
"""

from __future__ import annotations

import fcntl
import io
import os
import stat
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from typing import Literal

from dropbeard.core.errors import PreconditionFailed
from dropbeard.store.base import RESERVED_PREFIX
from dropbeard.store.localroot import MISSING, LocalRoot, etag_of

TMP_DIR = RESERVED_PREFIX + "tmp"
_PLACE_TRIES = 5
_TEMP_PREFIX = "put-"

STALE_TEMP_SECONDS = 3600.0
"""A temp file untouched this long belongs to a writer that died (a killed upload): no
live writer leaves one that long without writing to it. Removing a live one would only
fail its write (the rename finds nothing), never place a partial object."""

TIDY_EVERY_SECONDS = 3600.0
"""How often one writer looks for stale temp files: at its first write, then hourly."""

#: What a conditional write requires of the key: that it is absent, or its etag matches.
Condition = Literal["absent", "match"]

_mtime_lock = threading.Lock()
_last_mtime_ns = 0


def _fresh_mtime_ns() -> int:
    """Now, in ns, strictly after every value handed out before in this process."""
    global _last_mtime_ns
    with _mtime_lock:
        _last_mtime_ns = max(time.time_ns(), _last_mtime_ns + 1)
        return _last_mtime_ns


class TempFile:
    """A temp file in `.dropbeard-tmp/` being filled, then renamed into place or discarded."""

    def __init__(self, tmp_dir: str) -> None:
        fd, self.path = tempfile.mkstemp(dir=tmp_dir, prefix=_TEMP_PREFIX)
        self.file: io.BufferedIOBase = os.fdopen(fd, "wb")
        self.placed = False

    def seal(self) -> None:
        """Flush, stamp a fresh mtime (see module docstring) and fsync."""
        self.file.flush()
        stamp = _fresh_mtime_ns()
        os.utime(self.file.fileno(), ns=(stamp, stamp))
        os.fsync(self.file.fileno())

    def discard(self) -> None:
        self.file.close()
        if not self.placed:
            with suppress(FileNotFoundError):
                os.unlink(self.path)


class LocalWriter:
    """Creates, replaces and deletes the objects under `root`; each method raises the
    typed store errors the `Store` contract names."""

    def __init__(self, root: LocalRoot) -> None:
        self._root = root
        self._tmp_dir = os.path.join(root.path, TMP_DIR)
        self._tidied_at: float | None = None
        self._tidy_lock = threading.Lock()

    # -- unconditional writes -----------------------------------------------------------

    def new_temp(self, key: str) -> TempFile:
        """A temp file to fill with the new object of `key` (validated)."""
        self._root.path_of(key)  # validates
        self._root.check_mounted("writing", key)
        with self._root.translating("writing", key, missing_is_absent=False):
            with suppress(FileExistsError):
                os.mkdir(self._tmp_dir)
            self._tidy_if_due()
            return TempFile(self._tmp_dir)

    def _tidy_if_due(self) -> None:
        """Remove stale temp files (`STALE_TEMP_SECONDS`) at this writer's first write and
        then at most every `TIDY_EVERY_SECONDS`: a later pass cleans up after a killed one."""
        now = time.monotonic()
        with self._tidy_lock:
            if self._tidied_at is not None and now - self._tidied_at < TIDY_EVERY_SECONDS:
                return
            self._tidied_at = now
        remove_stale_temps(self._tmp_dir, time.time() - STALE_TEMP_SECONDS)

    def write(self, key: str, data: bytes) -> str:
        """Create or replace `key` with `data`; its new etag."""
        tmp = self.new_temp(key)
        try:
            with self._root.translating("writing", key, missing_is_absent=False):
                tmp.file.write(data)
            return self.commit(tmp, key)
        finally:
            tmp.discard()

    def commit(self, tmp: TempFile, key: str) -> str:
        """Seal the filled `tmp` and place it at `key`; the new etag."""
        new_etag = self._seal(tmp, key)
        with self._root.translating("writing", key, missing_is_absent=False):
            self._place(tmp, key)
        return new_etag

    def _seal(self, tmp: TempFile, key: str) -> str:
        with self._root.translating("writing", key, missing_is_absent=False):
            tmp.seal()
            return etag_of(os.fstat(tmp.file.fileno()))

    def _place(self, tmp: TempFile, key: str) -> None:
        """Rename the sealed temp file to `key`, making parent directories as needed."""
        dest = self._root.path_of(key)
        for attempt in range(_PLACE_TRIES):
            try:
                self._make_parents(key)
                os.replace(tmp.path, dest)
                break
            except FileNotFoundError:
                # a concurrent delete pruned a parent it had just emptied: make it again
                if attempt == _PLACE_TRIES - 1:
                    raise
        tmp.placed = True
        _fsync_dir(os.path.dirname(dest))

    def _make_parents(self, key: str) -> None:
        current = str(self._root.path)
        for segment in key.split("/")[:-1]:
            current = os.path.join(current, segment)
            with suppress(FileExistsError):
                os.mkdir(current)  # one level at a time: never recreates a missing root

    # -- conditional writes -------------------------------------------------------------

    def write_if(self, key: str, data: bytes, condition: Condition, etag: str) -> str:
        """Write `data` to `key` only if `condition` holds (for "match": its etag is
        `etag`); its new etag, else PreconditionFailed."""
        if condition == "absent" and self._current_etag(key) is not None:
            # cheap early answer; the locked check in _place_if decides
            raise PreconditionFailed(f"creating {key} in {self._root.path}: it already exists", key)
        tmp, new_etag = self._prepare(key, data)
        try:
            return self._place_if(tmp, key, condition, etag, new_etag)
        finally:
            tmp.discard()

    def _prepare(self, key: str, data: bytes) -> tuple[TempFile, str]:
        """Write and fsync `data` to a temp file (outside any lock: the slow part)."""
        tmp = self.new_temp(key)
        try:
            with self._root.translating("writing", key, missing_is_absent=False):
                tmp.file.write(data)
            return tmp, self._seal(tmp, key)
        except BaseException:
            tmp.discard()
            raise

    def _place_if(
        self, tmp: TempFile, key: str, condition: Condition, etag: str, new_etag: str
    ) -> str:
        """The check-then-place of a conditional write, under the cross-process lock."""
        root = self._root
        with root.translating("writing", key, missing_is_absent=False), self._locked():
            current = self._current_etag(key)
            if condition == "absent" and current is not None:
                raise PreconditionFailed(f"creating {key} in {root.path}: it already exists", key)
            if condition == "match" and current != etag:
                state = "it no longer exists" if current is None else "it changed"
                raise PreconditionFailed(
                    f"replacing {key} in {root.path}: {state} (expected etag {etag})", key
                )
            self._place(tmp, key)
        return new_etag

    @contextmanager
    def _locked(self) -> Iterator[None]:
        """Hold the exclusive flock of the store's conditional writes."""
        fd = os.open(os.path.join(self._tmp_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    def _current_etag(self, key: str) -> str | None:
        try:
            st = os.stat(self._root.path_of(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return etag_of(st) if stat.S_ISREG(st.st_mode) else None

    # -- deletes ------------------------------------------------------------------------

    def delete(self, key: str) -> None:
        """Remove `key` if it is there, then the directories that left empty."""
        path = self._root.path_of(key)
        self._root.check_mounted("deleting", key)
        try:
            os.unlink(path)
        except MISSING:
            self._root.check_mounted("deleting", key)
            return
        except OSError as err:
            raise self._root.store_error(err, "deleting", key) from err
        root = str(self._root.path)
        parent = os.path.dirname(path)
        while parent != root and len(parent) > len(root):
            try:
                os.rmdir(parent)  # only succeeds on an empty directory
            except OSError:
                return
            parent = os.path.dirname(parent)


def remove_stale_temps(tmp_dir: str, older_than: float) -> list[str]:
    """Remove the temp files in `tmp_dir` last modified before `older_than` (POSIX
    seconds); their names. Best effort: what cannot be removed now is left for later."""
    removed: list[str] = []
    try:
        entries = list(os.scandir(tmp_dir))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(_TEMP_PREFIX):
            continue  # the lock file, or anything dropbeard did not make
        try:
            if entry.is_file(follow_symlinks=False) and entry.stat().st_mtime < older_than:
                os.unlink(entry.path)
                removed.append(entry.name)
        except OSError:
            continue
    return removed


def _fsync_dir(path: str) -> None:
    """Make a rename durable; best effort (some filesystems cannot fsync a directory)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
