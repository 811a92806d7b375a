"""Resuming a multipart upload (dropbeard.store.multipart) against an in-memory server that
can be told to lack ListParts or abort, the way some S3 servers do."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest

from dropbeard.core.errors import StoreError, Unavailable
from dropbeard.store.base import PendingUpload
from dropbeard.store.multipart import MIN_PART_SIZE, HeldParts, part_size_for, upload_multipart

pytestmark = pytest.mark.anyio

KEY = "roots/r1/blobs/ab/cd/abcd"


class Server:
    """A multipart server in memory. `list_parts_error` / `abort_error` make ListParts or
    AbortMultipartUpload fail the way a server lacking them does."""

    def __init__(self) -> None:
        self.uploads: dict[str, dict[int, bytes]] = {}
        self.created = 0
        self.objects: dict[str, bytes] = {}
        self.sent: list[tuple[str, int]] = []
        self.aborted: list[str] = []
        self.list_parts_error: StoreError | None = None
        self.abort_error: StoreError | None = None

    async def mp_create(self, key: str) -> str:
        self.created += 1
        upload_id = f"u{self.created}"
        self.uploads[upload_id] = {}
        return upload_id

    async def mp_parts(self, key: str, upload_id: str) -> HeldParts | None:
        if self.list_parts_error is not None:
            raise self.list_parts_error
        parts = self.uploads.get(upload_id)
        if parts is None:
            return None
        return {n: (_etag(d), len(d)) for n, d in parts.items()}

    async def mp_put_part(
        self, key: str, upload_id: str, number: int, data: bytes, sha256: str | None = None
    ) -> str:
        self.uploads[upload_id][number] = data
        self.sent.append((upload_id, number))
        return _etag(data)

    async def mp_complete(self, key: str, upload_id: str, etags: Sequence[str]) -> str:
        parts = self.uploads.pop(upload_id)
        self.objects[key] = b"".join(parts[n] for n in sorted(parts))
        return '"done"'

    async def mp_abort(self, key: str, upload_id: str) -> None:
        if self.abort_error is not None:
            raise self.abort_error
        self.aborted.append(upload_id)
        self.uploads.pop(upload_id, None)


def _etag(data: bytes) -> str:
    return f'"{hashlib.md5(data, usedforsecurity=False).hexdigest()}"'


class Journal:
    def __init__(self) -> None:
        self.pending: dict[str, PendingUpload] = {}

    async def load_upload(self, key: str) -> PendingUpload | None:
        return self.pending.get(key)

    async def save_upload(self, upload: PendingUpload) -> None:
        self.pending[upload.key] = upload

    async def clear_upload(self, key: str) -> None:
        self.pending.pop(key, None)


DATA = bytes(range(256)) * (3 * MIN_PART_SIZE // 256) + b"tail"  # three parts and a bit
SIZE = len(DATA)


@pytest.fixture
def big(tmp_path: Path) -> Path:
    path = tmp_path / "big.bin"
    path.write_bytes(DATA)
    return path


def interrupted(server: Server, journal: Journal) -> str:
    """An upload a crashed pass left: recorded in the journal, two parts on the server."""
    upload_id = "u-crashed"
    part = part_size_for(SIZE)
    server.uploads[upload_id] = {1: DATA[:part], 2: DATA[part : 2 * part]}
    journal.pending[KEY] = PendingUpload(KEY, upload_id, part)
    return upload_id


async def upload(server: Server, journal: Journal, big: Path) -> str:
    return await upload_multipart(
        server,
        KEY,
        big,
        SIZE,
        expected_sha256=hashlib.sha256(DATA).hexdigest(),
        journal=journal,
        progress=None,
    )


async def test_an_interrupted_upload_resumes_from_the_parts_the_server_holds(
    big: Path,
) -> None:
    server, journal = Server(), Journal()
    crashed = interrupted(server, journal)

    await upload(server, journal, big)

    assert server.objects[KEY] == DATA
    assert server.sent == [(crashed, 3), (crashed, 4)]  # parts 1-2 were held
    assert journal.pending == {}


@pytest.mark.parametrize(
    "error",
    [
        StoreError("listing parts: The specified method is not allowed (MethodNotAllowed)"),
        StoreError("listing parts: not implemented (NotImplemented)"),
    ],
    ids=["405-s3rver", "501-localbucket"],
)
@pytest.mark.parametrize("abort_works", [True, False], ids=["abort", "no-abort"])
async def test_a_server_without_listparts_gets_a_fresh_upload(
    big: Path, error: StoreError, abort_works: bool
) -> None:
    server, journal = Server(), Journal()
    crashed = interrupted(server, journal)
    server.list_parts_error = error
    if not abort_works:
        server.abort_error = StoreError("aborting: The specified method is not allowed")

    await upload(server, journal, big)

    assert server.objects[KEY] == DATA
    assert {u for u, _ in server.sent} == {"u1"} and len(server.sent) == 4  # all afresh
    assert server.aborted == ([crashed] if abort_works else [])
    assert journal.pending == {}


async def test_a_transient_failure_to_resume_keeps_the_upload_for_later(big: Path) -> None:
    server, journal = Server(), Journal()
    crashed = interrupted(server, journal)
    server.list_parts_error = Unavailable("listing parts: connection reset")

    with pytest.raises(Unavailable):
        await upload(server, journal, big)

    assert journal.pending[KEY].upload_id == crashed and server.sent == []
    server.list_parts_error = None
    await upload(server, journal, big)
    assert server.objects[KEY] == DATA and server.sent == [(crashed, 3), (crashed, 4)]


async def test_a_file_that_changed_is_refused_even_where_abort_fails(
    big: Path, tmp_path: Path
) -> None:
    from dropbeard.core.errors import IntegrityError

    server, journal = Server(), Journal()
    server.abort_error = StoreError("aborting: The specified method is not allowed")

    with pytest.raises(IntegrityError):
        await upload_multipart(
            server, KEY, big, SIZE, expected_sha256="0" * 64, journal=journal, progress=None
        )

    assert KEY not in server.objects and journal.pending == {}
