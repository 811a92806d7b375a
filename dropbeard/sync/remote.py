"""Reading the other devices of a root: one listing, one conditional GET per head,
manifests fetched once and cached under `.dropbear/cache/`, tombstones after the last
processed seq (IO: store, local cache files).

An unchanged bucket costs exactly one LIST plus one conditional GET per other device.
A device whose objects cannot be trusted (malformed, failing their hash, missing) is
skipped and reported (SPEC 4.1): the others are read as usual.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

import anyio
import msgspec

from dropbeard.core.errors import FormatError, IntegrityError, NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import (
    Delete,
    Entry,
    Head,
    Manifest,
    Registry,
    decode_head,
    decode_manifest,
    decode_registry,
    decode_tombstones,
)
from dropbeard.core.problems import Problem, device_problem
from dropbeard.core.scope import listing_changes
from dropbeard.store.base import Store
from dropbeard.sync.state import Peer


@dataclass
class DeviceView:
    """What we know of one other device after reading the bucket."""

    device_id: str
    head: Head
    head_etag: str
    manifest: Manifest
    #: tombstones with seq in (peer.tombstone_seq, head.tombstone_seq], oldest first
    tombstones: list[tuple[int, Delete]] = field(default_factory=list)
    #: what its manifest processed last held at the paths of `tombstones` (`_held_before`)
    held_before: dict[str, Entry] = field(default_factory=dict)
    #: the paths whose entry changed since the manifest of it processed last (None: every
    #: path of `manifest`, when none was processed or it cannot be read any more)
    changed: set[str] | None = field(default_factory=set)

    def changed_paths(self) -> set[str]:
        """The paths this device changed since this one last processed it."""
        if self.changed is None:
            return {e.path for e in self.manifest.entries}
        return self.changed


#: What makes one device unreadable: its own objects, not the store, are at fault.
UNREADABLE = (FormatError, IntegrityError, NotFound)


@dataclass
class RemoteRead:
    devices: dict[str, DeviceView]
    registry: Registry
    registry_etag: str | None
    changed: bool  # any head differed from what we had processed
    #: devices skipped because their objects could not be trusted -> why, in one line
    unreadable: dict[str, str] = field(default_factory=dict)

    @property
    def problems(self) -> list[Problem]:
        """One problem per skipped device, naming it."""
        return [
            device_problem(dev, f"skipped device {dev!r}: {why}; nothing from it was applied")
            for dev, why in sorted(self.unreadable.items())
        ]


async def read_remotes(
    store: Store,
    keys: RootKeys,
    *,
    device_id: str,
    peers: dict[str, Peer],
    registry: Registry | None,
    registry_etag: str | None,
    cache_dir: Path,
    use_cache: bool = True,
) -> RemoteRead:
    """Every other active device's latest head, manifest and new tombstones."""
    listed: list[str] = []
    reg_etag_now: str | None = None
    async for page in store.list(keys.devices_prefix, delimiter="/"):
        for obj in page.objects:
            if obj.key == keys.registry:
                reg_etag_now = obj.etag
        for prefix in page.prefixes:
            try:
                dev = keys.device_of(prefix)
            except ValueError:
                continue  # not a device folder dropbeard wrote; ignore it
            if dev and dev != device_id:
                listed.append(dev)
    if registry is None or reg_etag_now != registry_etag:
        registry, registry_etag = await _read_registry(store, keys)
    retired = {d for d, rec in registry.devices.items() if rec.status == "retired"}
    read = RemoteRead({}, registry, registry_etag, changed=False)
    async with anyio.create_task_group() as tg:
        for dev in sorted(set(listed) - retired):

            async def one(dev: str = dev) -> None:
                try:
                    view, was_changed = await _read_device(
                        store, keys, dev, peers.get(dev), cache_dir if use_cache else None
                    )
                except UNREADABLE as exc:
                    read.unreadable[dev] = str(exc)
                    return
                if view is not None:
                    read.devices[dev] = view
                read.changed = read.changed or was_changed

            tg.start_soon(one)
    return read


async def _read_registry(store: Store, keys: RootKeys) -> tuple[Registry, str | None]:
    try:
        got = await store.get_if_changed(keys.registry, None)
    except NotFound:
        return Registry(devices={}), None
    assert got is not None
    return decode_registry(got[0], keys.registry), got[1]


async def _read_device(
    store: Store, keys: RootKeys, dev: str, peer: Peer | None, cache_dir: Path | None
) -> tuple[DeviceView | None, bool]:
    head_key = keys.head(dev)
    known_etag = peer.head_etag if peer else None
    try:
        got = await store.get_if_changed(head_key, known_etag)
    except NotFound:
        return None, False  # registered but never published
    if got is None:
        assert peer is not None and peer.manifest_id is not None
        head_data = await _read_cache(cache_dir, dev, "head")
        if head_data is None:  # cache lost: read again unconditionally
            got = await store.get_if_changed(head_key, None)
            assert got is not None
        else:
            head = decode_head(head_data, head_key)
            manifest = await read_manifest(store, keys, dev, head, cache_dir)
            return DeviceView(dev, head, known_etag or "", manifest), False
    data, etag = got
    head = decode_head(data, head_key)
    if head.device_id != dev:
        raise IntegrityError(f"reading {head_key}: it claims device {head.device_id!r}", head_key)
    after = peer.tombstone_seq if peer else 0
    tombstones: list[tuple[int, Delete]] = []
    if head.tombstone_seq > after:
        tombstones = await read_tombstones(store, keys, dev, after, head.tombstone_seq)
    # before the new manifest replaces the one processed last in the cache
    same = peer is not None and (peer.manifest_id, peer.manifest_sha256) == (
        head.manifest,
        head.manifest_sha256,
    )
    previous = None if same else await _processed(store, keys, dev, peer, cache_dir)
    manifest = await read_manifest(store, keys, dev, head, cache_dir)
    if same:  # a head rewritten for its seen-marks, or a lost cache: the same listing
        previous = {e.path: e for e in manifest.entries}
    await _write_cache(cache_dir, dev, "head", data)
    view = DeviceView(dev, head, etag, manifest, tombstones)
    if previous is not None:
        held = {p: previous[p] for p in {gone.path for _, gone in tombstones} if p in previous}
        view.held_before = held
        now = {e.path: e for e in manifest.entries}
        view.changed = await anyio.to_thread.run_sync(listing_changes, previous, now)
    else:
        view.changed = None
    return view, True


async def _processed(
    store: Store, keys: RootKeys, dev: str, peer: Peer | None, cache_dir: Path | None
) -> dict[str, Entry] | None:
    """The entries, by path, of the manifest of `dev` this device processed last: what
    its new manifest is compared with, and what it was seen holding before the paths its
    new tombstones delete (`core.refusals`). None when there is none, or it is gone or
    damaged: no evidence, not an error (every path of the new one then counts as
    changed)."""
    if peer is None or not peer.manifest_id or not peer.manifest_sha256:
        return None
    try:
        previous = await _verified_manifest(
            store, keys, dev, peer.manifest_id, peer.manifest_sha256, cache_dir, keep=False
        )
    except UNREADABLE:
        return None
    return {e.path: e for e in previous.entries}


async def read_manifest(
    store: Store, keys: RootKeys, dev: str, head: Head, cache_dir: Path | None
) -> Manifest:
    """The manifest `head` of device `dev` names, verified against the head's SHA-256
    (IntegrityError) and fully checked (FormatError); cached under `cache_dir` if given."""
    return await _verified_manifest(
        store, keys, dev, head.manifest, head.manifest_sha256, cache_dir, keep=True
    )


async def _verified_manifest(
    store: Store,
    keys: RootKeys,
    dev: str,
    manifest_id: str,
    sha256: str,
    cache_dir: Path | None,
    *,
    keep: bool,
) -> Manifest:
    """`dev`'s manifest `manifest_id`, checked against `sha256` (from the cache if it holds
    those bytes); with `keep`, cached as the device's latest."""
    key = keys.manifest(dev, manifest_id)
    if cache_dir is not None:
        cached = await anyio.to_thread.run_sync(_trusted_cache, cache_dir, dev, manifest_id, sha256)
        if cached is not None:
            return cached
    try:
        data = await store.get(key)
    except NotFound:
        raise IntegrityError(f"reading {key}: its head names it, but it is missing", key) from None
    digest = hashlib.sha256(data).hexdigest()
    if digest != sha256:
        raise IntegrityError(
            f"reading {key}: its SHA-256 {digest} does not match the head's {sha256}", key
        )
    manifest = await anyio.to_thread.run_sync(decode_manifest, data, key)
    if manifest.device_id != dev:
        raise IntegrityError(f"reading {key}: it claims device {manifest.device_id!r}", key)
    if keep:  # cached only once fully validated: a cache hit (same SHA-256) skips that
        await _write_cache(cache_dir, dev, manifest_id, data)
    return manifest


def _trusted_cache(cache_dir: Path, dev: str, manifest_id: str, sha256: str) -> Manifest | None:
    try:
        data = (cache_dir / dev / f"{manifest_id}.json").read_bytes()
    except OSError:
        return None
    if hashlib.sha256(data).hexdigest() != sha256:
        return None
    try:
        return _MANIFEST_DECODER.decode(data)
    except msgspec.DecodeError:
        return None


_MANIFEST_DECODER = msgspec.json.Decoder(Manifest)


async def read_tombstones(
    store: Store, keys: RootKeys, dev: str, after: int, upto: int
) -> list[tuple[int, Delete]]:
    """The deletes of device `dev`'s batches with seq in (`after`, `upto`], oldest first."""
    found: list[tuple[int, Delete]] = []
    start = keys.tombstone(dev, after) if after > 0 else None
    async for page in store.list(keys.tombstones_prefix(dev), start_after=start):
        for obj in page.objects:
            try:
                seq = keys.seq_of(obj.key)
            except ValueError:
                continue  # not a batch (a stray file in the folder): skipped, not fatal
            if after < seq <= upto:
                batch = decode_tombstones(await store.get(obj.key), obj.key)
                found.extend((seq, d) for d in batch.deletes)
    return found


async def _read_cache(cache_dir: Path | None, dev: str, name: str) -> bytes | None:
    if cache_dir is None:
        return None
    path = cache_dir / dev / f"{name}.json"
    try:
        return await anyio.Path(path).read_bytes()
    except OSError:
        return None


async def _write_cache(cache_dir: Path | None, dev: str, name: str, data: bytes) -> None:
    if cache_dir is None:
        return

    def write() -> None:
        folder = cache_dir / dev
        folder.mkdir(parents=True, exist_ok=True)
        tmp = folder / f".{name}.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, folder / f"{name}.json")
        if name != "head":  # keep only the latest manifest of each device
            for old in folder.glob("*.json"):
                if old.name not in (f"{name}.json", "head.json"):
                    old.unlink(missing_ok=True)

    await anyio.to_thread.run_sync(write)
