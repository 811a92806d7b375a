"""Resumable, verified multipart upload of one large file, through the five multipart
requests of an S3-compatible server (`MultipartApi`; `S3Store` offers them) (IO).

Parts are read from disk in order (hashing the whole file as they go) and uploaded a few
at a time, so memory stays at PARTS_IN_FLIGHT * part size whatever the file size. With an
`UploadJournal` the upload id is remembered: after a crash the next attempt lists the
parts the server already holds and skips every part whose MD5 still matches the file.
The upload is only completed if the file's SHA-256 is the one promised; otherwise it is
aborted and nothing becomes visible at the key. An upload that cannot be resumed for any
reason but a transient one (gone, another part size, or a server without ListParts:
s3rver answers 405, others 501) is abandoned and a fresh one started; aborting is always
best effort, since some of those servers cannot abort either.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

import anyio

from dropbeard.core.errors import IntegrityError, StoreError, Unavailable
from dropbeard.store.base import PendingUpload, Progress, UploadJournal

MiB = 1024 * 1024
#: Files up to this size go up in one PUT; larger ones in multipart parts.
MULTIPART_THRESHOLD = 16 * MiB
MIN_PART_SIZE = 5 * MiB
MAX_PARTS = 10_000
#: Parts of one file in flight at once (memory per file <= this * part size).
PARTS_IN_FLIGHT = 2

#: The parts a server holds for an upload: {part number: (etag, size)}.
HeldParts = dict[int, tuple[str, int]]


class MultipartApi(Protocol):
    """The multipart requests, on keys of one store."""

    async def mp_create(self, key: str) -> str:
        """Start an upload; its upload id."""
        ...

    async def mp_parts(self, key: str, upload_id: str) -> HeldParts | None:
        """The parts the server holds; None if the upload is gone."""
        ...

    async def mp_put_part(
        self, key: str, upload_id: str, number: int, data: bytes, sha256: str | None = None
    ) -> str:
        """Upload part `number` (from 1), whose SHA-256 is `sha256` if given; its etag."""
        ...

    async def mp_complete(self, key: str, upload_id: str, etags: Sequence[str]) -> str:
        """Make the object of these parts, in order, visible at `key`; its etag."""
        ...

    async def mp_abort(self, key: str, upload_id: str) -> None:
        """Drop the upload and its parts (an upload already gone is no error)."""
        ...


def part_size_for(size: int) -> int:
    """Smallest MiB-aligned part size >= MIN_PART_SIZE that fits `size` in MAX_PARTS."""
    return max(MIN_PART_SIZE, math.ceil(size / (MAX_PARTS - 1) / MiB) * MiB)


async def upload_multipart(
    api: MultipartApi,
    key: str,
    path: Path,
    size: int,
    *,
    expected_sha256: str | None,
    journal: UploadJournal | None,
    progress: Progress | None,
) -> str:
    """Upload the file at `path` (`size` bytes, as last seen) to `key`; its etag."""
    part_size = part_size_for(size)
    upload_id, held = await _resume_or_start(api, key, part_size, journal)
    upload = _Upload(api, key, upload_id, progress)
    whole = hashlib.sha256()
    f: BinaryIO = await anyio.to_thread.run_sync(open, path, "rb")
    try:
        etags = await upload.send_parts(f, max(1, -(-size // part_size)), part_size, held, whole)
        extra = await anyio.to_thread.run_sync(f.read, 1)
    except BaseException:
        if journal is None:
            await _abandon(api, key, upload_id)
        raise
    finally:
        await anyio.to_thread.run_sync(f.close)
    digest = whole.hexdigest()
    if extra or (expected_sha256 is not None and digest != expected_sha256):
        await _abandon(api, key, upload_id)
        await _forget_upload(journal, key)
        raise IntegrityError(
            f"uploading {key}: the file changed while it was read "
            f"(expected SHA-256 {expected_sha256}, read {digest})",
            key,
        )
    etag = await api.mp_complete(key, upload_id, etags)
    await _forget_upload(journal, key)
    return etag


@dataclass(frozen=True, slots=True)
class _Upload:
    """The parts of one upload under way, and where they go."""

    api: MultipartApi
    key: str
    upload_id: str
    progress: Progress | None

    async def send_parts(
        self, f: BinaryIO, count: int, part_size: int, held: HeldParts, whole: hashlib._Hash
    ) -> list[str]:
        """Read the `count` parts of `f` in order (hashing them into `whole`) and send
        those the server does not hold yet, PARTS_IN_FLIGHT at a time; their etags."""
        etags: list[str] = [""] * count
        limiter = anyio.Semaphore(PARTS_IN_FLIGHT)

        async def send(number: int, data: bytes, sha256: str) -> None:
            try:
                etags[number - 1] = await self.api.mp_put_part(
                    self.key, self.upload_id, number, data, sha256
                )
                self._report_progress(data)
            finally:
                limiter.release()

        async with anyio.create_task_group() as tg:
            for number in range(1, count + 1):
                await limiter.acquire()
                data, sha256 = await anyio.to_thread.run_sync(_read_part, f, part_size, whole)
                found = held.get(number)
                if found and found[1] == len(data) and _same_md5(found[0], data):
                    etags[number - 1] = found[0]
                    limiter.release()
                    self._report_progress(data)
                    continue
                tg.start_soon(send, number, data, sha256)
        return etags

    def _report_progress(self, data: bytes) -> None:
        if self.progress:
            self.progress(len(data))


async def _resume_or_start(
    api: MultipartApi, key: str, part_size: int, journal: UploadJournal | None
) -> tuple[str, HeldParts]:
    """The upload id to use and the parts the server holds for it: the journal's upload
    when it is still there with the same part size, else a new one (recorded)."""
    if journal is not None:
        pending = await journal.load_upload(key)
        if pending is not None:
            parts = await _held_parts(api, pending, part_size)
            if parts is not None:
                return pending.upload_id, parts
            await _abandon(api, key, pending.upload_id)
            await journal.clear_upload(key)
    upload_id = await api.mp_create(key)
    if journal is not None:
        try:
            await journal.save_upload(PendingUpload(key, upload_id, part_size))
        except Exception as exc:
            await _abandon(api, key, upload_id)
            raise StoreError(f"recording multipart upload of {key}: {exc}", key) from exc
    return upload_id, {}


async def _held_parts(
    api: MultipartApi, pending: PendingUpload, part_size: int
) -> HeldParts | None:
    """The parts the server holds for the journal's upload, or None if it cannot be
    resumed: another part size, gone, or listing its parts failed for good (a server
    without ListParts). Only a transient failure is raised: the next attempt resumes."""
    if pending.part_size != part_size:
        return None
    try:
        return await api.mp_parts(pending.key, pending.upload_id)
    except Unavailable:
        raise
    except StoreError:
        return None


async def _abandon(api: MultipartApi, key: str, upload_id: str) -> None:
    """Abort an upload, best effort: a server that cannot (or a network that fails now)
    leaves its parts to the bucket's lifecycle rules; the caller goes on regardless."""
    with contextlib.suppress(StoreError):
        await api.mp_abort(key, upload_id)


async def _forget_upload(journal: UploadJournal | None, key: str) -> None:
    if journal is not None:
        await journal.clear_upload(key)


def _read_part(f: BinaryIO, size: int, whole: hashlib._Hash) -> tuple[bytes, str]:
    """The next part and its own SHA-256 (the request's payload hash, computed here in a
    worker thread rather than by the S3 client on the event loop); hashed into `whole`."""
    data = f.read(size)
    whole.update(data)
    return data, hashlib.sha256(data).hexdigest()


def _same_md5(etag: str, data: bytes) -> bool:
    return etag.strip('"').lower() == hashlib.md5(data, usedforsecurity=False).hexdigest()
