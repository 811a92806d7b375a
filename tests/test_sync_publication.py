"""The upload step of a pass (dropbeard.sync.publication) over a real root and a LocalStore
remote: files that change while they are uploaded are left for the next pass, and what the
pass publishes never names a blob the bucket does not hold."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path

import anyio

from dropbeard.cli.main import main
from dropbeard.core.keys import RootKeys
from dropbeard.core.summary import Summary
from dropbeard.store.base import Store
from dropbeard.store.local import LocalStore
from dropbeard.sync.engine import PassOptions, run_pass
from dropbeard.sync.meter import PassMeter, Stage, StageName
from dropbeard.sync.root import RootPaths, open_online
from tests.treeio import published_listing

KEYS = RootKeys("r1")


class EditsAfterTheScan(PassMeter):
    """Runs `edit` once, when the pass begins its upload stage (after the scan): the files
    it touches change after they were hashed."""

    def __init__(self, edit: Callable[[], None]) -> None:
        super().__init__()
        self.edit: Callable[[], None] | None = edit

    def begin(self, name: StageName, files: int | None, nbytes: int | None) -> Stage | None:
        if name == "uploading" and self.edit is not None:
            self.edit, edit = None, self.edit
            edit()
        return super().begin(name, files, nbytes)


def one_pass(root: Path, store: Store, meter: PassMeter | None = None) -> Summary:
    async def go() -> Summary:
        paths = RootPaths(root)
        cfg, state = open_online(paths)
        try:
            return await run_pass(paths, cfg, state, store, PassOptions(meter=meter))
        finally:
            state.close()

    return anyio.run(go)


def published(remote: Path) -> dict[str, str | None]:
    """The paths of the device's published tree and their sha256."""

    async def go() -> dict[str, str | None]:
        listing = await published_listing(LocalStore(remote), KEYS, "a")
        return {p: e.sha256 for p, e in listing.items()}

    return anyio.run(go)


def test_a_published_tree_never_names_a_blob_missing_from_the_bucket(
    tmp_path: Path, small_ahead: int
) -> None:
    root, remote = tmp_path / "root", tmp_path / "remote"
    remote.mkdir()
    init = ["init", str(root), "--remote", str(remote), "--root-id", "r1", "--device-id", "a"]
    assert main([*init, "-q"]) == 0
    # (larger than a first sync sends while it hashes, `sync.ahead`: read again to upload)
    same = b"the same bytes at four paths\n" * 4000
    for name in ("1.txt", "2.txt", "3.txt", "4.txt"):
        (root / name).write_bytes(same)

    def edit() -> None:  # three of the four change while the pass runs; 4.txt does not
        for name in ("1.txt", "2.txt", "3.txt"):
            (root / name).write_bytes(b"edited during the pass: " + name.encode())

    summary = one_pass(root, LocalStore(remote), EditsAfterTheScan(edit))

    digest = hashlib.sha256(same).hexdigest()
    assert published(remote) == {"4.txt": digest}
    assert (remote / KEYS.blob(digest)).read_bytes() == same
    assert summary.problems == 3  # changed_while_reading, each synced next pass
    one_pass(root, LocalStore(remote))
    assert sorted(published(remote)) == ["1.txt", "2.txt", "3.txt", "4.txt"]
