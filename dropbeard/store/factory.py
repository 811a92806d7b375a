"""Building the concrete store for a root's `[remote]` (IO: only `cli` and `daemon` call it).

Every store handed to the engine is wrapped in `RetryingStore`, so transient failures are
retried in exactly one place.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

from dropbeard.core.config import RemoteConfig, parse_remote_url
from dropbeard.core.errors import MissingBucket, UsageError
from dropbeard.store.bandwidth import Bandwidth
from dropbeard.store.base import Store
from dropbeard.store.forwarding import ForwardingStore
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
        from dropbeard.store.s3 import S3Store  # aiobotocore costs ~0.5 s to import

        store = _BucketNamed(
            S3Store(
                url.bucket,
                url.prefix,
                endpoint_url=remote.endpoint_url,
                region=remote.region,
                profile=remote.profile,
                addressing_style=remote.addressing_style,
                concurrency=concurrency,
                bandwidth=bandwidth,
            ),
            url.bucket,
            remote.endpoint_url or f"AWS S3 ({remote.region or 'us-east-1'})",
        )
    return RetryingStore(store) if retry else store


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
