"""Uploading the blobs a plan needs, concurrently and deduplicated (IO: local files, store).

A blob is keyed by its SHA-256 and written only if absent. Small files cost one request
each (a create-only PUT; "already exists" is success); large files are checked with HEAD
and only then streamed up in multipart parts. Bytes are verified against the promised
digest while read, so a file that changes under us never lands under the wrong key.

All uploads share one `TransferBudget`: a small file holds its bytes from before it is
read until its PUT ends, and a request slot only during the PUT; a large one holds what
its parts in flight need. Largest first, so the long transfers start early and small
files fill the slots around them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import anyio

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
    result = UploadResult()
    by_digest: dict[str, list[BlobSource]] = {}
    for src in sources:
        by_digest.setdefault(src.sha256, []).append(src)

    async def one(candidates: list[BlobSource]) -> None:
        for src in candidates:
            try:
                sent = await _upload_one(store, keys, src, budget, journal, progress)
            except IntegrityError:
                result.changed.add(src.path)
                continue
            if sent:
                result.uploaded += 1
                result.uploaded_bytes += src.size
            else:
                result.skipped_existing += 1
            if on_done:
                on_done(src)
            return

    largest_first = sorted(by_digest.values(), key=lambda c: c[0].size, reverse=True)
    # More workers than request slots: some read files while the others' requests fly.
    await for_each(largest_first, one, 2 * budget.requests)
    return result


async def _upload_one(
    store: Store,
    keys: RootKeys,
    src: BlobSource,
    budget: TransferBudget,
    journal: UploadJournal | None,
    progress: Progress | None,
) -> bool:
    """True if bytes were sent, False if the blob was already there."""
    key = keys.blob(src.sha256)
    if src.size <= SMALL:
        async with budget.holding(src.size):
            data = await anyio.to_thread.run_sync(_read_verified, src)
            async with budget.request():
                sent = await _put_small(store, key, data, src.sha256)
        if sent and progress:
            progress(len(data))
        return sent
    async with budget.request():
        try:
            if (await store.head(key)).size == src.size:
                return False
        except NotFound:
            pass
    parts = PARTS_IN_FLIGHT * part_size_for(src.size)
    async with budget.holding(parts), budget.request(PARTS_IN_FLIGHT):
        await store.put_file(
            key, src.file, expected_sha256=src.sha256, journal=journal, progress=progress
        )
    return True


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


def _read_verified(src: BlobSource) -> bytes:
    import hashlib

    try:
        with open(src.file, "rb") as f:
            data = f.read(SMALL + 1)
    except FileNotFoundError:
        raise IntegrityError(f"uploading {src.path}: the file vanished", src.path) from None
    if hashlib.sha256(data).hexdigest() != src.sha256:
        raise IntegrityError(f"uploading {src.path}: the file changed while read", src.path)
    return data
