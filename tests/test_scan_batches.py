"""A first sync commits new paths in batches while its scan walks (dropbeard.sync.batches):
what a pass holds is bounded by the batch, not by the root; the tree after the last
batch lists what one pass would; a crash between two batches leaves a consistent index
whose tree lists what was committed, and the next pass completes it."""

from __future__ import annotations

import os
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import anyio
import pytest

from dropbeard.cli.main import main
from dropbeard.core.errors import Unavailable
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Entry
from dropbeard.core.passrules import PlanInputs, ScannedItem, local_entries
from dropbeard.core.summary import Summary
from dropbeard.store.base import Store
from dropbeard.store.local import LocalStore
from dropbeard.sync import batches, folderrows, localscan
from dropbeard.sync.engine import PassOptions
from tests.faults import FaultStore
from tests.onepass import agreed_entries, run_one_pass
from tests.treeio import published_listing

KEYS = RootKeys("r1")
FOLDERS, FILES = 12, 25  # 300 files, 12 folders (one nested), one flat


def init(tmp_path: Path, name: str) -> Path:
    folder = tmp_path / name / "root"
    (tmp_path / name / "remote").mkdir(parents=True)
    args = ["init", str(folder), "--remote", str(tmp_path / name / "remote"), "--root-id", "r1"]
    assert main([*args, "--device-id", "a", "-q"]) == 0
    for f in range(FOLDERS):
        folder_path = folder / ("deep/" * (f % 3)) / f"d{f:02d}"
        folder_path.mkdir(parents=True, exist_ok=True)
        for i in range(FILES):
            file = folder_path / f"f{i:02d}.txt"
            file.write_text(f"{f}/{i}")
            os.utime(file, ns=(1_700_000_000_000_000_000, 1_700_000_000_000_000_000 + i))
    return folder


def one_pass(root: Path, *, batch: int, store: Store | None = None, full: bool = False) -> Summary:
    opts = PassOptions(batch_paths=batch, check_full=full)
    at = datetime.now(UTC) + timedelta(minutes=1)  # no file just written is racily clean
    opts.now = lambda: at
    return run_one_pass(root, store or LocalStore(root.parent / "remote"), opts)


def listed(root: Path) -> dict[str, tuple[str, str | None, int | None, int, int | None]]:
    """What the head lists: path -> (type, sha256, size, mode, mtime_ns)."""
    found = anyio.run(published_listing, LocalStore(root.parent / "remote"), KEYS, "a")
    return {p: (e.type, e.sha256, e.size, e.mode, e.mtime_ns) for p, e in found.items()}


def agreed(root: Path) -> dict[str, tuple[str, str | None, int | None, int, int | None]]:
    """What the agreed bases publish, in the same shape."""
    return {
        p: (e.type, e.sha256, e.size, e.mode, e.mtime_ns) for p, e in agreed_entries(root).items()
    }


class Sizes:
    """The items each batch reconciles, and those the pass itself builds entries of."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.batches: list[int] = []
        self.passes: list[int] = []

        def counting(into: list[int]) -> object:
            def count(items: Mapping[str, ScannedItem]) -> dict[str, Entry]:
                into.append(len(items))
                return local_entries(items)

            return count

        monkeypatch.setattr(batches, "local_entries", counting(self.batches))
        monkeypatch.setattr(localscan, "local_entries", counting(self.passes))


def test_a_first_sync_holds_a_batch_of_new_paths_at_a_time(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = init(tmp_path, "one")
    sizes = Sizes(monkeypatch)
    summary = one_pass(root, batch=40)
    assert summary.uploaded == FOLDERS * FILES
    assert len(sizes.batches) >= (FOLDERS * FILES) // (40 + FILES)
    # a batch: the new paths found when the walk last looked (fewer than `batch`, plus
    # a folder's worth), those the hash threads finished since (their queue holds at
    # most `batch` plus a folder's worth, since the walk waits for it only before it
    # lists the next folder: under load they finish in bursts), and their folders
    most = 2 * 40 + 2 * FILES + 2 * FOLDERS
    assert max(sizes.batches) <= most
    # the pass itself: what the last batch left, and every folder
    assert sizes.passes == [pytest.approx(sizes.passes[0], abs=most)]
    assert sizes.passes[0] <= most
    assert len(listed(root)) == FOLDERS * FILES + FOLDERS + 2  # files, folders, deep, deep/deep


def test_a_first_sync_in_batches_lists_what_one_pass_lists(tmp_path: Path) -> None:
    batched, whole = init(tmp_path, "batched"), init(tmp_path, "whole")
    in_batches, at_once = one_pass(batched, batch=30), one_pass(whole, batch=10_000)
    assert in_batches.uploaded == at_once.uploaded == FOLDERS * FILES
    assert in_batches.planned_uploads == at_once.planned_uploads  # the batches' plans count
    assert listed(batched) == listed(whole) == agreed(batched) == agreed(whole)
    # and the next pass over the batched root finds nothing to do
    again = one_pass(batched, batch=30, full=True)
    assert (again.uploaded, again.snapshot, again.hashed) == (0, None, 0)


def test_a_crash_between_batches_leaves_a_consistent_index(tmp_path: Path) -> None:
    root = init(tmp_path, "crash")
    faults = FaultStore(LocalStore(root.parent / "remote"))
    faults.fail("put", Unavailable, prefix=KEYS.head("a"), skip=2)  # the third batch's head
    with pytest.raises(Unavailable):
        one_pass(root, batch=40, store=faults)
    committed = agreed(root)
    assert 0 < len(committed) < FOLDERS * FILES
    assert listed(root) == committed  # the head lists exactly what the index agreed
    done = one_pass(root, batch=40)
    assert done.uploaded <= FOLDERS * FILES - len([v for v in committed.values() if v[1]])
    assert len(listed(root)) == FOLDERS * FILES + FOLDERS + 2
    assert listed(root) == agreed(root)
    again = one_pass(root, batch=40, full=True)
    assert (again.uploaded, again.snapshot) == (0, None)


def test_new_paths_left_when_the_walk_ends_go_in_batches_too(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # the hash threads may still hold up to a batch when the walk ends, the walk's last
    # look found fewer than a batch: here nothing is handed out while it walks at all
    monkeypatch.setattr(folderrows.Compare, "listed", lambda *_: None)
    root = init(tmp_path, "left")
    batched: list[int] = []
    flush = batches.Batches.flush

    async def counting(self: batches.Batches, batch: dict[str, object], *rest: object) -> None:
        batched.append(len(batch))
        await flush(self, batch, *rest)  # type: ignore[arg-type]

    monkeypatch.setattr(batches.Batches, "flush", counting)
    planned: list[int] = []
    plan = PlanInputs.plan

    def planning(inputs: PlanInputs, *args: Any) -> Any:
        planned.append(len(inputs.local))
        return plan(inputs, *args)

    monkeypatch.setattr(PlanInputs, "plan", planning)
    assert one_pass(root, batch=40).uploaded == FOLDERS * FILES
    assert batched == [40] * (FOLDERS * FILES // 40) + [FOLDERS * FILES % 40]
    assert max(planned) <= 40 + 2 * FOLDERS  # a batch and its folders, never the 300
    assert listed(root) == agreed(root)
    assert len(listed(root)) == FOLDERS * FILES + FOLDERS + 2
