"""The `Store` protocol: an async object store of keys and bytes, and its value types.

This module is the contract every backend (local directory, S3) and every wrapper
(retry, counting, fault injection) implements. It knows nothing of trees or snapshots.

Keys are `/`-separated UTF-8 strings relative to the store's base (bucket + prefix, or
directory); they never start with `/`, never contain empty, `.` or `..` segments and
never start with `.dropbeard-` (reserved for a backend's own housekeeping).

Errors (from `dropbeard.core.errors`), and the only ones a store raises:
- `NotFound`            the key does not exist (get, head, get_if_changed).
- `PreconditionFailed`  a conditional write lost (the key exists, or its etag moved on,
                        or it is gone when `put_if_match` expected it).
- `Unauthorized`        credentials rejected / access denied. Permanent.
- `Unavailable`         transient: connection refused or reset, timeout, 5xx, throttling.
                        Only `RetryingStore` retries it; callers never retry on their own.
- `IntegrityError`      bytes did not match the SHA-256 the caller promised.
- `ListFailed`          a listing failed for a reason that is neither of the above.
- `StoreError`          anything else, permanent, with a message naming the key.
Every message says what was being done and on which key, and never contains a secret.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Protocol, runtime_checkable

import msgspec

RESERVED_PREFIX = ".dropbeard-"

#: A store opened for `concurrency` transfers may see this many times as many small
#: requests in flight at once (`dropbeard.sync.budget`); connection pools are sized for it.
SMALL_REQUESTS_PER_SLOT = 4

#: Called with the number of bytes just transferred (for progress bars and rate meters).
Progress = Callable[[int], None]


class ObjectInfo(msgspec.Struct, frozen=True):
    """Metadata of one stored object. `etag` is opaque: only compare it for equality and
    hand it back to `put_if_match` / `get_if_changed`. `last_modified` is POSIX seconds."""

    key: str
    size: int
    etag: str
    last_modified: float


class ListPage(msgspec.Struct, frozen=True):
    """One page of a listing: objects in key order, then (with a delimiter) the common
    prefixes of that page, each ending in the delimiter."""

    objects: list[ObjectInfo] = msgspec.field(default_factory=list)
    prefixes: list[str] = msgspec.field(default_factory=list)


class FileSlot(msgspec.Struct, frozen=True):
    """A place in a file the caller holds open, for `get_file` to write an object into:
    at `offset` of file descriptor `fd` (never closed by the store), at most `size`
    bytes; an object holding more is an IntegrityError before more is written. Pieces of
    one file land in place concurrently, with no temporary file to copy from."""

    fd: int
    offset: int
    size: int
    #: a second descriptor on the same file opened with O_DIRECT (-1: none), for the
    #: slot's whole blocks (`dropbeard.store.direct`)
    direct: int = -1


@runtime_checkable
class Store(Protocol):
    """An object store. All methods are safe to call concurrently."""

    #: Where this store points, for messages: `s3://bucket/prefix` or a directory path.
    #: Never contains credentials.
    description: str

    async def get(self, key: str) -> bytes:
        """The whole object. NotFound if absent."""
        ...

    async def get_if_changed(self, key: str, etag: str | None) -> tuple[bytes, str] | None:
        """(bytes, etag) of the object, or None when its etag still equals `etag` (a
        conditional GET: nothing transferred or parsed). NotFound if absent."""
        ...

    async def get_file(
        self,
        key: str,
        dest: Path | FileSlot,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        """Stream the object into `dest` (a file, created or truncated; or a `FileSlot`),
        never holding it whole in memory. With `expected_sha256`, hash while writing and
        raise IntegrityError on a mismatch (`dest` then holds unverified bytes: the caller
        writes to a temp file and discards it). NotFound if absent."""
        ...

    async def head(self, key: str) -> ObjectInfo:
        """Size, etag and modification time. NotFound if absent."""
        ...

    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        """Create or replace the object; returns its new etag. Readers see the old object
        or the new one, never a mix or a partial object. `sha256`, when the caller knows
        it, is the SHA-256 (hex) of `data`: a backend may hand it to the server instead of
        hashing `data` again (a server that checks it refuses other bytes)."""
        ...

    async def put_file(
        self,
        key: str,
        path: Path,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> str:
        """Upload a local file with one request, streamed from disk with bounded memory.
        With `expected_sha256`, the bytes read are hashed and the object is only committed
        if they match; else IntegrityError and nothing is visible at `key` (the file
        changed while read). No multipart upload, so nothing to resume: dropbeard stores
        a large file as chunks, each its own object (SPEC 1.6)."""
        ...

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        """Create the object only if the key does not exist (If-None-Match: *). Of N
        concurrent calls on one key exactly one wins; the others get PreconditionFailed.
        `sha256` as for `put`."""
        ...

    async def put_if_match(self, key: str, data: bytes, etag: str) -> str:
        """Replace the object only if its current etag is `etag` (If-Match). A stale etag,
        or a key that no longer exists, gives PreconditionFailed."""
        ...

    def list(
        self,
        prefix: str,
        *,
        start_after: str | None = None,
        delimiter: str | None = None,
    ) -> AsyncIterator[ListPage]:
        """Every object whose key starts with `prefix` and sorts (by UTF-8 bytes) after
        `start_after`, in key order, one page at a time. With `delimiter` ("/" is the only
        one every backend supports), keys containing it after the prefix are rolled up
        into `prefixes` instead. ListFailed (or Unauthorized / Unavailable) on failure."""
        ...

    async def delete(self, key: str) -> None:
        """Remove the object. Deleting an absent key succeeds (idempotent)."""
        ...

    async def aclose(self) -> None:
        """Release connections and threads. The store is unusable afterwards."""
        ...


def validate_key(key: str) -> str:
    """Return `key` if it is a well-formed store key, else raise ValueError (a bug in the
    caller: keys come from `dropbeard.core.keys`, never straight from untrusted input)."""
    if not key or key.startswith("/") or "\x00" in key:
        raise ValueError(f"invalid store key {key!r}")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise ValueError(f"invalid store key {key!r}")
    if key.startswith(RESERVED_PREFIX):
        raise ValueError(f"store key {key!r} uses the reserved prefix {RESERVED_PREFIX!r}")
    return key
