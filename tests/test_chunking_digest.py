"""One read of a file gives its SHA-256, its size and its FastCDC chunks
(dropbeard.sync.chunking): the same cuts as the reference implementation, chunks that
tile the file, a small edit that changes one chunk, and a file changing under the read
reported, never digested."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from dropbeard.core.chunking import CHUNKED_ABOVE, MAX_CHUNK, MIN_CHUNK, Chunk
from dropbeard.sync.chunking import Chunker, FileDigest, new_cutter
from dropbeard.sync.hashing import Changed
from tests.chunkfiles import MiB, noise, overwrite, repeated, sha

#: Chunk sizes that fastcdc-rs 4.0.1 (`fastcdc::v2020::FastCDC::new(&data, 1 MiB, 4 MiB,
#: 16 MiB)`, normalization level 1, seed 0) cuts these files into. If pyfastcdc (or the
#: parameters) ever cut differently, devices stop sharing chunks with every device that
#: did not upgrade at the same time: this must never change silently.
REFERENCE = {
    "noise": (
        lambda: noise("dropbeard kat 1", 48 * MiB),
        [
            *(2878427, 3050322, 1697942, 4496789, 2321389, 8204402),
            *(4364473, 4239026, 4113945, 7967515, 5323434, 1673984),
        ],
    ),
    "repeated": (
        lambda: repeated("dropbeard kat 2", 3 * MiB, 40 * MiB),
        [6521423, 6291456, 6291456, 6291456, 6291456, 6291456, 3964337],
    ),
    "zeros": (lambda: bytes(20 * MiB), [16777216, 4194304]),
}


def digest(tmp_path: Path, data: bytes, **kwargs: object) -> FileDigest:
    path = tmp_path / "file"
    path.write_bytes(data)
    return Chunker(**kwargs).digest_file(path)  # type: ignore[arg-type]


def assert_tiles(data: bytes, d: FileDigest) -> None:
    """The chunks, concatenated in order, are the file; each is keyed by its SHA-256."""
    assert d.chunks is not None
    assert d.sha256 == sha(data) and d.size == len(data)
    at = 0
    view = memoryview(data)
    for chunk in d.chunks:
        assert chunk.sha256 == sha(view[at : at + chunk.size])
        at += chunk.size
    assert at == len(data)


@pytest.mark.parametrize(
    ("name", "overlap"),
    [("noise", True), ("noise", False), ("repeated", True), ("zeros", True)],
    ids=["noise", "noise_one_thread", "repeated", "zeros"],
)
def test_cuts_are_those_of_the_reference_implementation(
    tmp_path: Path, name: str, overlap: bool
) -> None:
    make, sizes = REFERENCE[name]
    data = make()
    d = digest(tmp_path, data, overlap=overlap)
    assert d.chunks is not None and [c.size for c in d.chunks] == sizes
    assert_tiles(data, d)


def test_a_file_of_16_mib_or_less_is_one_blob(tmp_path: Path) -> None:
    for data in (b"", b"x", noise("small", CHUNKED_ABOVE)):
        d = digest(tmp_path, data)
        assert d == FileDigest(sha(data), len(data), None)


def test_one_byte_over_16_mib_is_chunked(tmp_path: Path) -> None:
    data = noise("edge", CHUNKED_ABOVE + 1)
    d = digest(tmp_path, data)
    assert d.chunks is not None and len(d.chunks) >= 2
    assert_tiles(data, d)


def test_equal_stretches_make_equal_chunks(tmp_path: Path) -> None:
    """A 6 MiB block repeated: after the first cut every block cuts alike."""
    data = repeated("dedup", 6 * MiB, 42 * MiB)
    d = digest(tmp_path, data)
    assert d.chunks is not None
    assert len(set(d.chunks)) < len(d.chunks) // 2


DATA_KINDS = st.sampled_from(["noise", "repeated", "sparse"])


def make_data(kind: str, seed: int, size: int) -> bytes:
    if kind == "noise":
        return noise(f"p{seed}", size)
    if kind == "repeated":
        return repeated(f"p{seed}", MIN_CHUNK + seed % MAX_CHUNK, size)
    # mostly zeros (no cut but the forced one) with islands of noise
    data = bytearray(size)
    for i in range(0, size, 6 * MiB):
        data[i : i + MiB] = noise(f"p{seed}-{i}", min(MiB, size - i))
    return bytes(data)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    kind=DATA_KINDS,
    seed=st.integers(0, 10**6),
    size=st.integers(CHUNKED_ABOVE + 1, 2 * MAX_CHUNK + 3 * MiB),
    buffer=st.integers(2 * MAX_CHUNK, 4 * MAX_CHUNK),
    overlap=st.booleans(),
)
def test_chunks_tile_the_file_within_bounds_and_cut_as_one_pass_over_it_would(
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    seed: int,
    size: int,
    buffer: int,
    overlap: bool,
) -> None:
    """Whatever the buffer size (the file is cut window by window), the cuts are those
    of the cutter run over the whole file at once, every chunk but the last holds
    MIN_CHUNK to MAX_CHUNK bytes, and the chunks tile the file."""
    data = make_data(kind, seed, size)
    d = digest(tmp_path_factory.mktemp("p"), data, buffer=buffer, overlap=overlap)
    assert_tiles(data, d)
    assert d.chunks is not None
    assert all(MIN_CHUNK <= c.size <= MAX_CHUNK for c in d.chunks[:-1])
    assert 0 < d.chunks[-1].size <= MAX_CHUNK
    whole = [c.length for c in new_cutter().cut_buf(data)]
    assert [c.size for c in d.chunks] == whole


def changed_chunks(before: FileDigest, after: FileDigest) -> list[Chunk]:
    assert before.chunks is not None and after.chunks is not None
    return [c for c in after.chunks if c not in set(before.chunks)]


@pytest.fixture(scope="module")
def base_64_mib(tmp_path_factory: pytest.TempPathFactory) -> tuple[bytes, FileDigest]:
    data = noise("edit base", 64 * MiB)
    return data, digest(tmp_path_factory.mktemp("base"), data)


@pytest.mark.parametrize("edit", ["overwrite", "insert", "delete"])
def test_a_4_kib_edit_in_the_middle_of_64_mib_changes_one_chunk(
    tmp_path: Path, edit: str, base_64_mib: tuple[bytes, FileDigest]
) -> None:
    """Measured over 200 random places each: an overwrite or an insert always changed
    exactly one chunk, a delete once in 200 changed three (a lost cut shifted the next
    under the minimum size). In the middle of this file: one."""
    data, before = base_64_mib
    middle, new = 32 * MiB + 12345, noise("edit", 4096)
    edited = {
        "overwrite": overwrite(data, middle, new),
        "insert": data[:middle] + new + data[middle:],
        "delete": data[:middle] + data[middle + 4096 :],
    }[edit]
    after = digest(tmp_path, edited)
    assert len(changed_chunks(before, after)) == 1
    assert_tiles(edited, after)


def test_a_file_that_grew_after_it_was_listed_is_changed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(noise("grow", 20 * MiB))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(Changed):
            Chunker().digest_fd(fd, 20 * MiB - 1)
    finally:
        os.close(fd)


def test_a_file_that_shrank_after_it_was_listed_is_changed(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(noise("shrink", 20 * MiB))
    fd = os.open(path, os.O_RDONLY)
    try:
        with pytest.raises(Changed):
            Chunker().digest_fd(fd, 20 * MiB + 1)
    finally:
        os.close(fd)


def test_a_file_written_while_it_is_read_is_changed(tmp_path: Path) -> None:
    """Its stat after the read differs from before (here: written once the cutter ran)."""
    path = tmp_path / "f"
    path.write_bytes(noise("write", 20 * MiB))
    chunker = Chunker()
    cutter = new_cutter()

    class WritingCutter:
        def cut_buf(self, buf: memoryview) -> object:
            with open(path, "r+b") as f:
                f.write(b"edited")
            return cutter.cut_buf(buf)

    chunker._cutter = WritingCutter()  # type: ignore[assignment]
    with pytest.raises(Changed, match="while it was being read"):
        chunker.digest_file(path)


def test_a_symlink_or_a_fifo_is_not_digested(tmp_path: Path) -> None:
    (tmp_path / "target").write_bytes(b"x")
    (tmp_path / "link").symlink_to("target")
    os.mkfifo(tmp_path / "fifo")
    for name in ("link", "fifo"):
        with pytest.raises(Changed):
            Chunker().digest_file(tmp_path / name)


def test_a_buffer_smaller_than_two_windows_is_refused() -> None:
    with pytest.raises(ValueError):
        Chunker(buffer=2 * MAX_CHUNK - 1)


def test_the_chunker_is_loaded_at_the_first_file_to_cut(tmp_path: Path) -> None:
    """A pass that cuts no file never loads pyfastcdc (a command's start pays ~7 ms for
    it); the first file over CHUNKED_ABOVE does, and is cut as before. In a fresh
    interpreter: this one has loaded it long ago."""
    (tmp_path / "small").write_bytes(noise("small", 1 * MiB))
    (tmp_path / "large").write_bytes(noise("large", CHUNKED_ABOVE + 1))
    script = (
        "import sys\n"
        "from pathlib import Path\n"
        "import dropbeard.sync.scan\n"
        "from dropbeard.sync.chunking import Chunker\n"
        "chunker = Chunker()\n"
        "small = chunker.digest_file(Path(sys.argv[1]) / 'small')\n"
        "print('pyfastcdc' in sys.modules, small.chunks is None)\n"
        "large = chunker.digest_file(Path(sys.argv[1]) / 'large')\n"
        "print('pyfastcdc' in sys.modules, len(large.chunks or ()) > 1)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script, str(tmp_path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split("\n")
    assert out[:2] == ["False True", "True True"]
