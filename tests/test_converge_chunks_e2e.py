"""Large files stored as chunks (SPEC 1.6), end to end through the real CLI, on a local
directory remote and on SeaweedFS: a large file syncs as its chunks; an edit inside it
moves one or two chunks each way; an upload cut short resumes with the chunks still
missing; a chunk that does not verify lands nothing."""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

import dropbeard.cli.sync as cli_sync
from dropbeard.core.chunking import MAX_CHUNK, Chunk, MiB
from dropbeard.core.errors import Unavailable
from dropbeard.store.base import FileSlot, ObjectInfo, Progress, Store
from dropbeard.store.counting import CountingStore
from dropbeard.sync.chunking import Chunker
from tests.chunkfiles import noise, overwrite, sha
from tests.converge import Bucket, devices
from tests.faults import FaultStore


def chunks_of(path: Path) -> tuple[Chunk, ...]:
    chunks = Chunker().digest_file(path).chunks
    assert chunks is not None
    return chunks


class Metered(CountingStore):
    """Counts requests (CountingStore) and the bytes of blobs sent and received."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.sent: dict[str, int] = {}
        self.received: dict[str, int] = {}

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        etag = await super().put_if_absent(key, data, sha256=sha256)
        if "/blobs/" in key:
            self.sent[key] = len(data)
        return etag

    async def get_file(
        self,
        key: str,
        dest: Path | FileSlot,
        *,
        expected_sha256: str | None = None,
        progress: Progress | None = None,
    ) -> ObjectInfo:
        info = await super().get_file(key, dest, expected_sha256=expected_sha256, progress=progress)
        self.received[key] = info.size
        return info

    async def get(self, key: str) -> bytes:
        data = await super().get(key)
        if "/blobs/" in key:
            self.received[key] = len(data)
        return data


@dataclass
class Wire:
    """Every store `dropbeard sync` opens from now on, wrapped as the test says: the
    stores of each pass, in order."""

    opened: list[Store] = field(default_factory=list)
    faults: list[tuple[str, int]] = field(default_factory=list)  # (prefix, chunk PUTs let through)

    def last(self) -> Metered:
        store = self.opened[-1]
        while isinstance(store, FaultStore):
            store = store.inner
        assert isinstance(store, Metered)
        return store


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> Iterator[Wire]:
    wire = Wire()
    real = cli_sync.open_store

    def opener(*args: object, **kwargs: object) -> Store:
        store: Store = Metered(real(*args, **kwargs))  # type: ignore[arg-type]
        if wire.faults:
            prefix, through = wire.faults.pop(0)
            faulty = FaultStore(store)
            faulty.fail("put_if_absent", Unavailable, times=10_000, skip=through, prefix=prefix)
            store = faulty
        wire.opened.append(store)
        return store

    monkeypatch.setattr(cli_sync, "open_store", opener)
    yield wire


def blob_objects(remote: Bucket) -> set[str]:
    return {k for k in remote.objects() if k.startswith(remote.keys.blobs_prefix)}


# --- a large file goes as its chunks ---------------------------------------------------------


def test_a_large_file_syncs_between_two_devices_as_its_chunks(
    remote: Bucket, tmp_path: Path, wire: Wire
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    big = os.urandom(40 * MiB)
    a.write("media/big.bin", big)
    a.write("small.txt", "small")

    a.sync()
    b.sync()

    assert b.read("media/big.bin") == big and b.read("small.txt") == b"small"
    chunks = chunks_of(a.path("media/big.bin"))
    assert len(chunks) > 2
    entry = {e.path: e for e in remote.listing("a").entries}["media/big.bin"]
    assert (entry.sha256, entry.chunks) == (sha(big), list(chunks))
    keys = {remote.keys.blob(c.sha256) for c in chunks}
    assert keys <= blob_objects(remote)
    assert remote.keys.blob(sha(big)) not in remote.objects()  # no whole-file blob
    pulled = wire.last()
    assert set(pulled.received) == keys | {remote.keys.blob(sha(b"small"))}
    assert max(pulled.received.values()) <= MAX_CHUNK
    assert b.sync().json["hashed"] == 0  # its chunk list was kept: it is not read again
    assert b.status()["counts"] == {"clean": 3}


# --- an edit inside costs what changed ------------------------------------------------------


def test_a_4_kib_edit_inside_a_64_mib_file_moves_one_or_two_chunks_each_way(
    remote: Bucket, tmp_path: Path, wire: Wire
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    original = noise("sixty-four", 64 * MiB)
    a.write("big.bin", original)
    a.sync()
    b.sync()
    old = {c.sha256 for c in chunks_of(a.path("big.bin"))}

    edited = overwrite(original, 40 * MiB + 4321, noise("four KiB", 4096))
    a.write("big.bin", edited)
    pushed = a.sync().json
    sent = wire.last()
    new_chunks = chunks_of(a.path("big.bin"))
    changed = {remote.keys.blob(c.sha256): c.size for c in new_chunks if c.sha256 not in old}
    assert 1 <= len(changed) <= 2
    assert sent.sent == changed  # only the changed chunks went up, nothing else
    assert pushed["uploaded_bytes"] == sum(changed.values()) <= 2 * MAX_CHUNK
    assert sent.counts["head"] == len(changed)  # the rest were known to be there

    pulled = b.sync().json
    got = wire.last()
    assert b.read("big.bin") == edited
    assert got.received == changed  # only those came down; the rest from b's old copy
    assert pulled["downloaded_bytes"] == sum(changed.values())


# --- an upload cut short ---------------------------------------------------------------------


def test_an_upload_cut_short_resumes_by_sending_only_the_missing_chunks(
    remote: Bucket, tmp_path: Path, wire: Wire
) -> None:
    (a,) = devices(remote, tmp_path, "a")
    big = os.urandom(48 * MiB)
    a.write("big.bin", big)
    keys = {remote.keys.blob(c.sha256) for c in chunks_of(a.path("big.bin"))}
    assert len(keys) > 3
    wire.faults.append((remote.keys.blobs_prefix, 2))  # two chunks land, then the link dies

    # one request at a time: the two chunks are on the server when the third fails
    a.sync("--concurrency", "1", code=10)  # transient: nothing published or committed
    landed = keys & blob_objects(remote)
    assert len(landed) == 2
    assert not remote.has_head("a")

    a.sync()
    resent = wire.last().sent
    assert set(resent) == keys - landed  # none of the two that landed went again
    assert remote.has_head("a")
    assert (
        b"".join(remote.get(remote.keys.blob(c.sha256)) for c in chunks_of(a.path("big.bin")))
        == big
    )


# --- what does not verify lands nothing ---------------------------------------------------


def test_a_chunk_with_flipped_bytes_is_an_integrity_problem_for_that_file_alone(
    remote: Bucket, tmp_path: Path, wire: Wire
) -> None:
    a, b = devices(remote, tmp_path, "a", "b")
    big = os.urandom(40 * MiB)
    a.write("big.bin", big)
    a.write("fine.txt", "fine")
    a.sync()
    key = remote.keys.blob(chunks_of(a.path("big.bin"))[1].sha256)
    flipped = bytearray(remote.get(key))
    flipped[12345] ^= 0x01
    remote.put(key, bytes(flipped))

    got = b.sync(code=11).json  # integrity, as for any blob that does not verify

    assert not b.path("big.bin").exists()
    assert b.read("fine.txt") == b"fine"  # the rest of the pass went on
    assert got["problems"] == 1
    (problem,) = b.status()["problems"]
    assert problem["path"] == "big.bin" and problem["kind"] == "integrity"
    assert key in problem["message"]
    assert list((b.root / ".dropbear" / "tmp").iterdir()) == []

    first = chunks_of(a.path("big.bin"))[0].size
    remote.put(key, big[first : first + len(flipped)])  # repaired
    b.sync()
    assert b.read("big.bin") == big
