"""Every device's current head and its tombstone batches, as history, verify and gc see
them (IO: store reads). The one seam between those commands and the head's encoding.

A head (SPEC 1.3) is read as a `DeviceHead`: its snapshot id and root tree (both None for
a device that does not publish), its tombstone seq and its `seen` marks. Until
`core.model` decodes format-2 heads and tombstone batches itself, the two small Structs
below do; switching to the model's is a change to `_decode_head` and `decode_batch`
only. A head or batch that does not decode is one line naming its key, for that device
only: it never stops the others being read.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple, TypeVar

import msgspec

from dropbeard.core.errors import FormatError, NotFound
from dropbeard.core.ids import validate_id, validate_sha256
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import MAX_INT, Delete
from dropbeard.core.paths import validate_path
from dropbeard.core.timestamps import validate_snapshot_id, validate_timestamp
from dropbeard.store.base import Store
from dropbeard.sync.workers import for_each

FORMAT = 2
#: Heads read at once.
CONCURRENCY = 16


class Seen(NamedTuple):
    """How far a device has processed another: that device's snapshot and tombstone seq."""

    snapshot: str | None
    tombstone_seq: int


@dataclass(frozen=True)
class DeviceHead:
    """One device's commit point. `etag` tells a re-read whether it moved."""

    device_id: str
    snapshot: str | None
    tree: str | None
    tombstone_seq: int
    published_at: str
    seen: dict[str, Seen]
    etag: str = ""


@dataclass
class Heads:
    """The heads of a root: by device; `failed` names the devices whose head could not be
    read or trusted, with the one line saying why."""

    heads: dict[str, DeviceHead] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    def roots(self) -> dict[str, str]:
        """Device -> the root tree its head names (devices that publish)."""
        return {d: h.tree for d, h in self.heads.items() if h.tree is not None}


# --- decoding (the part `core.model` takes over once it reads format 2) ---------------


class _SeenMark(msgspec.Struct, frozen=True, kw_only=True):
    snapshot: str | None = None
    tombstone_seq: int = 0


class _Head(msgspec.Struct, frozen=True, kw_only=True):
    format: int
    device_id: str
    snapshot: str | None = None
    tree: str | None = None
    published_at: str
    tombstone_seq: int = 0
    seen: dict[str, _SeenMark] = {}


class _Batch(msgspec.Struct, frozen=True, kw_only=True):
    format: int
    device_id: str
    seq: int
    created_at: str
    deletes: list[Delete]


class _Envelope(msgspec.Struct):
    format: Any = None


_T = TypeVar("_T", _Head, _Batch)


def _decode(data: bytes, key: str, kind: str, cls: type[_T], check: Callable[[_T], None]) -> _T:
    try:
        version = msgspec.json.decode(data, type=_Envelope).format
        if version != FORMAT:
            raise ValueError(f"format {version!r} is not format {FORMAT}, which this reads")
        obj = msgspec.json.decode(data, type=cls)
        check(obj)
    except (msgspec.DecodeError, ValueError) as e:
        raise FormatError(f"invalid {kind} {key}: {str(e)[:300]}") from None
    except RecursionError:
        raise FormatError(f"invalid {kind} {key}: JSON nested too deeply") from None
    return obj


def _in_range(value: int, what: str) -> None:
    if not 0 <= value <= MAX_INT:
        raise ValueError(f"{what} is {value}, outside 0..{MAX_INT}")


def _check_head(h: _Head) -> None:
    validate_id(h.device_id)
    validate_timestamp(h.published_at)
    _in_range(h.tombstone_seq, "tombstone_seq")
    if (h.snapshot is None) != (h.tree is None):
        raise ValueError("snapshot and tree are both set or both null")
    if h.snapshot is not None and h.tree is not None:
        validate_snapshot_id(h.snapshot)
        validate_sha256(h.tree)
    for device, mark in h.seen.items():
        validate_id(device)
        if mark.snapshot is not None:
            validate_snapshot_id(mark.snapshot)
        _in_range(mark.tombstone_seq, f"seen[{device}].tombstone_seq")


def _check_batch(b: _Batch) -> None:
    validate_id(b.device_id)
    _in_range(b.seq, "seq")
    validate_timestamp(b.created_at)
    for d in b.deletes:
        validate_path(d.path)
        if d.sha256 is not None:
            validate_sha256(d.sha256)


def _decode_head(data: bytes, key: str, etag: str) -> DeviceHead:
    h = _decode(data, key, "head", _Head, _check_head)
    seen = {d: Seen(m.snapshot, m.tombstone_seq) for d, m in h.seen.items()}
    return DeviceHead(h.device_id, h.snapshot, h.tree, h.tombstone_seq, h.published_at, seen, etag)


@dataclass(frozen=True)
class Batch:
    """One tombstone batch (SPEC 1.4): the deletes of one publish."""

    device_id: str
    seq: int
    created_at: str
    deletes: list[Delete]


def decode_batch(data: bytes, key: str) -> Batch:
    """The tombstone batch in `data` (read from `key`), checked; FormatError otherwise."""
    b = _decode(data, key, "tombstones", _Batch, _check_batch)
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
