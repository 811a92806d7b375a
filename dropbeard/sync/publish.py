"""Publishing this device's state: tombstone batch, then manifest, then head — the head
last, as the commit point (IO: store).

Batches and manifests are created only if absent (SPEC 1.2): an object a head may already
have named is never rewritten, and a key found taken takes the next seq or second. Every
id is handed to `reserve` (which records it in state.sqlite) before the write that uses
it, so no later pass uses it again, whatever happens next. A crash before the head is
written leaves orphan objects that readers never act on (they follow heads, and read
tombstones only up to the head's `tombstone_seq`); the next pass removes the orphan
batches (`dropbeard.sync.recovery`) and publishes under fresh ids.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TypeVar

import anyio
import msgspec

from dropbeard.core.errors import PreconditionFailed, StoreError
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import (
    Delete,
    Entry,
    Head,
    Manifest,
    SeenMark,
    TombstoneBatch,
    encode,
    encode_manifest,
)
from dropbeard.core.timestamps import next_manifest_id, utc_iso
from dropbeard.store.base import Store

#: Keys found taken in a row before a publish gives up (each takes the next id).
MAX_TAKEN = 100

_Id = TypeVar("_Id", int, str)


@dataclass(frozen=True, slots=True)
class Published:
    """What a publish wrote: its manifest's id, SHA-256 and bytes (`manifest`), the
    tombstone seq its head names, and the head's etag."""

    manifest_id: str
    manifest_sha256: str
    tombstone_seq: int
    head_etag: str
    manifest: bytes = b""


@dataclass(frozen=True, slots=True)
class Reservation:
    """The ids a publish is about to use: the version counter its entries and deletes
    reach, its tombstone seq (the head's, when it deletes nothing) and its manifest id."""

    counter: int
    tombstone_seq: int
    manifest_id: str


#: Records a reservation durably before the publish writes anything that uses it.
Reserve = Callable[[Reservation], Awaitable[None]]


async def _nothing_to_record(_ids: Reservation) -> None:
    return None


@dataclass(frozen=True, slots=True)
class LastIds:
    """The highest ids this device used or reserved before this publish: `tombstone_seq`
    is the one its head names, `seq_floor` and `manifest_id` the highest ever reserved
    (a crashed publish may have reserved more than its head shows)."""

    tombstone_seq: int = 0
    seq_floor: int = 0
    manifest_id: str | None = None


def manifest_bytes(root_id: str, device_id: str, entries: Sequence[Entry], now: datetime) -> bytes:
    return encode_manifest(
        Manifest(
            root_id=root_id, device_id=device_id, created_at=utc_iso(now), entries=list(entries)
        )
    )


def entries_digest(entries: Sequence[Entry]) -> str:
    """A digest of the entries alone (not the timestamp), to tell whether anything changed
    since the last publish. Entries come sorted from the plan."""
    return hashlib.sha256(_DIGEST_ENCODER.encode(list(entries))).hexdigest()


_DIGEST_ENCODER = msgspec.json.Encoder(order="deterministic")


async def publish(
    store: Store,
    keys: RootKeys,
    *,
    root_id: str,
    device_id: str,
    entries: Sequence[Entry],
    tombstones: Sequence[Delete],
    last: LastIds,
    seen: dict[str, SeenMark],
    now: datetime,
    counter: int = 0,
    reserve: Reserve = _nothing_to_record,
) -> Published:
    """Write the tombstone batch (if any), the manifest and the head, in that order, under
    ids after `last`. `counter` is the highest version counter of this device that the
    entries and deletes may carry (reserved with the ids)."""
    first_seq = max(last.tombstone_seq, last.seq_floor) + 1 if tombstones else last.tombstone_seq
    ids = Reservation(counter, first_seq, next_manifest_id(now, last.manifest_id))
    await reserve(ids)
    if tombstones:

        def batch(seq: int) -> bytes:
            return encode(
                TombstoneBatch(
                    device_id=device_id, seq=seq, created_at=utc_iso(now), deletes=list(tombstones)
                )
            )

        seq = await _create_at_first_free(
            store,
            ids.tombstone_seq,
            key=lambda s: keys.tombstone(device_id, s),
            data=batch,
            after=lambda s: s + 1,
            reserve=lambda s: reserve(replace(ids, tombstone_seq=s)),
        )
        ids = replace(ids, tombstone_seq=seq)
    # O(files) in format 1 (every entry checked, then encoded): kept off the event loop
    data = await anyio.to_thread.run_sync(manifest_bytes, root_id, device_id, entries, now)
    manifest_id = await _create_at_first_free(
        store,
        ids.manifest_id,
        key=lambda m: keys.manifest(device_id, m),
        data=lambda _m: data,
        after=lambda m: next_manifest_id(now, m),
        reserve=lambda m: reserve(replace(ids, manifest_id=m)),
    )
    digest = hashlib.sha256(data).hexdigest()
    head = Head(
        device_id=device_id,
        manifest=manifest_id,
        manifest_sha256=digest,
        published_at=utc_iso(now),
        tombstone_seq=ids.tombstone_seq,
        seen=seen,
    )
    etag = await store.put(keys.head(device_id), encode(head))
    return Published(manifest_id, digest, ids.tombstone_seq, etag, data)


async def _create_at_first_free(
    store: Store,
    first: _Id,
    *,
    key: Callable[[_Id], str],
    data: Callable[[_Id], bytes],
    after: Callable[[_Id], _Id],
    reserve: Callable[[_Id], Awaitable[None]],
) -> _Id:
    """Create the object of id `first`, or of the first id after it whose key is free
    (each such id reserved before its write); the id used."""
    current = first
    for _ in range(MAX_TAKEN):
        try:
            await store.put_if_absent(key(current), data(current))
            return current
        except PreconditionFailed:
            current = after(current)
            await reserve(current)
    raise StoreError(
        f"publishing {key(first)}: it and the next {MAX_TAKEN - 1} keys are all taken; "
        "is another machine using this device id? (`dropbeard init --take-over` replaces one)",
        key(first),
    )
