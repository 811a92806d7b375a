"""Applying downloads of files stored in chunks (dropbeard.sync.apply with
dropbeard.sync.chunkdownload, SPEC 1.6), against a LocalStore remote and a temp root: a
file is assembled from its chunks, taking every chunk a local file holds; a chunk or a
whole file that does not verify lands nothing."""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

from dropbeard.core.chunking import Chunk, chunk_offsets
from dropbeard.core.ignore import IgnoreRules
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Entry
from dropbeard.core.plan import ConflictCopy, Download, LocalDelete, Plan
from dropbeard.store.base import Store
from dropbeard.store.counting import CountingStore
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync.apply import Applied, apply_plan
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.chunking import Chunker
from dropbeard.sync.root import RootPaths, reset_tmp
from dropbeard.sync.scan import ScanResult, scan
from tests.chunkfiles import MiB, noise, overwrite, sha
from tests.test_sync_apply import World as ApplyWorld

pytestmark = pytest.mark.anyio

KEYS = RootKeys("r1")
T = TypeVar("T")
MTIME = 1_700_000_000_123_456_789
SIZE = 40 * MiB


def entry(path: str, data: bytes, chunks: Sequence[Chunk] | None) -> Entry:
    return Entry(
        path=path,
        type="file",
        mode=0o644,
        version={"b": 1},
        size=len(data),
        mtime_ns=MTIME,
        sha256=sha(data),
        chunks=None if chunks is None else list(chunks),
    )


def cut(data: bytes, tmp: Path) -> tuple[Chunk, ...]:
    """The chunk list dropbeard's own writer makes of `data`."""
    tmp.write_bytes(data)
    chunks = Chunker().digest_file(tmp).chunks
    tmp.unlink()
    assert chunks is not None
    return chunks


def slices(data: bytes, chunks: Sequence[Chunk]) -> Iterable[tuple[Chunk, bytes]]:
    for chunk, at in zip(chunks, chunk_offsets(chunks), strict=True):
        yield chunk, data[at : at + chunk.size]


@dataclass
class World(ApplyWorld):
    """test_sync_apply's world, with a scratch folder outside the root."""

    scratch: Path

    async def publish(self, path: str, data: bytes, chunks: Sequence[Chunk] | None = None) -> Entry:
        """Another device's entry of `data` at `path`, its chunks (its own cut unless
        given) in the bucket."""
        chunks = cut(data, self.scratch / "cut") if chunks is None else chunks
        for chunk, piece in slices(data, chunks):
            await self.store.inner.put(KEYS.blob(chunk.sha256), piece)
        return entry(path, data, chunks)

    async def scan(self, only: Sequence[str] | None = None) -> ScanResult:
        return await scan(self.root, ignore=IgnoreRules.empty(), cache=lambda _p: None, only=only)

    async def apply(
        self,
        plan: Plan,
        scanned: ScanResult | None = None,
        local_chunks: Sequence[tuple[str, Sequence[Chunk]]] = (),
    ) -> Applied:
        if scanned is None:
            scanned = await self.scan()
        self.store.reset()
        return await apply_plan(
            self.paths,
            self.store,
            KEYS,
            plan,
            scanned,
            budget=TransferBudget(4),
            local_chunks=lambda: local_chunks,
        )

    def tmp_files(self) -> list[str]:
        return sorted(p.name for p in self.paths.tmp.iterdir())


@pytest.fixture
def world(tmp_path: Path) -> World:
    root, remote, scratch = tmp_path / "root", tmp_path / "remote", tmp_path / "scratch"
    (root / ".dropbear").mkdir(parents=True)
    remote.mkdir()
    scratch.mkdir()
    paths = RootPaths(root)
    reset_tmp(paths)
    return World(root, paths, CountingStore(LocalStore(remote)), scratch)


@pytest.fixture(scope="module")
def big() -> bytes:
    return noise("apply chunks", SIZE)


def downloads(*entries: Entry, deletes: Sequence[LocalDelete] = ()) -> Plan:
    return Plan(
        publishes=False,
        downloads=[Download(path=e.path, entry=e) for e in entries],
        local_deletes=list(deletes),
    )


def kinds(applied: Applied) -> dict[str, str]:
    return {p.path: p.kind for p in applied.problems}


# --- assembled from chunks ----------------------------------------------------------------


async def test_a_file_in_chunks_lands_from_them_with_its_list_in_the_stat_cache(
    world: World, big: bytes
) -> None:
    new = await world.publish("media/big.bin", big)
    assert new.chunks is not None

    applied = await world.apply(downloads(new))

    assert world.read("media/big.bin") == big
    st = (world.root / "media/big.bin").stat()
    assert st.st_mtime_ns == MTIME
    row = (st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns, sha(big), tuple(new.chunks))
    assert applied.stats == {"media/big.bin": row}  # never read again to learn its chunks
    assert (applied.downloaded, applied.downloaded_bytes, applied.reused_bytes) == (1, SIZE, 0)
    assert world.store.counts == {"get_file": len({c.sha256 for c in new.chunks})}
    assert not applied.problems and world.tmp_files() == []


async def test_an_edit_inside_fetches_only_its_chunks_and_reuses_the_old_copy(
    world: World, big: bytes
) -> None:
    world.write("big.bin", big)
    edited = overwrite(big, SIZE // 2 + 333, noise("the edit", 4096))
    new = await world.publish("big.bin", edited)
    old_chunks = cut(big, world.scratch / "old")
    changed = {c.sha256 for c in new.chunks or ()} - {c.sha256 for c in old_chunks}
    assert 1 <= len(changed) <= 2

    applied = await world.apply(downloads(new))

    assert world.read("big.bin") == edited
    assert world.store.counts == {"get_file": len(changed)}
    fetched = sum(c.size for c in new.chunks or () if c.sha256 in changed)
    assert applied.downloaded_bytes == fetched <= 2 * 16 * MiB
    assert applied.reused_bytes == SIZE - fetched
    assert applied.downloaded == 1 and not applied.problems


async def test_chunks_come_from_a_file_the_stat_cache_knows_though_it_was_not_scanned(
    world: World, big: bytes
) -> None:
    """A pass over some paths scans only those; the stat cache still says where the
    other large files hold which chunks."""
    world.write("elsewhere/old.bin", big)
    new = await world.publish("arrived.bin", big + b"and a tail")
    scanned = await world.scan(only=["arrived.bin"])
    assert "elsewhere/old.bin" not in scanned.items
    known = [("elsewhere/old.bin", cut(big, world.scratch / "old"))]

    applied = await world.apply(downloads(new), scanned, local_chunks=known)

    assert world.read("arrived.bin") == big + b"and a tail"
    assert applied.downloaded_bytes < 16 * MiB  # the tail's chunk at most
    assert applied.reused_bytes + applied.downloaded_bytes == len(big) + len(b"and a tail")


async def test_a_stale_stat_cache_entry_costs_a_download_never_wrong_bytes(
    world: World, big: bytes
) -> None:
    world.write("elsewhere/old.bin", noise("other bytes now", SIZE))
    new = await world.publish("arrived.bin", big)
    scanned = await world.scan(only=["arrived.bin"])
    known = [("elsewhere/old.bin", cut(big, world.scratch / "old"))]

    applied = await world.apply(downloads(new), scanned, local_chunks=known)

    assert world.read("arrived.bin") == big
    assert (applied.downloaded_bytes, applied.reused_bytes) == (SIZE, 0)


async def test_a_file_deleted_by_the_plan_still_gives_its_chunks_to_a_new_one(
    world: World, big: bytes
) -> None:
    """A large file renamed and edited elsewhere: deletes run first, so the old file's
    bytes are parked until the new one is assembled from them."""
    world.write("old name.bin", big)
    scanned = await world.scan()
    old = scanned.items["old name.bin"]
    edited = overwrite(big, 1000, b"renamed and edited")
    new = await world.publish("new name.bin", edited)
    gone = LocalDelete(path="old name.bin", expected=entry("old name.bin", big, old.chunks))

    applied = await world.apply(downloads(new, deletes=[gone]), scanned)

    assert world.read("new name.bin") == edited
    assert not (world.root / "old name.bin").exists() and applied.deleted == 1
    assert applied.downloaded_bytes <= 2 * 16 * MiB
    assert applied.reused_bytes >= SIZE - 2 * 16 * MiB
    assert world.tmp_files() == []  # the parked file is gone too


async def test_a_file_whose_chunks_are_all_local_is_copied_not_downloaded(
    world: World, big: bytes
) -> None:
    world.write("a.bin", big)
    # b.bin is the first chunks of a.bin: every chunk it lists, a.bin holds
    half = []
    total = 0
    for chunk in cut(big, world.scratch / "a"):
        if total + chunk.size > SIZE // 2:
            break
        half.append(chunk)
        total += chunk.size
    first = big[:total]
    new = await world.publish("b.bin", first, half)

    applied = await world.apply(downloads(new))

    assert world.read("b.bin") == first
    assert (applied.downloaded, applied.copied_locally, applied.downloaded_bytes) == (0, 1, 0)
    assert world.store.counts == {}


async def test_a_conflict_copy_in_chunks_is_assembled_beside_the_file(
    world: World, big: bytes
) -> None:
    world.write("big.bin", big)
    theirs = overwrite(big, 5, b"their edit")
    new = await world.publish("big.bin", theirs)
    copy = ConflictCopy(
        path="big.bin", copy_path="big.conflict-b-20260101T000000Z.bin", device_id="b", entry=new
    )

    applied = await world.apply(Plan(publishes=False, conflict_copies=[copy]))

    assert world.read("big.bin") == big
    assert world.read("big.conflict-b-20260101T000000Z.bin") == theirs
    assert applied.reused_bytes > 0 and applied.stats == {}


# --- which entries go by chunks -----------------------------------------------------------


async def test_a_small_file_another_writer_cut_is_assembled_from_its_chunks(
    world: World,
) -> None:
    """SPEC 1.6: a reader needs only the list. This device stores such a file as one
    blob, another writer chose chunks: there is no blob under the file's sha256."""
    data = noise("small", 3 * MiB)
    chunks = [Chunk(sha(data[: 2 * MiB]), 2 * MiB), Chunk(sha(data[2 * MiB :]), MiB)]
    new = await world.publish("small.bin", data, chunks)

    applied = await world.apply(downloads(new))

    assert world.read("small.bin") == data
    assert world.store.counts == {"get_file": 2}
    assert not applied.problems


async def test_a_large_file_another_writer_did_not_cut_is_fetched_as_one_blob(
    world: World,
) -> None:
    data = noise("uncut", 17 * MiB)
    await world.store.inner.put(KEYS.blob(sha(data)), data)

    applied = await world.apply(downloads(entry("uncut.bin", data, None)))

    assert world.read("uncut.bin") == data
    assert world.store.counts == {"get_file": 1}
    assert applied.downloaded_bytes == len(data) and not applied.problems


# --- nothing lands that does not verify ---------------------------------------------------


async def test_a_chunk_with_flipped_bytes_is_an_integrity_problem_and_nothing_lands(
    world: World, big: bytes
) -> None:
    world.write("big.bin", b"the local version")
    new = await world.publish("big.bin", big)
    assert new.chunks is not None
    bad = new.chunks[1]
    key = KEYS.blob(bad.sha256)
    flipped = bytearray(await world.store.inner.get(key))
    flipped[100] ^= 0xFF
    await world.store.inner.put(key, bytes(flipped))

    applied = await world.apply(downloads(new))

    assert world.read("big.bin") == b"the local version"
    assert kinds(applied) == {"big.bin": "integrity"}
    assert bad.sha256 in applied.problems[0].message
    assert applied.failed == {"big.bin"} and applied.stats == {}
    assert world.tmp_files() == []


async def test_chunks_that_do_not_make_the_whole_files_sha256_land_nothing(
    world: World, big: bytes
) -> None:
    """Every chunk verifies, but the list is of other bytes than `sha256` says."""
    new = await world.publish("big.bin", big)
    lying = entry("big.bin", overwrite(big, 0, b"not these"), new.chunks)

    applied = await world.apply(downloads(lying))

    assert not (world.root / "big.bin").exists()
    assert kinds(applied) == {"big.bin": "integrity"}
    assert "reassemble" in applied.problems[0].message
    assert world.tmp_files() == []


async def test_a_missing_chunk_is_a_problem_naming_it_and_nothing_lands(
    world: World, big: bytes
) -> None:
    new = await world.publish("big.bin", big)
    assert new.chunks is not None
    await world.store.inner.delete(KEYS.blob(new.chunks[-1].sha256))

    applied = await world.apply(downloads(new))

    assert not (world.root / "big.bin").exists()
    assert kinds(applied) == {"big.bin": "missing_blob"}
    assert new.chunks[-1].sha256 in applied.problems[0].message
    assert world.tmp_files() == []
    assert os.listdir(world.root) == [".dropbear"]


class Ordered(ForwardingStore):
    """Records the order of the requests it forwards."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.ops: list[tuple[str, str]] = []

    async def _forward(self, op: str, key: str, call: Callable[[], Awaitable[T]]) -> T:
        self.ops.append((op, key))
        return await call()


async def test_a_large_file_starts_downloading_before_the_small_files_planned_before_it(
    world: World, big: bytes
) -> None:
    smalls = []
    for i in range(40):
        data = noise(f"small {i}", 1000 + i)
        await world.store.inner.put(KEYS.blob(sha(data)), data)
        smalls.append(entry(f"a/{i:02}.txt", data, None))
    new = await world.publish("z/big.bin", big)
    ordered = Ordered(world.store.inner)
    world.store.inner = ordered

    applied = await world.apply(downloads(*smalls, new))

    assert not applied.problems and world.read("z/big.bin") == big
    # its first chunk is asked for as soon as a request slot frees (the small files'
    # gets hold them all while it creates its file), not after all 40 small files
    first = [op for op, _ in ordered.ops].index("get_file")
    assert first < 40
    assert len(ordered.ops) == 40 + len({c.sha256 for c in new.chunks or ()})
