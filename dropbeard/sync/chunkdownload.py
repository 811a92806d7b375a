"""Downloading a large file from its chunks into a temporary file, reusing every chunk a
local file already holds (IO: local files in worker threads, store reads).

Each chunk is verified: one copied from a local file is re-hashed as it is read (the file
may have changed since it was indexed: a chunk that no longer matches is fetched
instead); one fetched streams straight to its place in the temporary file (a `FileSlot`:
no file of its own, no copy afterwards; an object larger than its chunk is refused before
it runs over the next). The whole file's SHA-256 is taken in order while the chunks still
arrive: whenever the written prefix grows, a worker thread hashes the new part back from
the page cache, so the check after the last chunk costs only its tail. That check
verifies every fetched chunk at once, so fetched bytes are hashed once, not twice (a
chunk holding other bytes than its key cannot leave the whole file's digest intact); only
when it fails are the fetched chunks hashed one by one, to name the one that is wrong.
Any failure removes the temporary file: nothing lands. The caller renames the result into
place.

Every chunk shares the pass's `TransferBudget` with the other transfers: a request slot
while a chunk is on the network, and its bytes while a chunk copied from a local file is
in memory.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import anyio
import msgspec

from dropbeard.core.chunking import Chunk, chunk_offsets, validate_chunks
from dropbeard.core.errors import IntegrityError, LocalFileError, NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import FileSlot, Progress, Store
from dropbeard.store.direct import (
    RangeWriter,
    close_direct,
    open_direct,
    read_range,
    write_range,
)
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.partfiles import part_name
from dropbeard.sync.workers import for_each, unwrapped

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class ChunkSource(NamedTuple):
    """Where a local file holds a chunk's bytes (as far as the caller knows)."""

    path: Path
    offset: int
    size: int


#: `find(chunk_sha256)`: a local place believed to hold that chunk, or None. Called on
#: the event loop, so it must be a quick lookup (in a dict the caller built).
FindChunk = Callable[[str], ChunkSource | None]


class Assembled(msgspec.Struct):
    """A reassembled, verified file in the caller's tmp dir, and where its bytes came from:
    `fetched` distinct chunks downloaded, `reused` distinct chunks copied from local
    files; `reused_bytes` is everything written that was not downloaded (a chunk
    repeated inside the file is fetched once)."""

    file: Path
    fetched: int = 0
    fetched_bytes: int = 0
    reused: int = 0
    reused_bytes: int = 0


async def download_chunks(
    store: Store,
    keys: RootKeys,
    sha256: str,
    size: int,
    chunks: Sequence[Chunk],
    *,
    tmp_dir: Path,
    find: FindChunk,
    budget: TransferBudget,
    progress: Progress | None = None,
    name: str | None = None,
) -> Assembled:
    """Assemble the file `sha256` of `size` bytes, cut into `chunks`, as a new file in
    `tmp_dir` (named `name`, else a new download-in-progress name: `sync.partfiles`),
    taking every chunk `find` locates locally and still verifies from there.

    Requests in flight and bytes held in memory stay within `budget`; `progress` is told
    the bytes downloaded as they arrive. IntegrityError
    for an invalid chunk list, a chunk holding other bytes than its key, or a whole
    file that does not hash to `sha256`; NotFound for a missing chunk; LocalFileError if
    the temporary file cannot be written. Any error leaves nothing in `tmp_dir`."""
    try:
        chunks = validate_chunks(chunks, size)
    except ValueError as e:
        raise IntegrityError(f"file {sha256}: invalid chunk list: {e}") from None
    places: dict[str, list[int]] = {}
    for chunk, offset in zip(chunks, chunk_offsets(chunks), strict=True):
        places.setdefault(chunk.sha256, []).append(offset)
    sizes = {c.sha256: c.size for c in chunks}
    dest = tmp_dir / (name or part_name())
    fd, dfd = await anyio.to_thread.run_sync(_create, dest, size)
    out = Assembled(dest)
    whole = _InOrderHash(fd, dfd, size)
    writer = _Writer(store, keys, fd, dfd, find, budget, progress, out, whole)
    try:
        jobs = [(sha, sizes[sha], offsets) for sha, offsets in places.items()]
        with unwrapped():
            await for_each(jobs, writer.fill, min(len(jobs), budget.requests))
        got = await whole.finish()
        if got != sha256:
            bad = await anyio.to_thread.run_sync(_first_wrong, fd, dfd, writer.fetched)
            if bad is not None:
                raise IntegrityError(_other_bytes(keys.blob(bad)), keys.blob(bad))
            raise IntegrityError(f"file {sha256}: its chunks reassemble to {got} instead")
    except BaseException:
        _close(fd, dfd)
        dest.unlink(missing_ok=True)
        raise
    _close(fd, dfd)
    return out


class _InOrderHash:
    """The SHA-256 of the file `fd` of `size` bytes, hashed in order as its prefix fills:
    `land` says a range was written; whoever finds the hash idle hashes the prefix grown
    since (from the page cache, in a worker thread) until it stops growing, while the
    other chunks keep downloading."""

    def __init__(self, fd: int, dfd: int, size: int) -> None:
        self.fd, self.dfd, self.size = fd, dfd, size
        self.hash = hashlib.sha256()
        self.done = 0  # bytes hashed
        self.landed: dict[int, int] = {}  # start -> end of a written range past `done`
        self.busy = False

    async def land(self, offset: int, size: int) -> None:
        self.landed[offset] = offset + size
        if self.busy:  # the one hashing picks this range up when it reaches it
            return
        self.busy = True
        try:
            while (end := self._reach()) > self.done:
                await anyio.to_thread.run_sync(
                    _hash_range, self.fd, self.dfd, self.hash, self.done, end
                )
                self.done = end
        finally:
            self.busy = False

    async def finish(self) -> str:
        """The digest, once every range has landed (what no chunk covered is hashed as
        the file holds it: a hole, which the check then refuses)."""
        if self.done < self.size:
            await anyio.to_thread.run_sync(
                _hash_range, self.fd, self.dfd, self.hash, self.done, self.size
            )
            self.done = self.size
        return self.hash.hexdigest()

    def _reach(self) -> int:
        """The end of the written prefix, taking the ranges it covers out of `landed`."""
        end = self.done
        while end in self.landed:
            end = self.landed.pop(end)
        return end


class _Writer(msgspec.Struct):
    """Fills the temporary file `fd` (`dfd`: its direct descriptor, or -1), one distinct
    chunk at a time."""

    store: Store
    keys: RootKeys
    fd: int
    dfd: int
    find: FindChunk
    budget: TransferBudget
    progress: Progress | None
    out: Assembled
    whole: _InOrderHash
    #: (sha256, offset, size) of every chunk fetched, checked one by one only if the
    #: whole file's digest fails
    fetched: list[tuple[str, int, int]] = msgspec.field(default_factory=list)

    async def fill(self, job: tuple[str, int, list[int]]) -> None:
        sha, size, offsets = job
        source = self.find(sha)
        reused = False
        if source is not None and source.size == size:
            async with self.budget.holding(size):
                reused = await anyio.to_thread.run_sync(
                    _copy_local, source, sha, self.fd, self.dfd, offsets
                )
        if reused:
            self.out.reused += 1
            self.out.reused_bytes += size * len(offsets)
        else:
            await self._fetch(sha, size, offsets)
            self.out.fetched += 1
            self.out.fetched_bytes += size
            self.out.reused_bytes += size * (len(offsets) - 1)
        for offset in offsets:
            await self.whole.land(offset, size)

    async def _fetch(self, sha: str, size: int, offsets: list[int]) -> None:
        """The chunk from the store written at `offsets`: streamed into its first place
        (at most `size` bytes: a hostile object of any size never sits in memory nor runs
        over the next chunk), then copied to the others, if the file repeats it. Its bytes
        are verified by the whole file's digest (`download_chunks`)."""
        key = self.keys.blob(sha)
        slot = FileSlot(self.fd, offsets[0], size, self.dfd)
        try:
            async with self.budget.request():
                info = await self.store.get_file(key, slot, progress=self.progress)
        except IntegrityError:
            raise IntegrityError(_other_bytes(key), key) from None
        except NotFound:
            raise NotFound(f"chunk {key} is missing from the bucket", key) from None
        if info.size != size:
            raise IntegrityError(
                f"chunk {key} has {info.size} bytes, its file's chunk list says {size}", key
            )
        self.fetched.append((sha, offsets[0], size))
        if len(offsets) > 1:
            await anyio.to_thread.run_sync(_repeat, self.fd, self.dfd, size, offsets)


def _other_bytes(key: str) -> str:
    return f"chunk {key} holds other bytes than its name says"


def _first_wrong(fd: int, dfd: int, fetched: list[tuple[str, int, int]]) -> str | None:
    """The first fetched chunk whose bytes in the file do not hash to its name, if any."""
    for sha, offset, size in fetched:
        hasher = hashlib.sha256()
        _hash_range(fd, dfd, hasher, offset, offset + size)
        if hasher.hexdigest() != sha:
            return sha
    return None


def _create(dest: Path, size: int) -> tuple[int, int]:
    """A new file of `size` bytes (a hole, filled by the writes) open for reading and
    writing, and a second descriptor on it that bypasses the page cache (-1: none)."""
    try:
        fd = os.open(dest, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except OSError as e:
        raise LocalFileError(f"creating {dest}: {e.strerror or e}", errno=e.errno) from e
    try:
        os.ftruncate(fd, size)
    except OSError as e:
        os.close(fd)
        dest.unlink(missing_ok=True)
        raise LocalFileError(f"creating {dest}: {e.strerror or e}", errno=e.errno) from e
    return fd, open_direct(dest, os.O_RDWR)


def _close(fd: int, dfd: int) -> None:
    try:
        close_direct(dfd)
    finally:
        os.close(fd)


def _copy_local(source: ChunkSource, sha: str, fd: int, dfd: int, offsets: list[int]) -> bool:
    """Write the chunk at `offsets` of the file from a local file if its bytes are still
    there; False if not (the file changed or went since it was indexed: the chunk is
    fetched instead)."""
    data = _read_local(source, sha)
    if data is None:
        return False
    _write_at(fd, dfd, data, offsets)
    return True


def _read_local(source: ChunkSource, sha: str) -> bytes | None:
    """The chunk's bytes from a local file if they are still there, else None."""
    try:
        fd = os.open(source.path, _READ_FLAGS)
    except OSError:
        return None
    try:
        data = os.pread(fd, source.size, source.offset)
    except OSError:
        return None
    finally:
        os.close(fd)
    if len(data) != source.size or hashlib.sha256(data).hexdigest() != sha:
        return None
    return data


def _write_at(fd: int, dfd: int, data: bytes | memoryview, offsets: list[int]) -> None:
    try:
        for offset in offsets:
            write_range(fd, dfd, offset, data)
    except OSError as e:
        raise LocalFileError(f"writing a download: {e.strerror or e}", errno=e.errno) from e


def _repeat(fd: int, dfd: int, size: int, offsets: list[int]) -> None:
    """Copy the `size` bytes at `offsets[0]` of the file to its other `offsets`, a block
    at a time."""
    outs = [RangeWriter(fd, dfd, offset) for offset in offsets[1:]]

    def copy(block: memoryview) -> None:
        for out in outs:
            out.write(block)

    try:
        read_range(fd, dfd, offsets[0], offsets[0] + size, copy)
        for out in outs:
            out.finish()
    except OSError as e:
        raise LocalFileError(f"writing a download: {e.strerror or e}", errno=e.errno) from e
    finally:
        for out in outs:
            out.discard()


def _hash_range(fd: int, dfd: int, hasher: Any, start: int, end: int) -> None:
    """Feed bytes `start` to `end` of the file to `hasher`, read back a block at a time
    (direct if `dfd` is a descriptor)."""
    try:
        read_range(fd, dfd, start, end, hasher.update)
    except OSError as e:
        raise LocalFileError(f"reading a download back: {e.strerror or e}", errno=e.errno) from e
