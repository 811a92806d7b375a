"""Building the concrete store for a root's `[remote]` (IO: only `cli` and `daemon` call it).

Every store handed to the engine is wrapped in `RetryingStore`, so transient failures are
retried in exactly one place.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import anyio

from dropbeard.core.config import RemoteConfig, parse_remote_url
from dropbeard.core.errors import MissingBucket, UsageError
from dropbeard.core.imports import import_quietly
from dropbeard.store.bandwidth import Bandwidth
from dropbeard.store.base import ListPage, Store
from dropbeard.store.forwarding import ForwardingStore, close_listing
from dropbeard.store.local import LocalStore
from dropbeard.store.retry import RetryingStore

T = TypeVar("T")


def open_store(
    remote: RemoteConfig,
    *,
    concurrency: int = 16,
    retry: bool = True,
    bandwidth: Bandwidth | None = None,
) -> Store:
    """The store `remote` names; no request is made until it is used. Stores of one
    process share one `bandwidth` (its limit holds for all of them together)."""
    try:
        url = parse_remote_url(remote.url)
    except ValueError as exc:
        raise UsageError(f"remote: {exc}") from None
    store: Store
    if url.kind == "local":
        store = LocalStore(Path(url.path), bandwidth=bandwidth)
    else:

        def s3() -> Store:
            from dropbeard.store.s3 import S3Store

            return S3Store(
                url.bucket,
                url.prefix,
                endpoint_url=remote.endpoint_url,
                region=remote.region,
                profile=remote.profile,
                addressing_style=remote.addressing_style,
                concurrency=concurrency,
                bandwidth=bandwidth,
            )

        server = remote.endpoint_url or f"AWS S3 ({remote.region or 'us-east-1'})"
        description = f"s3://{url.bucket}/{url.prefix.strip('/')}".rstrip("/")
        if remote.endpoint_url:
            description += f" at {remote.endpoint_url}"
        modules = ("dropbeard.store.s3",)
        deferred = DeferredStore(s3, description, modules)
        store = _BucketNamed(deferred, url.bucket, server)
    return RetryingStore(store) if retry else store


class DeferredStore(ForwardingStore):
    """A store built on its first request, by `build`, once. The `modules` it needs are
    imported first in a worker thread, so a command's local work (a pass's scan) goes
    on meanwhile (the S3 client's own stack, aiobotocore, aiohttp and botocore, ~0.3 s of
    CPU, is imported the same way, and only once a request needs it:
    `dropbeard.store.s3client`). A store never asked anything is never built, and its
    `aclose` does nothing."""

    def __init__(
        self, build: Callable[[], Store], description: str, modules: tuple[str, ...] = ()
    ) -> None:
        self._built: Store | None = None
        self.description = description
        self._build, self._modules = build, modules
        self._lock = anyio.Lock()

    @property
    def inner(self) -> Store:  # type: ignore[override]
        """The store, once built (by the first request)."""
        if self._built is None:
            raise RuntimeError(f"{self.description}: asked before its first request")
        return self._built

    async def _ready(self) -> Store:
        if self._built is not None:  # no lock once built: it costs a loop trip a request
            return self._built
        async with self._lock:
            if self._built is None:
                for module in self._modules:
                    await anyio.to_thread.run_sync(import_quietly, module)
                self._built = self._build()
        return self._built

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        await self._ready()
        return await call()

    def list(
        self, prefix: str, *, start_after: str | None = None, delimiter: str | None = None
    ) -> AsyncIterator[ListPage]:
        return self._listing(prefix, start_after, delimiter)

    async def _listing(
        self, prefix: str, start_after: str | None, delimiter: str | None
    ) -> AsyncIterator[ListPage]:
        store = await self._ready()
        pages = aiter(store.list(prefix, start_after=start_after, delimiter=delimiter))
        try:
            async for page in pages:
                yield page
        finally:
            await close_listing(pages)

    async def aclose(self) -> None:
        if self._built is not None:
            await self._built.aclose()


class _BucketNamed(ForwardingStore):
    """Says which bucket is missing, and where it was looked for, with what to do."""

    def __init__(self, inner: Store, bucket: str, server: str) -> None:
        super().__init__(inner)
        self._missing = f"bucket {bucket!r} does not exist at {server}"

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        try:
            return await call()
        except MissingBucket as exc:
            raise MissingBucket(
                f"{self._missing}: create it, or check the remote URL and --endpoint-url "
                f"({exc.message.split(':')[0]})",
                exc.key,
            ) from None
