"""A large file's chunks going up and coming down (dropbeard.sync.chunkupload and
chunkdownload), on a local-directory remote and on SeaweedFS: one create-only PUT per
missing chunk, never bytes under a key they do not hash to; downloads that reuse what
local files hold, verify every chunk and the whole file, and leave nothing on failure."""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import pytest

from dropbeard.core.chunking import Chunk
from dropbeard.core.errors import IntegrityError, NotFound
from dropbeard.core.keys import RootKeys
from dropbeard.store.base import FileSlot, ObjectInfo, Store
from dropbeard.store.counting import CountingStore
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync import chunkdownload
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.chunkdownload import Assembled, ChunkSource, download_chunks
from dropbeard.sync.chunking import Chunker, FileDigest, stat_key
from dropbeard.sync.chunkupload import ChunkUpload, upload_chunks
from tests.chunkfiles import MiB, noise, overwrite, repeated, sha
from tests.faults import FaultStore
from tests.pagecache import direct_works, resident_pages

pytestmark = pytest.mark.anyio

KEYS = RootKeys("r1")


@dataclass(frozen=True)
class Big:
    """A large file's bytes and digest, made once per module (digests are not free)."""

    data: bytes
    digest: FileDigest
    file: Path  # holds `data`: read it, never write it

    @property
    def chunks(self) -> tuple[Chunk, ...]:
        assert self.digest.chunks is not None
        return self.digest.chunks


def make_big(folder: Path, data: bytes) -> Big:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "file").write_bytes(data)
    return Big(data, Chunker().digest_file(folder / "file"), folder / "file")


@pytest.fixture(scope="module")
def big(tmp_path_factory: pytest.TempPathFactory) -> Big:
    return make_big(tmp_path_factory.mktemp("big"), noise("transfer", 24 * MiB))


@pytest.fixture(scope="module")
def twice(tmp_path_factory: pytest.TempPathFactory) -> Big:
    """A file whose 6 MiB block repeats: some chunks occur more than once."""
    return make_big(tmp_path_factory.mktemp("twice"), repeated("twice", 6 * MiB, 30 * MiB))


@pytest.fixture(scope="module")
def edited_100(tmp_path_factory: pytest.TempPathFactory) -> tuple[Big, Big]:
    """A 100 MiB file and the same with 4 KiB overwritten in the middle."""
    data = noise("hundred", 100 * MiB)
    folder = tmp_path_factory.mktemp("hundred")
    edited = overwrite(data, 50 * MiB + 777, noise("the edit", 4096))
    return make_big(folder / "old", data), make_big(folder / "new", edited)


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def bucket(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "s3":
        s3: Store = request.getfixturevalue("s3_store")
        return s3
    return local_store(tmp_path / "bucket")


@pytest.fixture
def tmp_dir(tmp_path: Path) -> Path:
    (tmp_path / "tmp").mkdir()
    return tmp_path / "tmp"


def local_store(folder: Path) -> LocalStore:
    folder.mkdir(exist_ok=True)
    return LocalStore(folder)


def place(tmp_path: Path, name: str, data: bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


def write_at(file: Path, at: int, data: bytes) -> None:
    with open(file, "r+b") as f:
        f.seek(at)
        f.write(data)


def leftovers(folder: Path) -> list[Path]:
    return list(folder.iterdir())


def nowhere(sha256: str) -> ChunkSource | None:
    return None


def finder(file: Path, chunks: tuple[Chunk, ...]) -> dict[str, ChunkSource]:
    """What the pass would know of a local file whose chunk list it recorded."""
    found: dict[str, ChunkSource] = {}
    at = 0
    for c in chunks:
        found.setdefault(c.sha256, ChunkSource(file, at, c.size))
        at += c.size
    return found


async def up(store: Store, file: Path, b: Big, **kwargs: object) -> ChunkUpload:
    kwargs.setdefault("budget", TransferBudget(4))
    return await upload_chunks(store, KEYS, file, len(b.data), b.chunks, **kwargs)  # type: ignore[arg-type]


async def down(store: Store, b: Big, tmp_dir: Path, **kwargs: object) -> Assembled:
    kwargs.setdefault("budget", TransferBudget(4))
    kwargs.setdefault("find", nowhere)
    return await download_chunks(
        store,
        KEYS,
        b.digest.sha256,
        len(b.data),
        b.chunks,
        tmp_dir=tmp_dir,
        **kwargs,  # type: ignore[arg-type]
    )


async def blob_keys(store: Store) -> set[str]:
    return {o.key async for page in store.list(KEYS.blobs_prefix) for o in page.objects}


# --- upload ---------------------------------------------------------------------------


async def test_a_round_trip_rebuilds_the_file_byte_for_byte(
    bucket: Store, big: Big, tmp_path: Path, tmp_dir: Path
) -> None:
    counting = CountingStore(bucket)
    sent = await up(counting, big.file, big)

    assert (sent.uploaded, sent.present, sent.changed) == (len(big.chunks), 0, False)
    assert sent.uploaded_bytes == len(big.data)
    n = len(big.chunks)
    assert counting.counts == {"head": n, "put_if_absent": n}  # one PUT per chunk
    assert await blob_keys(bucket) == {KEYS.blob(c.sha256) for c in big.chunks}
    for c in big.chunks[:2]:
        assert sha(await bucket.get(KEYS.blob(c.sha256))) == c.sha256

    got = await down(counting, big, tmp_dir)

    if sys.platform == "linux" and direct_works(got.file):
        resident, pages = resident_pages(got.file)  # written (and hashed back) direct
        assert resident <= 2 * len(big.chunks), f"{resident} of {pages} pages cached"
    assert got.file.read_bytes() == big.data
    assert got.file.parent == tmp_dir
    assert (got.fetched, got.fetched_bytes, got.reused, got.reused_bytes) == (
        len(big.chunks),
        len(big.data),
        0,
        0,
    )


async def test_chunks_already_in_the_bucket_cost_one_request_and_no_bytes(
    big: Big, tmp_path: Path
) -> None:
    bucket, file = local_store(tmp_path / "bucket"), big.file
    await up(bucket, file, big)
    counting = CountingStore(bucket)

    again = await up(counting, file, big)

    assert (again.uploaded, again.present, again.uploaded_bytes) == (0, len(big.chunks), 0)
    assert counting.counts == {"head": len(big.chunks)}


class Overlap(ForwardingStore):
    """Counts the HEADs in flight at once (each lasts a little while)."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.now = self.most = 0

    async def head(self, key: str) -> ObjectInfo:
        self.now += 1
        self.most = max(self.most, self.now)
        try:
            await anyio.sleep(0.02)
            return await super().head(key)
        finally:
            self.now -= 1


async def test_a_chunks_head_takes_a_small_requests_share_of_a_slot(
    big: Big, tmp_path: Path
) -> None:
    bucket = local_store(tmp_path / "bucket")
    await up(bucket, big.file, big)
    overlap, budget = Overlap(bucket), TransferBudget(1)
    again = await up(overlap, big.file, big, budget=budget)
    assert again.present == len(big.chunks) >= budget.small_requests
    assert overlap.most == budget.small_requests  # not one: a HEAD moves no bytes


async def test_a_chunk_another_writer_creates_meanwhile_is_present(
    big: Big, tmp_path: Path
) -> None:
    """HEAD saw nothing, then the create-only PUT lost the race: present, not an error."""
    store = FaultStore(local_store(tmp_path / "bucket"))
    await up(store.inner, big.file, big)
    store.fail("head", NotFound, times=1)

    sent = await up(store, big.file, big, budget=TransferBudget(1))

    assert (sent.uploaded, sent.present) == (0, len(big.chunks))
    assert store.calls["put_if_absent"] == 1 and store.calls["put"] == 0


async def test_chunks_known_present_are_skipped_without_a_request(big: Big, tmp_path: Path) -> None:
    store = CountingStore(LocalStore(tmp_path))
    known = {c.sha256 for c in big.chunks[1:]}

    sent = await up(store, big.file, big, known_present=known.__contains__)

    assert (sent.uploaded, sent.skipped_known) == (1, len(big.chunks) - 1)
    assert store.counts == {"head": 1, "put_if_absent": 1}


async def test_a_chunk_repeated_in_the_file_is_uploaded_once(tmp_path: Path, twice: Big) -> None:
    b = twice
    assert len(set(b.chunks)) < len(b.chunks)
    store = CountingStore(local_store(tmp_path / "bucket"))

    sent = await up(store, b.file, b)

    assert sent.uploaded == len(set(b.chunks)) == store.counts["put_if_absent"]


async def test_a_truncated_leftover_under_a_chunk_key_is_replaced(big: Big, tmp_path: Path) -> None:
    store = local_store(tmp_path / "bucket")
    first = big.chunks[0]
    await store.put(KEYS.blob(first.sha256), big.data[:1000])  # a write cut short

    await up(store, big.file, big)

    assert sha(await store.get(KEYS.blob(first.sha256))) == first.sha256


async def test_a_file_edited_after_its_digest_uploads_no_wrong_bytes(
    big: Big, tmp_path: Path
) -> None:
    """The edited chunk's slice no longer hashes to its key: it is not sent, the upload
    stops, and every object in the bucket holds the bytes its key names."""
    bucket, file = local_store(tmp_path / "bucket"), place(tmp_path, "f", big.data)
    edited_at = len(big.data) // 2
    write_at(file, edited_at, b"an edit after the digest")

    sent = await up(bucket, file, big, budget=TransferBudget(1))

    assert sent.changed
    assert sent.uploaded < len(big.chunks)
    for key in await blob_keys(bucket):
        assert sha(await bucket.get(key)) == KEYS.sha256_of(key)


class EditsOnFirstPut(ForwardingStore):
    """Overwrites the end of `file` while the first chunk is being sent."""

    def __init__(self, inner: Store, file: Path) -> None:
        super().__init__(inner)
        self.file = file
        self.edited = False

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if not self.edited:
            self.edited = True
            size = await anyio.to_thread.run_sync(lambda: self.file.stat().st_size)
            await anyio.to_thread.run_sync(write_at, self.file, size - 100, b"edited meanwhile")
        return await super().put_if_absent(key, data, sha256=sha256)


async def test_a_file_edited_during_its_upload_is_changed_and_its_new_bytes_stay_out(
    big: Big, tmp_path: Path
) -> None:
    file = place(tmp_path, "f", big.data)
    store = EditsOnFirstPut(local_store(tmp_path / "bucket"), file)

    sent = await up(store, file, big, budget=TransferBudget(1), expected=stat_key(file.stat()))

    assert store.edited and sent.changed
    assert KEYS.blob(big.chunks[-1].sha256) not in await blob_keys(store)
    for key in await blob_keys(store):
        assert sha(await store.get(key)) == KEYS.sha256_of(key)


async def test_a_file_touched_after_its_digest_is_changed_though_its_bytes_match(
    big: Big, tmp_path: Path
) -> None:
    """Its stat is not the digested one: what was uploaded is right, but the entry must
    not be published from that digest."""
    file = place(tmp_path, "f", big.data)
    digested = stat_key(file.stat())
    st = file.stat()
    os.utime(file, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))

    sent = await up(local_store(tmp_path / "b"), file, big, expected=digested)

    assert sent.changed and sent.uploaded == 0


async def test_a_file_gone_or_replaced_by_a_folder_is_changed(big: Big, tmp_path: Path) -> None:
    store = CountingStore(local_store(tmp_path / "b"))
    (tmp_path / "dir").mkdir()
    for missing in (tmp_path / "gone", tmp_path / "dir"):
        sent = await up(store, missing, big)
        assert sent.changed and sent.uploaded == 0
    assert store.counts == {}


class Gauge(ForwardingStore):
    """Counts the puts in flight at once."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.in_flight = self.peak = 0

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(0.02)
            return await super().put_if_absent(key, data, sha256=sha256)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("tokens", [1, 3])
async def test_no_more_chunks_are_in_flight_than_the_budget_allows(
    big: Big, tmp_path: Path, tokens: int
) -> None:
    gauge = Gauge(local_store(tmp_path / "b"))

    await up(gauge, big.file, big, budget=TransferBudget(tokens))

    assert gauge.peak == tokens


async def test_chunks_held_in_memory_stay_within_the_budgets_bytes(
    big: Big, tmp_path: Path
) -> None:
    """Many request slots, but memory for no more than the smallest chunk (a larger one
    takes all of it): one chunk is read and sent at a time. The budget's memory is what
    the pass's other transfers share with it."""
    gauge = Gauge(local_store(tmp_path / "b"))

    await up(gauge, big.file, big, budget=TransferBudget(8, memory=min(c.size for c in big.chunks)))

    assert gauge.peak == 1 and len(big.chunks) > 1


async def test_progress_counts_the_bytes_sent(big: Big, tmp_path: Path) -> None:
    store = local_store(tmp_path / "b")
    seen: list[int] = []
    await up(store, big.file, big, progress=seen.append)
    assert sum(seen) == len(big.data)
    seen.clear()
    await up(store, big.file, big, progress=seen.append)  # all there: nothing sent
    assert seen == []


# --- download -------------------------------------------------------------------------


async def test_a_4_kib_edit_in_100_mib_fetches_only_the_changed_chunk(
    edited_100: tuple[Big, Big], tmp_path: Path, tmp_dir: Path
) -> None:
    """The other device holds the old version: every chunk but the edited one is copied
    from it, and the bucket is asked for one chunk."""
    old, new = edited_100
    bucket = CountingStore(local_store(tmp_path / "bucket"))
    # Only what the old version lacks goes up: fetching any other chunk would fail.
    await up(bucket, new.file, new, known_present={c.sha256 for c in old.chunks}.__contains__)
    bucket.reset()

    seen: list[int] = []

    got = await down(
        bucket, new, tmp_dir, find=finder(old.file, old.chunks).get, progress=seen.append
    )

    changed = set(new.chunks) - set(old.chunks)
    assert len(changed) == 1
    assert bucket.counts == {"get_file": 1}
    assert got.fetched == 1 and got.fetched_bytes == next(iter(changed)).size
    assert got.reused == len(new.chunks) - 1
    assert got.fetched_bytes + got.reused_bytes == len(new.data)
    assert sum(seen) == got.fetched_bytes  # progress counts what came over the network
    assert got.file.read_bytes() == new.data


async def test_a_local_source_that_changed_is_fetched_instead(
    big: Big, tmp_path: Path, tmp_dir: Path
) -> None:
    bucket = CountingStore(local_store(tmp_path / "bucket"))
    await up(bucket, big.file, big)
    stale = place(tmp_path, "stale", noise("not those bytes", len(big.data)))
    bucket.reset()

    got = await down(bucket, big, tmp_dir, find=finder(stale, big.chunks).get)

    assert got.file.read_bytes() == big.data
    assert (got.fetched, got.reused) == (len(big.chunks), 0)
    assert bucket.counts == {"get_file": len(big.chunks)}


async def test_a_chunk_holding_other_bytes_is_refused_naming_it_and_nothing_lands(
    bucket: Store, big: Big, tmp_path: Path, tmp_dir: Path
) -> None:
    await up(bucket, big.file, big)
    bad = big.chunks[1]
    await bucket.put(KEYS.blob(bad.sha256), noise("corrupt", bad.size))

    with pytest.raises(IntegrityError, match=KEYS.blob(bad.sha256)) as raised:
        await down(bucket, big, tmp_dir)

    assert raised.value.key == KEYS.blob(bad.sha256)
    assert leftovers(tmp_dir) == []


async def test_a_missing_chunk_is_not_found_naming_it_and_nothing_lands(
    bucket: Store, big: Big, tmp_path: Path, tmp_dir: Path
) -> None:
    await up(bucket, big.file, big)
    gone = big.chunks[-1]
    await bucket.delete(KEYS.blob(gone.sha256))

    with pytest.raises(NotFound, match=KEYS.blob(gone.sha256)):
        await down(bucket, big, tmp_dir)

    assert leftovers(tmp_dir) == []


async def test_chunks_that_do_not_make_the_files_sha256_are_refused(
    big: Big, tmp_path: Path, tmp_dir: Path
) -> None:
    """Every chunk verifies, but the entry's whole-file digest names other bytes."""
    store = local_store(tmp_path / "bucket")
    await up(store, big.file, big)
    lying = Big(big.data, FileDigest(sha(b"something else"), len(big.data), big.chunks), big.file)

    with pytest.raises(IntegrityError, match="reassemble"):
        await down(store, lying, tmp_dir)

    assert leftovers(tmp_dir) == []


async def test_a_chunk_list_that_does_not_add_up_is_refused_before_any_request(
    big: Big, tmp_path: Path, tmp_dir: Path
) -> None:
    store = CountingStore(local_store(tmp_path / "bucket"))
    short = Big(big.data + b"x", big.digest, big.file)

    with pytest.raises(IntegrityError, match="invalid chunk list"):
        await down(store, short, tmp_dir)

    assert store.counts == {} and leftovers(tmp_dir) == []


async def test_a_chunk_repeated_in_the_file_is_fetched_once(
    tmp_path: Path, tmp_dir: Path, twice: Big
) -> None:
    b = twice
    store = CountingStore(local_store(tmp_path / "bucket"))
    await up(store, b.file, b)
    store.reset()

    got = await down(store, b, tmp_dir)

    assert store.counts == {"get_file": len(set(b.chunks))}
    assert got.file.read_bytes() == b.data
    assert got.fetched_bytes + got.reused_bytes == len(b.data)


class FetchGauge(ForwardingStore):
    """Counts the chunk fetches in flight at once."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.in_flight = self.peak = 0

    async def get_file(self, key: str, dest: Path | FileSlot, **kwargs: Any) -> ObjectInfo:
        self.in_flight += 1
        self.peak = max(self.peak, self.in_flight)
        try:
            await anyio.sleep(0.02)
            return await super().get_file(key, dest, **kwargs)
        finally:
            self.in_flight -= 1


@pytest.mark.parametrize("tokens", [1, 3])
async def test_no_more_chunks_are_fetched_at_once_than_the_budget_allows(
    big: Big, tmp_path: Path, tmp_dir: Path, tokens: int
) -> None:
    store = local_store(tmp_path / "bucket")
    await up(store, big.file, big)
    gauge = FetchGauge(store)
    seen: list[int] = []

    got = await down(gauge, big, tmp_dir, budget=TransferBudget(tokens), progress=seen.append)

    assert gauge.peak == tokens
    assert sum(seen) == len(big.data) == got.fetched_bytes


class SlotWatch(ForwardingStore):
    """Records where each chunk fetch writes and what `tmp_dir` holds meanwhile."""

    def __init__(self, inner: Store, tmp_dir: Path) -> None:
        super().__init__(inner)
        self.tmp_dir = tmp_dir
        self.dests: list[Path | FileSlot] = []
        self.seen: set[str] = set()
        self.events: list[tuple[str, int, int]] = []
        self.asked: list[dict[str, Any]] = []

    async def get_file(self, key: str, dest: Path | FileSlot, **kwargs: Any) -> ObjectInfo:
        self.dests.append(dest)
        self.asked.append(kwargs)
        info = await super().get_file(key, dest, **kwargs)
        self.seen.update(p.name for p in self.tmp_dir.iterdir())
        self.events.append(("fetched", 0, 0))
        return info


async def test_chunks_stream_into_their_place_with_no_file_of_their_own(
    big: Big, tmp_path: Path, tmp_dir: Path
) -> None:
    store = local_store(tmp_path / "bucket")
    await up(store, big.file, big)
    watch = SlotWatch(store, tmp_dir)

    got = await down(watch, big, tmp_dir)

    assert got.file.read_bytes() == big.data
    assert all(isinstance(d, FileSlot) for d in watch.dests)
    assert watch.seen == {got.file.name}  # the one temporary file, no chunk files


async def test_the_whole_file_is_hashed_once_in_order_while_its_chunks_arrive(
    big: Big, tmp_path: Path, tmp_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = local_store(tmp_path / "bucket")
    await up(store, big.file, big)
    watch = SlotWatch(store, tmp_dir)
    hash_range = chunkdownload._hash_range

    def recorded(fd: int, dfd: int, hasher: Any, start: int, end: int) -> None:
        watch.events.append(("hashed", start, end))
        hash_range(fd, dfd, hasher, start, end)

    monkeypatch.setattr(chunkdownload, "_hash_range", recorded)

    got = await down(watch, big, tmp_dir, budget=TransferBudget(1))

    assert got.file.read_bytes() == big.data
    ranges = [(a, b) for kind, a, b in watch.events if kind == "hashed"]
    assert [a for a, _ in ranges] == [0] + [b for _, b in ranges[:-1]]  # in order, once
    assert ranges[-1][1] == len(big.data)
    kinds = [kind for kind, _, _ in watch.events]
    assert kinds.index("hashed") < len(kinds) - 1 - kinds[::-1].index("fetched")
    # that digest verifies the fetched chunks: the store is not asked to hash them again
    assert len(watch.asked) == len(big.chunks)
    assert not any(asked.get("expected_sha256") for asked in watch.asked)


async def test_an_object_larger_than_its_chunk_is_refused_naming_it_and_nothing_lands(
    bucket: Store, big: Big, tmp_dir: Path
) -> None:
    await up(bucket, big.file, big)
    bad = big.chunks[0]
    await bucket.put(KEYS.blob(bad.sha256), noise("oversized", bad.size + 4096))

    with pytest.raises(IntegrityError, match=KEYS.blob(bad.sha256)) as raised:
        await down(bucket, big, tmp_dir)

    assert raised.value.key == KEYS.blob(bad.sha256)
    assert leftovers(tmp_dir) == []
