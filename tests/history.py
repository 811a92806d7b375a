"""Test support for history, verify and gc: a format-2 bucket written by tests/format2.py's
independent writer, device by device and snapshot by snapshot, with heads carrying
`seen` marks and tombstone batches, and objects aged by hand (IO: the store, and file
times of a local store)."""

from __future__ import annotations

import json
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TypeVar

import pytest

from dropbeard.core.keys import RootKeys
from dropbeard.core.timestamps import parse_snapshot_id, utc_iso
from dropbeard.store.base import Store
from dropbeard.store.counting import CountingStore
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.registry import register, retire, update_registry
from dropbeard.sync.trees import TreeStore
from tests.format2 import File, Folder, Link, Writer, canonical, sha256

__all__ = ["File", "Folder", "Link", "World", "local_world", "world"]

KEYS = RootKeys("r1")
T = TypeVar("T")


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def world(request: pytest.FixtureRequest, tmp_path: Path) -> World:
    """A fresh bucket, counted: a local directory, then a SeaweedFS prefix."""
    if request.param == "s3":
        return World(CountingStore(request.getfixturevalue("s3_store")), tmp_path)
    (tmp_path / "bucket").mkdir()
    return World(CountingStore(LocalStore(tmp_path / "bucket")), tmp_path)


class StableWriter(Writer):
    """tests/format2.py's writer, but an entry keeps its version while its name and
    content stay the same (as a real device's do), so unchanged folders keep their
    nodes from one snapshot to the next."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.versions: dict[tuple[str, str], dict[str, int]] = {}
        self._naming: tuple[str, str] = ("", "")

    def entry(self, name: str, item: File | Link | Folder) -> dict:  # type: ignore[type-arg]
        if isinstance(item, File):
            self._naming = (name, f"{sha256(item.data)}:{item.mode}:{item.mtime_ns}")
        else:
            self._naming = (name, type(item).__name__ + getattr(item, "target", ""))
        return super().entry(name, item)

    def version(self) -> dict[str, int]:
        if self._naming not in self.versions:
            self.versions[self._naming] = super().version()
        return self.versions[self._naming]


@pytest.fixture
def local_world(tmp_path: Path) -> World:
    """A fresh local-directory bucket (tests that age objects by their file times)."""
    (tmp_path / "bucket").mkdir()
    return World(CountingStore(LocalStore(tmp_path / "bucket")), tmp_path)


def at(snapshot: str) -> str:
    return utc_iso(parse_snapshot_id(snapshot))


@dataclass
class World:
    """Devices publishing format-2 snapshots into one bucket."""

    store: CountingStore
    tmp: Path
    writers: dict[str, Writer] = field(default_factory=dict)
    pending: list[tuple[str, bytes]] = field(default_factory=list)
    seqs: dict[str, int] = field(default_factory=dict)

    @property
    def keys(self) -> RootKeys:
        return KEYS

    def trees(self) -> TreeStore:
        """A reader with nothing cached."""
        return TreeStore(self.store, KEYS)

    def writer(self, device: str) -> Writer:
        if device not in self.writers:

            def put(key: str, data: bytes) -> None:
                if not key.endswith("/registry.json"):  # the registry: through dropbeard
                    self.pending.append((key, data))

            self.writers[device] = StableWriter(put, root_id=KEYS.root_id, device_id=device)
        return self.writers[device]

    async def flush(self) -> None:
        for key, data in self.pending:
            await self.store.inner.put(key, data)
        self.pending.clear()

    async def register(self, device: str, mode: str = "bidirectional") -> None:
        now = "2026-01-01T00:00:00Z"
        await update_registry(self.store, KEYS, register(device, mode, now, take_over=True))

    async def retire(self, device: str, when: str) -> None:
        await update_registry(self.store, KEYS, retire(device, when))

    async def publish(
        self,
        device: str,
        folder: Folder,
        snapshot: str,
        *,
        seen: dict[str, tuple[str | None, int]] | None = None,
        deletes: list[dict[str, object]] | None = None,
    ) -> str:
        """One publish of `folder` by `device` (its tombstone batch first, when it deletes
        anything); the root tree's digest."""
        writer = self.writer(device)
        if deletes:
            self.seqs[device] = self.seqs.get(device, 0) + 1
            await self.tombstones(device, self.seqs[device], snapshot, deletes)
        tree = writer.publish(folder, snapshot)
        await self.flush()
        await self.head(device, snapshot, tree, seen=seen)
        return tree

    async def head(
        self,
        device: str,
        snapshot: str | None,
        tree: str | None,
        *,
        seen: dict[str, tuple[str | None, int]] | None = None,
        published: str | None = None,
    ) -> None:
        marks = {d: {"snapshot": s, "tombstone_seq": q} for d, (s, q) in (seen or {}).items()}
        when = published or (at(snapshot) if snapshot else "2026-01-01T00:00:00Z")
        head = {"format": 2, "device_id": device, "snapshot": snapshot, "tree": tree,
                "published_at": when, "tombstone_seq": self.seqs.get(device, 0),
                "seen": marks}  # fmt: skip
        await self.store.inner.put(KEYS.head(device), canonical(head))

    async def tombstones(
        self, device: str, seq: int, snapshot: str, deletes: list[dict[str, object]]
    ) -> None:
        batch = {"format": 2, "device_id": device, "seq": seq, "created_at": at(snapshot),
                 "deletes": deletes}  # fmt: skip
        await self.store.inner.put(KEYS.tombstone(device, seq), canonical(batch))

    async def keys_under(self, prefix: str) -> list[str]:
        found = []
        async for page in self.store.inner.list(prefix):
            found += [o.key for o in page.objects]
        return found

    def age(self, key: str, when: datetime) -> None:
        """Set a local store object's LastModified (tests of the grace period)."""
        assert isinstance(self.store.inner, LocalStore)
        stamp = when.timestamp()
        os.utime(self.store.inner.root / key, (stamp, stamp))


def blob_key(data: bytes) -> str:
    return KEYS.blob(sha256(data))


def delete_of(path: str, data: bytes, version: dict[str, int]) -> dict[str, object]:
    return {"path": path, "type": "file", "sha256": sha256(data), "version": version}


def when(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def dumps(obj: object) -> bytes:
    return json.dumps(obj).encode()


async def set_policy(world: World, grace: str = "1h", **rules: str) -> None:
    """Write the retention policy into the registry (rules absent keep none: `0`)."""
    import msgspec

    from dropbeard.core.model import Registry

    def change(registry: Registry) -> Registry:
        fields = {r: rules.get(r, "0") for r in ("all", "hourly", "daily", "weekly")}
        return msgspec.structs.replace(registry, retention=fields, grace=grace)

    await update_registry(world.store, KEYS, change)


class Hooked(ForwardingStore):
    """Runs a test's coroutine once, just before the first request `op` on a key (or
    listing prefix) starting with `prefix`: something another device does at that
    moment."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.hooks: list[tuple[str, str, Callable[[], Awaitable[None]]]] = []

    def before(self, op: str, prefix: str, fn: Callable[[], Awaitable[None]]) -> None:
        self.hooks.append((op, prefix, fn))

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        for hook in list(self.hooks):
            if hook[0] == op and key.startswith(hook[1]):
                self.hooks.remove(hook)
                await hook[2]()
        return await call()
