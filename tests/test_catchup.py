"""A pass whose other devices changed more paths than a batch commits them in batches
(dropbeard.sync.catchup): a new device joining a big root holds a batch of the other
device's entries at a time; it ends with the files and state one unbatched pass leaves;
a crash between two batches leaves a consistent state whose processed mark did not
move, and the next pass completes it."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import dropbeard.sync.remote as remote_module
from dropbeard.cli.main import main
from dropbeard.core.errors import Unavailable
from dropbeard.core.keys import RootKeys
from dropbeard.core.passrules import PlanInputs
from dropbeard.core.summary import Summary
from dropbeard.store.base import Store
from dropbeard.store.local import LocalStore
from dropbeard.sync.engine import PassOptions
from dropbeard.sync.meter import PassMeter, Stage, Transfer
from dropbeard.sync.root import RootPaths
from dropbeard.sync.state import State
from tests.faults import FaultStore
from tests.onepass import agreed_entries, run_one_pass

KEYS = RootKeys("r1")
FOLDERS, FILES = 12, 25  # 300 files in 12 folders (some nested) on device a


def device(tmp_path: Path, name: str, *, mode: str | None = None) -> Path:
    """`name`'s empty root, joined to the shared remote (device id `name`)."""
    folder = tmp_path / name
    remote = tmp_path / "remote"
    remote.mkdir(exist_ok=True)
    args = ["init", str(folder), "--remote", str(remote), "--root-id", "r1"]
    args += ["--device-id", name, "-q"] + (["--mode", mode] if mode else [])
    assert main(args) == 0
    return folder


def filled(tmp_path: Path) -> Path:
    """Device a, its files published."""
    root = device(tmp_path, "a")
    for f in range(FOLDERS):
        folder = root / ("deep/" * (f % 3)) / f"d{f:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        for i in range(FILES):
            file = folder / f"f{i:02d}.txt"
            file.write_text(f"{f}/{i}")
            os.utime(file, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000 + i))
    assert one_pass(root, batch=10_000).uploaded == FOLDERS * FILES
    return root


def one_pass(root: Path, *, batch: int, store: Store | None = None) -> Summary:
    opts = PassOptions(batch_paths=batch)
    at = datetime.now(UTC) + timedelta(minutes=1)  # no file just written is racily clean
    opts.now = lambda: at
    return run_one_pass(root, store or LocalStore(root.parent / "remote"), opts)


def files(root: Path) -> dict[str, bytes | None]:
    """Every path under `root` but `.dropbear`: a file's bytes, None for a folder."""
    found: dict[str, bytes | None] = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root).as_posix()
        if rel == ".dropbear" or rel.startswith(".dropbear/"):
            continue
        found[rel] = path.read_bytes() if path.is_file() else None
    return found


def agreed(root: Path) -> dict[str, tuple[str, str | None, int | None]]:
    return {p: (e.type, e.sha256, e.size) for p, e in agreed_entries(root).items()}


def peer_tree(root: Path, dev: str) -> str | None:
    """The tree of `dev` that `root`'s device recorded as processed."""
    state = State.open(RootPaths(root).state)
    try:
        peer = state.peers().get(dev)
    finally:
        state.close()
    return None if peer is None else peer.tree


class Planned:
    """How many other-device entries and paths each plan of a pass reconciled."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.remote: list[int] = []
        self.paths: list[int] = []
        plan = PlanInputs.plan

        def counting(inputs: PlanInputs, *args: Any) -> Any:
            self.remote.append(sum(len(r.entries) for r in inputs.remotes))
            self.paths.append(-1 if inputs.paths is None else len(inputs.paths))
            return plan(inputs, *args)

        monkeypatch.setattr(PlanInputs, "plan", counting)


def test_a_new_device_takes_a_big_root_a_batch_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = filled(tmp_path)
    b = device(tmp_path, "b")
    planned = Planned(monkeypatch)
    summary = one_pass(b, batch=40)
    assert summary.downloaded == FOLDERS * FILES
    assert files(b) == files(a)
    # every plan held at most a batch of a's entries; the batches cover a's whole tree
    every = FOLDERS * FILES + FOLDERS + 2  # files, folders, deep, deep/deep
    assert summary.planned_downloads == every  # the batches' plans are counted too
    assert len(planned.remote) >= every // 40
    assert max(planned.remote) <= 40
    assert max(planned.paths) <= 40 + 3  # a batch's paths (its folders are not new)
    assert peer_tree(b, "a") is not None  # the pass settled with a once all committed


def test_a_batched_catch_up_ends_as_one_unbatched_pass(tmp_path: Path) -> None:
    a = filled(tmp_path)
    batched, whole = device(tmp_path, "b"), device(tmp_path, "c")
    assert one_pass(batched, batch=30).downloaded == FOLDERS * FILES
    assert one_pass(whole, batch=10_000).downloaded == FOLDERS * FILES
    assert files(batched) == files(whole) == files(a)
    assert agreed(batched) == agreed(whole) == agreed(a)
    assert peer_tree(batched, "a") == peer_tree(whole, "a") is not None
    again = one_pass(batched, batch=30)  # nothing left to do
    assert (again.downloaded, again.uploaded, again.snapshot) == (0, 0, None)


class LookedUp:
    """How many tree lookups (one path in one device's tree) a pass made."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        real = remote_module.lookup

        async def counting(*args: Any) -> Any:
            self.count += 1
            return await real(*args)

        monkeypatch.setattr(remote_module, "lookup", counting)


def test_a_third_device_catches_up_once_with_two_devices_holding_one_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = filled(tmp_path)
    b = device(tmp_path, "b")
    assert one_pass(b, batch=40).downloaded == FOLDERS * FILES
    assert peer_tree(b, "a") is not None
    c = device(tmp_path, "c")
    planned, looked_up = Planned(monkeypatch), LookedUp(monkeypatch)
    assert one_pass(c, batch=40).downloaded == FOLDERS * FILES
    assert files(c) == files(a)
    assert agreed(c) == agreed(a)
    # a and b publish the same tree: its diff is streamed and reconciled once, not once
    # per device, and neither device's entries are looked up path by path in it
    every = FOLDERS * FILES + FOLDERS + 2
    assert sum(p for p in planned.paths if p > 0) <= every + 3 * len(planned.paths)
    assert looked_up.count == 0
    assert peer_tree(c, "a") == peer_tree(c, "b") == peer_tree(b, "a") is not None
    again = one_pass(c, batch=40)
    assert (again.downloaded, again.uploaded, again.snapshot) == (0, 0, None)


def test_a_device_away_while_another_added_many_catches_up_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = device(tmp_path, "a")
    (a / "old.txt").write_text("old")
    assert one_pass(a, batch=10_000).uploaded == 1
    b = device(tmp_path, "b")
    (b / "mine.txt").write_text("b's own")
    assert one_pass(b, batch=40).downloaded == 1
    for f in range(6):  # a adds 150 files while b is away; b deletes nothing
        (a / f"n{f}").mkdir()
        for i in range(FILES):
            (a / f"n{f}" / f"f{i}.txt").write_text(f"new {f}/{i}")
    (a / "old.txt").write_text("old, edited")
    assert one_pass(a, batch=10_000).uploaded == 6 * FILES + 1
    planned = Planned(monkeypatch)
    assert one_pass(b, batch=40).downloaded == 6 * FILES + 1
    assert max(planned.remote) <= 40
    assert files(b) == files(a)  # a took b's mine.txt before
    assert agreed(b) == agreed(a)
    assert one_pass(a, batch=40).downloaded == 0


def test_a_few_paths_past_a_batch_are_not_a_batch_of_their_own(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Up to a quarter more than a batch goes in one (the last) plan: 314 paths with
    batches of 300 are one reconcile, not 300 and then 14 after the first drained; with
    batches of 150 they are 150, then the 164 left (not 150, 150 and 14)."""
    a = filled(tmp_path)
    every = FOLDERS * FILES + FOLDERS + 2
    for batch, plans in ((300, [every]), (150, [150, every - 150])):
        b = device(tmp_path, f"b{batch}")
        planned = Planned(monkeypatch)
        assert one_pass(b, batch=batch).downloaded == FOLDERS * FILES
        assert files(b) == files(a)
        assert [n for n in planned.paths if n > 0][: len(plans)] == plans


def test_a_crash_between_catch_up_batches_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = filled(tmp_path)
    b = device(tmp_path, "b")
    faults = FaultStore(LocalStore(tmp_path / "remote"))
    faults.fail("put", Unavailable, prefix=KEYS.head("b"), skip=2)  # the third batch's head
    with pytest.raises(Unavailable):
        one_pass(b, batch=40, store=faults)
    committed = agreed(b)
    assert 0 < len(committed) < FOLDERS * FILES
    assert peer_tree(b, "a") is None  # a's tree is not processed: the next pass diffs it
    on_disk = {p for p, v in files(b).items() if v is not None}
    assert {p for p, v in committed.items() if v[0] == "file"} <= on_disk
    planned = Planned(monkeypatch)
    done = one_pass(b, batch=40)
    assert max(planned.remote) <= 40  # in batches again, not one full reconcile
    assert files(b) == files(a)
    assert agreed(b) == agreed(a)
    assert done.downloaded <= FOLDERS * FILES - len([v for v in committed.values() if v[1]])
    assert peer_tree(b, "a") is not None


def test_a_download_only_device_catches_up_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = filled(tmp_path)
    b = device(tmp_path, "b", mode="download-only")
    planned = Planned(monkeypatch)
    assert one_pass(b, batch=40).downloaded == FOLDERS * FILES
    assert max(planned.remote) <= 40
    assert files(b) == files(a)
    assert one_pass(b, batch=40).downloaded == 0


class Stages:
    """The stages a meter showed and the downloads it saw end (a display's listener)."""

    def __init__(self) -> None:
        self.seen: list[tuple[str, int]] = []
        self.downloads = 0

    def changed(self, stage: Stage) -> None:
        self.seen.append((stage.name, stage.files_done))

    def ended(self) -> None:
        pass

    def transfer_ended(self, transfer: Transfer, error: BaseException | None) -> None:
        self.downloads += transfer.direction == "download" and error is None


def test_a_catch_up_shows_its_downloads_as_a_stage(tmp_path: Path) -> None:
    filled(tmp_path)
    b = device(tmp_path, "b")
    stages = Stages()
    opts = PassOptions(batch_paths=40, meter=PassMeter(stages))
    summary = run_one_pass(b, LocalStore(tmp_path / "remote"), opts)
    assert summary.downloaded == stages.downloads == FOLDERS * FILES
    assert ("downloading", 0) in stages.seen  # begun before the first batch


def test_a_pass_taking_bases_back_from_its_head_does_not_catch_up_in_batches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a's pass died right after its head write, before its commit; its next pass (a
    # daemon's, after a watcher event: some paths only) takes the newer bases back from
    # the head. Catch-up batches read bases from state.sqlite alone, so however much b
    # changed meanwhile, that pass reconciles and commits once.
    a = device(tmp_path, "a")
    for i in range(5):
        (a / f"kept{i}.txt").write_text(f"first {i}")
    assert one_pass(a, batch=10_000).uploaded == 5
    b = device(tmp_path, "b")
    assert one_pass(b, batch=10_000).downloaded == 5
    for i in range(5):
        (a / f"kept{i}.txt").write_text(f"second, longer {i}")
    faults = FaultStore(LocalStore(tmp_path / "remote"))
    faults.lose_reply("put", prefix=KEYS.head("a"))  # the head is written, the pass dies
    with pytest.raises(Unavailable):
        one_pass(a, batch=10_000, store=faults)
    for f in range(4):
        (b / f"new{f}").mkdir()
        for i in range(FILES):
            (b / f"new{f}" / f"f{i}.txt").write_text(f"new {f}/{i}")
    took = one_pass(b, batch=10_000)  # b takes a's second contents from a's head too
    assert (took.uploaded, took.downloaded) == (4 * FILES, 5)
    planned = Planned(monkeypatch)
    opts = PassOptions(batch_paths=10, only=frozenset({"kept0.txt"}))
    summary = run_one_pass(a, LocalStore(tmp_path / "remote"), opts)
    assert len(planned.paths) == 1  # one plan: no batch
    assert summary.downloaded == 4 * FILES
    assert one_pass(b, batch=10_000).downloaded == 0
    assert files(b) == files(a)
    assert agreed(b) == agreed(a)
    assert [p for p in files(a) if ".conflict" in p] == []
