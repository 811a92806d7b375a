"""Reading the other devices (dropbeard.sync.remote), directly against a LocalStore remote
written by `publish`: heads, manifests, tombstones and the registry; what an unchanged
bucket costs (CountingStore); how untrustworthy objects are refused."""

from __future__ import annotations

import hashlib
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dropbeard.core.keys import RootKeys
from dropbeard.core.model import (
    Delete,
    DeviceRecord,
    Entry,
    Head,
    Registry,
    TombstoneBatch,
    decode_head,
    encode,
)
from dropbeard.core.timestamps import utc_iso
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.publish import LastIds, manifest_bytes, publish
from dropbeard.sync.remote import RemoteRead, read_remotes
from dropbeard.sync.state import Peer

pytestmark = pytest.mark.anyio

ROOT = "r1"
KEYS = RootKeys(ROOT)
ME = "a"
T0 = datetime(2026, 5, 22, 18, 5, 0, tzinfo=UTC)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(dev: str, path: str, data: bytes, counter: int = 1) -> Entry:
    return Entry(
        path=path,
        type="file",
        mode=0o644,
        version={dev: counter},
        size=len(data),
        mtime_ns=1_700_000_000_000_000_000,
        sha256=sha(data),
    )


@dataclass
class Device:
    """Another device's publishing history, as `publish` leaves it in the bucket."""

    name: str
    manifest_id: str | None = None
    seq: int = 0
    clock: datetime = T0


@dataclass
class World:
    store: CountingStore
    cache: Path
    devices: dict[str, Device] = field(default_factory=dict)
    #: what this device committed after its last read (as the engine's _commit does)
    peers: dict[str, Peer] = field(default_factory=dict)
    registry: Registry | None = None
    registry_etag: str | None = None

    async def publish(
        self, dev: str, entries: Sequence[Entry], tombstones: Sequence[Delete] = ()
    ) -> str:
        d = self.devices.setdefault(dev, Device(dev))
        d.clock += timedelta(seconds=10)
        published = await publish(
            self.store.inner,
            KEYS,
            root_id=ROOT,
            device_id=dev,
            entries=entries,
            tombstones=tombstones,
            last=LastIds(tombstone_seq=d.seq, manifest_id=d.manifest_id),
            seen={},
            now=d.clock,
        )
        d.manifest_id, d.seq = published.manifest_id, published.tombstone_seq
        return published.manifest_id

    async def register(self, **status: str) -> None:
        records = {d: DeviceRecord(status=s) for d, s in status.items()}  # type: ignore[arg-type]
        await self.store.inner.put(KEYS.registry, encode(Registry(devices=records)))

    async def read(self, *, commit: bool = True, use_cache: bool = True) -> RemoteRead:
        """One read as the engine does it; with `commit`, remember what was read."""
        self.store.reset()
        read = await read_remotes(
            self.store,
            KEYS,
            device_id=ME,
            peers=self.peers,
            registry=self.registry,
            registry_etag=self.registry_etag,
            cache_dir=self.cache,
            use_cache=use_cache,
        )
        if commit:
            self.registry, self.registry_etag = read.registry, read.registry_etag
            for dev, view in read.devices.items():
                self.peers[dev] = Peer(
                    dev,
                    view.head_etag,
                    view.head.manifest,
                    view.head.manifest_sha256,
                    view.head.tombstone_seq,
                )
        return read

    async def unreadable(self, dev: str) -> str:
        """Why a read skipped `dev` (it must have, and read no other device's objects
        wrongly for it)."""
        read = await self.read(commit=False)
        assert dev not in read.devices, read.devices
        return read.unreadable[dev]

    async def overwrite_head(self, dev: str, **changes: object) -> None:
        key = KEYS.head(dev)
        head = decode_head(await self.store.inner.get(key), key)
        fields = {
            "device_id": head.device_id,
            "manifest": head.manifest,
            "manifest_sha256": head.manifest_sha256,
            "published_at": head.published_at,
            "tombstone_seq": head.tombstone_seq,
            **changes,
        }
        await self.store.inner.put(key, encode(Head(**fields)))  # type: ignore[arg-type]


@pytest.fixture
def world(tmp_path: Path) -> World:
    (tmp_path / "remote").mkdir()
    return World(CountingStore(LocalStore(tmp_path / "remote")), tmp_path / "cache")


def encode_batch(dev: str, seq: int, deletes: list[Delete]) -> bytes:
    return encode(TombstoneBatch(device_id=dev, seq=seq, created_at=utc_iso(T0), deletes=deletes))


def paths_of(read: RemoteRead, dev: str) -> dict[str, str | None]:
    return {e.path: e.sha256 for e in read.devices[dev].manifest.entries}


async def test_every_other_device_is_read_and_never_this_one(world: World) -> None:
    await world.publish(ME, [file_entry(ME, "mine.txt", b"mine")])
    b_id = await world.publish("b", [file_entry("b", "from-b.txt", b"bee")])
    await world.publish("c", [file_entry("c", "from-c.txt", b"sea")])

    read = await world.read()

    assert sorted(read.devices) == ["b", "c"]
    assert paths_of(read, "b") == {"from-b.txt": sha(b"bee")}
    assert paths_of(read, "c") == {"from-c.txt": sha(b"sea")}
    view = read.devices["b"]
    assert (view.head.device_id, view.head.manifest, view.manifest.device_id) == ("b", b_id, "b")
    assert view.head_etag == (await world.store.inner.head(KEYS.head("b"))).etag
    assert read.changed is True
    assert read.registry == Registry(devices={}) and read.registry_etag is None


async def test_an_unchanged_bucket_costs_a_listing_and_a_conditional_get_per_device(
    world: World,
) -> None:
    await world.register(b="active", c="active")
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.publish("c", [file_entry("c", "c.txt", b"sea")])
    first = await world.read()
    assert world.store.counts == {"list_page": 1, "get_if_changed": 3, "get": 2}

    again = await world.read()

    # No registry read, no manifest download: one listing, one conditional GET per head.
    assert world.store.counts == {"list_page": 1, "get_if_changed": 2}
    assert again.changed is False
    assert {d: v.manifest for d, v in again.devices.items()} == {
        d: v.manifest for d, v in first.devices.items()
    }
    assert all(v.tombstones == [] for v in again.devices.values())


async def test_a_new_publish_costs_one_manifest_download(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.publish("c", [file_entry("c", "c.txt", b"sea")])
    await world.read()
    new_id = await world.publish("b", [file_entry("b", "b.txt", b"bee, edited", counter=2)])

    read = await world.read()

    assert read.changed is True
    assert read.devices["b"].head.manifest == new_id
    assert paths_of(read, "b") == {"b.txt": sha(b"bee, edited")}
    assert world.store.counts == {"list_page": 1, "get_if_changed": 2, "get": 1}
    # Only the latest manifest of each device stays cached.
    assert sorted(p.name for p in (world.cache / "b").iterdir()) == [
        f"{new_id}.json",
        "head.json",
    ]


async def test_a_moved_head_says_which_paths_changed_since_the_one_processed(
    world: World,
) -> None:
    """What a pass reconciles of another device: the paths whose entry its new manifest
    changed against the one this device processed last (read from the cache: no extra
    request), and every path when it never processed one."""
    kept, edited = file_entry("b", "kept.txt", b"k"), file_entry("b", "edited.txt", b"1")
    gone = file_entry("b", "gone.txt", b"g")
    await world.publish("b", [kept, edited, gone])
    first = await world.read()
    assert first.devices["b"].changed is None
    assert first.devices["b"].changed_paths() == {"kept.txt", "edited.txt", "gone.txt"}
    added = file_entry("b", "added.txt", b"a")
    await world.publish("b", [kept, file_entry("b", "edited.txt", b"2", counter=2), added])

    read = await world.read()

    assert read.devices["b"].changed == {"edited.txt", "gone.txt", "added.txt"}
    assert world.store.counts == {"list_page": 1, "get_if_changed": 1, "get": 1}
    again = await world.read()
    assert again.devices["b"].changed == set()  # unchanged head: nothing to reconcile


async def test_the_registry_is_read_again_only_when_it_changed(world: World) -> None:
    await world.register(b="active", c="active")
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.publish("c", [file_entry("c", "c.txt", b"sea")])
    first = await world.read()
    assert sorted(first.devices) == ["b", "c"]
    assert first.registry_etag == (await world.store.inner.head(KEYS.registry)).etag

    await world.register(b="active", c="retired")
    read = await world.read()

    assert sorted(read.devices) == ["b"]  # a retired device is no longer synced from
    assert read.registry.devices["c"].status == "retired"
    assert world.store.counts["get_if_changed"] == 2  # the registry, then b's head


async def test_a_lost_cache_means_a_fresh_read_not_a_wrong_one(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.read()
    shutil.rmtree(world.cache)

    read = await world.read()

    assert paths_of(read, "b") == {"b.txt": sha(b"bee")}
    assert world.store.counts["get"] == 1  # the manifest, downloaded again
    assert (world.cache / "b" / "head.json").exists()


async def test_a_tampered_cached_manifest_is_not_trusted(world: World) -> None:
    manifest_id = await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.read()
    cached = world.cache / "b" / f"{manifest_id}.json"
    cached.write_bytes(manifest_bytes(ROOT, "b", [file_entry("b", "evil.txt", b"evil")], T0))

    read = await world.read()

    assert paths_of(read, "b") == {"b.txt": sha(b"bee")}
    assert world.store.counts["get"] == 1
    assert sha(cached.read_bytes()) == read.devices["b"].head.manifest_sha256


async def test_without_the_cache_every_manifest_is_downloaded(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])

    for _ in range(2):
        read = await world.read(commit=False, use_cache=False)
        assert paths_of(read, "b") == {"b.txt": sha(b"bee")}
        assert world.store.counts == {"list_page": 1, "get_if_changed": 2, "get": 1}
    assert not world.cache.exists()


async def test_tombstones_are_read_from_the_last_processed_seq_to_the_head(world: World) -> None:
    def gone(path: str, counter: int) -> Delete:
        return Delete(path=path, type="file", version={"b": counter}, sha256=sha(path.encode()))

    await world.publish("b", [], [gone("one", 1)])
    first = await world.read()
    assert first.devices["b"].tombstones == [(1, gone("one", 1))]

    await world.publish("b", [], [gone("two", 2)])
    await world.publish("b", [], [gone("three", 3), gone("four", 4)])
    # A batch of a publish that crashed before its head: beyond the head, never read.
    await world.store.inner.put(
        KEYS.tombstone("b", 4),
        encode_batch("b", 4, [gone("orphan", 9)]),
    )

    read = await world.read()

    assert read.devices["b"].head.tombstone_seq == 3
    assert read.devices["b"].tombstones == [
        (2, gone("two", 2)),
        (3, gone("three", 3)),
        (3, gone("four", 4)),
    ]


async def test_deletes_come_with_what_their_device_held_there_before(world: World) -> None:
    old, kept = file_entry("b", "x.txt", b"v1"), file_entry("b", "kept.txt", b"k")
    await world.publish("b", [old, kept])
    await world.read()
    await world.publish("b", [file_entry("b", "x.txt", b"v2", 2), kept])  # unseen here
    gone = Delete(path="x.txt", type="file", version={"b": 3}, sha256=sha(b"v2"))
    await world.publish("b", [kept], [gone])

    read = await world.read()

    assert read.devices["b"].tombstones == [(1, gone)]
    assert read.devices["b"].held_before == {"x.txt": old}  # what b was last seen holding
    assert (await world.read()).devices["b"].held_before == {}  # nothing new deleted


async def test_devices_without_a_head_and_foreign_folders_are_skipped(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    # A device that registered but never published, and things dropbeard never wrote.
    await world.store.inner.put(KEYS.manifests_prefix("new") + "20260101T000000Z.json", b"{}")
    await world.store.inner.put(KEYS.devices_prefix + "Not A Device/head.json", b"junk")
    await world.store.inner.put(KEYS.devices_prefix + "stray.txt", b"junk")

    read = await world.read()

    assert sorted(read.devices) == ["b"]


# --- untrustworthy objects: the device is skipped, the others are read ----------------


async def test_a_malformed_manifest_is_rejected_naming_its_key(world: World) -> None:
    manifest_id = await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    key = KEYS.manifest("b", manifest_id)
    garbage = b'{"format": 1, "root_id": "r1", "device_id": "b", "entries": "nope"}'
    await world.store.inner.put(key, garbage)
    await world.overwrite_head("b", manifest_sha256=sha(garbage))

    why = await world.unreadable("b")

    assert why.startswith(f"invalid manifest {key}: ")
    assert len(why.splitlines()) == 1
    assert not (world.cache / "b" / f"{manifest_id}.json").exists()  # never cached


async def test_a_manifest_not_matching_its_heads_sha256_is_rejected(world: World) -> None:
    manifest_id = await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    key = KEYS.manifest("b", manifest_id)
    other = manifest_bytes(ROOT, "b", [file_entry("b", "swapped.txt", b"x")], T0)
    await world.store.inner.put(key, other)

    why = await world.unreadable("b")

    assert why.startswith(f"reading {key}: its SHA-256 {sha(other)} does not match the head's")


async def test_a_manifest_missing_from_the_bucket_is_rejected(world: World) -> None:
    manifest_id = await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    key = KEYS.manifest("b", manifest_id)
    await world.store.inner.delete(key)

    assert await world.unreadable("b") == f"reading {key}: its head names it, but it is missing"


@pytest.mark.parametrize("liar", ["head", "manifest"])
async def test_objects_claiming_another_device_are_rejected(world: World, liar: str) -> None:
    manifest_id = await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    if liar == "head":
        await world.overwrite_head("b", device_id="c")
        key = KEYS.head("b")
    else:
        key = KEYS.manifest("b", manifest_id)
        forged = manifest_bytes(ROOT, "c", [], T0)
        await world.store.inner.put(key, forged)
        await world.overwrite_head("b", manifest_sha256=sha(forged))

    assert await world.unreadable("b") == f"reading {key}: it claims device 'c'"


async def test_a_malformed_head_is_rejected_naming_its_key(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.store.inner.put(KEYS.head("b"), b'{"format": 1, "device_id": "b"}')

    assert (await world.unreadable("b")).startswith(f"invalid head {KEYS.head('b')}: ")


async def test_a_head_nested_too_deeply_is_one_line(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    nested = b'{"format": 1, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    await world.store.inner.put(KEYS.head("b"), nested)

    why = await world.unreadable("b")

    assert why == f"invalid head {KEYS.head('b')}: JSON nested too deeply"


async def test_a_malformed_tombstone_batch_is_rejected(world: World) -> None:
    gone = Delete(path="old.txt", type="file", version={"b": 1}, sha256=sha(b"old"))
    await world.publish("b", [], [gone])
    key = KEYS.tombstone("b", 1)
    await world.store.inner.put(key, b'{"format": 1, "deletes": 42}')

    assert (await world.unreadable("b")).startswith(f"invalid tombstones {key}: ")


async def test_one_unreadable_device_does_not_stop_the_others(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.publish("c", [file_entry("c", "c.txt", b"sea")])
    await world.publish("d", [file_entry("d", "d.txt", b"dee")])
    await world.store.inner.put(KEYS.head("c"), b"{not json")

    read = await world.read()

    assert sorted(read.devices) == ["b", "d"]
    assert paths_of(read, "d") == {"d.txt": sha(b"dee")}
    assert list(read.unreadable) == ["c"]
    [problem] = read.problems
    assert (problem.path, problem.kind) == ("devices/c/", "integrity")
    assert problem.message.startswith(f"skipped device 'c': invalid head {KEYS.head('c')}: ")
    assert "c" not in world.peers  # not recorded as processed: read again next time

    # repaired: read again in full
    await world.publish("c", [file_entry("c", "c2.txt", b"sea 2")])
    again = await world.read()
    assert sorted(again.devices) == ["b", "c", "d"] and again.unreadable == {}
    assert paths_of(again, "c") == {"c2.txt": sha(b"sea 2")}
