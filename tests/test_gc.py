"""gc (SPEC 8.1, 8.2): retention prunes snapshots, the sweep deletes what nothing retained
reaches once older than the grace period, checked again just before each delete; heads
that move during a gc are honoured; two gcs at once are safe; tombstones go once seen by
everyone, retired folders after the grace period; and gc stops, deleting nothing more,
when it cannot read what it must mark."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import anyio
import pytest

from dropbeard.core.errors import ExitCode
from dropbeard.core.timestamps import snapshot_id, utc_iso
from dropbeard.sync.gc import GcStopped, collect_garbage
from dropbeard.sync.verify import verify_bucket
from tests.format2 import sha256
from tests.history import (
    KEYS,
    File,
    Folder,
    Hooked,
    World,
    blob_key,
    delete_of,
    local_world,
    set_policy,
    world,
)

__all__ = ["local_world", "world"]
pytestmark = pytest.mark.anyio

REAL_NOW = datetime.now(UTC).replace(microsecond=0)


def ago(**delta: float) -> str:
    return snapshot_id(REAL_NOW - timedelta(**delta))


def later(**delta: float) -> datetime:
    """A gc clock past the grace period of everything written now."""
    return REAL_NOW + timedelta(**delta)


def notes(text: bytes) -> Folder:
    return Folder({"a.txt": File(text), "docs": Folder({"keep.md": File(b"kept")})})


async def blobs_of(world: World) -> set[str]:
    return set(await world.keys_under(KEYS.blobs_prefix))


async def test_gc_deletes_pruned_snapshots_and_only_what_they_alone_reach(world: World) -> None:
    await world.register("laptop")
    await set_policy(world, grace="1h", all="1d")
    await world.publish("laptop", notes(b"v1"), ago(days=3))
    await world.publish("laptop", notes(b"v2"), ago(days=2))
    await world.publish("laptop", notes(b"v3"), ago(hours=2))
    report = await collect_garbage(world.store, KEYS, world.trees(), now=lambda: later(hours=2))
    # v3 is current; v2 was current until 2h ago (past the grace period): both others go
    assert [o.key for o in report.snapshots] == [
        KEYS.snapshot("laptop", ago(days=3)),
        KEYS.snapshot("laptop", ago(days=2)),
    ]
    assert {o.key for o in report.blobs} == {blob_key(b"v1"), blob_key(b"v2")}
    assert len(report.trees) == 2  # the two old roots; docs is shared
    assert report.freed_bytes == sum(o.size for o in report.deleted) > 0
    assert await blobs_of(world) == {blob_key(b"v3"), blob_key(b"kept")}
    after = await verify_bucket(world.store, KEYS, world.trees(), all_snapshots=True)
    assert after.ok and after.roots == 2  # the head and the one snapshot left


async def test_dry_run_deletes_nothing_and_reports_the_same(world: World) -> None:
    await world.register("laptop")
    await set_policy(world, grace="1h")
    await world.publish("laptop", notes(b"v1"), ago(days=3))
    await world.publish("laptop", notes(b"v2"), ago(days=2))
    before = set(await world.keys_under(KEYS.prefix))
    dry = await collect_garbage(
        world.store, KEYS, world.trees(), dry_run=True, now=lambda: later(hours=2)
    )
    assert set(await world.keys_under(KEYS.prefix)) == before
    assert world.store.counts["delete"] == 0
    real = await collect_garbage(world.store, KEYS, world.trees(), now=lambda: later(hours=2))
    assert sorted(o.key for o in dry.deleted) == sorted(o.key for o in real.deleted)
    assert dry.freed_bytes == real.freed_bytes > 0


async def test_unreached_objects_younger_than_the_grace_period_stay(world: World) -> None:
    await world.register("laptop")
    await set_policy(world, grace="1h")
    await world.publish("laptop", notes(b"v1"), ago(days=3))
    await world.publish("laptop", notes(b"v2"), ago(days=2))
    report = await collect_garbage(world.store, KEYS, world.trees(), now=lambda: later(minutes=30))
    assert report.trees == [] and report.blobs == []
    assert report.spared_young == 2  # v1's root and blob (its snapshot went)
    assert len(report.snapshots) == 1
    assert blob_key(b"v1") in await blobs_of(world)


async def test_a_head_that_moves_during_gc_keeps_what_it_reaches(world: World) -> None:
    await world.register("laptop")
    await set_policy(world, grace="1h")
    old = await world.publish("laptop", notes(b"v1"), ago(days=3))
    await world.publish("laptop", notes(b"v2"), ago(days=2))
    hooked = Hooked(world.store)

    async def revert() -> None:  # laptop goes back to v1's listing after the mark
        await world.head("laptop", ago(hours=1), old)

    hooked.before("list_page", KEYS.blobs_prefix, revert)
    report = await collect_garbage(hooked, KEYS, world.trees(), now=lambda: later(hours=2))
    assert blob_key(b"v1") in await blobs_of(world)
    assert report.blobs == [] and report.spared_late == 2  # v1's root and blob
    assert (await verify_bucket(world.store, KEYS, world.trees())).ok


async def test_an_object_refreshed_after_the_listing_is_spared(local_world: World) -> None:
    world = local_world
    await world.register("laptop")
    await set_policy(world, grace="1h")
    await world.publish("laptop", notes(b"v1"), ago(days=3))
    await world.publish("laptop", notes(b"v2"), ago(days=2))
    for key in await world.keys_under(KEYS.prefix):
        world.age(key, REAL_NOW - timedelta(days=2))
    hooked = Hooked(world.store)

    async def refresh() -> None:  # a writer found v1 present but unreached: writes it again
        await world.store.inner.put(blob_key(b"v1"), b"v1")

    hooked.before("head", KEYS.blobs_prefix, refresh)
    report = await collect_garbage(hooked, KEYS, world.trees())
    assert blob_key(b"v1") in await blobs_of(world)
    assert report.blobs == [] and report.spared_late == 1
    assert len(report.trees) == 1  # v1's old root went


async def test_two_gcs_at_once_delete_the_same_garbage_without_harm(world: World) -> None:
    await world.register("laptop")
    await set_policy(world, grace="1h")
    for day in range(5, 0, -1):
        await world.publish("laptop", notes(f"v{day}".encode()), ago(days=day))
    reports = []

    async def one() -> None:
        reports.append(
            await collect_garbage(world.store, KEYS, world.trees(), now=lambda: later(hours=2))
        )

    async with anyio.create_task_group() as tg:
        tg.start_soon(one)
        tg.start_soon(one)
    assert await blobs_of(world) == {blob_key(b"v1"), blob_key(b"kept")}
    assert (await verify_bucket(world.store, KEYS, world.trees(), all_snapshots=True)).ok
    deleted = [o.key for r in reports for o in r.blobs]
    assert set(deleted) == {blob_key(f"v{d}".encode()) for d in range(2, 6)}


async def test_tombstones_go_once_every_device_has_seen_them(world: World) -> None:
    for device in ("laptop", "desk"):
        await world.register(device)
    await set_policy(world, grace="1h", all="30d")
    gone = delete_of("b.txt", b"b", {"laptop": 1})
    await world.publish("laptop", notes(b"v1"), ago(days=2), deletes=[gone])
    await world.publish("desk", notes(b"v1"), ago(days=2), seen={"laptop": (ago(days=2), 0)})
    report = await collect_garbage(world.store, KEYS, world.trees(), now=lambda: later(hours=2))
    assert report.tombstones == []  # desk has not processed laptop's batch 1 yet
    await world.head("desk", ago(days=2), None, seen={"laptop": (ago(days=2), 1)})
    await world.head("desk", None, None, seen={"laptop": (ago(days=2), 1)})
    report = await collect_garbage(world.store, KEYS, world.trees(), now=lambda: later(hours=2))
    assert [o.key for o in report.tombstones] == [KEYS.tombstone("laptop", 1)]
    assert await world.keys_under(KEYS.tombstones_prefix("laptop")) == []


async def test_a_retired_device_s_folder_goes_after_the_grace_period(world: World) -> None:
    for device in ("laptop", "old"):
        await world.register(device)
    await set_policy(world, grace="1h", all="30d")
    await world.publish("laptop", notes(b"v1"), ago(days=2))
    await world.publish("old", Folder({"mine.txt": File(b"only old had this")}), ago(days=3))
    await world.publish("old", Folder({"mine.txt": File(b"and this")}), ago(days=2))
    await world.retire("old", utc_iso(REAL_NOW))
    report = await collect_garbage(world.store, KEYS, world.trees(), now=lambda: later(minutes=30))
    assert [o.key for o in report.snapshots] == [KEYS.snapshot("old", ago(days=3))]
    assert report.retired == [] and blob_key(b"and this") in await blobs_of(world)
    report = await collect_garbage(world.store, KEYS, world.trees(), now=lambda: later(hours=2))
    assert report.retired_devices == ["old"]
    assert await world.keys_under(KEYS.device_prefix("old")) == []
    assert {o.key for o in report.blobs} == {blob_key(b"and this"), blob_key(b"only old had this")}
    assert (await verify_bucket(world.store, KEYS, world.trees(), all_snapshots=True)).ok


async def test_gc_stops_deleting_nothing_when_a_retained_tree_is_missing(world: World) -> None:
    await world.register("laptop")
    await set_policy(world, grace="1h", all="30d")
    await world.publish("laptop", notes(b"v1"), ago(days=3))
    root = await world.publish("laptop", notes(b"v2"), ago(days=2))
    await world.store.inner.delete(KEYS.tree(root))
    before = set(await world.keys_under(KEYS.prefix))
    with pytest.raises(GcStopped, match=f"tree {KEYS.tree(root)}: missing") as stopped:
        await collect_garbage(world.store, KEYS, world.trees(), now=lambda: later(hours=2))
    assert stopped.value.exit_code == ExitCode.INTEGRITY
    assert set(await world.keys_under(KEYS.prefix)) == before


async def test_gc_stops_on_a_head_it_cannot_read(world: World) -> None:
    await world.register("laptop")
    await set_policy(world, grace="1h")
    await world.publish("laptop", notes(b"v1"), ago(days=3))
    await world.store.inner.put(KEYS.head("desk"), b"{}")
    with pytest.raises(GcStopped, match="invalid head"):
        await collect_garbage(world.store, KEYS, world.trees(), now=lambda: later(hours=2))


async def test_thirty_days_of_edits_keep_exactly_the_snapshots_the_policy_keeps(
    local_world: World,
) -> None:
    """Default policy (48h all, 7d hourly, 90d daily, 2y weekly, 24h grace), an edit
    every 2 hours for 30 days; counted by hand: the 23 snapshots of the last 48 hours,
    83 of the last 7 days (one per hour), and the day's last (22:00) of the 23 days
    before: 106. Then, every object aged past the grace period, the blobs left are
    exactly those of the snapshots kept."""
    world = local_world
    await world.register("laptop")
    start = datetime(2026, 1, 1, tzinfo=UTC)
    now = start + timedelta(days=30, minutes=1)
    ids = [snapshot_id(start + timedelta(hours=2 * k)) for k in range(360)]
    for k, snapshot in enumerate(ids):
        await world.publish("laptop", Folder({"log.txt": File(f"edit {k}".encode())}), snapshot)
    report = await collect_garbage(world.store, KEYS, world.trees(), now=lambda: now)
    left = sorted(
        KEYS.snapshot_id_of(k) for k in await world.keys_under(KEYS.snapshots_prefix("laptop"))
    )

    def age(s: str) -> timedelta:
        return now - datetime.strptime(s, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)

    expected = [s for s in ids if age(s) < timedelta(days=7) or s[9:11] == "22"]
    assert left == expected and len(left) == 106 == report.kept_snapshots
    assert len([s for s in ids if age(s) < timedelta(hours=48)]) == 23
    blobs = await blobs_of(world)  # written now, so inside the grace period: all stay
    assert len(blobs) == 360 and report.spared_young == 2 * (360 - 106)
    for key in await world.keys_under(KEYS.prefix):
        world.age(key, start)
    await collect_garbage(world.store, KEYS, world.trees(), now=lambda: now)
    kept = {sha256(f"edit {k}".encode()) for k in range(360) if ids[k] in expected}
    assert {key[-64:] for key in await blobs_of(world)} == kept
    assert (await verify_bucket(world.store, KEYS, world.trees(), all_snapshots=True)).ok


async def test_a_shard_full_of_garbage_is_listed_again_instead_of_a_head_each(
    local_world: World,
) -> None:
    """LastModified is checked again by listing a shard (blobs/ab/) just before deleting
    its candidates when that takes fewer requests than a HEAD each; an object refreshed
    before that listing is still spared."""
    world = local_world
    await world.register("laptop")
    await set_policy(world, grace="1h")
    many = Folder({f"f{i}": File(f"old {i}".encode()) for i in range(600)})
    await world.publish("laptop", many, ago(days=3))
    await world.publish("laptop", notes(b"now"), ago(days=2))
    for key in await world.keys_under(KEYS.prefix):
        world.age(key, REAL_NOW - timedelta(days=2))
    shards: dict[str, list[str]] = {}
    for i in range(600):
        key = blob_key(f"old {i}".encode())
        shards.setdefault(key[: len(KEYS.blobs_prefix) + 3], []).append(key)
    shard, keys = max(shards.items(), key=lambda item: len(item[1]))
    assert len(keys) >= 3
    hooked = Hooked(world.store)

    async def refresh() -> None:
        await world.store.inner.put(keys[0], await world.store.inner.get(keys[0]))

    hooked.before("list_page", shard, refresh)
    world.store.counts.clear()
    report = await collect_garbage(hooked, KEYS, world.trees())
    assert len(report.blobs) == 599 and report.spared_late == 1
    assert await blobs_of(world) == {keys[0], blob_key(b"now"), blob_key(b"kept")}
    assert world.store.counts["head"] < 300  # a HEAD only where a shard holds one or two
