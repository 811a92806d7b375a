"""Copying bytes between a caller's file and a `LocalStore` object, a chunk at a time,
hashing as it goes (IO: files; the store runs each step in a worker thread)."""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable
from pathlib import Path
from typing import Protocol

from dropbeard.core.errors import LocalFileError, StoreError

CHUNK = 1024 * 1024


class Sink(Protocol):
    """Where a copy writes: a file, or a `dropbeard.store.slot.SlotWriter`."""

    def write(self, data: memoryview, /) -> int: ...

    def close(self) -> None: ...


class HashingCopy:
    """Copies `src` to `dst` one chunk per `step`, hashing as it goes; OSErrors from
    either side become the store error its `*_error` function makes."""

    def __init__(
        self,
        src: io.BufferedIOBase,
        dst: Sink,
        hasher: hashlib._Hash,
        src_error: Callable[[OSError], StoreError],
        dst_error: Callable[[OSError], StoreError],
    ) -> None:
        self._src, self._dst, self._hasher = src, dst, hasher
        self._src_error, self._dst_error = src_error, dst_error
        self._buf = bytearray(CHUNK)

    def step(self) -> int:
        """Copy the next chunk; its size (0: the end)."""
        try:
            n = self._src.readinto(self._buf)
        except OSError as err:
            raise self._src_error(err) from err
        if n:
            view = memoryview(self._buf)[:n]
            self._hasher.update(view)
            try:
                self._dst.write(view)
            except OSError as err:
                raise self._dst_error(err) from err
        return int(n or 0)


def local_file_errors(path: Path, key: str) -> Callable[[OSError], StoreError]:
    """Errors on the caller's local file: permanent, and not the store's credentials."""
    return lambda err: LocalFileError(
        f"copying {key}: local file {path}: {err.strerror or err}", key, err.errno
    )


def open_local(path: Path, key: str) -> io.BufferedIOBase:
    """The caller's file `path`, for reading."""
    try:
        return open(path, "rb")
    except OSError as err:
        raise local_file_errors(path, key)(err) from err


def close_all(*files: Sink | io.BufferedIOBase | None) -> None:
    for f in files:
        if f is not None:
            f.close()
