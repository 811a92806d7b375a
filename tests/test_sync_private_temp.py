"""A file's bytes arrive in a temporary file beside its destination; until it is placed
with its entry's mode, that file is its owner's alone, however the file arrives
(downloaded whole, streamed to disk, or copied from a local file holding the same
bytes): a private file must never be readable by others while it lands (and a file
opened then stays open)."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from dropbeard.core.model import Entry
from dropbeard.store.local import LocalStore
from dropbeard.sync import fetch
from dropbeard.sync.engine import PassOptions
from dropbeard.sync.folderwriter import FolderWriter
from tests.onepass import run_one_pass
from tests.test_sync_ahead import device


@pytest.fixture
def usual_umask() -> Iterator[None]:
    old = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(old)


def test_a_file_is_its_owners_alone_until_it_is_placed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, usual_umask: None
) -> None:
    a = device(tmp_path, "a")
    files = {
        "small.txt": b"a few bytes\n",
        "streamed.bin": os.urandom(fetch.WHOLE_DOWNLOAD + 1),
        "one.txt": b"the same bytes twice\n" * 100,
        "two.txt": b"the same bytes twice\n" * 100,
        "private.txt": b"for its owner\n",
    }
    for name, data in files.items():
        (a / name).write_bytes(data)
        (a / name).chmod(0o600 if name == "private.txt" else 0o644)
    run_one_pass(a, LocalStore(tmp_path / "remote"), PassOptions())

    b = device(tmp_path, "b")
    while_landing: dict[str, int] = {}
    real_install = FolderWriter.install
    copied: list[Path] = []
    real_copy = fetch.copy_verified

    def install(
        self: FolderWriter, rel: str, dest_rel: str, tmp: Path, entry: Entry, is_copy: bool
    ) -> object:
        while_landing[rel] = stat.S_IMODE(os.stat(tmp).st_mode)
        return real_install(self, rel, dest_rel, tmp, entry, is_copy)

    def copy_verified(source: Path, dest: Path, sha: str) -> None:
        copied.append(dest)
        real_copy(source, dest, sha)

    monkeypatch.setattr(FolderWriter, "install", install)
    monkeypatch.setattr(fetch, "copy_verified", copy_verified)

    summary = run_one_pass(b, LocalStore(tmp_path / "remote"), PassOptions())

    assert summary.downloaded == len(files) - 1  # from the bucket; and one copied:
    assert len(copied) == 1  # one of the two same files came from the other
    assert while_landing == dict.fromkeys(files, 0o600)
    for name, data in files.items():
        assert (b / name).read_bytes() == data
        want = 0o600 if name == "private.txt" else 0o644
        assert stat.S_IMODE((b / name).stat().st_mode) == want
