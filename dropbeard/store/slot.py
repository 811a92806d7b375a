"""Writing a download into a `FileSlot` or a file of its own, a piece at a time (IO:
local files; the stores call it in worker threads). A large one's whole blocks are
written past the page cache where the file system allows (`dropbeard.store.direct`)."""

from __future__ import annotations

import os
from pathlib import Path

from dropbeard.core.errors import IntegrityError, LocalFileError
from dropbeard.store.base import FileSlot
from dropbeard.store.direct import DIRECT_FROM, RangeWriter, close_direct, open_direct


class _RangeEnd:
    """The file-like end of a download written through a `RangeWriter`: `write` hands each
    piece on, `close` writes what is staged (nothing after a failed write: the file is
    discarded) and says a failure as a LocalFileError naming `key`."""

    def __init__(self, out: RangeWriter, key: str, name: str) -> None:
        self._out, self._key, self.name = out, key, name
        self._failed = False

    def write(self, piece: bytes | memoryview, /) -> int:
        try:
            self._out.write(piece)
        except BaseException:
            self._failed = True
            raise
        return len(piece)

    def close(self) -> None:
        if self._failed:
            self._out.discard()
            return
        try:
            self._out.finish()
        except OSError as exc:
            raise _local_error(self._key, self.name, exc) from None


class SlotWriter(_RangeEnd):
    """The end of a download into `slot`: each piece lands after the last at the slot's
    offset, and none past its size (a hostile object of any size never runs over the
    rest of the file); `close` leaves the caller's descriptors open."""

    def __init__(self, slot: FileSlot, key: str) -> None:
        direct = slot.direct if slot.size >= DIRECT_FROM else -1
        super().__init__(
            RangeWriter(slot.fd, direct, slot.offset), key, f"<fd {slot.fd} at {slot.offset}>"
        )
        self._size = self._room = slot.size

    def write(self, piece: bytes | memoryview, /) -> int:
        if len(piece) > self._room:
            self._failed = True
            raise IntegrityError(
                f"downloading {self._key}: the object holds more than the "
                f"{self._size} bytes expected",
                self._key,
            )
        self._room -= super().write(piece)
        return len(piece)


class DirectFile(_RangeEnd):
    """The end of a download into a new file of `size` bytes: created or truncated, its
    whole blocks written direct if it is large; `close` closes it."""

    def __init__(self, path: Path, key: str, size: int) -> None:
        self._fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
        self._dfd = open_direct(path) if size >= DIRECT_FROM else -1
        super().__init__(RangeWriter(self._fd, self._dfd, 0), key, str(path))

    def close(self) -> None:
        if self._fd < 0:
            return
        try:
            super().close()
        finally:
            close_direct(self._dfd)
            os.close(self._fd)
            self._fd = self._dfd = -1


def open_dest(dest: Path | FileSlot, key: str, size: int = 0) -> SlotWriter | DirectFile:
    """A writable file-like end for a download into `dest`: a new file (of about `size`
    bytes), or a `SlotWriter`. LocalFileError if the file cannot be created."""
    if isinstance(dest, FileSlot):
        return SlotWriter(dest, key)
    try:
        return DirectFile(dest, key, size)
    except OSError as exc:
        raise _local_error(key, dest, exc) from None


def _local_error(key: str, where: object, exc: OSError) -> LocalFileError:
    return LocalFileError(
        f"downloading {key}: local file {where}: {exc.strerror or exc}", key, exc.errno
    )
