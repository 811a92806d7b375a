"""Uploading the blobs a plan needs, concurrently and deduplicated (IO: local files, store).

A blob is keyed by its SHA-256 and written only if absent. Small files cost one request
each (a create-only PUT; "already exists" is success). A blob or chunk found already
there but written before `fresh_since` (old bytes nothing may reach: gc could be about to
delete them) is written again, same bytes, so its LastModified is new and gc spares it
for the grace period (SPEC 8.2, the writer's side). A file stored in chunks (SPEC 1.6)
uploads the chunks not known to be there, each one create-only PUT after a HEAD
(`sync.chunkupload`): an upload cut short resumes with the chunks still missing. A large
file of one blob (another writer's, that did not cut it) is checked with HEAD and only
then streamed up. Bytes are verified against the promised digest while read, so a file
that changes under us never lands under the wrong key.

All uploads share one `TransferBudget`: a small file holds its bytes from before it is
read until its PUT ends, and a request slot only during the PUT; a chunk likewise. Small
files are read in batches, one worker-thread trip each, while the files read before them
are being sent. Largest first, so the long transfers start early and small files fill
the slots around them.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import AsyncIterator, Callable, Iterable
from pathlib import Path

import anyio
import msgspec

from dropbeard.core.chunking import Chunk
from dropbeard.core.errors import IntegrityError, NotFound, PreconditionFailed
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import ObjectInfo, Progress, Store
from dropbeard.sync.budget import SMALL_REQUEST, TransferBudget
from dropbeard.sync.chunkupload import upload_chunks
from dropbeard.sync.handoff import Handoff
from dropbeard.sync.hashing import StatKey
from dropbeard.sync.workers import for_each

#: Up to this size a blob is read whole and sent with one create-only PUT.
SMALL = 8 * 1024 * 1024
#: What a store holds in memory for one `put_file`, at most (S3 reads a file of up to
#: 16 MiB whole and streams a larger one).
PUT_FILE_MEMORY = 16 * 1024 * 1024


class UploadResult(msgspec.Struct):
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped_existing: int = 0
    #: the paths whose bytes changed while read (the caller re-plans without them)
    changed: set[str] = msgspec.field(default_factory=set)


class BlobSource(msgspec.Struct, frozen=True):
    """A file whose bytes the bucket needs: its one blob `sha256`, or its `chunks` (then
    `stat`, what the scan saw, must still describe the file when they are sent)."""

    sha256: str
    size: int
    path: str  # relative, as tracked
    file: Path  # where to read it on disk
    chunks: tuple[Chunk, ...] | None = None
    stat: StatKey | None = None


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
    progress: Progress | None = None,
    on_done: Callable[[BlobSource], None] | None = None,
    known_chunk: Callable[[str], bool] | None = None,
    fresh_since: float | None = None,
) -> UploadResult:
    """Make sure every source's blob (or chunks) exists in the store. One upload per
    distinct content, from the first of its sources whose bytes still match it: a file
    that changed since it was hashed is skipped (and reported in `changed`) for the next
    path holding the same bytes, so one edited copy does not keep the others' blob out of
    the bucket. `known_chunk(sha256)` True: that chunk is in the bucket, nothing to ask.
    An object found there last modified before `fresh_since` (POSIX seconds; None: any
    time will do) is refreshed. Within `budget`."""
    by_content: dict[tuple[str, tuple[Chunk, ...] | None], list[BlobSource]] = {}
    for src in sources:
        by_content.setdefault((src.sha256, src.chunks), []).append(src)
    largest_first = sorted(by_content.values(), key=lambda c: c[0].size, reverse=True)
    sender = _Sender(
        store, keys, budget, progress, on_done, UploadResult(), known_chunk, fresh_since
    )
    large = [c for c in largest_first if c[0].size > SMALL or c[0].chunks is not None]
    whole = [c for c in largest_first if c[0].size <= SMALL and c[0].chunks is None]
    # Files read whole in two streams: the smallest never queue behind a larger one
    # waiting for the memory and slots large transfers share (`TransferBudget`).
    small = [c for c in whole if c[0].size <= SMALL_REQUEST]
    medium = [c for c in whole if c[0].size > SMALL_REQUEST]
    async with anyio.create_task_group() as tg:
        if large:
            tg.start_soon(for_each, large, sender.large_file, budget.requests)
        for files in (medium, small):
            if files:
                tg.start_soon(sender.small_files, files)
    return sender.result


class _Read(msgspec.Struct, frozen=True):
    """One digest's small file as read in a batch: the candidate whose bytes matched
    (`src`, None if none did) with its bytes, the paths that no longer hold them, the
    memory taken for it, or the error that stopped the reading."""

    taken: int
    changed: list[str]
    src: BlobSource | None = None
    data: bytes = b""
    error: OSError | None = None


class _Sender(msgspec.Struct):
    """The uploads of one `upload_blobs` call, counted into `result`."""

    store: Store
    keys: RootKeys
    budget: TransferBudget
    progress: Progress | None
    on_done: Callable[[BlobSource], None] | None
    result: UploadResult
    known_chunk: Callable[[str], bool] | None = None
    fresh_since: float | None = None

    def done(self, src: BlobSource, sent: bool, nbytes: int | None = None) -> None:
        """`src` is in the bucket; `sent`: bytes went up for it (`nbytes`, else all)."""
        if sent:
            self.result.uploaded += 1
            self.result.uploaded_bytes += src.size if nbytes is None else nbytes
        else:
            self.result.skipped_existing += 1
        if self.on_done:
            self.on_done(src)

    async def small_files(self, groups: list[list[BlobSource]]) -> None:
        """Read `groups` (candidates per digest) in batches, in one task, while up to the
        budget's requests send what was read. The bytes of a file are held from before
        it is read until its PUT ends."""
        reads: Handoff[_Read] = Handoff()
        async with anyio.create_task_group() as tg:
            for _ in range(self.budget.small_requests):
                tg.start_soon(self._send_reads, reads)
            try:
                async for batch in _batches(groups, self.budget):
                    for read in await anyio.to_thread.run_sync(_read_batch, batch):
                        reads.put(read)
            finally:
                reads.close()

    async def _send_reads(self, reads: Handoff[_Read]) -> None:
        while (read := await reads.get()) is not None:
            try:
                self.result.changed.update(read.changed)
                if read.error is not None:
                    raise read.error
                if read.src is None:
                    continue
                key = self.keys.blob(read.src.sha256)
                async with self.budget.request(nbytes=len(read.data)):
                    sent = await put_small(
                        self.store, key, read.data, read.src.sha256, self.fresh_since
                    )
            finally:
                self.budget.give_memory(read.taken)
            if sent and self.progress:
                self.progress(len(read.data))
            self.done(read.src, sent)

    async def large_file(self, candidates: list[BlobSource]) -> None:
        for src in candidates:
            if src.chunks is not None:
                if await self._upload_chunks(src):
                    return
                self.result.changed.add(src.path)
                continue
            try:
                sent = await self._upload_large(src)
            except IntegrityError:
                self.result.changed.add(src.path)
                continue
            self.done(src, sent)
            return

    async def _upload_chunks(self, src: BlobSource) -> bool:
        """Send the chunks of `src` the bucket lacks; False if the file is no longer the
        one digested (nothing wrong was sent, but its entry must wait for the next pass)."""
        assert src.chunks is not None
        up = await upload_chunks(
            self.store,
            self.keys,
            src.file,
            src.size,
            src.chunks,
            budget=self.budget,
            expected=src.stat,
            known_present=self.known_chunk,
            progress=self.progress,
            fresh_since=self.fresh_since,
        )
        if up.changed:
            return False
        self.done(src, up.uploaded > 0, up.uploaded_bytes)
        return True

    async def _upload_large(self, src: BlobSource) -> bool:
        """True if bytes were sent, False if the blob was already there (HEAD first) and
        fresh enough not to be refreshed."""
        key = self.keys.blob(src.sha256)
        async with self.budget.request(nbytes=0):
            with contextlib.suppress(NotFound):
                if _fresh(await self.store.head(key), src.size, self.fresh_since):
                    return False
        memory = min(src.size, PUT_FILE_MEMORY)
        async with self.budget.holding(memory), self.budget.request():
            await self.store.put_file(
                key,
                src.file,
                expected_sha256=src.sha256,
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


async def put_small(
    store: Store, key: str, data: bytes, sha256: str, fresh_since: float | None
) -> bool:
    """Create blob `key` from `data` (verified against `sha256`); False if it was there,
    written at or after `fresh_since`."""
    try:
        await store.put_if_absent(key, data, sha256=sha256)
    except PreconditionFailed:
        # Present, unless it is the truncated leftover of a write cut short (a server
        # may keep one when its client is killed mid-request): then it is replaced with
        # bytes just verified against the key's SHA-256, else no device ever gets them.
        # Present but old: written again, so that gc spares it (SPEC 8.2).
        with contextlib.suppress(NotFound):
            if _fresh(await store.head(key), len(data), fresh_since):
                return False
        await store.put(key, data, sha256=sha256)
    return True


def _fresh(info: ObjectInfo, size: int, fresh_since: float | None) -> bool:
    """True if `info` is the whole object (`size` bytes) and was written at or after
    `fresh_since`: nothing to write again."""
    return info.size == size and (fresh_since is None or info.last_modified >= fresh_since)


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
