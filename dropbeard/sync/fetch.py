"""Getting a blob's verified bytes into a temp file and placing it: copied from a local
file that holds them, else downloaded (IO: store reads, local files; the caller says
where the file goes).

A small blob is read whole into memory (held in the transfer budget) and then verified,
written and placed in one job of a shared worker-thread trip (`sync.trips`); a large one
streams to disk. A file stored in chunks (an entry with `chunks`, whatever its size) is
assembled from them (`sync.chunkdownload`), each chunk a local file holds copied, the
rest fetched. A request slot is held only while the network is busy, never during that
local file work.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from functools import partial
from pathlib import Path
from typing import TypeVar, cast

import msgspec

from dropbeard.core.chunking import Chunk
from dropbeard.core.errors import IntegrityError
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Entry
from dropbeard.store.base import Progress, Store
from dropbeard.store.direct import DIRECT_FROM, close_direct, open_direct, write_range
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.chunkdownload import download_chunks
from dropbeard.sync.sources import LocalSources, copy_verified
from dropbeard.sync.trips import ThreadTrips

T = TypeVar("T")


class Fetcher(msgspec.Struct):
    """Fills temp files with blobs for one apply: from `sources` (a local file holding the
    bytes; no blob fetched twice), else from the bucket within `budget`; the file work
    in `trips`. Counts what came from where: files copied whole from a local file or
    assembled from local chunks alone (`copied`), files that needed the bucket
    (`downloaded`), the bytes fetched, and the bytes of chunks reused from local files."""

    store: Store
    keys: RootKeys
    budget: TransferBudget
    sources: LocalSources
    progress: Progress | None
    trips: ThreadTrips = msgspec.field(default_factory=ThreadTrips)
    copied: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    reused_bytes: int = 0

    async def fill(
        self,
        tmp: Path,
        sha: str,
        size: int,
        place: Callable[[], T],
        chunks: Sequence[Chunk] | None = None,
    ) -> T:
        """Write the verified bytes of file `sha` (`size` bytes, stored as `chunks` if
        given) to `tmp` and `place` them, in one job with the placing. A local source whose
        bytes changed since they were registered (overwritten this pass, or edited) is
        dropped and the next one tried, down to the bucket. The caller releases the blob
        in `sources`."""
        while (source := await self.sources.claim(sha)) is not None:
            copied, placed = await self.trips.run(partial(_copy_and_place, source, tmp, sha, place))
            if copied:
                self.copied += 1
                return cast(T, placed)
            self.sources.drop(sha, source)
        if chunks is not None:
            return await self._assemble(tmp, sha, size, chunks, place)
        key = self.keys.blob(sha)
        placed = await download(
            self.store, self.budget, self.trips, key, (sha, size), tmp, place, self.progress
        )
        self.downloaded += 1
        self.downloaded_bytes += size
        return placed

    async def _assemble(
        self, tmp: Path, sha: str, size: int, chunks: Sequence[Chunk], place: Callable[[], T]
    ) -> T:
        """`fill` from chunks: the ones local files hold copied, the rest fetched."""
        got = await download_chunks(
            self.store,
            self.keys,
            sha,
            size,
            chunks,
            tmp_dir=tmp.parent,
            find=self.sources.find_chunk,
            budget=self.budget,
            progress=self.progress,
            name=tmp.name,
        )
        placed = await self.trips.run(place)
        if got.fetched:
            self.downloaded += 1
        else:
            self.copied += 1
        self.downloaded_bytes += got.fetched_bytes
        self.reused_bytes += got.reused_bytes
        return placed


#: Blobs up to this size are downloaded into memory and written in one worker-thread
#: trip; larger ones stream to disk.
WHOLE_DOWNLOAD = 4 * 1024 * 1024


def streams(entry: Entry) -> bool:
    """True for a file whose download streams to disk (stored in chunks, or larger than
    WHOLE_DOWNLOAD): an apply starts those first, so their bytes flow from the start and
    the small files fill the gaps, instead of a large one starting last and running
    alone."""
    return entry.chunks is not None or (entry.size or 0) > WHOLE_DOWNLOAD


async def download(
    store: Store,
    budget: TransferBudget,
    trips: ThreadTrips,
    key: str,
    blob: tuple[str, int],
    tmp: Path,
    place: Callable[[], T],
    progress: Progress | None,
) -> T:
    """Fetch blob `key` (`blob`: its SHA-256 and size) into `tmp`, then `place()` it, the
    local file work in `trips`. IntegrityError (and nothing placed) if the bytes are not
    those."""
    sha, size = blob
    if size > WHOLE_DOWNLOAD:
        async with budget.request():  # (the store's writes keep the file's mode)
            await trips.run(partial(_create_private, tmp))
            await store.get_file(key, tmp, expected_sha256=sha, progress=progress)
        return await trips.run(place)
    async with budget.holding(size):
        async with budget.request(nbytes=size):
            data = await store.get(key)
        if progress:
            progress(len(data))
        return await trips.run(partial(_write_verified, data, key, sha, tmp, place))


def _copy_and_place(
    source: Path, tmp: Path, sha: str, place: Callable[[], T]
) -> tuple[bool, T | None]:
    """(False, None) if `source` no longer holds blob `sha`; else (True, what `place`
    returned) once it is copied to `tmp` and placed."""
    try:
        copy_verified(source, tmp, sha)
    except (IntegrityError, OSError):
        return False, None
    return True, place()


def _write_verified(data: bytes, key: str, sha: str, dest: Path, place: Callable[[], T]) -> T:
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise IntegrityError(
            f"downloading {key}: content does not match its SHA-256 (expected {sha}, got {got})",
            key,
        )
    write_new(dest, data)
    return place()


#: A temporary file's flags: created for writing, only ever by this process's writes.
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC
#: A temporary file's mode until it is placed (`FolderWriter.install` gives it the
#: entry's): its owner's alone, so that a file private on the device that wrote it is
#: never readable by others here while its bytes arrive (a file opened then stays open).
PRIVATE = 0o600


def _create_private(path: Path) -> None:
    os.close(os.open(path, _WRITE_FLAGS, PRIVATE))


def write_new(dest: Path, data: bytes) -> None:
    """Write `data` to the file `dest`, created or emptied: plain system calls, not a
    buffered file object (which costs an fstat, an isatty ioctl and an lseek more per
    file: a third of a downloaded small file's system calls in its worker thread); a
    large one's whole blocks past the page cache (`dropbeard.store.direct`)."""
    fd = os.open(dest, _WRITE_FLAGS, PRIVATE)
    try:
        if len(data) < DIRECT_FROM:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view) :]
            return
        dfd = open_direct(dest)
        try:
            write_range(fd, dfd, 0, data)
        finally:
            close_direct(dfd)
    finally:
        os.close(fd)
