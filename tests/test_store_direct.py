"""Large downloads written and read back past the page cache (dropbeard.store.direct):
whatever the offsets and pieces, the file holds exactly the bytes given; neighbouring
ranges that share a block land side by side; a download really leaves (almost) nothing in
the page cache where the file system allows O_DIRECT; a refusal falls back to the page
cache with the same bytes."""

from __future__ import annotations

import errno
import hashlib
import os
import random
import sys
import threading
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.store import direct
from dropbeard.store.direct import ALIGN, BLOCK, RangeWriter, open_direct, read_range, write_range
from dropbeard.store.local import LocalStore
from tests.pagecache import resident_pages, skip_without_direct

MiB = 1 << 20


def _file(tmp: Path, size: int) -> tuple[Path, int, int]:
    path = tmp / f"f{random.getrandbits(32)}"
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
    os.ftruncate(fd, size)
    return path, fd, open_direct(path, os.O_RDWR)


def _close(fd: int, dfd: int) -> None:
    if dfd >= 0:
        os.close(dfd)
    os.close(fd)


@settings(max_examples=60, deadline=None)
@given(
    start=st.integers(0, 3 * ALIGN),
    pieces=st.lists(st.integers(1, BLOCK + 3 * ALIGN), min_size=1, max_size=5),
)
def test_a_range_holds_exactly_the_pieces_given_whatever_their_offsets(
    tmp_path_factory: pytest.TempPathFactory, start: int, pieces: list[int]
) -> None:
    tmp = tmp_path_factory.mktemp("range")
    data = os.urandom(sum(pieces))
    size = start + len(data) + ALIGN + 17
    path, fd, dfd = _file(tmp, size)
    os.pwrite(fd, b"\xee" * size, 0)  # what is outside the range must stay
    try:
        out = RangeWriter(fd, dfd, start)
        at = 0
        for n in pieces:
            out.write(data[at : at + n])
            at += n
        out.finish()
        got = bytearray()
        read_range(fd, dfd, 0, size, got.extend)
    finally:
        _close(fd, dfd)
    expected = b"\xee" * start + data + b"\xee" * (size - start - len(data))
    assert bytes(got) == expected
    assert path.read_bytes() == expected


@settings(max_examples=40, deadline=None)
@given(
    start=st.integers(0, 5 * MiB),
    length=st.integers(0, 3 * MiB),
)
def test_reading_back_any_range_gives_its_bytes(
    tmp_path_factory: pytest.TempPathFactory, start: int, length: int
) -> None:
    tmp = tmp_path_factory.mktemp("read")
    data = random.Random(start).randbytes(4 * MiB + 123)
    path = tmp / "f"
    path.write_bytes(data)
    fd = os.open(path, os.O_RDONLY)
    dfd = open_direct(path, os.O_RDONLY)
    try:
        got = bytearray()
        read_range(fd, dfd, start, start + length, got.extend)
    finally:
        _close(fd, dfd)
    assert bytes(got) == data[start : start + length]  # stops at the end of the file


def test_neighbouring_ranges_sharing_blocks_land_side_by_side_from_many_threads(
    tmp_path: Path,
) -> None:
    rng = random.Random(7)
    cuts = sorted(rng.sample(range(1, 12 * MiB), 40))
    bounds = list(zip([0, *cuts], [*cuts, 12 * MiB], strict=True))
    data = rng.randbytes(12 * MiB)
    path, fd, dfd = _file(tmp_path, len(data))
    errors: list[BaseException] = []

    def fill(a: int, b: int) -> None:
        try:
            out = RangeWriter(fd, dfd, a)
            for at in range(a, b, 300_001):
                out.write(memoryview(data)[at : min(b, at + 300_001)])
            out.finish()
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=fill, args=ab) for ab in rng.sample(bounds, len(bounds))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    try:
        digest = hashlib.sha256()
        read_range(fd, dfd, 0, len(data), digest.update)
    finally:
        _close(fd, dfd)
    assert not errors
    assert digest.hexdigest() == hashlib.sha256(data).hexdigest()
    assert path.read_bytes() == data


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform != "linux", reason="O_DIRECT and mincore(2) are Linux's")
async def test_a_large_download_leaves_almost_nothing_in_the_page_cache(tmp_path: Path) -> None:
    skip_without_direct(tmp_path)
    (tmp_path / "bucket").mkdir()
    store = LocalStore(tmp_path / "bucket")
    data = os.urandom(9 * MiB + 1234)
    await store.put("blobs/big", data)
    dest = tmp_path / "big"

    await store.get_file("blobs/big", dest, expected_sha256=hashlib.sha256(data).hexdigest())

    resident, pages = resident_pages(dest)
    assert resident <= 4, f"{resident} of {pages} pages went through the page cache"
    assert dest.read_bytes() == data


@pytest.mark.anyio
@pytest.mark.skipif(sys.platform != "linux", reason="mincore(2) is Linux's")
async def test_a_small_download_goes_through_the_page_cache_as_before(tmp_path: Path) -> None:
    (tmp_path / "bucket").mkdir()
    store = LocalStore(tmp_path / "bucket")
    data = os.urandom(100_000)
    await store.put("blobs/small", data)
    dest = tmp_path / "small"

    await store.get_file("blobs/small", dest)

    resident, pages = resident_pages(dest)
    assert resident == pages


def _failing_direct_writes(
    monkeypatch: pytest.MonkeyPatch, dfd: int, err: int, message: str
) -> None:
    """Every write through `dfd` fails with `err`; the others go through."""
    pwrite = os.pwrite

    def failing(target: int, buf: object, offset: int) -> int:
        if target == dfd:
            raise OSError(err, message)
        return pwrite(target, buf, offset)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "pwrite", failing)


def test_a_refused_direct_write_falls_back_to_the_page_cache_with_the_same_bytes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_without_direct(tmp_path)
    data = os.urandom(3 * MiB + 5)
    path, fd, dfd = _file(tmp_path, len(data) + 100)
    _failing_direct_writes(monkeypatch, dfd, errno.EINVAL, "Invalid argument")
    try:
        write_range(fd, dfd, 100, data)
        refused = os.fstat(dfd).st_dev in direct._refused
    finally:
        _close(fd, dfd)
        direct._refused.clear()
    assert refused  # not tried again on that file system
    assert path.read_bytes() == b"\0" * 100 + data


def test_other_write_errors_are_not_swallowed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    skip_without_direct(tmp_path)
    _path, fd, dfd = _file(tmp_path, 2 * MiB)
    _failing_direct_writes(monkeypatch, dfd, errno.ENOSPC, "No space left on device")
    try:
        with pytest.raises(OSError, match="No space"):
            write_range(fd, dfd, 0, os.urandom(2 * MiB))
    finally:
        _close(fd, dfd)
    assert not direct._refused
