"""Writing a download into a `FileSlot` or a file of its own, a piece at a time (IO:
local files; the stores call it in worker threads)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from dropbeard.core.errors import IntegrityError, LocalFileError
from dropbeard.store.base import FileSlot


class SlotWriter:
    """The file-like end of a download into `slot`: `write` puts each piece after the last
    at the slot's offset, refusing any byte past its size (a hostile object of any size
    never runs over the rest of the file); `close` leaves the caller's fd open."""

    def __init__(self, slot: FileSlot, key: str) -> None:
        self._slot = slot
        self._key = key
        self._written = 0
        self.name = f"<fd {slot.fd} at {slot.offset}>"

    def write(self, piece: bytes | memoryview, /) -> int:
        view = memoryview(piece)
        slot, n = self._slot, len(view)
        if self._written + n > slot.size:
            raise IntegrityError(
                f"downloading {self._key}: the object holds more than the "
                f"{slot.size} bytes expected",
                self._key,
            )
        done = 0
        while done < n:
            done += os.pwrite(slot.fd, view[done:], slot.offset + self._written + done)
        self._written += n
        return n

    def close(self) -> None:
        pass


def open_dest(dest: Path | FileSlot, key: str) -> Any:
    """A writable file-like end for a download into `dest`: a new file, or a `SlotWriter`.
    LocalFileError if the file cannot be created."""
    if isinstance(dest, FileSlot):
        return SlotWriter(dest, key)
    try:
        return open(dest, "wb")
    except OSError as exc:
        raise LocalFileError(
            f"downloading {key}: local file {dest}: {exc.strerror or exc}", key, exc.errno
        ) from None
