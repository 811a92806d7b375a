"""A first sync sends its files of up to one PUT while the scan is still hashing (sync.ahead): the
blobs go up beside the scan, each once, and are counted as uploaded; never when another
device published a tree (its blobs may be those bytes), on a dry run, or again after a
failed request (the upload step sends what is left)."""

from __future__ import annotations

import hashlib
import os
import threading
from collections import Counter
from pathlib import Path
from typing import Any

import anyio
import pytest

from dropbeard.cli.main import main
from dropbeard.core.chunking import CHUNKED_ABOVE, MAX_CHUNK, MiB
from dropbeard.core.keys import RootKeys
from dropbeard.core.summary import Summary
from dropbeard.store.base import Store
from dropbeard.store.forwarding import ForwardingStore
from dropbeard.store.local import LocalStore
from dropbeard.sync import ahead, hashing
from dropbeard.sync.ahead import LARGEST, MEMORY, Ahead
from dropbeard.sync.budget import TransferBudget
from dropbeard.sync.engine import PassOptions
from dropbeard.sync.meter import Direction, PassMeter, Stage, StageName, Transfer
from tests.faults import FaultStore
from tests.onepass import agreed_entries, run_one_pass
from tests.test_sync_treepublish import agreed, listed

KEYS = RootKeys("r1")
FILES = 60
#: How long the scan's hashing waits, half-way, for a blob to go up: a scan that does
#: not send ahead waits this long, and the test fails.
PATIENCE = 10.0


class BlobPuts(ForwardingStore):
    """Counts the blob PUTs per key; `first` is set when the first one begins."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.puts: Counter[str] = Counter()
        self.first = threading.Event()

    async def put_if_absent(self, key: str, data: bytes, *, sha256: str | None = None) -> str:
        if key.startswith(KEYS.blobs_prefix):
            self.puts[key] += 1
            self.first.set()
        return await super().put_if_absent(key, data, sha256=sha256)


def device(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name
    (tmp_path / "remote").mkdir(exist_ok=True)
    args = ["init", str(folder), "--remote", str(tmp_path / "remote"), "--root-id", "r1"]
    assert main([*args, "--device-id", name, "-q"]) == 0
    return folder


def fill(root: Path, tag: str, count: int = FILES, size: int | None = None) -> int:
    """`count` small files in a few folders (or of `size` bytes and a kilobyte more for
    each); their bytes in total. (A batch of 40 is taken after the hashing's half-way
    point.)"""
    total = 0
    for i in range(count):
        path = root / f"d{i % 5}" / f"f{i}.txt"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = f"{tag} {i}\n".encode() * (i + 1)
        if size is not None:
            data = (data * (size // len(data) + 1))[: size + 1000 * i]
        path.write_bytes(data)
        total += len(data)
    return total


class Halfway:
    """Half-way through the hashing, the scan waits (at most PATIENCE) for a blob PUT to
    begin on `store`; `during_scan` says whether one did."""

    def __init__(self) -> None:
        self.store: BlobPuts | None = None
        self.during_scan = False
        self.hashed = 0
        self.lock = threading.Lock()


@pytest.fixture
def halfway(monkeypatch: pytest.MonkeyPatch) -> Halfway:
    wait = Halfway()
    real = hashing.Hasher.sha256

    def sha256(
        self: hashing.Hasher, path: str, disk: str | None, key: hashing.StatKey, **kw: bool
    ) -> str:
        with wait.lock:
            wait.hashed += 1
            now = wait.hashed == FILES // 2
        if now and wait.store is not None:
            wait.during_scan = wait.store.first.wait(PATIENCE)
        return real(self, path, disk, key, **kw)

    monkeypatch.setattr(hashing.Hasher, "sha256", sha256)
    return wait


@pytest.mark.parametrize("batch_paths", [None, 40], ids=["one pass", "in batches"])
def test_a_first_sync_sends_its_small_files_while_it_hashes(
    tmp_path: Path, halfway: Halfway, batch_paths: int | None
) -> None:
    root = device(tmp_path, "a")
    total = fill(root, "a")
    store = halfway.store = BlobPuts(LocalStore(tmp_path / "remote"))
    opts = PassOptions() if batch_paths is None else PassOptions(batch_paths=batch_paths)

    summary = run_one_pass(root, store, opts)

    assert halfway.during_scan
    assert len(store.puts) == FILES and set(store.puts.values()) == {1}  # each once
    assert (summary.uploaded, summary.uploaded_bytes) == (FILES, total)
    assert listed(root) == agreed(root)
    assert len([p for p in listed(root) if p.endswith(".txt")]) == FILES
    remote = LocalStore(tmp_path / "remote")
    for key in store.puts:
        assert anyio.run(remote.head, key).size > 0


def test_files_of_up_to_a_single_put_go_ahead_too(tmp_path: Path, halfway: Halfway) -> None:
    """Files of 100-160 KB, each read through the hash threads' buffer before: read whole
    and sent while the scan hashes (of a 1 GiB tree, most bytes are in such files)."""
    root = device(tmp_path, "a")
    total = fill(root, "a", size=100_000)
    assert min(p.stat().st_size for p in root.rglob("*.txt")) > 64 * 1024
    store = halfway.store = BlobPuts(LocalStore(tmp_path / "remote"))

    summary = run_one_pass(root, store, PassOptions())

    assert halfway.during_scan
    assert len(store.puts) == FILES and set(store.puts.values()) == {1}
    assert (summary.uploaded, summary.uploaded_bytes) == (FILES, total)
    assert listed(root) == agreed(root)


class Stages(PassMeter):
    """Records the stages a pass begins."""

    def __init__(self) -> None:
        super().__init__()
        self.begun: list[str] = []

    def begin(self, name: StageName, files: int | None, nbytes: int | None) -> Stage | None:
        self.begun.append(name)
        return super().begin(name, files, nbytes)


def test_the_hash_threads_wait_for_room_so_every_file_goes_ahead(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Room for two of the files at a time: the hash threads wait for it while the
    bucket takes the others, and nothing is left for an uploading stage to read again."""
    monkeypatch.setattr(ahead, "MEMORY", 330_000)
    root = device(tmp_path, "a")
    total = fill(root, "a", size=100_000)
    store = BlobPuts(LocalStore(tmp_path / "remote"))
    meter = Stages()

    summary = run_one_pass(root, store, PassOptions(meter=meter))

    assert "uploading" not in meter.begun
    assert len(store.puts) == FILES and set(store.puts.values()) == {1}
    assert (summary.uploaded, summary.uploaded_bytes) == (FILES, total)
    assert listed(root) == agreed(root)


def test_a_failed_request_frees_the_hash_threads_waiting_for_room(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ahead, "MEMORY", 330_000)
    root = device(tmp_path, "a")
    total = fill(root, "a", size=100_000)
    faults = FaultStore(LocalStore(tmp_path / "remote"))
    faults.fail("put_if_absent", prefix=KEYS.blobs_prefix, skip=3)
    store = BlobPuts(faults)
    got: list[Summary] = []
    worker = threading.Thread(target=lambda: got.append(run_one_pass(root, store, PassOptions())))

    worker.start()
    worker.join(60)

    assert not worker.is_alive(), "the pass hung"
    (summary,) = got
    assert faults.fired["put_if_absent"] == 1
    assert (summary.uploaded, summary.uploaded_bytes) == (FILES, total)
    assert listed(root) == agreed(root)


def test_room_is_for_a_single_put_within_the_memory(tmp_path: Path) -> None:
    async def check() -> None:
        store = LocalStore(tmp_path / "remote")
        ahead = Ahead(store, KEYS, TransferBudget(4), fresh_since=0.0)
        assert ahead.room(LARGEST) and not ahead.room(LARGEST + 1)
        sizes = [LARGEST] * (MEMORY // LARGEST - 1) + [LARGEST - 10]
        offered = [bytes([i]) * size for i, size in enumerate(sizes)]
        for i, data in enumerate(offered):
            ahead.offer(f"f{i}", _sha(data), data)  # they wait: `run` was never started
        assert ahead.room(10) and not ahead.room(11)
        ahead.offer("more", _sha(b"y" * 11), b"y" * 11)  # no room: left to the upload step
        assert ahead._taken == {_sha(data) for data in offered}

    anyio.run(check)


def test_a_hasher_keeps_the_bytes_it_is_asked_to(tmp_path: Path) -> None:
    data = bytes(range(256)) * 1024  # 256 KiB: past the one-call reads of small files
    (tmp_path / "f").write_bytes(data)
    st = (tmp_path / "f").stat()
    key = hashing.StatKey(st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns)
    fd = os.open(tmp_path, os.O_RDONLY)
    try:
        hasher = hashing.Hasher(fd, None)
        assert hasher.sha256("f", None, key) == _sha(data) and hasher.whole is None
        assert hasher.sha256("f", None, key, keep=True) == _sha(data)
        assert hasher.whole == data
    finally:
        os.close(fd)


def a_large_file(root: Path) -> bytes:
    """A file stored in chunks (of 1-16 MiB, SPEC 1.6) alone in `root`; its bytes."""
    data = os.urandom(CHUNKED_ABOVE + 4 * MiB)
    (root / "big.bin").write_bytes(data)
    return data


def test_a_large_files_chunks_go_ahead_as_they_are_cut(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each chunk is sent as soon as it is cut and hashed, from the bytes the cut read:
    the scan's digest of the file waits (at most PATIENCE) for a chunk PUT to begin."""
    monkeypatch.setattr(ahead, "LARGEST", MAX_CHUNK)  # every chunk fits, whatever its size
    root = device(tmp_path, "a")
    data = a_large_file(root)
    store = BlobPuts(LocalStore(tmp_path / "remote"))
    during_scan: list[bool] = []
    real = hashing.Hasher.chunked

    def chunked(self: hashing.Hasher, *args: Any) -> object:
        digest = real(self, *args)
        during_scan.append(store.first.wait(PATIENCE))
        return digest

    monkeypatch.setattr(hashing.Hasher, "chunked", chunked)

    summary = run_one_pass(root, store, PassOptions())

    assert during_scan == [True]
    chunks = agreed_entries(root)["big.bin"].chunks
    assert chunks is not None and len(chunks) > 1
    assert store.puts == Counter(KEYS.blob(c.sha256) for c in chunks)  # each once
    assert (summary.uploaded, summary.uploaded_bytes) == (1, len(data))
    assert listed(root) == agreed(root)


def test_chunks_ahead_has_no_room_for_go_up_in_the_upload_step(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Ahead has room for every other chunk here: those go while the scan cuts, the others
    in the upload step, each once, the file counted once with all its bytes."""
    monkeypatch.setattr(ahead, "LARGEST", MAX_CHUNK)
    asked: list[int] = []
    real_room = ahead.Ahead.room

    def room(self: ahead.Ahead, size: int) -> bool:
        asked.append(size)
        return len(asked) % 2 == 1 and real_room(self, size)

    monkeypatch.setattr(ahead.Ahead, "room", room)
    root = device(tmp_path, "a")
    data = a_large_file(root)
    (root / "small.txt").write_bytes(b"small\n")
    store = BlobPuts(LocalStore(tmp_path / "remote"))

    summary = run_one_pass(root, store, PassOptions())

    chunks = agreed_entries(root)["big.bin"].chunks
    assert chunks is not None and len(chunks) > 2 and len(asked) == len(chunks) + 1
    blobs = [KEYS.blob(c.sha256) for c in chunks] + [KEYS.blob(_sha(b"small\n"))]
    assert store.puts == Counter(blobs)
    assert (summary.uploaded, summary.uploaded_bytes) == (2, len(data) + len(b"small\n"))
    assert listed(root) == agreed(root)
    remote = LocalStore(tmp_path / "remote")
    for chunk in chunks:
        got = anyio.run(remote.get, KEYS.blob(chunk.sha256))
        assert hashlib.sha256(got).hexdigest() == chunk.sha256


class Transfers(PassMeter):
    """Records the path each transfer is shown for."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []

    def transfer_started(self, key: str, direction: Direction, total: int | None) -> Transfer:
        transfer = super().transfer_started(key, direction, total)
        self.paths.append(transfer.path)
        return transfer


def test_what_is_sent_ahead_is_shown_by_path(tmp_path: Path) -> None:
    root = device(tmp_path, "a")
    fill(root, "a")
    meter = Transfers()

    run_one_pass(root, LocalStore(tmp_path / "remote"), PassOptions(meter=meter))

    blobs = [p for p in meter.paths if not p.startswith(KEYS.trees_prefix)]
    assert sorted(blobs) == sorted(f"d{i % 5}/f{i}.txt" for i in range(FILES))


def test_not_when_another_device_published_a_tree(tmp_path: Path) -> None:
    """The other device's blobs may be these bytes: the upload step, which knows them,
    sends only the others (none of the shared files' blobs goes up again)."""
    b = device(tmp_path, "b")
    fill(b, "same")
    run_one_pass(b, LocalStore(tmp_path / "remote"), PassOptions())
    a = device(tmp_path, "a")
    fill(a / "copy", "same")  # the same bytes under other paths: new paths to a
    (a / "mine.txt").write_text("only on a\n")
    store = BlobPuts(LocalStore(tmp_path / "remote"))

    run_one_pass(a, store, PassOptions())

    assert list(store.puts) == [KEYS.blob(_sha(b"only on a\n"))]
    assert listed(a) == agreed(a)


def test_not_after_a_first_sync(tmp_path: Path) -> None:
    """A device that tracks files may hold these bytes already (a folder copied): the
    upload step, which knows what it published, sends nothing for them."""
    root = device(tmp_path, "a")
    fill(root, "a")
    run_one_pass(root, LocalStore(tmp_path / "remote"), PassOptions())
    fill(root / "copy", "a")
    store = BlobPuts(LocalStore(tmp_path / "remote"))

    summary = run_one_pass(root, store, PassOptions())

    assert not store.puts
    assert summary.uploaded == 0
    assert len([p for p in listed(root) if p.startswith("copy/")]) == FILES + 5


def test_not_on_a_dry_run(tmp_path: Path) -> None:
    root = device(tmp_path, "a")
    fill(root, "a")
    store = BlobPuts(LocalStore(tmp_path / "remote"))

    run_one_pass(root, store, PassOptions(dry_run=True))

    assert not store.puts


@pytest.mark.parametrize("batch_paths", [None, 25], ids=["one pass", "in batches"])
def test_a_failed_request_leaves_the_rest_to_the_upload_step(
    tmp_path: Path, batch_paths: int | None
) -> None:
    root = device(tmp_path, "a")
    total = fill(root, "a")
    faults = FaultStore(LocalStore(tmp_path / "remote"))
    faults.fail("put_if_absent", prefix=KEYS.blobs_prefix, skip=3)
    store = BlobPuts(faults)
    opts = PassOptions() if batch_paths is None else PassOptions(batch_paths=batch_paths)

    summary = run_one_pass(root, store, opts)

    assert faults.fired["put_if_absent"] == 1
    assert (summary.uploaded, summary.uploaded_bytes) == (FILES, total)
    assert len(store.puts) == FILES
    remote = LocalStore(tmp_path / "remote")
    for key in store.puts:
        assert anyio.run(remote.head, key).size > 0
    assert listed(root) == agreed(root)


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
