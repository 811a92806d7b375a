"""What a test needs to see whether a file's bytes went through the page cache (Linux)."""

from __future__ import annotations

import ctypes
import ctypes.util
import mmap
import os
from pathlib import Path

import pytest

from dropbeard.store.direct import open_direct


def direct_works(path: Path) -> bool:
    """Whether the existing file `path` can be opened with O_DIRECT."""
    dfd = open_direct(path)
    if dfd < 0:
        return False
    os.close(dfd)
    return True


def skip_without_direct(tmp_path: Path) -> None:
    """Skip the test where `tmp_path`'s file system has no O_DIRECT."""
    probe = tmp_path / "direct-probe"
    probe.write_bytes(b"")
    works = direct_works(probe)
    probe.unlink()
    if not works:
        pytest.skip("this file system has no O_DIRECT")


def resident_pages(path: Path) -> tuple[int, int]:
    """(pages of `path` in the page cache, pages of `path`), by mincore(2) on a mapping
    that is never touched."""
    libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [
        ctypes.c_void_p,
        ctypes.c_size_t,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_int,
        ctypes.c_long,
    ]
    libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
    libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    size = path.stat().st_size
    pages = -(-size // mmap.PAGESIZE)
    vec = (ctypes.c_ubyte * pages)()
    fd = os.open(path, os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            raise OSError(ctypes.get_errno(), "mmap")
        try:
            if libc.mincore(addr, size, vec) != 0:
                raise OSError(ctypes.get_errno(), "mincore")
        finally:
            libc.munmap(addr, size)
    finally:
        os.close(fd)
    return sum(v & 1 for v in vec), pages
