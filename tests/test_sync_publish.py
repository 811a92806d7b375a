"""Publishing (dropbeard.sync.publish), directly against a LocalStore remote: tombstone batch
and snapshot (at once), then head, under the SPEC keys, each object decodable by core.model, the
head naming the snapshot and tree it commits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import anyio
import pytest

from dropbeard.core.errors import Unavailable
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Delete, SeenMark, decode_head, decode_snapshot, decode_tombstones
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.publish import LastIds, Listing, Published, Reservation, Reserve, publish

pytestmark = pytest.mark.anyio

ROOT = "r1"
KEYS = RootKeys(ROOT)
DEV = "laptop"
NOW = datetime(2026, 5, 22, 18, 5, 0, tzinfo=UTC)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


LISTING = Listing(sha(b"the root node"), files=2, bytes=5)
GONE = [Delete(path="old.txt", type="file", version={DEV: 3}, sha256=sha(b"old"))]


class Recording(CountingStore):
    """Records the key of every write, in order; fails the writes `fail(key)` picks."""

    def __init__(self, inner: LocalStore) -> None:
        super().__init__(inner)
        self.written: list[str] = []
        #: every reservation made, with how many writes had been made before it
        self.reserved: list[tuple[Reservation, int]] = []
        self.fail: Callable[[str], bool] = lambda _key: False

    async def put(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if self.fail(key):
            raise Unavailable(f"writing {key}: connection reset", key)
        self.written.append(key)
        return await super().put(key, data, sha256=sha256)

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if self.fail(key):
            raise Unavailable(f"creating {key}: connection reset", key)
        etag = await super().put_if_absent(key, data, sha256=sha256)
        self.written.append(key)
        return etag


@pytest.fixture
def store(tmp_path: Path) -> Recording:
    (tmp_path / "remote").mkdir()
    return Recording(LocalStore(tmp_path / "remote"))


async def run(
    store: Recording,
    *,
    listing: Listing = LISTING,
    tombstones: Sequence[Delete] = (),
    previous: str | None = None,
    seq: int = 0,
    seq_floor: int = 0,
    seen: dict[str, SeenMark] | None = None,
    now: datetime = NOW,
    counter: int = 0,
    reserve: Reserve | None = None,
) -> Published:
    store.written.clear()

    async def record(ids: Reservation) -> None:
        store.reserved.append((ids, len(store.written)))

    return await publish(
        store,
        KEYS,
        device_id=DEV,
        listing=listing,
        tombstones=tombstones,
        last=LastIds(tombstone_seq=seq, seq_floor=seq_floor, snapshot=previous),
        seen=seen or {},
        now=now,
        counter=counter,
        reserve=reserve or record,
    )


async def all_keys(store: Recording) -> list[str]:
    return [o.key async for page in store.inner.list("") for o in page.objects]


async def test_tombstones_and_snapshot_then_head_under_the_spec_keys(store: Recording) -> None:
    published = await run(store, tombstones=GONE, seq=2)

    assert sorted(store.written[:2]) == [
        "roots/r1/devices/laptop/snapshots/20260522T180500Z.json",
        "roots/r1/devices/laptop/tombstones/00000000000000000003.json",
    ]
    assert store.written[2:] == ["roots/r1/devices/laptop/head.json"]
    assert sorted(store.written[:2]) == [
        KEYS.snapshot(DEV, published.snapshot),
        KEYS.tombstone(DEV, 3),
    ]
    assert sorted(await all_keys(store)) == sorted(store.written)
    assert published.tombstone_seq == 3


async def test_without_deletes_no_tombstone_batch_is_written(store: Recording) -> None:
    published = await run(store, seq=7)

    assert store.written == [KEYS.snapshot(DEV, "20260522T180500Z"), KEYS.head(DEV)]
    assert published.tombstone_seq == 7
    assert decode_head(await store.inner.get(KEYS.head(DEV)), "head").tombstone_seq == 7


async def test_the_head_commits_exactly_the_snapshot_written(store: Recording) -> None:
    seen = {"desk": SeenMark(snapshot="20260521T090000Z", tombstone_seq=4)}

    published = await run(store, tombstones=GONE, seen=seen)

    head = decode_head(await store.inner.get(KEYS.head(DEV)), KEYS.head(DEV))
    assert head.snapshot is not None
    key = KEYS.snapshot(DEV, head.snapshot)
    snapshot = decode_snapshot(await store.inner.get(key), key)
    assert head.device_id == snapshot.device_id == DEV
    assert head.snapshot == snapshot.snapshot == published.snapshot == "20260522T180500Z"
    assert head.tree == snapshot.tree == LISTING.tree
    assert (snapshot.files, snapshot.bytes) == (2, 5)
    assert snapshot.created_at == "2026-05-22T18:05:00Z"
    assert head.tombstone_seq == published.tombstone_seq == 1
    assert head.published_at == "2026-05-22T18:05:00Z"
    assert head.seen == seen
    assert published.head_etag == (await store.inner.head(KEYS.head(DEV))).etag


async def test_the_snapshot_is_written_in_the_canonical_encoding(store: Recording) -> None:
    published = await run(store)

    data = await store.inner.get(KEYS.snapshot(DEV, published.snapshot))
    assert data == (
        b'{"format":2,"device_id":"laptop","snapshot":"20260522T180500Z","tree":"%s",'
        b'"created_at":"2026-05-22T18:05:00Z","files":2,"bytes":5}' % LISTING.tree.encode()
    )


async def test_the_tombstone_batch_decodes_with_its_deletes(store: Recording) -> None:
    gone = [*GONE, Delete(path="olddir", type="dir", version={DEV: 4, "desk": 1})]

    published = await run(store, tombstones=gone, seq=41)

    key = KEYS.tombstone(DEV, 42)
    batch = decode_tombstones(await store.inner.get(key), key)
    assert (batch.device_id, batch.seq, batch.created_at) == (DEV, 42, "2026-05-22T18:05:00Z")
    assert batch.deletes == gone
    assert KEYS.seq_of(key) == published.tombstone_seq == 42


async def test_snapshot_ids_keep_increasing_when_the_clock_goes_back(store: Recording) -> None:
    first = await run(store)
    second = await run(store, previous=first.snapshot, now=NOW - timedelta(hours=1))
    third = await run(store, previous=second.snapshot, now=NOW + timedelta(days=1))

    assert first.snapshot == "20260522T180500Z"
    assert second.snapshot == "20260522T180501Z"  # the previous one plus a second
    assert third.snapshot == "20260523T180500Z"
    head = decode_head(await store.inner.get(KEYS.head(DEV)), "head")
    assert head.snapshot == third.snapshot
    snapshots = [k for k in await all_keys(store) if "/snapshots/" in k]
    assert [KEYS.snapshot_id_of(k) for k in sorted(snapshots)] == [
        first.snapshot,
        second.snapshot,
        third.snapshot,
    ]


async def test_a_publish_failing_before_the_head_leaves_the_old_head(store: Recording) -> None:
    first = await run(store)
    old_head = await store.inner.get(KEYS.head(DEV))
    store.fail = lambda key: key == KEYS.head(DEV)
    other = Listing(sha(b"another root"), 1, 3)

    with pytest.raises(Unavailable):
        await run(
            store,
            listing=other,
            tombstones=GONE,
            previous=first.snapshot,
            now=NOW + timedelta(minutes=1),
        )

    assert await store.inner.get(KEYS.head(DEV)) == old_head
    assert KEYS.head(DEV) not in store.written

    # Run again with the same ids: the orphan batch and snapshot are never rewritten
    # (create-only), their ids are skipped, and the head commits the new batch.
    orphan = await store.inner.get(KEYS.tombstone(DEV, 1))
    store.fail = lambda _key: False
    again = await run(
        store,
        listing=other,
        tombstones=[Delete(path="other.txt", type="file", version={DEV: 5}, sha256=sha(b"o"))],
        previous=first.snapshot,
        now=NOW + timedelta(minutes=1),
    )
    head = decode_head(await store.inner.get(KEYS.head(DEV)), "head")
    assert (head.snapshot, head.tree, head.tombstone_seq) == (again.snapshot, other.tree, 2)
    assert await store.inner.get(KEYS.tombstone(DEV, 1)) == orphan


class Overlapping(Recording):
    """Holds each write of a batch or a snapshot a moment, counting how many are in
    flight at once."""

    def __init__(self, inner: LocalStore) -> None:
        super().__init__(inner)
        self.now = self.most = 0

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await anyio.sleep(0.05)
            return await super().put_if_absent(key, data, sha256=sha256)
        finally:
            self.now -= 1


async def test_the_batch_and_the_snapshot_are_written_at_once_and_both_before_the_head(
    tmp_path: Path,
) -> None:
    (tmp_path / "remote").mkdir()
    store = Overlapping(LocalStore(tmp_path / "remote"))
    published = await run(store, tombstones=GONE, seq=2)

    assert store.most == 2
    assert sorted(store.written[:2]) == [
        KEYS.snapshot(DEV, published.snapshot),
        KEYS.tombstone(DEV, 3),
    ]
    assert store.written[2:] == [KEYS.head(DEV)]


async def test_a_batch_that_cannot_be_written_moves_no_head(store: Recording) -> None:
    first = await run(store)
    old_head = await store.inner.get(KEYS.head(DEV))
    store.fail = lambda key: "/tombstones/" in key

    with pytest.raises(Unavailable):
        await run(store, tombstones=GONE, previous=first.snapshot, now=NOW + timedelta(minutes=1))

    assert await store.inner.get(KEYS.head(DEV)) == old_head
    assert KEYS.head(DEV) not in store.written


async def test_taken_ids_are_never_rewritten_but_skipped(store: Recording) -> None:
    """A batch or snapshot key that exists (a crashed publish's, or another writer's)
    keeps its bytes; the publish takes the next seq and the next second."""
    taken_batch, taken_snapshot = b"someone else's batch", b"someone else's snapshot"
    await store.inner.put(KEYS.tombstone(DEV, 3), taken_batch)
    await store.inner.put(KEYS.snapshot(DEV, "20260522T180500Z"), taken_snapshot)

    published = await run(store, tombstones=GONE, seq=2)

    assert (published.tombstone_seq, published.snapshot) == (4, "20260522T180501Z")
    assert await store.inner.get(KEYS.tombstone(DEV, 3)) == taken_batch
    assert await store.inner.get(KEYS.snapshot(DEV, "20260522T180500Z")) == taken_snapshot
    head = decode_head(await store.inner.get(KEYS.head(DEV)), "head")
    assert (head.tombstone_seq, head.snapshot) == (4, "20260522T180501Z")
    batch = decode_tombstones(await store.inner.get(KEYS.tombstone(DEV, 4)), "batch")
    assert batch.seq == 4 and batch.deletes == GONE


async def test_every_id_is_reserved_before_the_write_that_uses_it(store: Recording) -> None:
    await store.inner.put(KEYS.tombstone(DEV, 8), b"taken")

    await run(store, tombstones=GONE, seq=2, seq_floor=7, counter=12)

    # The first reservation comes before any write; the taken seq 8 made a second one
    # (seq 9) before seq 9 was written (the snapshot, written meanwhile, may come before
    # it). Without deletes, the head's seq is kept.
    assert [r for r, _ in store.reserved] == [
        Reservation(12, 8, "20260522T180500Z"),
        Reservation(12, 9, "20260522T180500Z"),
    ]
    assert store.reserved[0][1] == 0
    assert KEYS.tombstone(DEV, 9) not in store.written[: store.reserved[1][1]]
    assert sorted(store.written[:2]) == [
        KEYS.snapshot(DEV, "20260522T180500Z"),
        KEYS.tombstone(DEV, 9),
    ]
    assert store.written[2:] == [KEYS.head(DEV)]
    quiet = await run(store, seq=9, seq_floor=11, previous="20260522T180500Z")
    assert quiet.tombstone_seq == 9  # nothing deleted: the head's seq, not a reserved one
    assert store.reserved[-1] == (Reservation(0, 9, "20260522T180501Z"), 0)


async def test_a_reservation_that_fails_writes_nothing(store: Recording) -> None:
    async def broken(_ids: Reservation) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await run(store, tombstones=GONE, reserve=broken)
    assert await all_keys(store) == []


async def test_an_invalid_snapshot_is_refused_and_the_head_is_not_moved(
    store: Recording,
) -> None:
    first = await run(store)

    with pytest.raises(ValueError, match="refusing to write an invalid snapshot: tree"):
        await run(
            store,
            listing=Listing("../not-a-key", 0, 0),
            previous=first.snapshot,
            now=NOW + timedelta(days=1),
        )

    head = decode_head(await store.inner.get(KEYS.head(DEV)), "head")
    assert head.snapshot == first.snapshot
    assert [k for k in await all_keys(store) if "/snapshots/" in k] == [
        KEYS.snapshot(DEV, first.snapshot)
    ]
