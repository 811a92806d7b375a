"""The bucket's JSON objects as msgspec Structs: manifest, head, tombstones, registry (pure).

Shapes follow SPEC section 1 exactly. Decoding of untrusted bytes lives below the types.
"""

from __future__ import annotations

from typing import Literal

import msgspec

FORMAT = 1

EntryType = Literal["file", "dir", "symlink"]
DeviceStatus = Literal["active", "retired"]
VersionVector = dict[str, int]


class Entry(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One tracked path as a device holds it. Files carry size/mtime_ns/sha256, symlinks
    carry target, directories neither."""

    path: str
    type: EntryType
    mode: int
    version: VersionVector
    size: int | None = None
    mtime_ns: int | None = None
    sha256: str | None = None
    target: str | None = None


class Manifest(msgspec.Struct, frozen=True, kw_only=True):
    format: int = FORMAT
    root_id: str
    device_id: str
    created_at: str
    entries: list[Entry]


class SeenMark(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    manifest: str | None = None
    tombstone_seq: int = 0


class Head(msgspec.Struct, frozen=True, kw_only=True):
    format: int = FORMAT
    device_id: str
    manifest: str
    manifest_sha256: str
    published_at: str
    tombstone_seq: int = 0
    seen: dict[str, SeenMark] = {}


class Delete(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    path: str
    type: EntryType
    version: VersionVector
    sha256: str | None = None


class TombstoneBatch(msgspec.Struct, frozen=True, kw_only=True):
    format: int = FORMAT
    device_id: str
    seq: int
    created_at: str
    deletes: list[Delete]


class DeviceRecord(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    status: DeviceStatus
    mode: str | None = None
    registered_at: str | None = None
    retired_at: str | None = None


class Registry(msgspec.Struct, frozen=True, kw_only=True):
    format: int = FORMAT
    devices: dict[str, DeviceRecord] = {}
