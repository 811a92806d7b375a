"""Writing and reading back large downloads past the page cache (IO: local files; called
in worker threads).

A download of a large file writes bytes nobody reads soon: the folder gains the file, the
scanner only stats it. Written through the page cache, every 4 KiB of it takes a newly
allocated page first, which is where the time goes on a virtual machine whose host took
the guest's free memory back (a balloon with free page reporting: touching such a page
again costs the host a fault, about 5 s of system time per GiB on this project's
benchmark machine, against 0.2 s for pages the guest still holds); on any machine it
evicts pages the user's programs were using. Whole 4 KiB blocks of a large download are
therefore written with O_DIRECT from a reused aligned buffer, where the system and the
file system allow it; the partial blocks at either edge of a written range (a chunk of a
file begins and ends anywhere) go through the page cache as before, so two neighbouring
ranges never write the same block both ways. Every read of such a file while it is
assembled (the whole-file hash) is direct too.

Where O_DIRECT is missing (macOS), refused at open (a file system without it) or at the
first write (alignment the device does not accept), the same calls write and read through
the page cache: the bytes are the same either way.
"""

from __future__ import annotations

import contextlib
import errno
import mmap
import os
import threading
from collections.abc import Callable
from pathlib import Path

#: The alignment of every direct write and read: offset, length and memory (4 KiB covers
#: devices with 512-byte and 4 KiB logical blocks).
ALIGN = 4096
#: The size of one staging buffer, so of one direct write or read.
BLOCK = 1 << 20
#: Files (or ranges) smaller than this go through the page cache: a direct write costs
#: more per file than the page it saves on small ones.
DIRECT_FROM = 1 << 20

_O_DIRECT: int = getattr(os, "O_DIRECT", 0)
#: Devices (st_dev) where a direct write or read was refused: not tried again there.
_refused: set[int] = set()


class _Buffers:
    """A pool of page-aligned BLOCK-sized buffers, reused so their pages stay the
    process's own (a new buffer's pages cost what the page cache's would)."""

    def __init__(self, keep: int = 64) -> None:
        self._free: list[mmap.mmap] = []
        self._lock = threading.Lock()
        self._keep = keep

    def take(self) -> mmap.mmap:
        with self._lock:
            if self._free:
                return self._free.pop()
        return mmap.mmap(-1, BLOCK)

    def give(self, buf: mmap.mmap) -> None:
        with self._lock:
            if len(self._free) < self._keep:
                self._free.append(buf)
                return
        buf.close()


_buffers = _Buffers()


def open_direct(path: str | Path, flags: int = os.O_WRONLY) -> int:
    """A second descriptor on the existing file `path` that bypasses the page cache, or
    -1 where this system or file system has none (the caller then writes and reads
    through its own descriptor)."""
    if not _O_DIRECT:
        return -1
    try:
        fd = os.open(path, flags | _O_DIRECT | os.O_CLOEXEC)
    except OSError:
        return -1
    try:
        if os.fstat(fd).st_dev in _refused:
            os.close(fd)
            return -1
    except OSError:
        os.close(fd)
        return -1
    return fd


def close_direct(dfd: int) -> None:
    if dfd >= 0:
        os.close(dfd)


def _refuse(dfd: int) -> None:
    with contextlib.suppress(OSError):
        _refused.add(os.fstat(dfd).st_dev)


def pwrite_all(fd: int, data: memoryview, offset: int) -> None:
    done = 0
    while done < len(data):
        done += os.pwrite(fd, data[done:], offset + done)


class RangeWriter:
    """Writes a range of a file from `start` on, one piece after another: its whole
    aligned blocks through `dfd` (direct; -1: none), the partial blocks at its edges
    through `fd`. `finish` writes what is still staged; `discard` drops it. Not
    thread-safe: one writer per range, used by one thread at a time."""

    def __init__(self, fd: int, dfd: int, start: int) -> None:
        self.fd, self.dfd = fd, dfd
        self.pos = start  # the file offset of the next byte given
        self._buf: mmap.mmap | None = None
        self._base = 0  # the file offset of the staging buffer's first byte
        self._filled = 0

    def write(self, piece: bytes | bytearray | memoryview) -> None:
        view = memoryview(piece).cast("B")
        if self.dfd < 0:
            pwrite_all(self.fd, view, self.pos)
            self.pos += len(view)
            return
        if self._buf is None and self.pos % ALIGN:  # up to the first block boundary
            head = min(len(view), ALIGN - self.pos % ALIGN)
            pwrite_all(self.fd, view[:head], self.pos)
            self.pos += head
            view = view[head:]
        while view:
            if self._buf is None:
                self._buf, self._base, self._filled = _buffers.take(), self.pos, 0
            n = min(len(view), BLOCK - self._filled)
            self._buf[self._filled : self._filled + n] = view[:n]
            self._filled += n
            self.pos += n
            view = view[n:]
            if self._filled == BLOCK:
                self._flush(BLOCK)
                self._base += BLOCK
                self._filled = 0

    def finish(self) -> None:
        """Write the staged bytes: whole blocks direct, the last partial one through the
        page cache; the buffer goes back to the pool."""
        if self._buf is None:
            return
        try:
            whole = self._filled - self._filled % ALIGN
            if whole:
                self._flush(whole)
            if self._filled > whole:
                rest = memoryview(self._buf)[whole : self._filled]
                try:
                    pwrite_all(self.fd, rest, self._base + whole)
                finally:
                    rest.release()
        finally:
            self.discard()

    def discard(self) -> None:
        if self._buf is not None:
            _buffers.give(self._buf)
            self._buf = None
            self._filled = 0

    def _flush(self, n: int) -> None:
        assert self._buf is not None
        view = memoryview(self._buf)[:n]
        try:
            done = 0
            while done < n:
                if self.dfd < 0 or done % ALIGN:
                    pwrite_all(self.fd, view[done:], self._base + done)
                    return
                try:
                    done += os.pwrite(self.dfd, view[done:], self._base + done)
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    _refuse(self.dfd)
                    self.dfd = -1  # the rest of this range through the page cache
        finally:
            view.release()


def write_range(fd: int, dfd: int, offset: int, data: bytes | bytearray | memoryview) -> None:
    """Write `data` at `offset` (see RangeWriter)."""
    out = RangeWriter(fd, dfd, offset)
    try:
        out.write(data)
        out.finish()
    finally:
        out.discard()


def read_range(
    fd: int, dfd: int, start: int, end: int, feed: Callable[[memoryview], object]
) -> None:
    """Feed bytes `start` to `end` of the file to `feed`, a block at a time: read direct
    (whole aligned blocks around the range) if `dfd` is one, else through the page
    cache. Stops early at the end of the file."""
    buf = _buffers.take()
    view = memoryview(buf)
    try:
        at = start
        while at < end:
            if dfd >= 0:
                base = at - at % ALIGN
                want = min(BLOCK, -(-(end - base) // ALIGN) * ALIGN)
                try:
                    n = os.preadv(dfd, [view[:want]], base)
                except OSError as e:
                    if e.errno != errno.EINVAL:
                        raise
                    _refuse(dfd)
                    dfd = -1
                    continue
                skip = at - base
                n = min(n, end - base)
                if n <= skip:
                    return
                feed(view[skip:n])
                at = base + n
            else:
                n = os.preadv(fd, [view[: min(BLOCK, end - at)]], at)
                if not n:
                    return
                feed(view[:n])
                at += n
    finally:
        view.release()
        _buffers.give(buf)
