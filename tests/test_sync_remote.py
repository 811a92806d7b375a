"""Reading the other devices (dropbeard.sync.remote), directly against a LocalStore remote
written by `publish` and `treewrite`: heads, what changed in their trees, tombstones and the
registry; what an unchanged bucket and a changed head cost (CountingStore); how
untrustworthy objects are refused."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
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
from dropbeard.core.treediff import to_tree_entry, tree_order
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync import remote as remote_module
from dropbeard.sync.publish import LastIds, Listing, publish
from dropbeard.sync.remote import RemoteRead, read_remotes
from dropbeard.sync.state import Peer
from dropbeard.sync.treecache import NodeCache
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.treewrite import build
from tests.timedstore import Timed

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


def dir_entry(dev: str, path: str, counter: int = 1) -> Entry:
    return Entry(path=path, type="dir", mode=0o755, version={dev: counter})


@dataclass
class Device:
    """Another device's publishing history, as `publish` leaves it in the bucket."""

    name: str
    snapshot: str | None = None
    tree: str | None = None
    seq: int = 0
    clock: datetime = T0


@dataclass
class World:
    store: CountingStore
    cache: Path
    devices: dict[str, Device] = field(default_factory=dict)
    #: what this device committed after its last read (as the engine's commit does)
    peers: dict[str, Peer] = field(default_factory=dict)
    registry: Registry | None = None
    registry_etag: str | None = None

    async def publish(
        self, dev: str, entries: Sequence[Entry], tombstones: Sequence[Delete] = ()
    ) -> str:
        """Publish `entries` (the device's whole listing) as a new snapshot of `dev`."""
        d = self.devices.setdefault(dev, Device(dev))
        d.clock += timedelta(seconds=10)
        ordered = sorted(entries, key=lambda e: tree_order(e.path))
        writer = TreeStore(self.store.inner, KEYS)
        tree = await build(writer, [(e.path, to_tree_entry(e)) for e in ordered])
        published = await publish(
            self.store.inner,
            KEYS,
            device_id=dev,
            listing=Listing(tree, len(entries), 0),
            tombstones=tombstones,
            last=LastIds(tombstone_seq=d.seq, snapshot=d.snapshot),
            seen={},
            now=d.clock,
        )
        d.snapshot, d.seq, d.tree = published.snapshot, published.tombstone_seq, tree
        return published.snapshot

    async def register(self, **status: str) -> None:
        records = {d: DeviceRecord(status=s) for d, s in status.items()}  # type: ignore[arg-type]
        await self.store.inner.put(KEYS.registry, encode(Registry(devices=records)))

    def trees(self) -> TreeStore:
        """This device's view of the tree nodes: through the counting store, and the node
        cache under `cache` (kept between reads, as `.dropbear/trees/` is)."""
        return TreeStore(self.store, KEYS, NodeCache(self.cache))

    async def read(self, *, commit: bool = True) -> RemoteRead:
        """One read as the engine does it; with `commit`, remember what was read."""
        self.store.reset()
        read = await read_remotes(
            self.store,
            KEYS,
            self.trees(),
            device_id=ME,
            peers=self.peers,
            registry=self.registry,
            registry_etag=self.registry_etag,
        )
        if commit:
            self.registry, self.registry_etag = read.registry, read.registry_etag
            for dev, view in read.devices.items():
                self.peers[dev] = Peer(
                    dev, view.head_etag, view.snapshot, view.tree, view.tombstone_seq
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
        await self.store.inner.put(key, encode(msgspec.structs.replace(head, **changes)))

    async def node_keys(self, dev: str) -> list[str]:
        """The keys of every node of `dev`'s current tree (its root first)."""
        tree = self.devices[dev].tree
        assert tree is not None
        found, todo = [], [tree]
        while todo:
            key = todo.pop(0)
            found.append(key)
            node = json.loads(await self.store.inner.get(KEYS.tree(key)))
            todo += [p["tree"] for p in node.get("pages", [])]
            todo += [e["tree"] for e in node.get("entries", []) if e["type"] == "dir"]
        return found


@pytest.fixture
def world(tmp_path: Path) -> World:
    (tmp_path / "remote").mkdir()
    return World(CountingStore(LocalStore(tmp_path / "remote")), tmp_path / "cache")


def encode_batch(dev: str, seq: int, deletes: list[Delete]) -> bytes:
    return encode(TombstoneBatch(device_id=dev, seq=seq, created_at=utc_iso(T0), deletes=deletes))


def paths_of(read: RemoteRead, dev: str) -> dict[str, str | None]:
    """What a first read of `dev` found: every path of its tree, and its blob."""
    view = read.devices[dev]
    assert view.complete
    return {p: e.sha256 for p, e in view.changes.items() if e is not None}


async def test_every_other_device_is_read_and_never_this_one(world: World) -> None:
    await world.publish(ME, [file_entry(ME, "mine.txt", b"mine")])
    b_id = await world.publish("b", [file_entry("b", "from-b.txt", b"bee")])
    await world.publish("c", [file_entry("c", "from-c.txt", b"sea")])

    read = await world.read()

    assert sorted(read.devices) == ["b", "c"]
    assert paths_of(read, "b") == {"from-b.txt": sha(b"bee")}
    assert paths_of(read, "c") == {"from-c.txt": sha(b"sea")}
    view = read.devices["b"]
    assert view.head is not None
    assert (view.head.device_id, view.snapshot, view.tree) == ("b", b_id, world.devices["b"].tree)
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
    # the registry and two heads; each tree is one node
    assert world.store.counts == {"list_page": 1, "get_if_changed": 3, "get": 2}

    again = await world.read()

    # No registry read, no tree read: one listing, one conditional GET per head.
    assert world.store.counts == {"list_page": 1, "get_if_changed": 2}
    assert again.changed is False
    assert {d: (v.snapshot, v.tree) for d, v in again.devices.items()} == {
        d: (v.snapshot, v.tree) for d, v in first.devices.items()
    }
    assert all(v.tombstones == [] and v.changes == {} for v in again.devices.values())


async def test_a_moved_head_costs_the_nodes_on_the_changed_paths(world: World) -> None:
    """SPEC 4 step 3: only nodes whose key changed are read, and a node read once comes
    from the cache after."""
    listing = [dir_entry("b", f"d{i}") for i in range(20)]
    listing += [
        file_entry("b", f"d{i}/f{j}.txt", b"%d %d" % (i, j)) for i in range(20) for j in (1, 2)
    ]
    await world.publish("b", listing)
    await world.read()
    assert world.store.counts["get"] == 21  # every node once: the root and 20 folders
    edited = file_entry("b", "d7/f1.txt", b"edited", counter=2)
    await world.publish("b", [e if e.path != edited.path else edited for e in listing])

    read = await world.read()

    assert read.devices["b"].changes == {"d7/f1.txt": edited}
    assert world.store.counts == {"list_page": 1, "get_if_changed": 1, "get": 2}  # root, d7


async def test_a_moved_head_says_which_paths_changed_since_the_one_processed(
    world: World,
) -> None:
    """What a pass reconciles of another device: the paths whose entry its new tree
    changed against the one this device processed last, and every path when it never
    processed one."""
    kept, edited = file_entry("b", "kept.txt", b"k"), file_entry("b", "edited.txt", b"1")
    gone = file_entry("b", "gone.txt", b"g")
    await world.publish("b", [kept, edited, gone])
    first = await world.read()
    assert first.devices["b"].complete
    assert set(first.devices["b"].changes) == {"kept.txt", "edited.txt", "gone.txt"}
    added = file_entry("b", "added.txt", b"a")
    now = file_entry("b", "edited.txt", b"2", counter=2)
    await world.publish("b", [kept, now, added])

    read = await world.read()

    view = read.devices["b"]
    assert view.changes == {"edited.txt": now, "gone.txt": None, "added.txt": added}
    assert not view.complete
    again = await world.read()
    assert again.devices["b"].changes == {}  # unchanged head: nothing to reconcile


async def test_the_entries_of_paths_are_looked_up_in_the_tree(world: World) -> None:
    """Reconcile asks for the other devices' entries of the paths it decides: those that
    changed are known, the others are looked up by path."""
    a, b = file_entry("b", "x/a.txt", b"a"), file_entry("b", "x/b.txt", b"b")
    await world.publish("b", [dir_entry("b", "x"), a, b])
    await world.read()
    b2 = file_entry("b", "x/b.txt", b"b2", 2)
    await world.publish("b", [dir_entry("b", "x"), a, b2])
    view = (await world.read()).devices["b"]

    found = await view.entries_of(world.trees(), ["x/a.txt", "x/b.txt", "x/none.txt", "y"])

    assert found == {"x/a.txt": a, "x/b.txt": b2}
    every = await view.entries_of(world.trees(), None)
    assert every == {"x": dir_entry("b", "x"), "x/a.txt": a, "x/b.txt": b2}


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


async def test_a_registry_not_known_yet_is_read_while_the_devices_are_listed(
    world: World,
) -> None:
    # A first read must read the registry whatever the listing says: not one round trip
    # after it. A known one is read only when the listing shows it changed (above).
    await world.register(b="active")
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    timed = Timed(world.store.inner, [], latency=0.02)

    read = await read_remotes(
        timed, KEYS, None, device_id=ME, peers={}, registry=None, registry_etag=None
    )

    assert sorted(read.devices) == ["b"] and sorted(read.registry.devices) == ["b"]
    listing = [(s, e) for op, key, s, e in timed.calls if op == "list_page"]
    registry = [(s, e) for op, key, s, e in timed.calls if key == KEYS.registry]
    assert len(registry) == 1 and registry[0][0] < min(e for _, e in listing)


async def test_a_lost_node_cache_means_reading_nodes_again_not_a_wrong_read(
    world: World,
) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.read()
    shutil.rmtree(world.cache)
    await world.publish("b", [file_entry("b", "b.txt", b"bee 2", 2)])

    read = await world.read()

    assert read.devices["b"].changes == {"b.txt": file_entry("b", "b.txt", b"bee 2", 2)}
    assert world.store.counts["get"] == 2  # the old root again, and the new one


async def test_a_damaged_cached_node_is_not_trusted(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.read()
    (root,) = await world.node_keys("b")
    forged = b'{"format":2,"entries":[]}'
    (world.cache / root).write_bytes(forged)
    await world.publish("b", [file_entry("b", "b.txt", b"bee 2", 2)])

    read = await world.read()

    assert read.devices["b"].changes == {"b.txt": file_entry("b", "b.txt", b"bee 2", 2)}
    assert (world.cache / root).read_bytes() != forged


async def test_a_processed_tree_gone_from_the_bucket_makes_every_path_count(
    world: World,
) -> None:
    """The tree processed last may be gone (gc reclaims old snapshots) and out of the
    cache: the new one is then read whole, as if never processed."""
    kept = file_entry("b", "kept.txt", b"k")
    await world.publish("b", [kept, file_entry("b", "old.txt", b"o")])
    await world.read()
    (old_root,) = await world.node_keys("b")
    await world.publish("b", [kept])
    await world.store.inner.delete(KEYS.tree(old_root))
    shutil.rmtree(world.cache)

    read = await world.read()

    assert read.devices["b"].complete and read.devices["b"].changes == {"kept.txt": kept}
    assert read.unreadable == {}


async def test_tombstones_are_read_from_the_last_processed_seq_to_the_head(world: World) -> None:
    def gone(path: str, counter: int) -> Delete:
        return Delete(path=path, type="file", version={"b": counter}, sha256=sha(path.encode()))

    await world.publish("b", [], [gone("one", 1)])
    first = await world.read()
    assert first.devices["b"].tombstones == [(1, gone("one", 1))]

    await world.publish("b", [], [gone("two", 2)])
    await world.publish("b", [], [gone("three", 3), gone("four", 4)])
    # A batch of a publish that crashed before its head: beyond the head, never read.
    await world.store.inner.put(KEYS.tombstone("b", 4), encode_batch("b", 4, [gone("orphan", 9)]))

    read = await world.read()

    assert read.devices["b"].tombstone_seq == 3
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
    await world.store.inner.put(KEYS.snapshots_prefix("new") + "20260101T000000Z.json", b"{}")
    await world.store.inner.put(KEYS.devices_prefix + "Not A Device/head.json", b"junk")
    await world.store.inner.put(KEYS.devices_prefix + "stray.txt", b"junk")

    read = await world.read()

    assert sorted(read.devices) == ["b"]


async def test_a_device_that_publishes_nothing_lists_nothing(world: World) -> None:
    """A download-only device's head carries only `seen` (SPEC 1.3)."""
    silent = Head(device_id="b", snapshot=None, tree=None, published_at=utc_iso(T0))
    await world.store.inner.put(KEYS.head("b"), encode(silent))

    read = await world.read()

    view = read.devices["b"]
    assert (view.snapshot, view.tree, view.changes) == (None, None, {})
    assert await view.entries_of(world.trees(), ["x"]) == {}


# --- untrustworthy objects: the device is skipped, the others are read ----------------


async def test_a_node_not_matching_its_key_is_rejected_naming_its_key(world: World) -> None:
    await world.publish("b", [dir_entry("b", "d"), file_entry("b", "d/b.txt", b"bee")])
    _root, folder = await world.node_keys("b")
    await world.store.inner.put(KEYS.tree(folder), b'{"format":2,"entries":[]}')

    why = await world.unreadable("b")

    assert why.startswith(f"reading tree {KEYS.tree(folder)}: its bytes hash to ")
    assert len(why.splitlines()) == 1
    assert not (world.cache / folder).exists()  # never cached


async def test_a_malformed_node_under_its_own_key_is_rejected(world: World) -> None:
    hostile = {"name": "../x", "type": "dir", "mode": 493, "version": {"b": 1}, "tree": sha(b"x")}
    data = json.dumps({"format": 2, "entries": [hostile]}).encode()
    key = sha(data)
    await world.store.inner.put(KEYS.tree(key), data)
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.overwrite_head("b", tree=key)

    why = await world.unreadable("b")

    assert why.startswith(f"invalid tree {KEYS.tree(key)}: entry 0 '../x'")


async def test_a_node_missing_from_the_bucket_is_rejected(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    (root,) = await world.node_keys("b")
    await world.store.inner.delete(KEYS.tree(root))

    assert await world.unreadable("b") == f"reading tree {KEYS.tree(root)}: it is missing"


async def test_a_head_claiming_another_device_is_rejected(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.overwrite_head("b", device_id="c")

    assert await world.unreadable("b") == f"reading {KEYS.head('b')}: it claims device 'c'"


async def test_a_malformed_head_is_rejected_naming_its_key(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    await world.store.inner.put(KEYS.head("b"), b'{"format": 2, "device_id": "b"}')

    assert (await world.unreadable("b")).startswith(f"invalid head {KEYS.head('b')}: ")


async def test_a_format_1_head_is_rejected_naming_the_format(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    old = {"format": 1, "device_id": "b", "manifest": "20260522T180500Z",
           "manifest_sha256": sha(b""), "published_at": utc_iso(T0)}  # fmt: skip
    await world.store.inner.put(KEYS.head("b"), json.dumps(old).encode())

    why = await world.unreadable("b")

    assert why == (
        f"invalid head {KEYS.head('b')}: format 1 is an earlier dropbeard's, which this one "
        "does not read (it reads format 2 only)"
    )


async def test_a_head_nested_too_deeply_is_one_line(world: World) -> None:
    await world.publish("b", [file_entry("b", "b.txt", b"bee")])
    nested = b'{"format": 2, "x": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"
    await world.store.inner.put(KEYS.head("b"), nested)

    why = await world.unreadable("b")

    assert why == f"invalid head {KEYS.head('b')}: JSON nested too deeply"


async def test_a_malformed_tombstone_batch_is_rejected(world: World) -> None:
    gone = Delete(path="old.txt", type="file", version={"b": 1}, sha256=sha(b"old"))
    await world.publish("b", [], [gone])
    key = KEYS.tombstone("b", 1)
    await world.store.inner.put(key, b'{"format": 2, "deletes": 42}')

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


async def test_devices_in_sync_are_diffed_once_and_each_gets_the_whole_diff(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new device joining a root whose devices all publish the same tree walks that
    tree once, not once per device; every device still gets its own copy of the diff."""
    entries = [dir_entry("b", "d")] + [file_entry("b", f"d/f{i}", b"%d" % i) for i in range(40)]
    for dev in ("b", "c", "e"):
        await world.publish(dev, entries)
    other = [file_entry("f", "g", b"other")]
    await world.publish("f", other)
    walks: list[str | None] = []
    real = remote_module.diff

    def counted(trees: TreeStore, old: str | None, new: str | None) -> Any:
        walks.append(new)
        return real(trees, old, new)

    monkeypatch.setattr(remote_module, "diff", counted)
    read = await world.read()

    assert sorted(walks) == sorted([world.devices["b"].tree, world.devices["f"].tree])
    for dev in ("b", "c", "e"):
        assert paths_of(read, dev) == paths_of(read, "b")
        assert len(read.devices[dev].changes) == 41
    assert read.devices["b"].changes is not read.devices["c"].changes
    assert list(paths_of(read, "f")) == ["g"]
