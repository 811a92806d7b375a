"""LocalStore: a directory (NAS mount, USB drive) as an object store (IO: files, in threads).

Key `a/b/c` is the file `<root>/a/b/c`. Reads and listings live here; writes, atomic and
conditional, in `dropbeard.store.localwriter`; the root's paths, etags and errors in
`dropbeard.store.localroot` (a missing root is `Unavailable`, never an empty store).
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
from collections.abc import AsyncIterator, Iterator
from functools import partial
from itertools import islice
from pathlib import Path

import anyio

from dropbeard.core.errors import IntegrityError, ListFailed
from dropbeard.store.bandwidth import Bandwidth, spend
from dropbeard.store.base import FileSlot, ListPage, ObjectInfo, Progress
from dropbeard.store.localcopy import (
    HashingCopy,
    Sink,
    close_all,
    local_file_errors,
    open_local,
)
from dropbeard.store.localroot import LocalRoot, etag_of, object_info
from dropbeard.store.localwalk import Found, split_prefix, walk
from dropbeard.store.localwriter import LocalWriter
from dropbeard.store.slot import SlotWriter, open_dest

PAGE_SIZE = 1000


class LocalStore:
    """Objects as files under `root`. See `dropbeard.store.base.Store` for the contract.
    Object bytes read and written count against `bandwidth` (a NAS mount is a network)."""

    def __init__(
        self, root: Path, *, page_size: int = PAGE_SIZE, bandwidth: Bandwidth | None = None
    ) -> None:
        self.root = Path(root)
        self._bandwidth = bandwidth
        self.description = str(self.root)
        self._page_size = page_size
        self._root_dir = LocalRoot(self.root)
        self._writer = LocalWriter(self._root_dir)

    @classmethod
    async def create(cls, root: Path, *, page_size: int = PAGE_SIZE) -> LocalStore:
        """Make the root directory (and its parents) for `init` and tests, then open it."""
        await anyio.Path(root).mkdir(parents=True, exist_ok=True)
        return cls(root, page_size=page_size)

    async def aclose(self) -> None:
        return None

    # -- reads ------------------------------------------------------------------------

    def _read_if_changed(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        path = self._root_dir.path_of(key)
        self._root_dir.check_mounted("reading", key)
        with (
            self._root_dir.translating("reading", key, missing_is_absent=True),
            open(path, "rb") as f,
        ):
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a file")
            current = etag_of(st)
            return None if current == etag else (f.read(), current)

    async def get(self, key: str) -> bytes:
        found = await anyio.to_thread.run_sync(self._read_if_changed, key, None)
        assert found is not None
        await spend(self._bandwidth, len(found[0]))
        return found[0]

    async def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        found = await anyio.to_thread.run_sync(self._read_if_changed, key, etag)
        await spend(self._bandwidth, 0 if found is None else len(found[0]))
        return found

    def _stat(self, key: str) -> ObjectInfo:
        path = self._root_dir.path_of(key)
        self._root_dir.check_mounted("checking", key)
        with self._root_dir.translating("checking", key, missing_is_absent=True):
            st = os.stat(path)
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(errno.EISDIR, "not a file")
            return object_info(key, st)

    async def head(self, key: str) -> ObjectInfo:
        return await anyio.to_thread.run_sync(self._stat, key)

    def _open_object(self, key: str) -> tuple[io.BufferedIOBase, ObjectInfo]:
        path = self._root_dir.path_of(key)
        self._root_dir.check_mounted("downloading", key)
        with self._root_dir.translating("downloading", key, missing_is_absent=True):
            f = open(path, "rb")  # noqa: SIM115 - closed by get_file
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                f.close()
                raise IsADirectoryError(errno.EISDIR, "not a file")
            return f, object_info(key, st)

    async def get_file(
        self,
        key: str,
        dest: Path | FileSlot,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        src, info = await anyio.to_thread.run_sync(self._open_object, key)
        out: Sink | None = None
        try:
            if isinstance(dest, FileSlot):
                if info.size > dest.size:
                    raise IntegrityError(
                        f"downloading {key} from {self.root}: the object has {info.size} "
                        f"bytes, not the {dest.size} expected",
                        key,
                    )
                out = SlotWriter(dest, key)
                where = Path(out.name)
            else:
                out = await anyio.to_thread.run_sync(open_dest, dest, key, info.size)
                where = dest
            hasher = hashlib.sha256()
            store_side = self._root_dir.store_errors("downloading", key)
            copy = HashingCopy(src, out, hasher, store_side, local_file_errors(where, key))
            while n := await anyio.to_thread.run_sync(copy.step):
                await spend(self._bandwidth, n)
                if progress is not None:
                    progress(n)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close_all, src, out)
        if expected_sha256 is not None and hasher.hexdigest() != expected_sha256:
            raise IntegrityError(
                f"downloading {key} from {self.root}: content does not match its SHA-256 "
                f"(expected {expected_sha256}, got {hasher.hexdigest()})",
                key,
            )
        return info

    # -- writes -----------------------------------------------------------------------

    # `sha256` (see the protocol) is not needed: a file write hashes nothing.
    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        await spend(self._bandwidth, len(data))
        return await anyio.to_thread.run_sync(self._writer.write, key, data)

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        # One worker-thread trip for the whole write: thread hops, not IO, dominated the
        # cost of many small blobs. Threads of this process exclude each other through the
        # same flock as other processes (each takes it on its own open file description).
        await spend(self._bandwidth, len(data))
        return await anyio.to_thread.run_sync(self._writer.write_if, key, data, "absent", "")

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        await spend(self._bandwidth, len(data))
        return await anyio.to_thread.run_sync(self._writer.write_if, key, data, "match", etag)

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> str:
        tmp = await anyio.to_thread.run_sync(self._writer.new_temp, key)
        src: io.BufferedIOBase | None = None
        try:
            src = await anyio.to_thread.run_sync(open_local, path, key)
            hasher = hashlib.sha256()
            store_side = self._root_dir.store_errors("writing", key)
            copy = HashingCopy(src, tmp.file, hasher, local_file_errors(path, key), store_side)
            while n := await anyio.to_thread.run_sync(copy.step):
                await spend(self._bandwidth, n)
                if progress is not None:
                    progress(n)
            if expected_sha256 is not None and hasher.hexdigest() != expected_sha256:
                raise IntegrityError(
                    f"uploading {path} as {key}: content does not match its SHA-256 "
                    f"(expected {expected_sha256}, got {hasher.hexdigest()}; changed while read?)",
                    key,
                )
            return await anyio.to_thread.run_sync(self._writer.commit, tmp, key)
        finally:
            with anyio.CancelScope(shield=True):
                await anyio.to_thread.run_sync(close_all, src, None)
                await anyio.to_thread.run_sync(tmp.discard)

    async def delete(self, key: str) -> None:
        await anyio.to_thread.run_sync(self._writer.delete, key)

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
        fail = partial(
            self._root_dir.store_error, doing="listing", what=prefix or "/", kind=ListFailed
        )
        entries = walk(self.root, dir_key, name, after, roll_up, fail)
        while True:
            page, more = await anyio.to_thread.run_sync(self._next_page, prefix, entries)
            if page.objects or page.prefixes:
                yield page
            if not more:
                return

    def _next_page(self, prefix: str, entries: Iterator[Found]) -> tuple[ListPage, bool]:
        self._root_dir.check_mounted("listing", prefix or "/")
        taken = list(islice(entries, self._page_size))
        # a root unmounted mid-walk reads as vanished directories: never end quietly
        self._root_dir.check_mounted("listing", prefix or "/")
        page = ListPage(
            objects=[object_info(*e) for e in taken if isinstance(e, tuple)],
            prefixes=[e for e in taken if isinstance(e, str)],
        )
        return page, len(taken) == self._page_size
