"""A downloaded small file's bytes written to its temporary file with plain system calls
(dropbeard.sync.fetch.write_new): every byte, over what the file held, even when the
kernel takes them a few at a time; a large one's whole blocks past the page cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from dropbeard.sync import fetch
from dropbeard.sync.fetch import write_new
from tests.pagecache import resident_pages, skip_without_direct


def test_the_bytes_replace_what_the_file_held(tmp_path: Path) -> None:
    dest = tmp_path / "tmp-1"
    dest.write_bytes(b"x" * 1000)
    write_new(dest, b"payload")
    assert dest.read_bytes() == b"payload"
    write_new(tmp_path / "tmp-2", b"")
    assert (tmp_path / "tmp-2").read_bytes() == b""


def test_a_short_write_is_continued_until_every_byte_is_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_write = os.write
    calls: list[int] = []

    def three_at_a_time(fd: int, data: bytes | memoryview) -> int:
        calls.append(len(data))
        return real_write(fd, data[:3])

    monkeypatch.setattr(fetch.os, "write", three_at_a_time)
    dest = tmp_path / "tmp-1"
    write_new(dest, b"0123456789")
    assert dest.read_bytes() == b"0123456789"
    assert calls == [10, 7, 4, 1]


def test_the_file_is_closed_when_a_write_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    closed: list[int] = []
    real_close = os.close

    def disk_full(fd: int, data: bytes | memoryview) -> int:
        raise OSError(28, "No space left on device")

    def close(fd: int) -> None:
        closed.append(fd)
        real_close(fd)

    monkeypatch.setattr(fetch.os, "write", disk_full)
    monkeypatch.setattr(fetch.os, "close", close)
    with pytest.raises(OSError, match="No space left"):
        write_new(tmp_path / "tmp-1", b"payload")
    assert len(closed) == 1


@pytest.mark.skipif(sys.platform != "linux", reason="mincore(2) is Linux's")
def test_a_large_one_leaves_almost_nothing_in_the_page_cache_a_small_one_all(
    tmp_path: Path,
) -> None:
    skip_without_direct(tmp_path)
    big = os.urandom(3 * 1024 * 1024 + 99)
    write_new(tmp_path / "tmp-big", big)
    write_new(tmp_path / "tmp-small", b"s" * 50_000)

    resident, _pages = resident_pages(tmp_path / "tmp-big")
    assert resident <= 2  # the partial block at its end
    resident, pages = resident_pages(tmp_path / "tmp-small")
    assert resident == pages
    assert (tmp_path / "tmp-big").read_bytes() == big
