"""ForwardingStore: the base of every `Store` wrapper, passing each call on to `inner`
unchanged (IO only through `inner`).

A wrapper subclasses it and overrides only what it changes: one of the two hooks every
request goes through (`_forward`, and `_transfer` for the two that stream a file), or a
method of its own. Requests are named as `CountingStore` counts them: get,
get_if_changed, get_file, head, put, put_file, put_if_absent, put_if_match, delete, and
list_page for each page a listing fetches (`aclose` is no request).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from dropbeard.store.base import FileSlot, ListPage, ObjectInfo, Progress, Store

T = TypeVar("T")
#: A request that streams a file, made with the progress callback it is handed.
Streaming = Callable[[Progress | None], Awaitable[T]]


class ForwardingStore:
    """A `Store` that forwards everything to `inner`; see the module docstring."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.description = inner.description

    # -- the hooks ----------------------------------------------------------------------

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        """Make request `op` on `key` (a listing's prefix for list_page) by awaiting
        `call`, which asks `inner`. Overridden to observe, retry or fail requests."""
        return await call()

    async def _transfer(
        self, op: str, key: str, progress: Progress | None, call: Streaming[T]
    ) -> T:
        """A request that streams a file (get_file, put_file): `call` asks `inner`,
        reporting to the progress callback it is given. Goes through `_forward`."""
        return await self._forward(op, key, lambda: call(progress))

    # -- the Store protocol -------------------------------------------------------------

    async def get(self, key: str) -> bytes:
        return await self._forward("get", key, lambda: self.inner.get(key))

    async def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        return await self._forward(
            "get_if_changed", key, lambda: self.inner.get_if_changed(key, etag)
        )

    async def get_file(
        self,
        key: str,
        dest: Path | FileSlot,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        return await self._transfer(
            "get_file",
            key,
            progress,
            lambda report: self.inner.get_file(
                key, dest, expected_sha256=expected_sha256, progress=report
            ),
        )

    async def head(self, key: str) -> ObjectInfo:
        return await self._forward("head", key, lambda: self.inner.head(key))

    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        return await self._forward("put", key, lambda: self.inner.put(key, data, sha256=sha256))

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> str:
        return await self._transfer(
            "put_file",
            key,
            progress,
            lambda report: self.inner.put_file(
                key, path, expected_sha256=expected_sha256, progress=report
            ),
        )

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        return await self._forward(
            "put_if_absent", key, lambda: self.inner.put_if_absent(key, data, sha256=sha256)
        )

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        return await self._forward(
            "put_if_match", key, lambda: self.inner.put_if_match(key, data, etag)
        )

    def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        delimiter: str | None = None,
    ) -> AsyncIterator[ListPage]:
        """`inner`'s listing, each page fetch a list_page request through `_forward`."""
        pages = aiter(self.inner.list(prefix, start_after=start_after, delimiter=delimiter))
        return self._forward_pages(prefix, pages)

    async def _forward_pages(
        self, prefix: str, pages: AsyncIterator[ListPage]
    ) -> AsyncIterator[ListPage]:
        try:
            while True:
                try:
                    page = await self._forward("list_page", prefix, lambda: anext(pages))
                except StopAsyncIteration:
                    return
                yield page
        finally:
            await close_listing(pages)

    async def delete(self, key: str) -> None:
        await self._forward("delete", key, lambda: self.inner.delete(key))

    async def aclose(self) -> None:
        await self.inner.aclose()


async def close_listing(pages: AsyncIterator[ListPage]) -> None:
    """Close a listing left early, so its backend releases what it holds (a listing is
    an async generator almost always, but the protocol only promises an iterator)."""
    close = getattr(pages, "aclose", None)
    if close is not None:
        await close()
