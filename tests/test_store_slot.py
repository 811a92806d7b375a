"""A download's file-like end in a `FileSlot` (dropbeard.store.slot): pieces land one
after another at the slot's offset, and none past its size."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropbeard.core.errors import IntegrityError
from dropbeard.store.base import FileSlot
from dropbeard.store.slot import SlotWriter


def test_pieces_land_one_after_another_from_the_slots_offset(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_bytes(b"." * 20)
    fd = os.open(file, os.O_RDWR)
    try:
        out = SlotWriter(FileSlot(fd, 5, 10), "blobs/k")
        out.write(b"abcd")
        out.write(memoryview(b"efghij"))
        out.close()
        os.fstat(fd)  # the caller's fd stays open
    finally:
        os.close(fd)
    assert file.read_bytes() == b"....." + b"abcdefghij" + b"....."


def test_a_piece_past_the_slots_size_is_refused_and_not_written(tmp_path: Path) -> None:
    file = tmp_path / "f"
    file.write_bytes(b"." * 20)
    fd = os.open(file, os.O_RDWR)
    try:
        out = SlotWriter(FileSlot(fd, 5, 10), "blobs/k")
        out.write(b"abcdefgh")
        with pytest.raises(IntegrityError, match=r"blobs/k.*more than the 10 bytes") as raised:
            out.write(b"xyz")
    finally:
        os.close(fd)
    assert raised.value.key == "blobs/k"
    assert file.read_bytes() == b"....." + b"abcdefgh" + b"......."
