"""CountingStore: a wrapper that counts requests per operation kind (IO only through `inner`).

Tests and the benchmark wrap a store in it to prove claims such as "an idle sync writes
nothing". A request is counted when it is made, whether it then succeeds or fails; a
listing counts one `list_page` per page fetched.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

from dropbeard.store.base import ListPage, ObjectInfo, Progress, Store, UploadJournal

WRITE_KINDS = ("put", "put_file", "put_if_absent", "put_if_match", "delete")


class CountingStore:
    """`counts[kind]` for kind in get, get_if_changed, get_file, head, put, put_file,
    put_if_absent, put_if_match, list_page, delete."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.description = inner.description
        self.counts: Counter[str] = Counter()

    @property
    def writes(self) -> int:
        """Requests that create, replace or delete an object."""
        return sum(self.counts[kind] for kind in WRITE_KINDS)

    def reset(self) -> None:
        self.counts.clear()

    async def get(self, key: str) -> bytes:
        self.counts["get"] += 1
        return await self.inner.get(key)

    async def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        self.counts["get_if_changed"] += 1
        return await self.inner.get_if_changed(key, etag)

    async def get_file(
        self,
        key: str,
        dest: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        self.counts["get_file"] += 1
        return await self.inner.get_file(
            key, dest, expected_sha256=expected_sha256, progress=progress
        )

    async def head(self, key: str) -> ObjectInfo:
        self.counts["head"] += 1
        return await self.inner.head(key)

    async def put(self, key: str, data: bytes) -> str:
        self.counts["put"] += 1
        return await self.inner.put(key, data)

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        expected_sha256: str | None = None,
        journal: UploadJournal | None = None,
        progress: Progress | None = None,
    ) -> str:
        self.counts["put_file"] += 1
        return await self.inner.put_file(
            key, path, expected_sha256=expected_sha256, journal=journal, progress=progress
        )

    async def put_if_absent(self, key: str, data: bytes) -> str:
        self.counts["put_if_absent"] += 1
        return await self.inner.put_if_absent(key, data)

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        self.counts["put_if_match"] += 1
        return await self.inner.put_if_match(key, data, etag)

    async def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        delimiter: str | None = None,
    ) -> AsyncIterator[ListPage]:
        pages = aiter(self.inner.list(prefix, start_after=start_after, delimiter=delimiter))
        try:
            while True:
                self.counts["list_page"] += 1
                try:
                    page = await anext(pages)
                except StopAsyncIteration:
                    # the end of a listing is learnt from the last page, not from a request
                    self.counts["list_page"] -= 1
                    return
                yield page
        finally:
            close = getattr(pages, "aclose", None)
            if close is not None:
                await close()

    async def delete(self, key: str) -> None:
        self.counts["delete"] += 1
        await self.inner.delete(key)

    async def aclose(self) -> None:
        await self.inner.aclose()
