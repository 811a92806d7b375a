"""Downloading a blob into a temp file, verified against its SHA-256, and placing it (IO:
store reads, local files; the caller says where the file goes).

A small blob is read whole into memory (held in the transfer budget) and then verified,
written and placed in one worker-thread trip; a large one streams to disk. A request slot
is held only while the network is busy, never during that local file work.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import anyio

from dropbeard.core.errors import IntegrityError
from dropbeard.store.base import Progress, Store
from dropbeard.sync.budget import TransferBudget

T = TypeVar("T")

#: Blobs up to this size are downloaded into memory and written in one worker-thread
#: trip; larger ones stream to disk.
WHOLE_DOWNLOAD = 4 * 1024 * 1024


async def download(
    store: Store,
    budget: TransferBudget,
    key: str,
    sha: str,
    size: int,
    tmp: Path,
    place: Callable[[], T],
    progress: Progress | None,
) -> T:
    """Fetch blob `key` (`size` bytes, SHA-256 `sha`) into `tmp`, then `place()` it.
    IntegrityError (and nothing placed) if the bytes are not those."""
    if size > WHOLE_DOWNLOAD:
        async with budget.request():
            await store.get_file(key, tmp, expected_sha256=sha, progress=progress)
        return await anyio.to_thread.run_sync(place)
    async with budget.holding(size):
        async with budget.request():
            data = await store.get(key)
        if progress:
            progress(len(data))
        return await anyio.to_thread.run_sync(_write_verified, data, key, sha, tmp, place)


def _write_verified(data: bytes, key: str, sha: str, dest: Path, place: Callable[[], T]) -> T:
    got = hashlib.sha256(data).hexdigest()
    if got != sha:
        raise IntegrityError(
            f"downloading {key}: content does not match its SHA-256 (expected {sha}, got {got})",
            key,
        )
    with open(dest, "wb") as out:
        out.write(data)
    return place()
