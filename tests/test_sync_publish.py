"""Publishing (dropbeard.sync.publish), directly against a LocalStore remote: tombstone batch,
then manifest, then head, under the SPEC keys, each object decodable by core.model, the
head naming the manifest it commits."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from dropbeard.core.errors import Unavailable
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import (
    Delete,
    Entry,
    SeenMark,
    decode_head,
    decode_manifest,
    decode_tombstones,
)
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.publish import (
    LastIds,
    Published,
    Reservation,
    Reserve,
    entries_digest,
    manifest_bytes,
    publish,
)

pytestmark = pytest.mark.anyio

ROOT = "r1"
KEYS = RootKeys(ROOT)
DEV = "laptop"
NOW = datetime(2026, 5, 22, 18, 5, 0, tzinfo=UTC)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def file_entry(path: str, data: bytes, counter: int = 1) -> Entry:
    return Entry(
        path=path,
        type="file",
        mode=0o644,
        version={DEV: counter},
        size=len(data),
        mtime_ns=1_700_000_000_000_000_000,
        sha256=sha(data),
    )


ENTRIES = [
    file_entry("b.txt", b"bee"),
    Entry(path="a", type="dir", mode=0o755, version={DEV: 1}),
    file_entry("a/x.txt", b"ex"),
    Entry(path="link", type="symlink", mode=0o777, version={DEV: 2}, target="a/x.txt"),
]
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
    entries: Sequence[Entry] = ENTRIES,
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
        root_id=ROOT,
        device_id=DEV,
        entries=entries,
        tombstones=tombstones,
        last=LastIds(tombstone_seq=seq, seq_floor=seq_floor, manifest_id=previous),
        seen=seen or {},
        now=now,
        counter=counter,
        reserve=reserve or record,
    )


async def all_keys(store: Recording) -> list[str]:
    return [o.key async for page in store.inner.list("") for o in page.objects]


async def test_tombstones_then_manifest_then_head_under_the_spec_keys(store: Recording) -> None:
    published = await run(store, tombstones=GONE, seq=2)

    assert store.written == [
        "roots/r1/devices/laptop/tombstones/00000000000000000003.json",
        "roots/r1/devices/laptop/manifests/20260522T180500Z.json",
        "roots/r1/devices/laptop/head.json",
    ]
    assert store.written == [
        KEYS.tombstone(DEV, 3),
        KEYS.manifest(DEV, published.manifest_id),
        KEYS.head(DEV),
    ]
    assert sorted(await all_keys(store)) == sorted(store.written)
    assert published.tombstone_seq == 3


async def test_without_deletes_no_tombstone_batch_is_written(store: Recording) -> None:
    published = await run(store, seq=7)

    assert store.written == [KEYS.manifest(DEV, "20260522T180500Z"), KEYS.head(DEV)]
    assert published.tombstone_seq == 7
    assert decode_head(await store.inner.get(KEYS.head(DEV)), "head").tombstone_seq == 7


async def test_the_head_commits_exactly_the_manifest_written(store: Recording) -> None:
    seen = {"desk": SeenMark(manifest="20260521T090000Z", tombstone_seq=4)}

    published = await run(store, tombstones=GONE, seen=seen)

    head = decode_head(await store.inner.get(KEYS.head(DEV)), KEYS.head(DEV))
    manifest_data = await store.inner.get(KEYS.manifest(DEV, head.manifest))
    assert head.device_id == DEV
    assert head.manifest == published.manifest_id == "20260522T180500Z"
    assert head.manifest_sha256 == published.manifest_sha256 == sha(manifest_data)
    assert head.tombstone_seq == published.tombstone_seq == 1
    assert head.published_at == "2026-05-22T18:05:00Z"
    assert head.seen == seen
    assert published.head_etag == (await store.inner.head(KEYS.head(DEV))).etag


async def test_the_manifest_decodes_with_every_entry_sorted_by_path(store: Recording) -> None:
    published = await run(store)

    key = KEYS.manifest(DEV, published.manifest_id)
    manifest = decode_manifest(await store.inner.get(key), key)
    assert (manifest.root_id, manifest.device_id) == (ROOT, DEV)
    assert manifest.created_at == "2026-05-22T18:05:00Z"
    assert [e.path for e in manifest.entries] == ["a", "a/x.txt", "b.txt", "link"]
    assert sorted(manifest.entries, key=lambda e: e.path) == sorted(ENTRIES, key=lambda e: e.path)


async def test_the_tombstone_batch_decodes_with_its_deletes(store: Recording) -> None:
    gone = [*GONE, Delete(path="olddir", type="dir", version={DEV: 4, "desk": 1})]

    published = await run(store, tombstones=gone, seq=41)

    key = KEYS.tombstone(DEV, 42)
    batch = decode_tombstones(await store.inner.get(key), key)
    assert (batch.device_id, batch.seq, batch.created_at) == (DEV, 42, "2026-05-22T18:05:00Z")
    assert batch.deletes == gone
    assert KEYS.seq_of(key) == published.tombstone_seq == 42


async def test_manifest_ids_keep_increasing_when_the_clock_goes_back(store: Recording) -> None:
    first = await run(store)
    second = await run(store, previous=first.manifest_id, now=NOW - timedelta(hours=1))
    third = await run(store, previous=second.manifest_id, now=NOW + timedelta(days=1))

    assert first.manifest_id == "20260522T180500Z"
    assert second.manifest_id == "20260522T180501Z"  # the previous one plus a second
    assert third.manifest_id == "20260523T180500Z"
    head = decode_head(await store.inner.get(KEYS.head(DEV)), "head")
    assert head.manifest == third.manifest_id
    manifests = [k for k in await all_keys(store) if "/manifests/" in k]
    assert [KEYS.manifest_id_of(k) for k in sorted(manifests)] == [
        first.manifest_id,
        second.manifest_id,
        third.manifest_id,
    ]


async def test_a_publish_failing_before_the_head_leaves_the_old_head(store: Recording) -> None:
    first = await run(store)
    old_head = await store.inner.get(KEYS.head(DEV))
    store.fail = lambda key: "/manifests/" in key

    with pytest.raises(Unavailable):
        await run(
            store,
            entries=[file_entry("new.txt", b"new")],
            tombstones=GONE,
            previous=first.manifest_id,
            now=NOW + timedelta(minutes=1),
        )

    assert await store.inner.get(KEYS.head(DEV)) == old_head
    assert KEYS.head(DEV) not in store.written

    # Run again with the same ids: the orphan batch is never rewritten (create-only), its
    # seq is skipped, and the head commits the new batch.
    orphan = await store.inner.get(KEYS.tombstone(DEV, 1))
    store.fail = lambda _key: False
    again = await run(
        store,
        entries=[file_entry("new.txt", b"new")],
        tombstones=[Delete(path="other.txt", type="file", version={DEV: 5}, sha256=sha(b"o"))],
        previous=first.manifest_id,
        now=NOW + timedelta(minutes=1),
    )
    head = decode_head(await store.inner.get(KEYS.head(DEV)), "head")
    assert (head.manifest, head.tombstone_seq) == (again.manifest_id, 2)
    assert await store.inner.get(KEYS.tombstone(DEV, 1)) == orphan


async def test_taken_ids_are_never_rewritten_but_skipped(store: Recording) -> None:
    """A batch or manifest key that exists (a crashed publish's, or another writer's)
    keeps its bytes; the publish takes the next seq and the next second."""
    taken_batch, taken_manifest = b"someone else's batch", b"someone else's manifest"
    await store.inner.put(KEYS.tombstone(DEV, 3), taken_batch)
    await store.inner.put(KEYS.manifest(DEV, "20260522T180500Z"), taken_manifest)

    published = await run(store, tombstones=GONE, seq=2)

    assert (published.tombstone_seq, published.manifest_id) == (4, "20260522T180501Z")
    assert await store.inner.get(KEYS.tombstone(DEV, 3)) == taken_batch
    assert await store.inner.get(KEYS.manifest(DEV, "20260522T180500Z")) == taken_manifest
    head = decode_head(await store.inner.get(KEYS.head(DEV)), "head")
    assert (head.tombstone_seq, head.manifest) == (4, "20260522T180501Z")
    batch = decode_tombstones(await store.inner.get(KEYS.tombstone(DEV, 4)), "batch")
    assert batch.seq == 4 and batch.deletes == GONE


async def test_every_id_is_reserved_before_the_write_that_uses_it(store: Recording) -> None:
    await store.inner.put(KEYS.tombstone(DEV, 8), b"taken")

    await run(store, tombstones=GONE, seq=2, seq_floor=7, counter=12)

    # The first reservation comes before any write; the taken seq 8 made a second one
    # (seq 9) before seq 9 was written. Without deletes, the head's seq is kept.
    assert store.reserved == [
        (Reservation(12, 8, "20260522T180500Z"), 0),
        (Reservation(12, 9, "20260522T180500Z"), 0),
    ]
    assert store.written == [
        KEYS.tombstone(DEV, 9),
        KEYS.manifest(DEV, "20260522T180500Z"),
        KEYS.head(DEV),
    ]
    quiet = await run(store, seq=9, seq_floor=11, previous="20260522T180500Z")
    assert quiet.tombstone_seq == 9  # nothing deleted: the head's seq, not a reserved one
    assert store.reserved[-1] == (Reservation(0, 9, "20260522T180501Z"), 0)


async def test_a_reservation_that_fails_writes_nothing(store: Recording) -> None:
    async def broken(_ids: Reservation) -> None:
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        await run(store, tombstones=GONE, reserve=broken)
    assert await all_keys(store) == []


async def test_an_invalid_entry_is_refused_and_the_head_is_not_moved(store: Recording) -> None:
    first = await run(store)
    bad = Entry(path="../escape", type="file", mode=0o644, version={DEV: 1}, size=1)

    with pytest.raises(ValueError, match="refusing to write an invalid manifest"):
        await run(store, entries=[bad], previous=first.manifest_id, now=NOW + timedelta(days=1))

    head = decode_head(await store.inner.get(KEYS.head(DEV)), "head")
    assert head.manifest == first.manifest_id
    assert [k for k in await all_keys(store) if "/manifests/" in k] == [
        KEYS.manifest(DEV, first.manifest_id)
    ]


def test_the_entries_digest_ignores_the_time_but_not_the_content() -> None:
    at_noon = manifest_bytes(ROOT, DEV, ENTRIES, NOW)
    at_one = manifest_bytes(ROOT, DEV, ENTRIES, NOW + timedelta(hours=1))
    edited = [*ENTRIES[:3], file_entry("zzz.txt", b"new")]

    assert at_noon != at_one  # created_at differs
    assert manifest_bytes(ROOT, DEV, ENTRIES, NOW) == at_noon  # deterministic bytes
    assert entries_digest(ENTRIES) == entries_digest(list(ENTRIES))
    assert entries_digest(ENTRIES) != entries_digest(edited)
    assert entries_digest(ENTRIES[:3]) != entries_digest(ENTRIES)
    assert entries_digest([]) == sha(b"[]")
