"""A root's history as `versions`, `ls` and `restore` read it: every device's retained
snapshots and tombstones, and what they held at a path (IO: store listing and reads,
through `sync.devicelog` and `sync.trees`).

Looking a path up in many snapshots costs one lookup per distinct folder node on the
way: consecutive snapshots share most of their folders, so the lookups are remembered
by node key and the same folder is never searched twice.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from datetime import datetime

import msgspec

from dropbeard.core.errors import FormatError, IntegrityError, NotFound, UsageError
from dropbeard.core.history import Tombstone, Version, snapshot_at, versions_of
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Snapshot
from dropbeard.core.tree import TreeEntry
from dropbeard.store.base import Store
from dropbeard.sync.devicelog import DeviceFolder, SnapshotReader, list_devices
from dropbeard.sync.heads import Heads, read_heads
from dropbeard.sync.treeread import lookup, walk
from dropbeard.sync.trees import TreeStore


class History(msgspec.Struct):
    """The retained snapshots of every device (or of one), read once; `problems` are the
    heads, snapshots, tombstone batches and trees that could not be read (one line each:
    a snapshot whose tree cannot be read is left out of a path's history)."""

    trees: TreeStore
    reader: SnapshotReader
    folders: dict[str, DeviceFolder]
    heads: Heads
    snapshots: dict[str, dict[str, Snapshot]] = msgspec.field(default_factory=dict)
    problems: list[str] = msgspec.field(default_factory=list)
    _found: dict[tuple[str, str], TreeEntry | None] = msgspec.field(default_factory=dict)

    @property
    def keys(self) -> RootKeys:
        return self.trees.keys

    async def entry(self, root: str, path: str) -> TreeEntry | None:
        """The entry at `path` in tree `root` (the root folder itself for ""), remembering
        every folder searched on the way."""
        if not path:
            return TreeEntry(name="", type="dir", mode=0o755, version={"-": 1}, tree=root)
        key, rest = root, path
        while True:
            name, _, rest = rest.partition("/")
            memo = (key, name)
            if memo not in self._found:
                self._found[memo] = await lookup(self.trees, key, name)
            found = self._found[memo]
            if found is None or not rest:
                return found
            if found.tree is None:
                return None
            key = found.tree

    async def held(
        self, path: str, device: str | None = None
    ) -> dict[str, list[tuple[str, TreeEntry | None]]]:
        """Per device, (snapshot id, the entry at `path`) for each retained snapshot."""
        out: dict[str, list[tuple[str, TreeEntry | None]]] = {}
        for dev, snaps in self.snapshots.items():
            if device is None or dev == device:
                out[dev] = []
                for snap in snaps.values():
                    try:
                        out[dev].append((snap.snapshot, await self.entry(snap.tree, path)))
                    except (NotFound, IntegrityError, FormatError) as exc:
                        self._problem(f"{dev}'s snapshot {snap.snapshot}: {exc}")
        return out

    async def tombstones(self, path: str, device: str | None = None) -> list[Tombstone]:
        """Every retained delete of `path` (or of a folder holding it)."""
        wanted = {d: list(f.tombstones) for d, f in self.folders.items() if device in (None, d)}
        batches = await self.reader.read_batches(wanted)
        self._note_failures()
        inside = f"{path}/"
        return [
            Tombstone(b.device_id, b.seq, b.created_at, d)
            for b in batches
            for d in b.deletes
            if d.path == path or inside.startswith(f"{d.path}/")
        ]

    async def versions(self, path: str, device: str | None = None) -> list[Version]:
        held = await self.held(path, device)
        return versions_of(held, await self.tombstones(path, device))

    def snapshot_at(self, at: datetime, device: str | None = None) -> Snapshot | None:
        """The newest snapshot taken at or before `at` (of `device`, else of any)."""
        best: Snapshot | None = None
        for dev, snaps in self.snapshots.items():
            if device is not None and dev != device:
                continue
            sid = snapshot_at(snaps, at)
            if sid is not None and (best is None or sid > best.snapshot):
                best = snaps[sid]
        return best

    def _note_failures(self) -> None:
        for line in self.reader.failed.values():
            self._problem(line)

    def _problem(self, line: str) -> None:
        if line not in self.problems:
            self.problems.append(line)


async def load_history(
    store: Store,
    keys: RootKeys,
    trees: TreeStore,
    reader: SnapshotReader,
    *,
    device: str | None = None,
) -> History:
    """Every retained snapshot of every device (of `device` only, when given)."""
    folders = await list_devices(store, keys)
    if device is not None and device not in folders:
        known = ", ".join(folders) or "none"
        raise UsageError(f"no device {device!r} has published in this root (devices: {known})")
    chosen = [device] if device is not None else list(folders)
    heads = await read_heads(store, keys, chosen)
    history = History(trees, reader, folders, heads)
    history.problems += heads.failed.values()
    history.snapshots = await reader.read_all({d: list(folders[d].snapshots) for d in chosen})
    history._note_failures()
    return history


async def below(
    history: History, entry: TreeEntry, path: str
) -> AsyncIterator[tuple[str, TreeEntry]]:
    """Every (path, entry) inside the folder `entry` at `path`, in tree order."""
    assert entry.tree is not None
    async for rel, inner in walk(history.trees, entry.tree):
        yield (f"{path}/{rel}" if path else rel), inner
