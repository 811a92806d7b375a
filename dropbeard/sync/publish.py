"""Publishing this device's state: tombstone batch and snapshot (at once: neither names
the other), then head — the head last, as the commit point (IO: store). The tree the
snapshot names is in the bucket before (`dropbeard.sync.treewrite` uploads every node
before it returns the root's key).

Batches and snapshots are created only if absent (SPEC 1.2): an object a head may already
have named is never rewritten, and a key found taken takes the next seq or second. Every
id is handed to `reserve` (which records it in state.sqlite) before the write that uses
it, so no later pass uses it again, whatever happens next. A crash before the head is
written leaves orphan objects that readers never act on (they follow heads, and read
tombstones only up to the head's `tombstone_seq`); the next pass removes the orphan
batches (`dropbeard.sync.recovery`) and publishes under fresh ids.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import TypeVar

import anyio
import msgspec

from dropbeard.core.errors import PreconditionFailed, StoreError
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Delete, Head, SeenMark, Snapshot, TombstoneBatch, encode
from dropbeard.core.timestamps import next_snapshot_id, utc_iso
from dropbeard.store.base import Store
from dropbeard.sync.workers import first_error

#: Keys found taken in a row before a publish gives up (each takes the next id).
MAX_TAKEN = 100

_Id = TypeVar("_Id", int, str)


class Listing(msgspec.Struct, frozen=True):
    """What a snapshot describes: the root key of the tree, and the files it lists and
    their bytes in total."""

    tree: str
    files: int
    bytes: int


class Published(msgspec.Struct, frozen=True):
    """What a publish wrote: its snapshot id and listing, the tombstone seq its head
    names, and the head's etag."""

    snapshot: str
    listing: Listing
    tombstone_seq: int
    head_etag: str


class Reservation(msgspec.Struct, frozen=True):
    """The ids a publish is about to use: the version counter its entries and deletes
    reach, its tombstone seq (the head's, when it deletes nothing) and its snapshot id."""

    counter: int
    tombstone_seq: int
    snapshot: str


#: Records a reservation durably before the publish writes anything that uses it.
Reserve = Callable[[Reservation], Awaitable[None]]


async def _nothing_to_record(_ids: Reservation) -> None:
    return None


class LastIds(msgspec.Struct, frozen=True):
    """The highest ids this device used or reserved before this publish: `tombstone_seq`
    is the one its head names, `seq_floor` and `snapshot` the highest ever reserved
    (a crashed publish may have reserved more than its head shows)."""

    tombstone_seq: int = 0
    seq_floor: int = 0
    snapshot: str | None = None


async def publish(
    store: Store,
    keys: RootKeys,
    *,
    device_id: str,
    listing: Listing,
    tombstones: Sequence[Delete],
    last: LastIds,
    seen: dict[str, SeenMark],
    now: datetime,
    counter: int = 0,
    reserve: Reserve = _nothing_to_record,
) -> Published:
    """Write the tombstone batch (if any) and the snapshot of `listing` (whose tree is in
    the bucket already), concurrently, then the head, under ids after `last`. `counter`
    is the highest version counter of this device that the entries and deletes may carry
    (reserved with the ids; each id found taken reserves the next, and a reservation only
    ever grows, so the two writers' reservations never undo each other)."""
    first_seq = max(last.tombstone_seq, last.seq_floor) + 1 if tombstones else last.tombstone_seq
    ids = Reservation(counter, first_seq, next_snapshot_id(now, last.snapshot))
    await reserve(ids)
    created: list[int] = []

    async def create_batch() -> None:
        created.append(await _create_batch(store, keys, device_id, tombstones, now, ids, reserve))

    with first_error():
        async with anyio.create_task_group() as tg:
            if tombstones:
                tg.start_soon(create_batch)
            snapshot_id = await _create_snapshot(store, keys, device_id, listing, now, ids, reserve)
    ids = msgspec.structs.replace(ids, tombstone_seq=created[0]) if created else ids
    head = Head(
        device_id=device_id,
        snapshot=snapshot_id,
        tree=listing.tree,
        published_at=utc_iso(now),
        tombstone_seq=ids.tombstone_seq,
        seen=seen,
    )
    etag = await store.put(keys.head(device_id), encode(head))
    return Published(snapshot_id, listing, ids.tombstone_seq, etag)


async def _create_batch(
    store: Store,
    keys: RootKeys,
    device_id: str,
    tombstones: Sequence[Delete],
    now: datetime,
    ids: Reservation,
    reserve: Reserve,
) -> int:
    """Create the batch of `tombstones` at the first free seq from `ids.tombstone_seq`
    on; its seq."""

    def batch(seq: int) -> bytes:
        return encode(
            TombstoneBatch(
                device_id=device_id, seq=seq, created_at=utc_iso(now), deletes=list(tombstones)
            )
        )

    return await _create_at_first_free(
        store,
        ids.tombstone_seq,
        key=lambda s: keys.tombstone(device_id, s),
        data=batch,
        after=lambda s: s + 1,
        reserve=lambda s: reserve(msgspec.structs.replace(ids, tombstone_seq=s)),
    )


async def _create_snapshot(
    store: Store,
    keys: RootKeys,
    device_id: str,
    listing: Listing,
    now: datetime,
    ids: Reservation,
    reserve: Reserve,
) -> str:
    """Create the snapshot of `listing` at the first free id from `ids.snapshot` on; its
    id."""

    def snapshot(snapshot_id: str) -> bytes:
        return encode(
            Snapshot(
                device_id=device_id,
                snapshot=snapshot_id,
                tree=listing.tree,
                created_at=utc_iso(now),
                files=listing.files,
                bytes=listing.bytes,
            )
        )

    return await _create_at_first_free(
        store,
        ids.snapshot,
        key=lambda s: keys.snapshot(device_id, s),
        data=snapshot,
        after=lambda s: next_snapshot_id(now, s),
        reserve=lambda s: reserve(msgspec.structs.replace(ids, snapshot=s)),
    )


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
