"""Uploading blobs (dropbeard.sync.upload), directly against a LocalStore remote: only what
is missing is sent, once per digest, never under a digest the bytes do not have, with at
most `concurrency` requests in flight."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import anyio
import pytest

from dropbeard.core.keys import RootKeys
from dropbeard.store.base import ListPage
from dropbeard.store.counting import CountingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync import upload
from dropbeard.sync.budget import SMALL_REQUEST, TransferBudget
from dropbeard.sync.chunking import Chunker, stat_key
from dropbeard.sync.upload import BlobSource, UploadResult, upload_blobs
from tests.chunkfiles import MiB, noise, overwrite

pytestmark = pytest.mark.anyio

KEYS = RootKeys("r1")


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


@dataclass
class World:
    root: Path
    store: CountingStore

    def source(self, rel: str, data: bytes) -> BlobSource:
        """Write `data` to `rel` and describe it as the scan would have hashed it."""
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return BlobSource(sha(data), len(data), rel, path)

    async def upload(self, sources: list[BlobSource], **kwargs: object) -> UploadResult:
        self.store.reset()
        kwargs.setdefault("budget", TransferBudget(4))
        return await upload_blobs(self.store, KEYS, sources, **kwargs)  # type: ignore[arg-type]

    async def blobs(self) -> dict[str, bytes]:
        """sha256 -> bytes of every blob in the bucket."""
        inner = self.store.inner
        pages: list[ListPage] = [p async for p in inner.list(KEYS.blobs_prefix)]
        return {
            KEYS.sha256_of(o.key): await inner.get(o.key) for page in pages for o in page.objects
        }


@pytest.fixture
def world(tmp_path: Path) -> World:
    (tmp_path / "root").mkdir()
    (tmp_path / "remote").mkdir()
    return World(tmp_path / "root", CountingStore(LocalStore(tmp_path / "remote")))


@pytest.fixture
def small_limit(monkeypatch: pytest.MonkeyPatch) -> int:
    """Files above 1 KiB take the large-file path (HEAD, then a streamed put_file)."""
    monkeypatch.setattr(upload, "SMALL", 1024)
    return 1024


async def test_every_missing_blob_is_uploaded_under_its_sha256(world: World) -> None:
    sources = [world.source(f"f{i}.txt", b"content %d" % i) for i in range(3)]

    result = await world.upload(sources)

    assert await world.blobs() == {s.sha256: b"content %d" % i for i, s in enumerate(sources)}
    assert (result.uploaded, result.skipped_existing, result.changed) == (3, 0, set())
    assert result.uploaded_bytes == sum(s.size for s in sources)
    assert world.store.counts == {"put_if_absent": 3}  # one request per small blob
    key = KEYS.blob(sources[0].sha256)
    assert key == f"roots/r1/blobs/{key[15:17]}/{key[18:20]}/{sources[0].sha256}"


async def test_a_blob_already_in_the_bucket_is_not_sent_again(world: World) -> None:
    there = world.source("there.txt", b"already uploaded")
    new = world.source("new.txt", b"brand new")
    etag = await world.store.inner.put(KEYS.blob(there.sha256), b"already uploaded")

    result = await world.upload([there, new])

    assert (result.uploaded, result.skipped_existing) == (1, 1)
    assert result.uploaded_bytes == new.size
    assert (await world.store.inner.head(KEYS.blob(there.sha256))).etag == etag  # untouched
    assert world.store.counts["put"] == 0


async def test_the_same_content_at_many_paths_is_uploaded_once(world: World) -> None:
    sources = [world.source(f"copy{i}.txt", b"duplicated bytes") for i in range(5)]
    done: list[str] = []

    result = await world.upload(sources, on_done=lambda s: done.append(s.path))

    assert (result.uploaded, result.skipped_existing) == (1, 0)
    assert result.uploaded_bytes == len(b"duplicated bytes")
    assert world.store.counts == {"put_if_absent": 1}
    assert done == ["copy0.txt"]
    assert list(await world.blobs()) == [sha(b"duplicated bytes")]


async def test_a_changed_copy_gives_way_to_another_path_with_the_same_bytes(
    world: World,
) -> None:
    same = b"one digest, three paths"
    sources = [world.source(f"copy{i}.txt", same) for i in range(3)]
    for i in range(2):  # the first two copies are edited after they were hashed
        (world.root / f"copy{i}.txt").write_bytes(b"edited, not the bytes hashed")

    result = await world.upload(sources)

    assert result.changed == {"copy0.txt", "copy1.txt"}
    assert await world.blobs() == {sha(same): same}  # uploaded from copy2.txt
    assert (result.uploaded, result.skipped_existing) == (1, 0)


async def test_a_file_changed_since_hashing_is_not_uploaded(world: World) -> None:
    stale = world.source("edited.txt", b"as hashed")
    (world.root / "edited.txt").write_bytes(b"as edited")  # same size, new bytes
    fine = world.source("fine.txt", b"fine")

    result = await world.upload([stale, fine])

    # Nothing under the old digest (the bytes are not those) nor the new one (unverified).
    assert await world.blobs() == {fine.sha256: b"fine"}
    assert result.changed == {"edited.txt"}
    assert result.uploaded == 1


async def test_a_file_that_vanished_since_hashing_is_reported_changed(world: World) -> None:
    gone = world.source("gone.txt", b"deleted before upload")
    (world.root / "gone.txt").unlink()

    result = await world.upload([gone])

    assert result.changed == {"gone.txt"}
    assert await world.blobs() == {}
    assert (result.uploaded, result.skipped_existing) == (0, 0)


async def test_a_large_file_changed_while_streamed_leaves_nothing(
    world: World, small_limit: int
) -> None:
    big = world.source("big.bin", b"x" * (small_limit * 5))
    (world.root / "big.bin").write_bytes(b"y" * (small_limit * 5))

    result = await world.upload([big])

    assert result.changed == {"big.bin"}
    assert await world.blobs() == {}
    assert world.store.counts == {"head": 1, "put_file": 1}


async def test_a_large_file_is_checked_with_head_then_streamed(
    world: World, small_limit: int
) -> None:
    data = bytes(range(256)) * 20
    big = world.source("big.bin", data)
    sent: list[int] = []

    result = await world.upload([big], progress=sent.append)

    assert await world.blobs() == {big.sha256: data}
    assert world.store.counts == {"head": 1, "put_file": 1}
    assert (result.uploaded, result.uploaded_bytes) == (1, len(data))
    assert sum(sent) == len(data)

    again = await world.upload([big])
    assert (again.uploaded, again.skipped_existing) == (0, 1)
    assert world.store.counts == {"head": 1}  # present at full size: not sent again


@pytest.mark.parametrize("large", [False, True], ids=["small", "large"])
async def test_a_truncated_leftover_under_the_key_is_replaced(
    world: World, small_limit: int, large: bool
) -> None:
    """A writer killed mid-request may leave a short object under the blob's key; it must
    not count as present, or no device could ever download those bytes."""
    data = b"z" * (small_limit * 3 if large else small_limit // 2)
    src = world.source("f.bin", data)
    await world.store.inner.put(KEYS.blob(src.sha256), data[:100])

    result = await world.upload([src])

    assert await world.blobs() == {src.sha256: data}
    assert (result.uploaded, result.skipped_existing) == (1, 0)


async def test_progress_counts_the_bytes_sent_and_on_done_every_settled_blob(
    world: World,
) -> None:
    there = world.source("there.txt", b"in the bucket")
    await world.store.inner.put(KEYS.blob(there.sha256), b"in the bucket")
    new = [world.source(f"n{i}.txt", b"n" * (i + 1) * 10) for i in range(3)]
    stale = world.source("stale.txt", b"old")
    (world.root / "stale.txt").write_bytes(b"new")
    sent: list[int] = []
    done: list[str] = []

    result = await world.upload(
        [there, *new, stale], progress=sent.append, on_done=lambda s: done.append(s.path)
    )

    assert sum(sent) == result.uploaded_bytes == 10 + 20 + 30
    assert sorted(done) == ["n0.txt", "n1.txt", "n2.txt", "there.txt"]  # not stale.txt


async def test_nothing_to_upload_costs_no_request(world: World) -> None:
    result = await world.upload([])

    assert result == UploadResult()
    assert world.store.counts == {}


class Gauge(CountingStore):
    """Counts the put_if_absent requests in flight at once. Each one waits (up to a
    second) until `expect` are in flight, so the peak reaches the bound if the uploader
    allows it, and goes past it if the uploader does not honour it."""

    def __init__(self, inner: LocalStore, expect: int) -> None:
        super().__init__(inner)
        self.expect = expect
        self.in_flight = 0
        self.peak = 0
        self.full = anyio.Event()

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        if self.in_flight >= self.expect:
            self.full.set()
        try:
            with anyio.move_on_after(1):
                await self.full.wait()
            await anyio.sleep(0.01)
            return await super().put_if_absent(key, data)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("concurrency", [1, 3])
async def test_small_uploads_run_four_per_request_slot(world: World, concurrency: int) -> None:
    sources = [world.source(f"f{i}", b"file %d" % i) for i in range(30)]
    gauge = Gauge(world.store.inner, expect=4 * concurrency)  # type: ignore[arg-type]

    result = await upload_blobs(gauge, KEYS, sources, budget=TransferBudget(concurrency))

    assert gauge.peak == 4 * concurrency
    assert result.uploaded == 30 and gauge.counts["put_if_absent"] == 30
    assert len(await world.blobs()) == 30


class MemoryGauge(CountingStore):
    """The bytes of small-blob PUTs in flight at once, at their peak."""

    def __init__(self, inner: LocalStore) -> None:
        super().__init__(inner)
        self.in_flight = 0
        self.peak = 0

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.in_flight += len(data)
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(0.01)
            return await super().put_if_absent(key, data, sha256=sha256)
        finally:
            self.in_flight -= len(data)


async def test_the_bytes_held_in_memory_stay_within_the_budget(world: World) -> None:
    sources = [world.source(f"f{i}", bytes([i]) * 1000) for i in range(12)]
    gauge = MemoryGauge(world.store.inner)  # type: ignore[arg-type]

    result = await upload_blobs(gauge, KEYS, sources, budget=TransferBudget(8, memory=3000))

    assert result.uploaded == 12
    assert gauge.peak == 3000  # three files at once: the memory bound, not the 8 requests


async def test_small_files_are_read_a_batch_per_worker_thread_trip(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = [world.source(f"f{i}", b"small file %d" % i) for i in range(100)]
    batches: list[int] = []
    read_batch = upload._read_batch

    def counted(batch: list[tuple[list[BlobSource], int]]) -> list[object]:
        batches.append(len(batch))
        return read_batch(batch)  # type: ignore[return-value]

    monkeypatch.setattr(upload, "_read_batch", counted)
    result = await world.upload(sources, budget=TransferBudget(4))

    assert result.uploaded == 100 and len(await world.blobs()) == 100
    assert batches == [32, 32, 32, 4]  # 4 trips to a worker thread, not 100


async def test_a_batch_takes_only_the_memory_that_is_free(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = [world.source(f"f{i}", bytes([i]) * 1000) for i in range(10)]
    batches: list[int] = []
    read_batch = upload._read_batch

    def counted(batch: list[tuple[list[BlobSource], int]]) -> list[object]:
        batches.append(len(batch))
        return read_batch(batch)  # type: ignore[return-value]

    monkeypatch.setattr(upload, "_read_batch", counted)
    result = await world.upload(sources, budget=TransferBudget(8, memory=3000))

    assert result.uploaded == 10
    assert max(batches) <= 3 and sum(batches) == 10


class HeldLarge(CountingStore):
    """PUTs of more than SMALL_REQUEST bytes wait until `smalls` smaller ones were sent."""

    def __init__(self, inner: LocalStore, smalls: int) -> None:
        super().__init__(inner)
        self.release = anyio.Event()
        self.smalls = smalls

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if len(data) > SMALL_REQUEST:
            await self.release.wait()
        else:
            self.smalls -= 1
            if self.smalls == 0:
                self.release.set()
        return await super().put_if_absent(key, data, sha256=sha256)


async def test_small_files_go_up_while_larger_ones_hold_what_large_transfers_may(
    world: World,
) -> None:
    """Three 2 MiB files (read whole, but large transfers to the budget) take the 3 MiB of
    a 4 MiB budget that large transfers may hold, and their PUTs hang: the small files
    still go up, in their own stream, instead of queueing behind the third one."""
    medium = [world.source(f"m{i}", bytes([i]) * 2 * MiB) for i in range(3)]
    small = [world.source(f"s{i}", b"small %d" % i) for i in range(40)]
    store = HeldLarge(world.store.inner, smalls=len(small))  # type: ignore[arg-type]
    budget = TransferBudget(4, memory=4 * MiB)

    with anyio.fail_after(10):
        result = await upload_blobs(store, KEYS, medium + small, budget=budget)

    assert result.uploaded == 43 and len(await world.blobs()) == 43


async def test_an_unreadable_file_fails_the_upload_instead_of_passing_for_a_changed_one(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sources = [world.source("ok", b"fine"), world.source("locked", b"locked")]

    def refuse(src: BlobSource) -> bytes:
        if src.path == "locked":
            raise PermissionError(13, "Permission denied")
        return src.file.read_bytes()

    monkeypatch.setattr(upload, "_read_verified", refuse)
    with pytest.raises(BaseExceptionGroup) as failed:
        await world.upload(sources)
    assert failed.value.subgroup(PermissionError) is not None


# --- files stored in chunks (SPEC 1.6) -----------------------------------------------------


def chunked_source(world: World, rel: str, data: bytes) -> BlobSource:
    """`data` at `rel`, described as the scan digests a file over 16 MiB."""
    path = world.root / rel
    path.write_bytes(data)
    digest = Chunker().digest_file(path)
    assert digest.chunks is not None
    return BlobSource(digest.sha256, len(data), rel, path, digest.chunks, stat_key(path.stat()))


@pytest.fixture(scope="module")
def big_data() -> bytes:
    return noise("upload chunks", 24 * MiB)


async def test_a_file_in_chunks_uploads_each_chunk_as_a_blob_and_no_whole_file_blob(
    world: World, big_data: bytes
) -> None:
    big = chunked_source(world, "big.bin", big_data)
    small = world.source("small.txt", b"small")
    done: list[str] = []
    assert big.chunks is not None

    result = await world.upload([big, small], on_done=lambda s: done.append(s.path))

    blobs = await world.blobs()
    assert set(blobs) == {c.sha256 for c in big.chunks} | {small.sha256}
    assert b"".join(blobs[c.sha256] for c in big.chunks) == big_data
    assert (result.uploaded, result.uploaded_bytes) == (2, len(big_data) + 5)
    assert world.store.counts == {"head": len(big.chunks), "put_if_absent": len(big.chunks) + 1}
    assert sorted(done) == ["big.bin", "small.txt"]


async def test_chunks_known_in_the_bucket_are_not_asked_for(world: World, big_data: bytes) -> None:
    big = chunked_source(world, "big.bin", big_data)
    assert big.chunks is not None
    first = big.chunks[0]
    await world.store.inner.put(KEYS.blob(first.sha256), big_data[: first.size])

    result = await world.upload([big], known_chunk={first.sha256}.__contains__)

    rest = len({c.sha256 for c in big.chunks}) - 1
    assert world.store.counts == {"head": rest, "put_if_absent": rest}
    assert result.uploaded_bytes == len(big_data) - first.size


async def test_a_file_in_chunks_edited_after_its_digest_is_changed_and_sends_no_wrong_bytes(
    world: World, big_data: bytes
) -> None:
    big = chunked_source(world, "big.bin", big_data)
    (world.root / "big.bin").write_bytes(overwrite(big_data, 0, b"edited"))

    result = await world.upload([big])

    assert result.changed == {"big.bin"} and result.uploaded == 0
    blobs = await world.blobs()
    assert all(sha(data) == key for key, data in blobs.items())
