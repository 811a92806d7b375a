"""Building the concrete store for a root's `[remote]` (IO: only `cli` and `daemon` call it).

Every store handed to the engine is wrapped in `RetryingStore`, so transient failures are
retried in exactly one place.
"""

from __future__ import annotations

from pathlib import Path

from dropbeard.core.config import RemoteConfig, parse_remote_url
from dropbeard.core.errors import UsageError
from dropbeard.store.base import Store
from dropbeard.store.local import LocalStore
from dropbeard.store.retry import RetryingStore


def open_store(remote: RemoteConfig, *, concurrency: int = 8, retry: bool = True) -> Store:
    """The store `remote` names; no request is made until it is used."""
    try:
        url = parse_remote_url(remote.url)
    except ValueError as exc:
        raise UsageError(f"remote: {exc}") from None
    store: Store
    if url.kind == "local":
        store = LocalStore(Path(url.path))
    else:
        from dropbeard.store.s3 import S3Store  # aiobotocore costs ~0.5 s to import

        store = S3Store(
            url.bucket,
            url.prefix,
            endpoint_url=remote.endpoint_url,
            region=remote.region,
            profile=remote.profile,
            addressing_style=remote.addressing_style,
            concurrency=concurrency,
        )
    return RetryingStore(store) if retry else store
