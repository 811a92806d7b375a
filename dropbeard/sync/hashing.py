"""A file's SHA-256 (and a large file's chunk list), proven to be of the bytes its StatKey
describes (IO: reads files; the scan runs it in its hash threads)."""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from stat import S_ISREG
from typing import TYPE_CHECKING

import msgspec

if TYPE_CHECKING:  # sync.chunking builds on this module
    from dropbeard.sync.chunking import Chunker, ChunkTaker, FileDigest

CHUNK = 1 << 20
_SMALL = 1 << 16  # reads up to this size go straight to bytes, not through the buffer
# O_NONBLOCK: a file swapped for a FIFO after the walk must not hang the open.
_FILE_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class StatKey(msgspec.Struct, frozen=True, gc=False):
    """What decides "unchanged since last time": equal keys mean the cached sha256 holds."""

    size: int
    mtime_ns: int
    inode: int
    ctime_ns: int


class Changed(Exception):
    """The file is no longer the one its StatKey describes; the message completes
    "<path> ...", e.g. "changed while it was being read"."""


class Hasher:
    """Hashes files under the directory `dir_fd`, one after another with one read buffer:
    one per thread. `before_final_check(path)` is a test hook run after a file's bytes
    were read, before the final fstat."""

    def __init__(self, dir_fd: int, before_final_check: Callable[[str], None] | None) -> None:
        self._dir_fd = dir_fd
        self._hook = before_final_check
        self._buf = memoryview(bytearray(CHUNK))
        #: for progress: the file being read, and every byte read so far
        self.current: str | None = None
        self.read_bytes = 0
        #: the bytes of the file `sha256` last hashed, if it read them in one call (a
        #: file of up to 64 KiB, or one it was asked to `keep`): proven to be the
        #: file's, as its digest is
        self.whole: bytes | None = None

    def sha256(self, path: str, disk: str | None, key: StatKey, *, keep: bool = False) -> str:
        """The SHA-256 of regular file `path` (named `disk` on disk if set), never read
        through a symlink. Changed if it is not the file `key` describes (replaced, or
        changed before or while it was read); OSError if it cannot be read. `keep`: read
        it in one call whatever its size, so that its bytes are left in `whole` (a larger
        file otherwise goes through the reused buffer)."""
        with self._opened(path, disk) as fd:
            return self._read(fd, path, key, keep)

    def chunked(
        self,
        path: str,
        disk: str | None,
        key: StatKey,
        chunker: Chunker,
        taker: ChunkTaker | None = None,
    ) -> FileDigest:
        """As `sha256`, for a file stored in chunks: its SHA-256 and chunk list from one
        read with `chunker` (SPEC 1.6), each chunk offered to `taker` as it is hashed."""
        with self._opened(path, disk) as fd:
            if not _same(os.fstat(fd), key):
                raise Changed("changed after it was listed")
            digest = chunker.digest_fd(fd, key.size, taker)
            self.read_bytes += digest.size
            if self._hook is not None:
                self._hook(path)
            if not _same(os.fstat(fd), key):
                raise Changed("changed while it was being read")
            return digest

    @contextmanager
    def _opened(self, path: str, disk: str | None) -> Iterator[int]:
        """An fd on the regular file `path`, never through a symlink."""
        self.current = path
        try:
            fd = os.open(disk or path, _FILE_FLAGS, dir_fd=self._dir_fd)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Changed("was replaced by a symlink") from None
            raise
        try:
            yield fd
        except IsADirectoryError:
            raise Changed("was replaced by a folder") from None
        finally:
            os.close(fd)

    def _read(self, fd: int, path: str, key: StatKey, keep: bool) -> str:
        # The final fstat is what proves the bytes match `key`; this one only spares
        # reading a large file that was replaced since the walk saw it.
        if key.size > CHUNK and not _same(os.fstat(fd), key):
            raise Changed("changed after it was listed")
        buf = self._buf
        digest, got = hashlib.sha256(), 0
        self.whole = None
        while got < key.size:  # asking for a byte more than expected shows growth
            want = key.size - got + 1
            if want <= _SMALL or keep:  # one call to bytes, no buffer slicing
                data = os.read(fd, want)
                n = len(data)
                digest.update(data)
                if n == key.size:
                    self.whole = data
            else:
                n = os.readv(fd, [buf])
                digest.update(buf if n == CHUNK else buf[:n])
            if n == 0:
                break
            got += n
            self.read_bytes += n
        if self._hook is not None:
            self._hook(path)
        if got != key.size or not _same(os.fstat(fd), key):
            self.whole = None
            raise Changed("changed while it was being read")
        return digest.hexdigest()


def _same(st: os.stat_result, key: StatKey) -> bool:
    return (
        S_ISREG(st.st_mode)
        and st.st_size == key.size
        and st.st_mtime_ns == key.mtime_ns
        and st.st_ino == key.inode
        and st.st_ctime_ns == key.ctime_ns
    )


class HashCounts(msgspec.Struct, frozen=True):
    """Hashing so far: files and bytes done, of totals known once the walk is over
    (None before), and a file being read."""

    files: int
    files_total: int | None
    bytes: int
    bytes_total: int | None
    current: str | None
