"""The one seam to heads and tombstone batches (SPEC 1.3, 1.4): format-2 heads read as
DeviceHead, a non-publishing device's head carrying only `seen`, and a head or batch a
hostile bucket holds refused with one line naming it, for that device only."""

from __future__ import annotations

import pytest

from dropbeard.sync.devicelog import SnapshotReader, list_devices
from dropbeard.sync.heads import Seen, device_ids, read_heads
from tests.history import KEYS, File, Folder, World, delete_of, dumps, world

__all__ = ["world"]
pytestmark = pytest.mark.anyio


async def test_heads_read_as_snapshot_tree_and_seen_marks(world: World) -> None:
    tree = await world.publish(
        "laptop", Folder({"a": File(b"a")}), "20260101T000000Z",
        seen={"nas": (None, 0)}, deletes=[delete_of("b", b"b", {"laptop": 1})],
    )  # fmt: skip
    await world.head("nas", None, None, seen={"laptop": ("20260101T000000Z", 1)})
    heads = await read_heads(world.store, KEYS)
    assert heads.failed == {}
    laptop, nas = heads.heads["laptop"], heads.heads["nas"]
    assert (laptop.snapshot, laptop.tree, laptop.tombstone_seq) == ("20260101T000000Z", tree, 1)
    assert laptop.seen == {"nas": Seen(None, 0)}
    assert (nas.snapshot, nas.tree) == (None, None)
    assert nas.seen == {"laptop": Seen("20260101T000000Z", 1)}
    assert heads.roots() == {"laptop": tree}
    batch = await SnapshotReader(world.store, KEYS).read_batch("laptop", 1)
    assert batch is not None
    assert [(d.path, d.sha256) for d in batch.deletes] == [
        ("b", delete_of("b", b"b", {})["sha256"])
    ]


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"not json", "invalid head roots/r1/devices/bad/head.json"),
        (dumps({"format": 1, "device_id": "bad"}), "format 1 is an earlier dropbeard's"),
        (
            dumps({"format": 2, "device_id": "bad", "snapshot": "20260101T000000Z",
                   "tree": None, "published_at": "2026-01-01T00:00:00Z"}),
            "snapshot and tree are both set or both null",
        ),
        (
            dumps({"format": 2, "device_id": "other", "snapshot": None, "tree": None,
                   "published_at": "2026-01-01T00:00:00Z"}),
            "it names device 'other'",
        ),
    ],
)  # fmt: skip
async def test_a_bad_head_is_one_line_for_that_device_only(
    world: World, content: bytes, says: str
) -> None:
    await world.publish("laptop", Folder({"a": File(b"a")}), "20260101T000000Z")
    await world.store.inner.put(KEYS.head("bad"), content)
    heads = await read_heads(world.store, KEYS)
    assert list(heads.heads) == ["laptop"]
    assert says in heads.failed["bad"] and "\n" not in heads.failed["bad"]


async def test_device_folders_are_listed_and_sorted_by_kind(world: World) -> None:
    await world.publish("laptop", Folder({"a": File(b"a")}), "20260101T000000Z")
    await world.publish(
        "laptop", Folder({}), "20260102T000000Z", deletes=[delete_of("a", b"a", {"laptop": 1})]
    )
    await world.store.inner.put(KEYS.devices_prefix + "Not_An_Id/head.json", b"{}")
    assert await device_ids(world.store, KEYS) == ["laptop"]
    folders = await list_devices(world.store, KEYS)
    assert list(folders) == ["laptop"]
    laptop = folders["laptop"]
    assert list(laptop.snapshots) == ["20260101T000000Z", "20260102T000000Z"]
    assert list(laptop.tombstones) == [1]
    assert [o.key for o in laptop.other] == [KEYS.head("laptop")]


async def test_a_batch_naming_another_seq_is_refused(world: World) -> None:
    await world.tombstones("laptop", 2, "20260101T000000Z", [delete_of("a", b"a", {"laptop": 1})])
    await world.store.inner.put(
        KEYS.tombstone("laptop", 3), await world.store.get(KEYS.tombstone("laptop", 2))
    )
    reader = SnapshotReader(world.store, KEYS)
    assert await reader.read_batch("laptop", 3) is None
    assert "it names laptop seq 2" in reader.failed[KEYS.tombstone("laptop", 3)]
