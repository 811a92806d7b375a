"""What every device's folder holds: its snapshots and tombstone batches, from one listing
of `devices/`, and those objects themselves, cached on disk (IO: store listing and reads,
local cache files).

Snapshots and tombstone batches are written once and never rewritten (SPEC 1.2), so a
cached one is never stale; the listing alone says which still exist. One that does not
decode, or names another device, id or seq than its key, is one line naming its key in
`failed`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import anyio
import msgspec

from dropbeard.core.errors import FormatError, NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Snapshot, decode_snapshot
from dropbeard.core.sweep import Listed
from dropbeard.core.timestamps import parse_snapshot_id
from dropbeard.store.base import ObjectInfo, Store
from dropbeard.sync.heads import Batch, decode_batch
from dropbeard.sync.workers import for_each

CONCURRENCY = 16
T = TypeVar("T")


class DeviceFolder(msgspec.Struct):
    """The objects of one device's folder, by kind."""

    snapshots: dict[str, Listed] = msgspec.field(default_factory=dict)  # by snapshot id
    tombstones: dict[int, Listed] = msgspec.field(default_factory=dict)  # by seq
    other: list[Listed] = msgspec.field(default_factory=list)  # the head, anything else

    @property
    def objects(self) -> list[Listed]:
        return [*self.snapshots.values(), *self.tombstones.values(), *self.other]


def as_listed(info: ObjectInfo) -> Listed:
    """A listed object as `core.sweep` takes it (LastModified as an aware UTC time)."""
    return Listed(info.key, info.size, datetime.fromtimestamp(info.last_modified, UTC))


async def list_devices(store: Store, keys: RootKeys) -> dict[str, DeviceFolder]:
    """Every device folder under `devices/` and what it holds (one listing)."""
    folders: dict[str, DeviceFolder] = {}
    async for page in store.list(keys.devices_prefix):
        for info in page.objects:
            try:
                device = keys.device_of(info.key)
            except ValueError:
                continue  # not in a device's folder: not ours to judge
            if device is None:
                continue  # registry.json
            folder = folders.setdefault(device, DeviceFolder())
            _file(keys, folder, as_listed(info))
    return dict(sorted(folders.items()))


def _file(keys: RootKeys, folder: DeviceFolder, obj: Listed) -> None:
    with contextlib.suppress(ValueError):
        folder.snapshots[keys.snapshot_id_of(obj.key)] = obj
        return
    with contextlib.suppress(ValueError):
        folder.tombstones[keys.seq_of(obj.key)] = obj
        return
    folder.other.append(obj)


class SnapshotReader:
    """Reads snapshot objects and tombstone batches, both written once and never
    rewritten, through a cache directory (None: no cache) laid out as `devices/` is."""

    def __init__(self, store: Store, keys: RootKeys, cache_dir: Path | None = None) -> None:
        self.store = store
        self.keys = keys
        self.cache_dir = cache_dir
        self.fetched = 0
        self.failed: dict[str, str] = {}  # key -> why it could not be used

    async def read(self, device: str, snapshot_id: str) -> Snapshot | None:
        """The snapshot, or None when it is gone or invalid (then `failed` says why)."""
        key = self.keys.snapshot(device, snapshot_id)
        snap = await self._read(key, decode_snapshot)
        if snap is not None and (snap.device_id, snap.snapshot) != (device, snapshot_id):
            self.failed[key] = f"invalid snapshot {key}: it names {snap.device_id} {snap.snapshot}"
            return None
        return snap

    async def read_batch(self, device: str, seq: int) -> Batch | None:
        """Tombstone batch `seq` of `device`, or None when gone or invalid (see `failed`)."""
        key = self.keys.tombstone(device, seq)
        batch = await self._read(key, decode_batch)
        if batch is not None and (batch.device_id, batch.seq) != (device, seq):
            self.failed[key] = (
                f"invalid tombstones {key}: it names {batch.device_id} seq {batch.seq}"
            )
            return None
        return batch

    async def read_all(self, wanted: dict[str, list[str]]) -> dict[str, dict[str, Snapshot]]:
        """Device -> snapshot id -> snapshot, for every id asked that can be read."""
        out: dict[str, dict[str, Snapshot]] = {d: {} for d in wanted}

        async def one(item: tuple[str, str]) -> None:
            snap = await self.read(*item)
            if snap is not None:
                out[item[0]][item[1]] = snap

        jobs = [(d, s) for d, ids in wanted.items() for s in ids]
        await for_each(jobs, one, CONCURRENCY)
        return {d: dict(sorted(snaps.items())) for d, snaps in out.items()}

    async def read_batches(self, wanted: dict[str, list[int]]) -> list[Batch]:
        """Every batch asked that can be read, by device and seq."""
        out: list[Batch] = []

        async def one(item: tuple[str, int]) -> None:
            batch = await self.read_batch(*item)
            if batch is not None:
                out.append(batch)

        await for_each([(d, q) for d, seqs in wanted.items() for q in seqs], one, CONCURRENCY)
        return sorted(out, key=lambda b: (b.device_id, b.seq))

    async def _read(self, key: str, decode: Callable[[bytes, str], T]) -> T | None:
        cached = await anyio.to_thread.run_sync(self._cached, key)
        data = cached
        if data is None:
            try:
                data = await self.store.get(key)
            except NotFound:
                return None
            self.fetched += 1
        try:
            obj = decode(data, key)
        except FormatError as exc:
            self.failed[key] = str(exc)
            return None
        if cached is None:
            await anyio.to_thread.run_sync(self._keep, key, data)
        return obj

    def _path(self, key: str) -> Path | None:
        if self.cache_dir is None or not key.startswith(self.keys.devices_prefix):
            return None
        return self.cache_dir / key[len(self.keys.devices_prefix) :]

    def _cached(self, key: str) -> bytes | None:
        path = self._path(key)
        if path is None:
            return None
        try:
            return path.read_bytes()
        except OSError:
            return None

    def _keep(self, key: str, data: bytes) -> None:
        path = self._path(key)
        if path is None:
            return
        with contextlib.suppress(OSError):  # a cache: failing to fill it costs a read later
            path.parent.mkdir(parents=True, exist_ok=True)
            temp = path.with_name(f".tmp-{os.getpid()}-{path.name}")
            temp.write_bytes(data)
            os.replace(temp, path)


def snapshot_time(snapshot_id: str) -> str:
    """A snapshot id as people read a time: `2026-05-22 18:05:00Z`."""
    t = parse_snapshot_id(snapshot_id)
    return t.strftime("%Y-%m-%d %H:%M:%SZ")
