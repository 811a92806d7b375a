"""LocalStore: a directory (NAS mount, USB drive) as an object store (IO: files, in threads).

Key `a/b/c` is the file `<root>/a/b/c`. A write fills a temp file in
`<root>/.dropbeard-tmp/`, fsyncs it and renames it into place, so readers see the old or
the new object and a crash leaves no partial one (at worst an orphan temp file, never
listed). Conditional writes hold an exclusive `flock` on `<root>/.dropbeard-tmp/lock`
around check + rename, serializing them across processes (and across machines on NAS
mounts that honour flock). Plain `put`/`delete` take no lock: dropbeard never mixes them
with conditional writes on one key.

etag = hex `<st_ino>-<st_mtime_ns>-<st_size>`. Every write makes a new inode (temp file +
rename) and stamps it with a process-wide strictly increasing nanosecond mtime, so a
rewrite changes the etag even when the filesystem hands the freed inode out again at once.
On filesystems with coarse timestamps (FAT: 2 s) two same-size rewrites of one key within
that window may share an etag; only `registry.json` is conditionally rewritten, rarely.

A missing root is `Unavailable` on every operation, never an empty store: an unmounted
drive must not look like a bucket whose objects were all deleted. `journal` is ignored:
a local copy is one rename away from done, there is nothing to resume.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import io
import os
import stat
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import contextmanager, suppress
from functools import partial
from itertools import islice
from pathlib import Path

import anyio

from dropbeard.core.errors import (
    IntegrityError,
    ListFailed,
    LocalFileError,
    NotFound,
    PreconditionFailed,
    StoreError,
    Unauthorized,
    Unavailable,
)
from dropbeard.store.base import (
    RESERVED_PREFIX,
    ListPage,
    ObjectInfo,
    Progress,
    UploadJournal,
    validate_key,
)
from dropbeard.store.localwalk import Found, split_prefix, walk

CHUNK = 1024 * 1024
PAGE_SIZE = 1000
TMP_DIR = RESERVED_PREFIX + "tmp"
#: A NAS that went away or a full disk: transient from the store's point of view.
TRANSIENT_ERRNOS = frozenset(
    {errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ESTALE, errno.ENOTCONN, errno.ETIMEDOUT}
    | {errno.EHOSTDOWN, errno.EHOSTUNREACH}
)
_MISSING = (FileNotFoundError, NotADirectoryError, IsADirectoryError)
_PLACE_TRIES = 5

_mtime_lock = threading.Lock()
_last_mtime_ns = 0


def _fresh_mtime_ns() -> int:
    """Now, in ns, strictly after every value handed out before in this process."""
    global _last_mtime_ns
    with _mtime_lock:
        _last_mtime_ns = max(time.time_ns(), _last_mtime_ns + 1)
        return _last_mtime_ns


def _etag(st: os.stat_result) -> str:
    return f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}"


def _info(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(key=key, size=st.st_size, etag=_etag(st), last_modified=st.st_mtime)


class _TempFile:
    """A temp file in `.dropbeard-tmp/` being filled, then renamed into place or discarded."""

    def __init__(self, tmp_dir: str) -> None:
        fd, self.path = tempfile.mkstemp(dir=tmp_dir, prefix="put-")
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


class LocalStore:
    """Objects as files under `root`. See `dropbeard.store.base.Store` for the contract."""

    def __init__(self, root: Path, *, page_size: int = PAGE_SIZE) -> None:
        self.root = Path(root)
        self.description = str(self.root)
        self._page_size = page_size
        self._tmp_dir = os.path.join(self.root, TMP_DIR)

    @classmethod
    async def create(cls, root: Path, *, page_size: int = PAGE_SIZE) -> LocalStore:
        """Make the root directory (and its parents) for `init` and tests, then open it."""
        await anyio.Path(root).mkdir(parents=True, exist_ok=True)
        return cls(root, page_size=page_size)

    async def aclose(self) -> None:
        return None

    # -- plumbing ---------------------------------------------------------------------

    def _path(self, key: str) -> str:
        return os.path.join(self.root, *validate_key(key).split("/"))

    def _check_root(self, doing: str, what: str) -> None:
        try:
            st = os.stat(self.root)
        except OSError as err:
            if not isinstance(err, _MISSING):
                raise self._error(err, doing, what) from err
            st = None
        if st is None or not stat.S_ISDIR(st.st_mode):
            raise Unavailable(
                f"{doing} {what}: store directory {self.root} does not exist (not mounted?)",
                what,
            )

    def _error(
        self, err: OSError, doing: str, what: str, kind: type[StoreError] = StoreError
    ) -> StoreError:
        message = f"{doing} {what} in {self.root}: {err.strerror or err}"
        if isinstance(err, PermissionError):
            return Unauthorized(message, what)
        if err.errno in TRANSIENT_ERRNOS:
            return Unavailable(message, what)
        return kind(message, what)

    @contextmanager
    def _translated(self, doing: str, key: str, *, missing_is_absent: bool) -> Iterator[None]:
        """OSError -> typed store error. A vanished root is Unavailable, never NotFound."""
        try:
            yield
        except _MISSING as err:
            self._check_root(doing, key)
            if missing_is_absent:
                raise NotFound(f"{doing} {key} in {self.root}: no such object", key) from err
            raise self._error(err, doing, key) from err
        except OSError as err:
            raise self._error(err, doing, key) from err

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        fd = os.open(os.path.join(self._tmp_dir, "lock"), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # releases the flock

    # -- reads ------------------------------------------------------------------------

    def _read(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        path = self._path(key)
        self._check_root("reading", key)
        with self._translated("reading", key, missing_is_absent=True), open(path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a file")
            current = _etag(st)
            return None if current == etag else (f.read(), current)

    async def get(self, key: str) -> bytes:
        found = await anyio.to_thread.run_sync(self._read, key, None)
        assert found is not None
        return found[0]

    async def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        return await anyio.to_thread.run_sync(self._read, key, etag)

    def _head(self, key: str) -> ObjectInfo:
        path = self._path(key)
        self._check_root("checking", key)
        with self._translated("checking", key, missing_is_absent=True):
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a file")
            return _info(key, st)

    async def head(self, key: str) -> ObjectInfo:
        return await anyio.to_thread.run_sync(self._head, key)

    def _open_object(self, key: str) -> tuple[io.BufferedIOBase, ObjectInfo]:
        path = self._path(key)
        self._check_root("downloading", key)
        with self._translated("downloading", key, missing_is_absent=True):
            f = open(path, "rb")  # noqa: SIM115 - closed by get_file
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                f.close()
                raise IsADirectoryError(errno.EISDIR, "not a file")
            return f, _info(key, st)

    async def get_file(
        self,
        key: str,
        dest: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        src, info = await anyio.to_thread.run_sync(self._open_object, key)
        out: io.BufferedIOBase | None = None
        try:
            out = await anyio.to_thread.run_sync(_open_local, dest, True, key)
            hasher = hashlib.sha256()
            pump = _Pump(src, out, hasher, self._store_side("downloading", key), _local(dest, key))
            while n := await anyio.to_thread.run_sync(pump.step):
                if progress is not None:
                    progress(n)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_close_all, src, out)
        if expected_sha256 is not None and hasher.hexdigest() != expected_sha256:
            raise IntegrityError(
                f"downloading {key} from {self.root}: content does not match its SHA-256 "
                f"(expected {expected_sha256}, got {hasher.hexdigest()})",
                key,
            )
        return info

    def _store_side(self, doing: str, key: str) -> Callable[[OSError], StoreError]:
        return lambda err: self._error(err, doing, key)

    # -- writes -----------------------------------------------------------------------

    def _new_temp(self, key: str) -> _TempFile:
        self._path(key)  # validates
        self._check_root("writing", key)
        with self._translated("writing", key, missing_is_absent=False):
            with suppress(FileExistsError):
                os.mkdir(self._tmp_dir)
            return _TempFile(self._tmp_dir)

    def _place(self, tmp: _TempFile, key: str) -> None:
        """Rename the sealed temp file to `key`, making parent directories as needed."""
        dest = self._path(key)
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
        current = str(self.root)
        for segment in key.split("/")[:-1]:
            current = os.path.join(current, segment)
            with suppress(FileExistsError):
                os.mkdir(current)  # one level at a time: never recreates a missing root

    def _commit(self, tmp: _TempFile, key: str, condition: str | None, etag: str) -> str:
        """Seal and place `tmp` at `key`; `condition` is None, "absent" or "match"."""
        new_etag = self._seal(tmp, key)
        if condition is None:
            with self._translated("writing", key, missing_is_absent=False):
                self._place(tmp, key)
            return new_etag
        return self._place_if(tmp, key, condition, etag, new_etag)

    def _seal(self, tmp: _TempFile, key: str) -> str:
        with self._translated("writing", key, missing_is_absent=False):
            tmp.seal()
            return _etag(os.fstat(tmp.file.fileno()))

    def _place_if(self, tmp: _TempFile, key: str, condition: str, etag: str, new_etag: str) -> str:
        """The check-then-place of a conditional write, under the cross-process lock."""
        with self._translated("writing", key, missing_is_absent=False), self._exclusive():
            current = self._current_etag(key)
            if condition == "absent" and current is not None:
                raise PreconditionFailed(f"creating {key} in {self.root}: it already exists", key)
            if condition == "match" and current != etag:
                state = "it no longer exists" if current is None else "it changed"
                raise PreconditionFailed(
                    f"replacing {key} in {self.root}: {state} (expected etag {etag})", key
                )
            self._place(tmp, key)
        return new_etag

    def _prepare(self, key: str, data: bytes) -> tuple[_TempFile, str]:
        """Write and fsync `data` to a temp file (outside any lock: the slow part)."""
        tmp = self._new_temp(key)
        try:
            with self._translated("writing", key, missing_is_absent=False):
                tmp.file.write(data)
            return tmp, self._seal(tmp, key)
        except BaseException:
            tmp.discard()
            raise

    async def _put_conditionally(self, key: str, data: bytes, condition: str, etag: str) -> str:
        # One worker-thread trip for the whole write: thread hops, not IO, dominated the
        # cost of many small blobs. Threads of this process exclude each other through the
        # same flock as other processes (each takes it on its own open file description).
        return await anyio.to_thread.run_sync(self._put_if, key, data, condition, etag)

    def _put_if(self, key: str, data: bytes, condition: str, etag: str) -> str:
        if condition == "absent" and self._current_etag(key) is not None:
            # cheap early answer; the locked check in _place_if decides
            raise PreconditionFailed(f"creating {key} in {self.root}: it already exists", key)
        tmp, new_etag = self._prepare(key, data)
        try:
            return self._place_if(tmp, key, condition, etag, new_etag)
        finally:
            tmp.discard()

    def _current_etag(self, key: str) -> str | None:
        try:
            st = os.stat(self._path(key))
        except (FileNotFoundError, NotADirectoryError):
            return None
        return _etag(st) if stat.S_ISREG(st.st_mode) else None

    def _write_bytes(self, key: str, data: bytes, condition: str | None, etag: str) -> str:
        tmp = self._new_temp(key)
        try:
            with self._translated("writing", key, missing_is_absent=False):
                tmp.file.write(data)
            return self._commit(tmp, key, condition, etag)
        finally:
            tmp.discard()

    async def put(self, key: str, data: bytes) -> str:
        return await anyio.to_thread.run_sync(self._write_bytes, key, data, None, "")

    async def put_if_absent(self, key: str, data: bytes) -> str:
        return await self._put_conditionally(key, data, "absent", "")

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        return await self._put_conditionally(key, data, "match", etag)

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        expected_sha256: str | None = None,
        journal: UploadJournal | None = None,
        progress: Progress | None = None,
    ) -> str:
        tmp = await anyio.to_thread.run_sync(self._new_temp, key)
        src: io.BufferedIOBase | None = None
        try:
            src = await anyio.to_thread.run_sync(_open_local, path, False, key)
            hasher = hashlib.sha256()
            pump = _Pump(src, tmp.file, hasher, _local(path, key), self._store_side("writing", key))
            while n := await anyio.to_thread.run_sync(pump.step):
                if progress is not None:
                    progress(n)
            if expected_sha256 is not None and hasher.hexdigest() != expected_sha256:
                raise IntegrityError(
                    f"uploading {path} as {key}: content does not match its SHA-256 "
                    f"(expected {expected_sha256}, got {hasher.hexdigest()}; changed while read?)",
                    key,
                )
            return await anyio.to_thread.run_sync(self._commit, tmp, key, None, "")
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(_close_all, src, None)
                await anyio.to_thread.run_sync(tmp.discard)

    def _delete(self, key: str) -> None:
        path = self._path(key)
        self._check_root("deleting", key)
        try:
            os.unlink(path)
        except _MISSING:
            self._check_root("deleting", key)
            return
        except OSError as err:
            raise self._error(err, "deleting", key) from err
        parent = os.path.dirname(path)
        while parent != str(self.root) and len(parent) > len(str(self.root)):
            try:
                os.rmdir(parent)  # only succeeds on an empty directory
            except OSError:
                return
            parent = os.path.dirname(parent)

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self._delete, key)

    # -- listing ----------------------------------------------------------------------

    def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        delimiter: str | None = None,
    ) -> AsyncIterator[ListPage]:
        if delimiter not in (None, "/"):
            raise ValueError(f"LocalStore only supports the delimiter '/', not {delimiter!r}")
        dir_key, name = split_prefix(prefix)
        after = start_after.encode() if start_after is not None else None
        return self._pages(prefix, dir_key, name, after, delimiter is not None)

    async def _pages(
        self, prefix: str, dir_key: str, name: str, after: bytes | None, roll_up: bool
    ) -> AsyncIterator[ListPage]:
        fail = partial(self._error, doing="listing", what=prefix or "/", kind=ListFailed)
        entries = walk(self.root, dir_key, name, after, roll_up, fail)
        while True:
            page, more = await anyio.to_thread.run_sync(self._next_page, prefix, entries)
            if page.objects or page.prefixes:
                yield page
            if not more:
                return

    def _next_page(self, prefix: str, entries: Iterator[Found]) -> tuple[ListPage, bool]:
        self._check_root("listing", prefix or "/")
        taken = list(islice(entries, self._page_size))
        # a root unmounted mid-walk reads as vanished directories: never end quietly
        self._check_root("listing", prefix or "/")
        page = ListPage(
            objects=[_info(*e) for e in taken if isinstance(e, tuple)],
            prefixes=[e for e in taken if isinstance(e, str)],
        )
        return page, len(taken) == self._page_size


class _Pump:
    """Copies `src` to `dst` one chunk per `step`, hashing as it goes; OSErrors from
    either side become the store error its `*_error` function makes."""

    def __init__(
        self,
        src: io.BufferedIOBase,
        dst: io.BufferedIOBase,
        hasher: hashlib._Hash,
        src_error: Callable[[OSError], StoreError],
        dst_error: Callable[[OSError], StoreError],
    ) -> None:
        self._src, self._dst, self._hasher = src, dst, hasher
        self._src_error, self._dst_error = src_error, dst_error
        self._buf = bytearray(CHUNK)

    def step(self) -> int:
        try:
            n = self._src.readinto(self._buf)
        except OSError as err:
            raise self._src_error(err) from err
        if n:
            view = memoryview(self._buf)[:n]
            self._hasher.update(view)
            try:
                self._dst.write(view)
            except OSError as err:
                raise self._dst_error(err) from err
        return int(n or 0)


def _local(path: Path, key: str) -> Callable[[OSError], StoreError]:
    """Errors on the caller's local file: permanent, and not the store's credentials."""
    return lambda err: LocalFileError(
        f"copying {key}: local file {path}: {err.strerror or err}", key, err.errno
    )


def _open_local(path: Path, writing: bool, key: str) -> io.BufferedIOBase:
    try:
        return open(path, "wb") if writing else open(path, "rb")
    except OSError as err:
        raise _local(path, key)(err) from err


def _close_all(*files: io.BufferedIOBase | None) -> None:
    for f in files:
        if f is not None:
            f.close()


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
