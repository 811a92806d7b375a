"""Resumable, verified multipart upload of one large file to an `S3Store` (IO).

Parts are read from disk in order (hashing the whole file as they go) and uploaded a few
at a time, so memory stays at PARTS_IN_FLIGHT * part size whatever the file size. With an
`UploadJournal` the upload id is remembered: after a crash the next attempt lists the
parts the server already holds and skips every part whose MD5 still matches the file.
The upload is only completed if the file's SHA-256 is the one promised; otherwise it is
aborted and nothing becomes visible at the key.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import anyio

from dropbeard.core.errors import IntegrityError, StoreError
from dropbeard.store.base import PendingUpload, Progress, UploadJournal

if TYPE_CHECKING:
    from dropbeard.store.s3 import S3Store


async def upload_multipart(
    store: S3Store,
    key: str,
    path: Path,
    size: int,
    *,
    expected_sha256: str | None,
    journal: UploadJournal | None,
    progress: Progress | None,
) -> str:
    from dropbeard.store.s3 import PARTS_IN_FLIGHT, part_size_for

    part_size = part_size_for(size)
    upload_id, existing = await _resume_or_start(store, key, part_size, journal)
    count = max(1, -(-size // part_size))
    etags: list[str] = [""] * count
    whole = hashlib.sha256()
    limiter = anyio.Semaphore(PARTS_IN_FLIGHT)

    async def send(number: int, data: bytes) -> None:
        try:
            etags[number - 1] = await store.mp_put_part(key, upload_id, number, data)
            if progress:
                progress(len(data))
        finally:
            limiter.release()

    f: BinaryIO = await anyio.to_thread.run_sync(open, path, "rb")
    try:
        async with anyio.create_task_group() as tg:
            for number in range(1, count + 1):
                await limiter.acquire()
                data = await anyio.to_thread.run_sync(_read_part, f, part_size, whole)
                held = existing.get(number)
                if held and held[1] == len(data) and _same_md5(held[0], data):
                    etags[number - 1] = held[0]
                    limiter.release()
                    if progress:
                        progress(len(data))
                    continue
                tg.start_soon(send, number, data)
        extra = await anyio.to_thread.run_sync(f.read, 1)
    except BaseException:
        if journal is None:
            await store.mp_abort(key, upload_id)
        raise
    finally:
        await anyio.to_thread.run_sync(f.close)

    digest = whole.hexdigest()
    if extra or (expected_sha256 is not None and digest != expected_sha256):
        await store.mp_abort(key, upload_id)
        if journal is not None:
            await journal.clear_upload(key)
        raise IntegrityError(
            f"uploading {key}: the file changed while it was read "
            f"(expected SHA-256 {expected_sha256}, read {digest})",
            key,
        )
    etag = await store.mp_complete(key, upload_id, etags)
    if journal is not None:
        await journal.clear_upload(key)
    return etag


async def _resume_or_start(
    store: S3Store, key: str, part_size: int, journal: UploadJournal | None
) -> tuple[str, dict[int, tuple[str, int]]]:
    if journal is not None:
        pending = await journal.load_upload(key)
        if pending is not None:
            if pending.part_size == part_size:
                parts = await store.mp_parts(key, pending.upload_id)
                if parts is not None:
                    return pending.upload_id, parts
            else:
                await store.mp_abort(key, pending.upload_id)
            await journal.clear_upload(key)
    upload_id = await store.mp_create(key)
    if journal is not None:
        try:
            await journal.save_upload(PendingUpload(key, upload_id, part_size))
        except Exception as exc:
            await store.mp_abort(key, upload_id)
            raise StoreError(f"recording multipart upload of {key}: {exc}", key) from exc
    return upload_id, {}


def _read_part(f: Any, size: int, whole: Any) -> bytes:
    data: bytes = f.read(size)
    whole.update(data)
    return data


def _same_md5(etag: str, data: bytes) -> bool:
    return etag.strip('"').lower() == hashlib.md5(data, usedforsecurity=False).hexdigest()
