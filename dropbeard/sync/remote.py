"""Reading the other devices of a root: one listing, one conditional GET per head, and for
a head that moved, the diff of its tree against the one processed last and its tombstones
after the last processed seq (IO: store, tree nodes through `sync.trees.TreeStore`).

An unchanged bucket costs exactly one LIST plus one conditional GET per other device. A
changed head costs the nodes on the paths that changed (SPEC 4 step 3), each verified
against its key. A device whose objects cannot be trusted (malformed, failing their hash,
missing) is skipped and reported (SPEC 4.1): the others are read as usual.
"""

from __future__ import annotations

from collections.abc import Collection
from contextlib import aclosing

import anyio
import msgspec

from dropbeard.core.errors import FormatError, IntegrityError, NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import (
    Delete,
    Entry,
    Head,
    Registry,
    decode_head,
    decode_registry,
    decode_tombstones,
)
from dropbeard.core.problems import Problem, device_problem
from dropbeard.core.treediff import to_entry
from dropbeard.store.base import Store
from dropbeard.sync.state import Peer
from dropbeard.sync.treeread import diff, lookup, walk
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.workers import first_error

#: What makes one device unreadable: its own objects, not the store, are at fault.
UNREADABLE = (FormatError, IntegrityError, NotFound)


class DeviceView(msgspec.Struct):
    """What this pass knows of one other device: its head (`head`, None when it did not
    change since this device processed it), the snapshot and tree it names, and what
    changed since the tree processed last (`changes`: path -> entry now, None if gone;
    every path of the tree when none was processed)."""

    device_id: str
    head_etag: str
    snapshot: str | None
    tree: str | None
    tombstone_seq: int
    head: Head | None = None
    #: tombstones with seq in (processed seq, head.tombstone_seq], oldest first
    tombstones: list[tuple[int, Delete]] = msgspec.field(default_factory=list)
    #: what the tree processed last held at the paths of `tombstones`
    held_before: dict[str, Entry] = msgspec.field(default_factory=dict)
    changes: dict[str, Entry | None] = msgspec.field(default_factory=dict)
    #: `changes` holds every path of `tree` (no tree of it was processed before)
    complete: bool = False
    #: what `changes` was diffed from (None: nothing, every path of `tree` is new)
    since: str | None = None
    #: the diff held more paths than the pass's limit: `changes` is left empty, for the
    #: pass to stream the diff in batches (`dropbeard.sync.catchup`)
    oversized: bool = False

    async def entries_of(self, trees: TreeStore, paths: Collection[str] | None) -> dict[str, Entry]:
        """Its entries at `paths` (every entry when None): those that changed are known,
        the rest are looked up in its tree."""
        if self.tree is None:
            return {}
        if paths is None:
            if self.head is not None and self.complete:
                return {p: e for p, e in self.changes.items() if e is not None}
            return {p: to_entry(p, e) async for p, e in walk(trees, self.tree)}
        found: dict[str, Entry] = {}
        for path in paths:
            if path in self.changes:
                entry = self.changes[path]
            else:
                held = await lookup(trees, self.tree, path)
                entry = None if held is None else to_entry(path, held)
            if entry is not None:
                found[path] = entry
        return found


class RemoteRead(msgspec.Struct):
    devices: dict[str, DeviceView]
    registry: Registry
    registry_etag: str | None
    changed: bool  # any head differed from what we had processed
    #: devices skipped because their objects could not be trusted -> why, in one line
    unreadable: dict[str, str] = msgspec.field(default_factory=dict)

    @property
    def problems(self) -> list[Problem]:
        """One problem per skipped device, naming it."""
        return [
            device_problem(dev, f"skipped device {dev!r}: {why}; nothing from it was applied")
            for dev, why in sorted(self.unreadable.items())
        ]

    def skip(self, dev: str, why: str) -> None:
        """Treat `dev` as unreadable from now on (an object of it failed when read)."""
        self.devices.pop(dev, None)
        self.unreadable[dev] = why


async def read_remotes(
    store: Store,
    keys: RootKeys,
    trees: TreeStore | None,
    *,
    device_id: str,
    peers: dict[str, Peer],
    registry: Registry | None,
    registry_etag: str | None,
    limit: int | None = None,
) -> RemoteRead:
    """Every other active device's latest head, and (given `trees`) what changed in its
    tree and its new tombstones; without `trees`, the heads alone (`status`). A device
    whose tree changed in more than `limit` paths has them left out (`oversized`)."""
    if registry is None:  # to be read whatever the listing says: read it meanwhile
        read_first: list[tuple[Registry, str | None]] = []

        async def read_it() -> None:
            read_first.append(await _read_registry(store, keys))

        with first_error():
            async with anyio.create_task_group() as tg:
                tg.start_soon(read_it)
                listed, _ = await _listed(store, keys, device_id)
        registry, registry_etag = read_first[0]
    else:
        listed, etag_now = await _listed(store, keys, device_id)
        if etag_now != registry_etag:
            registry, registry_etag = await _read_registry(store, keys)
    retired = {d for d, rec in registry.devices.items() if rec.status == "retired"}
    read = RemoteRead({}, registry, registry_etag, changed=False)
    diffs = _Diffs()
    async with anyio.create_task_group() as tg:
        for dev in sorted(set(listed) - retired):

            async def one(dev: str = dev) -> None:
                try:
                    view, was_changed = await _read_device(
                        store, keys, trees, dev, peers.get(dev), limit, diffs
                    )
                except UNREADABLE as exc:
                    read.unreadable[dev] = str(exc)
                    return
                if view is not None:
                    read.devices[dev] = view
                read.changed = read.changed or was_changed

            tg.start_soon(one)
    return read


async def _listed(store: Store, keys: RootKeys, device_id: str) -> tuple[list[str], str | None]:
    """The other devices with a folder in the bucket, and the registry's etag as listed."""
    listed: list[str] = []
    registry_etag: str | None = None
    async for page in store.list(keys.devices_prefix, delimiter="/"):
        for obj in page.objects:
            if obj.key == keys.registry:
                registry_etag = obj.etag
        for prefix in page.prefixes:
            try:
                dev = keys.device_of(prefix)
            except ValueError:
                continue  # not a device folder dropbeard wrote; ignore it
            if dev and dev != device_id:
                listed.append(dev)
    return listed, registry_etag


async def _read_registry(store: Store, keys: RootKeys) -> tuple[Registry, str | None]:
    return await read_registry(store, keys, None, None)


async def read_registry(
    store: Store, keys: RootKeys, known: Registry | None, etag: str | None
) -> tuple[Registry, str | None]:
    """The root's registry and its etag: `known` again if its `etag` is still current (a
    conditional GET), an empty one if there is none."""
    try:
        got = await store.get_if_changed(keys.registry, etag if known is not None else None)
    except NotFound:
        return Registry(devices={}), None
    if got is None:
        assert known is not None
        return known, etag
    return decode_registry(got[0], keys.registry), got[1]


async def _read_device(
    store: Store,
    keys: RootKeys,
    trees: TreeStore | None,
    dev: str,
    peer: Peer | None,
    limit: int | None,
    diffs: _Diffs,
) -> tuple[DeviceView | None, bool]:
    head_key = keys.head(dev)
    known_etag = peer.head_etag if peer else None
    try:
        got = await store.get_if_changed(head_key, known_etag)
    except NotFound:
        return None, False  # registered but never published
    if got is None:
        assert peer is not None and known_etag is not None
        return DeviceView(dev, known_etag, peer.snapshot, peer.tree, peer.tombstone_seq), False
    data, etag = got
    head = decode_head(data, head_key)
    if head.device_id != dev:
        raise IntegrityError(f"reading {head_key}: it claims device {head.device_id!r}", head_key)
    view = DeviceView(dev, etag, head.snapshot, head.tree, head.tombstone_seq, head)
    if trees is None:
        return view, True
    after = peer.tombstone_seq if peer else 0
    if head.tombstone_seq > after:
        view.tombstones = await read_tombstones(store, keys, dev, after, head.tombstone_seq)
    await _read_changes(trees, view, peer.tree if peer else None, limit, diffs)
    return view, True


class _Diffs:
    """The diffs of one `read_remotes`, shared by devices that need the same one: the
    same trees (from, to), the same deleted paths and limit. Devices in sync publish the
    same tree, so a new device joining a root of several reads and diffs it once."""

    def __init__(self) -> None:
        self._done: dict[_DiffKey, DeviceView] = {}
        self._running: dict[_DiffKey, anyio.Event] = {}

    async def into(
        self,
        trees: TreeStore,
        view: DeviceView,
        processed: str | None,
        gone: set[str],
        limit: int | None,
    ) -> None:
        """`_diff_into(trees, view, ...)`, or a copy of the same diff made for another
        device (a failed one is not shared: each device tries, and fails, on its own)."""
        key = (processed, view.tree, frozenset(gone), limit)
        while (running := self._running.get(key)) is not None:
            await running.wait()
        done = self._done.get(key)
        if done is not None:
            view.since, view.complete, view.oversized = done.since, done.complete, done.oversized
            view.changes, view.held_before = dict(done.changes), dict(done.held_before)
            return
        self._running[key] = anyio.Event()
        try:
            await _diff_into(trees, view, processed, gone, limit)
            self._done[key] = view
        finally:
            self._running.pop(key).set()


_DiffKey = tuple[str | None, str | None, frozenset[str], int | None]


async def _read_changes(
    trees: TreeStore,
    view: DeviceView,
    processed: str | None,
    limit: int | None,
    diffs: _Diffs,
) -> None:
    """Fill in what changed in `view`'s tree since the tree `processed` (and what that one
    held at the paths its tombstones delete). If the processed tree cannot be read any
    more (gone from the bucket and the cache), every path of the new one counts as
    changed; if the new one cannot be read, the device is unreadable. More than `limit`
    changes: none is kept, the view is `oversized`."""
    gone = {d.path for _, d in view.tombstones}
    try:
        await diffs.into(trees, view, processed, gone, limit)
    except UNREADABLE:
        if processed is None:
            raise
        view.changes, view.held_before = {}, {}
        await _diff_into(trees, view, None, gone, limit)
        return
    if processed is not None:
        for path in sorted(gone - view.held_before.keys()):
            held = await lookup(trees, processed, path)
            if held is not None:
                view.held_before[path] = to_entry(path, held)


async def _diff_into(
    trees: TreeStore, view: DeviceView, processed: str | None, gone: set[str], limit: int | None
) -> None:
    view.since = processed
    async with aclosing(diff(trees, processed, view.tree)) as differences:
        async for path, old, new in differences:
            if limit is not None and len(view.changes) >= limit:
                view.changes, view.oversized = {}, True
                break
            view.changes[path] = None if new is None else to_entry(path, new)
            if old is not None and path in gone:
                view.held_before[path] = to_entry(path, old)
    view.complete = processed is None and not view.oversized


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
