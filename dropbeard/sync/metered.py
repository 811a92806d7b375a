"""MeteredStore: a `Store` wrapper that reports every blob transfer of a pass to its
`PassMeter` (IO only through `inner`): downloads (`get_file`, and `get` of a blob: small
files come down in one request) and uploads (`put_file`, and `put_if_absent`/`put` of a
blob: small files go up in one request)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from dropbeard.core.errors import PreconditionFailed
from dropbeard.store.base import Progress, Store
from dropbeard.store.forwarding import ForwardingStore, Streaming
from dropbeard.sync.meter import Direction, PassMeter

T = TypeVar("T")
_BLOBS = "/blobs/"  # core.keys.RootKeys.blob(): roots/<root_id>/blobs/ab/cd/<sha256>


class MeteredStore(ForwardingStore):
    def __init__(self, inner: Store, meter: PassMeter) -> None:
        super().__init__(inner)
        self.meter = meter

    async def _transfer(
        self, op: str, key: str, progress: Progress | None, call: Streaming[T]
    ) -> T:
        direction: Direction = "download" if op == "get_file" else "upload"
        transfer = self.meter.transfer_started(key, direction, None)

        def moved(n: int) -> None:
            self.meter.transfer_moved(transfer, n)
            if progress is not None:
                progress(n)

        error: BaseException | None = None
        try:
            return await self._forward(op, key, lambda: call(moved))
        except BaseException as exc:
            error = exc
            raise
        finally:
            self.meter.transfer_ended(transfer, error)

    async def get(self, key: str) -> bytes:
        if _BLOBS not in key:  # a tree node, a snapshot, a head: not a transfer
            return await self.inner.get(key)
        transfer = self.meter.transfer_started(key, "download", None)
        error: BaseException | None = None
        try:
            data = await self.inner.get(key)
        except BaseException as exc:
            error = exc
            raise
        else:
            self.meter.transfer_moved(transfer, len(data))
            return data
        finally:
            self.meter.transfer_ended(transfer, error)

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        return await self._put_blob(
            key, data, lambda: self.inner.put_if_absent(key, data, sha256=sha256)
        )

    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        return await self._put_blob(key, data, lambda: self.inner.put(key, data, sha256=sha256))

    async def _put_blob(self, key: str, data: bytes, call: Callable[[], Awaitable[str]]) -> str:
        if _BLOBS not in key:  # the registry, a head: not a transfer
            return await call()
        transfer = self.meter.transfer_started(key, "upload", len(data))
        error: BaseException | None = None
        try:
            etag = await call()
        except PreconditionFailed as exc:  # the blob is there already: its bytes are done
            self.meter.transfer_moved(transfer, len(data))
            error = exc
            raise
        except BaseException as exc:
            error = exc
            raise
        else:
            self.meter.transfer_moved(transfer, len(data))
            return etag
        finally:
            self.meter.transfer_ended(transfer, error)
