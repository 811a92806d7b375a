"""Uploading a large file's chunks: each chunk a blob written with one create-only PUT,
read from its slice of the file and verified against its key first (IO: local file in
worker threads, store writes).

Every chunk shares the pass's `TransferBudget` with the other transfers: a small
request's share of a slot while its HEAD is on the network (it moves no bytes), a whole
slot while its PUT is, and the chunk's bytes from before they are read until its PUT ends.

There is no multipart state: a chunk is in the bucket or it is not, so an upload cut
short resumes by uploading the chunks still missing. A chunk not known present is asked
for with HEAD first (a losing create-only PUT would have sent it whole); one found there
but written before `fresh_since` is written again (same bytes: a new LastModified, so gc
spares it, SPEC 8.2). A slice whose
bytes no longer hash to its chunk (the file changed after it was digested) is never
uploaded: the upload stops and reports `changed`, and the caller digests the file again
next pass.
"""

from __future__ import annotations

import errno
import hashlib
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from stat import S_ISREG

import anyio
import msgspec

from dropbeard.core.chunking import Chunk, chunk_offsets, validate_chunks
from dropbeard.core.errors import LocalFileError, NotFound, PreconditionFailed
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Progress, Store
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.chunking import stat_key
from dropbeard.sync.hashing import StatKey
from dropbeard.sync.workers import for_each, unwrapped

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


class ChunkUpload(msgspec.Struct):
    """What uploading one file's chunks did. Counts are of distinct chunks."""

    #: chunks sent, and their bytes
    uploaded: int = 0
    uploaded_bytes: int = 0
    #: chunks the bucket already held (one HEAD each, nothing read or sent)
    present: int = 0
    #: chunks the caller knew present: no request made
    skipped_known: int = 0
    #: the file is not the one digested (changed, replaced, gone): what was uploaded is
    #: correct but the file's entry must not be published from this digest
    changed: bool = False


async def upload_chunks(
    store: Store,
    keys: RootKeys,
    file: Path,
    size: int,
    chunks: Sequence[Chunk],
    *,
    budget: TransferBudget,
    expected: StatKey | None = None,
    known_present: Callable[[str], bool] | None = None,
    progress: Progress | None = None,
    fresh_since: float | None = None,
) -> ChunkUpload:
    """Make sure every chunk of `file` (`size` bytes, cut into `chunks`) is in the store.

    Requests and the chunks' bytes held in memory stay within `budget` (the caller
    shares one between files and with its other transfers). `expected`, when
    given, is the file's stat when it was digested: a file whose stat differs before or
    after the upload is `changed`. `known_present(sha256)` True skips a chunk without a
    request. A chunk there but last modified before `fresh_since` (POSIX seconds) is
    refreshed: sent again. `progress` is told the bytes of each chunk sent. OSError reading the file
    (other than its disappearance) is LocalFileError; a chunk list that does not fit
    `size` is ValueError (a bug: lists come from `Chunker`).
    """
    chunks = validate_chunks(chunks, size)
    result = ChunkUpload()
    slices: dict[str, tuple[int, int]] = {}
    for chunk, offset in zip(chunks, chunk_offsets(chunks), strict=True):
        slices.setdefault(chunk.sha256, (offset, chunk.size))
    todo = []
    for sha, where in slices.items():
        if known_present is not None and known_present(sha):
            result.skipped_known += 1
        else:
            todo.append((sha, *where))
    fd = await anyio.to_thread.run_sync(_open, file, expected)
    if fd is None:
        result.changed = True
        return result
    try:
        sender = _Sender(store, keys, fd, str(file), budget, progress, result, fresh_since)
        with unwrapped():
            await for_each(todo, sender.send, min(len(todo), budget.small_requests))
        if not result.changed and expected is not None:
            result.changed = await anyio.to_thread.run_sync(_differs, fd, expected)
    finally:
        os.close(fd)
    return result


class _Sender(msgspec.Struct):
    store: Store
    keys: RootKeys
    fd: int
    name: str
    budget: TransferBudget
    progress: Progress | None
    result: ChunkUpload
    fresh_since: float | None = None

    async def send(self, job: tuple[str, int, int]) -> None:
        sha, offset, size = job
        if self.result.changed:
            return  # the file moved on: nothing more from this digest
        key = self.keys.blob(sha)
        async with self.budget.request(nbytes=0):  # a HEAD: a small request's share
            held = await _holds(self.store, key, size, self.fresh_since)
        if held:
            self.result.present += 1
            return
        async with self.budget.holding(size):
            data = await anyio.to_thread.run_sync(partial(self.read, offset, size, sha))
            if data is None:
                self.result.changed = True
                return
            async with self.budget.request():
                sent = await _put_chunk(self.store, key, data, sha, self.fresh_since)
        if sent:
            self.result.uploaded += 1
            self.result.uploaded_bytes += size
            if self.progress:
                self.progress(size)
        else:
            self.result.present += 1

    def read(self, offset: int, size: int, sha: str) -> bytes | None:
        """The slice's bytes if they still hash to `sha`, else None."""
        try:
            data = os.pread(self.fd, size, offset)
        except OSError as e:
            raise LocalFileError(f"reading {self.name}: {e.strerror or e}", errno=e.errno) from e
        if len(data) != size or hashlib.sha256(data).hexdigest() != sha:
            return None
        return data


async def _holds(store: Store, key: str, size: int, fresh_since: float | None) -> bool:
    """True if the store has the chunk, written at or after `fresh_since`. Asked before
    sending it: a create-only PUT that loses has already sent the whole chunk. An object
    of another size under the key is the truncated leftover of a write cut short (a
    server may keep one when its client is killed mid-request): it is replaced, else no
    device could ever read this file. An older one is refreshed (SPEC 8.2)."""
    try:
        info = await store.head(key)
    except NotFound:
        return False
    return info.size == size and (fresh_since is None or info.last_modified >= fresh_since)


async def _put_chunk(
    store: Store, key: str, data: bytes, sha: str, fresh_since: float | None
) -> bool:
    """Create the chunk's blob (or replace a truncated leftover, or refresh an old one)
    with bytes verified against its key; True if sent, False if another writer created
    it meanwhile."""
    try:
        await store.put_if_absent(key, data, sha256=sha)
        return True
    except PreconditionFailed:
        if await _holds(store, key, len(data), fresh_since):
            return False
    await store.put(key, data, sha256=sha)
    return True


def _open(file: Path, expected: StatKey | None) -> int | None:
    """An fd on `file`, or None if it is gone, not a regular file, or not `expected`."""
    try:
        fd = os.open(file, _READ_FLAGS)
    except FileNotFoundError:
        return None
    except OSError as e:
        if e.errno in (errno.ELOOP, errno.EISDIR, errno.ENOTDIR):
            return None
        raise LocalFileError(f"reading {file}: {e.strerror or e}", errno=e.errno) from e
    st = os.fstat(fd)
    if not S_ISREG(st.st_mode) or (expected is not None and stat_key(st) != expected):
        os.close(fd)
        return None
    return fd


def _differs(fd: int, expected: StatKey) -> bool:
    return stat_key(os.fstat(fd)) != expected
