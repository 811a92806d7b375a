"""TrackingStore: a `Store` wrapper that knows the transfers in flight, for the daemon's
status and its `transfer` log events (IO only through `inner`, plus one stat per upload).

Transfers are blob downloads (`get_file`) and uploads (`put_file`, and `put_if_absent` of a
blob: small files go up in one request). Uploads know their total size up front; downloads
report `total` as None until they end: the store learns an object's size only as it reads
it, and asking first would cost a request per file.
"""

from __future__ import annotations

import itertools
import os
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, TypeVar

import anyio

from dropbeard.store.base import ObjectInfo, Progress, Store, UploadJournal
from dropbeard.store.forwarding import ForwardingStore

T = TypeVar("T")
BLOBS = "/blobs/"  # keys.RootKeys.blob(): roots/<root_id>/blobs/ab/cd/<sha256>


@dataclass
class Transfer:
    key: str
    direction: Literal["upload", "download"]
    total: int | None
    started: float
    done: int = 0

    def view(self, now: float) -> dict[str, Any]:
        elapsed = max(now - self.started, 1e-6)
        return {
            "direction": self.direction,
            "key": self.key,
            "bytes_done": self.done,
            "bytes_total": self.total,
            "rate_bytes_per_s": round(self.done / elapsed),
            "seconds": round(elapsed, 3),
        }


#: Called when a transfer ends: the transfer, and the error that ended it (None: success).
OnEnd = Callable[[Transfer, BaseException | None], None]


class TrackingStore(ForwardingStore):
    """Tracks `get_file`, `put_file` and the `put_if_absent` of a blob; every other call
    passes straight through."""

    def __init__(
        self,
        inner: Store,
        *,
        on_end: OnEnd | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(inner)
        self._on_end = on_end
        self._clock = clock
        self._active: dict[int, Transfer] = {}
        self._ids = itertools.count()

    def in_flight(self) -> list[dict[str, Any]]:
        now = self._clock()
        return [t.view(now) for t in sorted(self._active.values(), key=lambda t: t.started)]

    async def _tracked(
        self,
        transfer: Transfer,
        progress: Progress | None,
        run: Callable[[Progress], Awaitable[T]],
    ) -> T:
        ident = next(self._ids)
        self._active[ident] = transfer

        def counted(n: int) -> None:
            transfer.done += n
            if progress is not None:
                progress(n)

        error: BaseException | None = None
        try:
            return await run(counted)
        except BaseException as exc:
            error = exc
            raise
        finally:
            del self._active[ident]
            if self._on_end is not None:
                self._on_end(transfer, error)

    async def get_file(
        self,
        key: str,
        dest: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        transfer = Transfer(key, "download", None, self._clock())
        info = await self._tracked(
            transfer,
            progress,
            lambda counted: self.inner.get_file(
                key, dest, expected_sha256=expected_sha256, progress=counted
            ),
        )
        transfer.total = info.size
        return info

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        expected_sha256: str | None = None,
        journal: UploadJournal | None = None,
        progress: Progress | None = None,
    ) -> str:
        try:
            size: int | None = (await anyio.to_thread.run_sync(os.stat, path)).st_size
        except OSError:
            size = None  # the inner store reports the real problem
        transfer = Transfer(key, "upload", size, self._clock())
        return await self._tracked(
            transfer,
            progress,
            lambda counted: self.inner.put_file(
                key, path, expected_sha256=expected_sha256, journal=journal, progress=counted
            ),
        )

    async def put_if_absent(self, key: str, data: bytes) -> str:
        if BLOBS not in key:  # the registry, not a transfer
            return await self.inner.put_if_absent(key, data)
        transfer = Transfer(key, "upload", len(data), self._clock())

        async def put(counted: Progress) -> str:
            etag = await self.inner.put_if_absent(key, data)
            counted(len(data))
            return etag

        return await self._tracked(transfer, None, put)
