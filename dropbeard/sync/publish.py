"""Publishing this device's state: tombstone batch, then manifest, then head — the head
last, as the commit point (IO: store).

A crash before the head is written leaves orphan objects that readers never act on
(they follow heads, and read tombstones only up to the head's `tombstone_seq`); the next
pass simply writes them again.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import msgspec

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


@dataclass(frozen=True, slots=True)
class Published:
    manifest_id: str
    manifest_sha256: str
    tombstone_seq: int
    head_etag: str


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
    previous_manifest: str | None,
    tombstone_seq: int,
    seen: dict[str, SeenMark],
    now: datetime,
) -> Published:
    """Write the tombstone batch (if any), the manifest and the head, in that order."""
    seq = tombstone_seq
    if tombstones:
        seq += 1
        batch = TombstoneBatch(
            device_id=device_id, seq=seq, created_at=utc_iso(now), deletes=list(tombstones)
        )
        await store.put(keys.tombstone(device_id, seq), encode(batch))
    manifest_id = next_manifest_id(now, previous_manifest)
    data = manifest_bytes(root_id, device_id, entries, now)
    digest = hashlib.sha256(data).hexdigest()
    await store.put(keys.manifest(device_id, manifest_id), data)
    head = Head(
        device_id=device_id,
        manifest=manifest_id,
        manifest_sha256=digest,
        published_at=utc_iso(now),
        tombstone_seq=seq,
        seen=seen,
    )
    etag = await store.put(keys.head(device_id), encode(head))
    return Published(manifest_id, digest, seq, etag)
