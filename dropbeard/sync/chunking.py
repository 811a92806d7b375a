"""One read of a file gives its SHA-256, its size and, for a large file, its FastCDC chunk
list (IO: reads files; blocking, so call it from a worker thread).

The file is read once into one buffer. The calling thread cuts it with FastCDC (the cut
releases the GIL); two helper threads hash the same bytes, the whole file in order and
each chunk as it is cut (hashlib releases the GIL too), so on two cores the second
SHA-256 costs little wall time. `overlap=False` does all three on the calling thread.
No mmap: a file truncated while mapped would kill the process with SIGBUS.
"""

from __future__ import annotations

import errno
import hashlib
import os
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from stat import S_ISREG
from typing import TYPE_CHECKING, Protocol

import msgspec

from dropbeard.core.chunking import (
    AVG_CHUNK,
    GEAR_SEED,
    MAX_CHUNK,
    MIN_CHUNK,
    NORMALIZATION,
    Chunk,
    is_chunked,
)
from dropbeard.sync.hashing import Changed, StatKey

if TYPE_CHECKING:
    from pyfastcdc import FastCDC

#: Default read buffer: a window of MAX_CHUNK must stay contiguous for the cutter, so
#: whatever is left after the last cut moves to the front before the next read; a
#: buffer of three windows keeps that move under half of what each refill reads.
BUFFER = 3 * MAX_CHUNK
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class FileDigest(msgspec.Struct, frozen=True):
    """What one read of a file learnt: the SHA-256 of all its bytes, how many there were,
    and for a file over CHUNKED_ABOVE its chunks in order (None: stored as one blob)."""

    sha256: str
    size: int
    chunks: tuple[Chunk, ...] | None


class ChunkTaker(Protocol):
    """Who may take a chunk's bytes as it is cut (`sync.ahead`, through the scan): `room`
    says whether a chunk of `size` bytes would be taken (it is then copied out of the
    buffer), `take` gets it with its SHA-256, proven. Both are called in hash threads."""

    def room(self, size: int) -> bool: ...

    def take(self, sha256: str, data: bytes) -> None: ...


def new_cutter() -> FastCDC:
    """A FastCDC cutter with SPEC 1.6's parameters (not thread-safe: one per thread).

    The chunker's C module is loaded here, at the first file to cut, not when this module
    is: most passes cut no file, and loading it costs a command ~7 ms before its first
    request."""
    from pyfastcdc import FastCDC

    return FastCDC(
        AVG_CHUNK,
        min_size=MIN_CHUNK,
        max_size=MAX_CHUNK,
        normalized_chunking=NORMALIZATION,
        seed=GEAR_SEED,
    )


class Chunker:
    """Digests files one after another with one buffer and one cutter: one per thread.

    `overlap=False` hashes on the calling thread too (one core, no helper threads).
    `buffer` (bytes, at least 2 * MAX_CHUNK) is for tests and the benchmark.
    """

    def __init__(self, *, overlap: bool = True, buffer: int = BUFFER) -> None:
        if buffer < 2 * MAX_CHUNK:
            raise ValueError(f"a chunking buffer needs at least {2 * MAX_CHUNK} bytes")
        self.overlap = overlap
        self._capacity = buffer
        self._buf: memoryview | None = None  # allocated on first use
        self._cutter: FastCDC | None = None  # made for the first file to cut

    def digest_file(self, path: Path) -> FileDigest:
        """Digest the regular file at `path`, never through a symlink. Changed if it is
        replaced or changes while read; OSError if it cannot be read."""
        try:
            fd = os.open(path, _READ_FLAGS)
        except OSError as e:
            if e.errno == errno.ELOOP:
                raise Changed("was replaced by a symlink") from None
            raise
        try:
            before = os.fstat(fd)
            if not S_ISREG(before.st_mode):
                raise Changed("is not a regular file")
            digest = self.digest_fd(fd, before.st_size)
            if stat_key(os.fstat(fd)) != stat_key(before):
                raise Changed("changed while it was being read")
            return digest
        finally:
            os.close(fd)

    def digest_fd(self, fd: int, size: int, taker: ChunkTaker | None = None) -> FileDigest:
        """Digest the open file `fd` from its current position, expecting `size` bytes.
        Changed if it holds more or fewer (the caller compares stats before and after).
        `taker` is offered each chunk it has room for, as soon as the chunk is hashed."""
        if self._buf is None:
            self._buf = memoryview(bytearray(self._capacity))
        whole = hashlib.sha256()
        cutter = None
        if is_chunked(size):
            cutter = self._cutter = self._cutter or new_cutter()
        pool = ThreadPoolExecutor(2, "chunk-hash") if self.overlap and cutter is not None else None
        try:
            return _Pass(fd, size, self._buf, cutter, whole, pool, taker).run()
        finally:
            if pool is not None:
                pool.shutdown(wait=True)


def stat_key(st: os.stat_result) -> StatKey:
    """The StatKey of a stat result (what decides "unchanged since last time")."""
    return StatKey(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)


class _Pass:
    """One file through the buffer, cut by `cutter` (None: a file stored whole):
    `filled` bytes are in it, those before `start` are already cut; `pending` are the
    hashes (whole file and chunks) that may still be reading the buffer, `chunks` the cut
    chunks with their hash or its future."""

    def __init__(
        self,
        fd: int,
        size: int,
        buf: memoryview,
        cutter: FastCDC | None,
        whole: hashlib._Hash,
        pool: ThreadPoolExecutor | None,
        taker: ChunkTaker | None = None,
    ) -> None:
        self.fd, self.size, self.buf, self.cutter = fd, size, buf, cutter
        self.whole, self.pool, self.taker = whole, pool, taker
        self.pending: list[Future[object]] = []
        self.start = self.filled = self.got = 0
        self.eof = False
        self.chunks: list[tuple[str | Future[str], int]] = []

    def run(self) -> FileDigest:
        cutter = self.cutter
        while not self.eof:
            self._refill()
            if cutter is not None:
                self._cut(cutter)
            else:
                self.start = self.filled  # nothing to cut: the whole hash is all
        self._wait()
        if self.got != self.size:
            raise Changed("changed while it was being read")
        chunks = tuple(Chunk(_done(h), n) for h, n in self.chunks) if cutter is not None else None
        return FileDigest(self.whole.hexdigest(), self.got, chunks)

    def _refill(self) -> None:
        """Move the uncut tail to the front, read until the buffer is full or the file
        ends, and hand the new bytes to the whole-file hash."""
        self._wait()  # it reads the buffer we are about to overwrite
        buf, tail = self.buf, self.filled - self.start
        if tail and self.start:
            buf[:tail] = buf[self.start : self.filled]
        self.start, self.filled = 0, tail
        while self.filled < len(buf):
            n = os.readv(self.fd, [buf[self.filled :]])
            if n == 0:
                self.eof = True
                break
            self.filled += n
            self.got += n
            if self.got > self.size:  # grew since it was listed: no use reading on
                raise Changed("changed while it was being read")
        new = buf[tail : self.filled]
        if self.pool is None:
            self.whole.update(new)
        else:
            self.pending.append(self.pool.submit(self.whole.update, new))

    def _cut(self, cutter: FastCDC) -> None:
        """Cut and hash every chunk whose end is certain: a window of MAX_CHUNK bytes
        decides a cut exactly as the whole file would, and so does the file's end."""
        buf = self.buf
        while self.start < self.filled and (self.eof or self.filled - self.start >= MAX_CHUNK):
            end = min(self.filled, self.start + MAX_CHUNK)
            length = next(iter(cutter.cut_buf(buf[self.start : end]))).length
            data = buf[self.start : self.start + length]
            taker = self.taker if self.taker is not None and self.taker.room(length) else None
            if self.pool is None:
                self.chunks.append((_sha256(data, taker), length))
            else:
                job = self.pool.submit(_sha256, data, taker)
                self.pending.append(job)  # type: ignore[arg-type]
                self.chunks.append((job, length))
            self.start += length

    def _wait(self) -> None:
        for job in self.pending:
            job.result()
        self.pending.clear()


def _sha256(data: memoryview, taker: ChunkTaker | None = None) -> str:
    """The SHA-256 of `data`; `taker` takes a copy of them (before the job ends, so before
    the buffer is read into again)."""
    sha256 = hashlib.sha256(data).hexdigest()
    if taker is not None:
        taker.take(sha256, bytes(data))
    return sha256


def _done(h: str | Future[str]) -> str:
    return h if isinstance(h, str) else h.result()
