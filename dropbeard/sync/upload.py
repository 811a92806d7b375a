"""Uploading the blobs a plan needs, concurrently and deduplicated (IO: local files, store).

A blob is keyed by its SHA-256 and written only if absent. Small files cost one request
each (a create-only PUT; "already exists" is success); large files are checked with HEAD
and only then streamed up in multipart parts. Bytes are verified against the promised
digest while read, so a file that changes under us never lands under the wrong key.

All uploads share one `TransferBudget`: a small file holds its bytes from before it is
read until its PUT ends, and a request slot only during the PUT; a large one holds what
its parts in flight need. Small files are read in batches, one worker-thread trip each,
while the files read before them are being sent. Largest first, so the long transfers
start early and small files fill the slots around them.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio
from anyio.streams.memory import MemoryObjectReceiveStream

from dropbeard.core.errors import IntegrityError, NotFound, PreconditionFailed
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import Progress, Store, UploadJournal
from dropbeard.store.multipart import PARTS_IN_FLIGHT, part_size_for
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.workers import for_each

#: Up to this size a blob is read whole and sent with one create-only PUT.
SMALL = 8 * 1024 * 1024


@dataclass
class UploadResult:
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped_existing: int = 0
    #: the paths whose bytes changed while read (the caller re-plans without them)
    changed: set[str] = field(default_factory=set)


@dataclass(frozen=True, slots=True)
class BlobSource:
    sha256: str
    size: int
    path: str  # relative, as tracked
    file: Path  # where to read it on disk


#: Small files are read in batches, one worker-thread trip per batch (not one per file),
#: of at most this many files and bytes, while earlier batches are being sent.
READ_BATCH_FILES = 32
READ_BATCH_BYTES = 4 * 1024 * 1024


async def upload_blobs(
    store: Store,
    keys: RootKeys,
    sources: Iterable[BlobSource],
    *,
    budget: TransferBudget,
    journal: UploadJournal | None = None,
    progress: Progress | None = None,
    on_done: Callable[[BlobSource], None] | None = None,
) -> UploadResult:
    """Make sure every source's blob exists in the store. One upload per distinct digest,
    from the first of its sources whose bytes still match it: a file that changed since it
    was hashed is skipped (and reported in `changed`) for the next path holding the same
    bytes, so one edited copy does not keep the others' blob out of the bucket. Within
    `budget`."""
    by_digest: dict[str, list[BlobSource]] = {}
    for src in sources:
        by_digest.setdefault(src.sha256, []).append(src)
    largest_first = sorted(by_digest.values(), key=lambda c: c[0].size, reverse=True)
    sender = _Sender(store, keys, budget, journal, progress, on_done, UploadResult())
    large = [c for c in largest_first if c[0].size > SMALL]
    small = [c for c in largest_first if c[0].size <= SMALL]
    async with anyio.create_task_group() as tg:
        if large:
            tg.start_soon(for_each, large, sender.large_file, budget.requests)
        if small:
            tg.start_soon(sender.small_files, small)
    return sender.result


@dataclass(frozen=True)
class _Read:
    """One digest's small file as read in a batch: the candidate whose bytes matched
    (`src`, None if none did) with its bytes, the paths that no longer hold them, the
    memory taken for it, or the error that stopped the reading."""

    taken: int
    changed: list[str]
    src: BlobSource | None = None
    data: bytes = b""
    error: OSError | None = None


@dataclass
class _Sender:
    """The uploads of one `upload_blobs` call, counted into `result`."""

    store: Store
    keys: RootKeys
    budget: TransferBudget
    journal: UploadJournal | None
    progress: Progress | None
    on_done: Callable[[BlobSource], None] | None
    result: UploadResult

    def done(self, src: BlobSource, sent: bool) -> None:
        if sent:
            self.result.uploaded += 1
            self.result.uploaded_bytes += src.size
        else:
            self.result.skipped_existing += 1
        if self.on_done:
            self.on_done(src)

    async def small_files(self, groups: list[list[BlobSource]]) -> None:
        """Read `groups` (candidates per digest) in batches, in one task, while up to the
        budget's requests send what was read. The bytes of a file are held from before
        it is read until its PUT ends."""
        send, receive = anyio.create_memory_object_stream[_Read](READ_BATCH_FILES)
        async with anyio.create_task_group() as tg:
            for _ in range(self.budget.requests):
                tg.start_soon(self._send_reads, receive.clone())
            receive.close()
            async with send:
                async for batch in _batches(groups, self.budget):
                    reads = await anyio.to_thread.run_sync(_read_batch, batch)
                    for read in reads:
                        await send.send(read)

    async def _send_reads(self, receive: MemoryObjectReceiveStream[_Read]) -> None:
        async with receive:
            async for read in receive:
                try:
                    self.result.changed.update(read.changed)
                    if read.error is not None:
                        raise read.error
                    if read.src is None:
                        continue
                    key = self.keys.blob(read.src.sha256)
                    async with self.budget.request():
                        sent = await _put_small(self.store, key, read.data, read.src.sha256)
                finally:
                    self.budget.give_memory(read.taken)
                if sent and self.progress:
                    self.progress(len(read.data))
                self.done(read.src, sent)

    async def large_file(self, candidates: list[BlobSource]) -> None:
        for src in candidates:
            try:
                sent = await self._upload_large(src)
            except IntegrityError:
                self.result.changed.add(src.path)
                continue
            self.done(src, sent)
            return

    async def _upload_large(self, src: BlobSource) -> bool:
        """True if bytes were sent, False if the blob was already there (HEAD first)."""
        key = self.keys.blob(src.sha256)
        async with self.budget.request():
            try:
                if (await self.store.head(key)).size == src.size:
                    return False
            except NotFound:
                pass
        parts = PARTS_IN_FLIGHT * part_size_for(src.size)
        async with self.budget.holding(parts), self.budget.request(PARTS_IN_FLIGHT):
            await self.store.put_file(
                key,
                src.file,
                expected_sha256=src.sha256,
                journal=self.journal,
                progress=self.progress,
            )
        return True


async def _batches(
    groups: list[list[BlobSource]], budget: TransferBudget
) -> AsyncIterator[list[tuple[list[BlobSource], int]]]:
    """`groups` cut into read batches, each group with the memory taken for its bytes: a
    batch's first file waits for its memory, the others join only while memory is free
    at once (a batch never waits holding memory it cannot use yet)."""
    i = 0
    while i < len(groups):
        batch = [(groups[i], await budget.take_memory(groups[i][0].size))]
        nbytes = groups[i][0].size
        i += 1
        while i < len(groups) and len(batch) < READ_BATCH_FILES:
            size = groups[i][0].size
            taken = budget.try_take_memory(size) if nbytes + size <= READ_BATCH_BYTES else None
            if taken is None:
                break
            batch.append((groups[i], taken))
            nbytes += size
            i += 1
        yield batch


async def _put_small(store: Store, key: str, data: bytes, sha256: str) -> bool:
    """Create blob `key` from `data` (verified against `sha256`); False if it was there."""
    try:
        await store.put_if_absent(key, data, sha256=sha256)
    except PreconditionFailed:
        # Present, unless it is the truncated leftover of a write cut short (a server
        # may keep one when its client is killed mid-request): then it is replaced with
        # bytes just verified against the key's SHA-256, else no device ever gets them.
        with contextlib.suppress(NotFound):
            if (await store.head(key)).size == len(data):
                return False
        await store.put(key, data, sha256=sha256)
    return True


def _read_batch(batch: list[tuple[list[BlobSource], int]]) -> list[_Read]:
    """Each group's bytes, from the first candidate that still holds them (worker thread)."""
    reads = []
    for candidates, taken in batch:
        changed: list[str] = []
        read = None
        for src in candidates:
            try:
                read = _Read(taken, changed, src, _read_verified(src))
                break
            except IntegrityError:
                changed.append(src.path)
            except OSError as exc:  # not the file's doing: the pass reports it
                read = _Read(taken, changed, error=exc)
                break
        reads.append(read or _Read(taken, changed))
    return reads


def _read_verified(src: BlobSource) -> bytes:
    try:
        with open(src.file, "rb") as f:
            data = f.read(SMALL + 1)
    except FileNotFoundError:
        raise IntegrityError(f"uploading {src.path}: the file vanished", src.path) from None
    if hashlib.sha256(data).hexdigest() != src.sha256:
        raise IntegrityError(f"uploading {src.path}: the file changed while read", src.path)
    return data
