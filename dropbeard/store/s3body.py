"""A local file as the streamed body of one S3 PUT, verified as it is read (IO: reads the
file in worker threads).

The request is signed with the SHA-256 the caller promised, before a byte is sent; the
body hashes what it reads and withholds its last piece until that hash matches. A file
that changed meanwhile (other bytes, more or fewer) ends the body with an error instead,
so the request never completes and the server never makes the object of it, even a
server that does not check the signed payload hash.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import BinaryIO

import anyio

from dropbeard.core.errors import IntegrityError, LocalFileError
from dropbeard.store.bandwidth import Bandwidth, spend
from dropbeard.store.base import Progress

#: Bytes read (and sent) at a time.
PIECE = 1024 * 1024


class FileBody:
    """The bytes of the file at `path`, `size` of them hashing to `expected`, for the PUT
    of `key`. `refusal` is set (and raised into the request) if they do not."""

    def __init__(
        self,
        file: BinaryIO,
        key: str,
        size: int,
        expected: str,
        bandwidth: Bandwidth | None,
        progress: Progress | None,
    ) -> None:
        self._file = file
        self._key = key
        self._size = size
        self._expected = expected
        self._bandwidth = bandwidth
        self._progress = progress
        self._hash = hashlib.sha256()
        self._read = 0
        self.refusal: IntegrityError | None = None

    @classmethod
    async def open(
        cls,
        path: Path,
        key: str,
        size: int,
        expected: str,
        bandwidth: Bandwidth | None,
        progress: Progress | None,
    ) -> FileBody:
        file = await anyio.to_thread.run_sync(_open, path, key)
        return cls(file, key, size, expected, bandwidth, progress)

    async def stream(self) -> AsyncIterator[bytes]:
        """The file's pieces; the last one only once every byte read checks out."""
        held = b""
        while piece := await anyio.to_thread.run_sync(self._next_piece):
            if held:
                yield await self._sent(held)
            held = piece
        self._check()
        if held:
            yield await self._sent(held)

    def raise_refusal(self) -> None:
        """Raise the body's verdict, if the file did not hold the promised bytes."""
        if self.refusal is not None:
            raise self.refusal

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):
            await anyio.to_thread.run_sync(self._file.close)

    def _next_piece(self) -> bytes:
        """The next piece of the file, hashed (worker thread); b"" at its end. Reads at
        most one byte past `size`, which is enough to tell that the file grew."""
        want = min(PIECE, self._size + 1 - self._read)
        try:
            piece = self._file.read(want) if want > 0 else b""
        except OSError as exc:
            raise LocalFileError(
                f"uploading {self._key}: reading {self._file.name}: {exc.strerror or exc}",
                self._key,
                exc.errno,
            ) from None
        self._hash.update(piece)
        self._read += len(piece)
        return piece

    def _check(self) -> None:
        got = self._hash.hexdigest()
        if self._read != self._size or got != self._expected:
            self.refusal = IntegrityError(
                f"uploading {self._key}: the file changed while it was read "
                f"(expected {self._size} bytes with SHA-256 {self._expected}, "
                f"read {self._read} with {got})",
                self._key,
            )
            raise self.refusal

    async def _sent(self, piece: bytes) -> bytes:
        await spend(self._bandwidth, len(piece))
        if self._progress is not None:
            self._progress(len(piece))
        return piece


def _open(path: Path, key: str) -> BinaryIO:
    try:
        return open(path, "rb")  # closed by FileBody.aclose
    except OSError as exc:
        raise LocalFileError(
            f"uploading {key}: local file {path}: {exc.strerror or exc}", key, exc.errno
        ) from None
