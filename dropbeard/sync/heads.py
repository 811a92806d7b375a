"""Every device's current head and its tombstone batches, as history, verify and gc see
them (IO: store reads). The one seam between those commands and the head's encoding.

A head (SPEC 1.3) is read as a `DeviceHead`: its snapshot id and root tree (both None for
a device that does not publish), its tombstone seq and its `seen` marks. `core.model`
decodes and checks heads and tombstone batches; this module turns them into its own
types, so callers never see the encoding. A head or batch that does not decode is one
line naming its key, for that device only: it never stops the others being read.
"""

from __future__ import annotations

from typing import NamedTuple

import msgspec

from dropbeard.core.errors import FormatError, NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Delete, decode_head, decode_tombstones
from dropbeard.store.base import Store
from dropbeard.sync.workers import for_each

#: Heads read at once.
CONCURRENCY = 16


class Seen(NamedTuple):
    """How far a device has processed another: that device's snapshot and tombstone seq."""

    snapshot: str | None
    tombstone_seq: int


class DeviceHead(msgspec.Struct, frozen=True):
    """One device's commit point. `etag` tells a re-read whether it moved."""

    device_id: str
    snapshot: str | None
    tree: str | None
    tombstone_seq: int
    published_at: str
    seen: dict[str, Seen]
    etag: str = ""


class Heads(msgspec.Struct):
    """The heads of a root: by device; `failed` names the devices whose head could not be
    read or trusted, with the one line saying why."""

    heads: dict[str, DeviceHead] = msgspec.field(default_factory=dict)
    failed: dict[str, str] = msgspec.field(default_factory=dict)

    def roots(self) -> dict[str, str]:
        """Device -> the root tree its head names (devices that publish)."""
        return {d: h.tree for d, h in self.heads.items() if h.tree is not None}


# --- decoding (core.model's format-2 decoders, turned into this seam's types) ---------


def _decode_head(data: bytes, key: str, etag: str) -> DeviceHead:
    h = decode_head(data, key)
    seen = {d: Seen(m.snapshot, m.tombstone_seq) for d, m in h.seen.items()}
    return DeviceHead(h.device_id, h.snapshot, h.tree, h.tombstone_seq, h.published_at, seen, etag)


class Batch(msgspec.Struct, frozen=True):
    """One tombstone batch (SPEC 1.4): the deletes of one publish."""

    device_id: str
    seq: int
    created_at: str
    deletes: list[Delete]


def decode_batch(data: bytes, key: str) -> Batch:
    """The tombstone batch in `data` (read from `key`), checked; FormatError otherwise."""
    b = decode_tombstones(data, key)
    return Batch(b.device_id, b.seq, b.created_at, b.deletes)


# --- reading ------------------------------------------------------------------------


async def device_ids(store: Store, keys: RootKeys) -> list[str]:
    """The devices with a folder under `devices/` (one listing, by delimiter); folders
    whose name is not a device id are not devices and are left alone."""
    found = []
    async for page in store.list(keys.devices_prefix, delimiter="/"):
        for prefix in page.prefixes:
            try:
                device = keys.device_of(prefix)
            except ValueError:
                continue
            if device is not None:
                found.append(device)
    return sorted(found)


async def read_head(
    store: Store, keys: RootKeys, device: str, previous: DeviceHead | None = None
) -> DeviceHead | None:
    """`device`'s head, or None when it has none; FormatError when it is not a head of
    that device. With `previous`, a head whose etag has not moved costs a 304."""
    key = keys.head(device)
    try:
        got = await store.get_if_changed(key, previous.etag if previous else None)
    except NotFound:
        return None
    if got is None:
        assert previous is not None
        return previous
    head = _decode_head(got[0], key, got[1])
    if head.device_id != device:
        raise FormatError(f"invalid head {key}: it names device {head.device_id!r}")
    return head


async def read_heads(
    store: Store,
    keys: RootKeys,
    devices: list[str] | None = None,
    previous: Heads | None = None,
) -> Heads:
    """The head of every device (of `devices`, when given), read concurrently; heads in
    `previous` are asked again only if they changed."""
    if devices is None:
        devices = await device_ids(store, keys)
    out = Heads()
    known = previous.heads if previous is not None else {}

    async def one(device: str) -> None:
        try:
            head = await read_head(store, keys, device, known.get(device))
        except FormatError as exc:
            out.failed[device] = str(exc)
            return
        if head is not None:
            out.heads[device] = head

    await for_each(devices, one, CONCURRENCY)
    out.heads = dict(sorted(out.heads.items()))
    return out
