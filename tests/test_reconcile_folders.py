"""A folder deleted elsewhere while a file below it was edited here: the edit wins, and so
must its folder (SPEC 4.1: no data lost; the folder is not removed from under the file)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dropbeard.core.version import dominates
from tests.converge import Bucket, devices, tree
from tests.test_reconcile_cases import D, F, gone, held, label, run
from tests.test_reconcile_cases import remote as remote_of


def test_folder_delete_loses_to_an_edit_below_it() -> None:
    # laptop holds d/ and d/x.txt (desktop:1, desktop:2); laptop edits d/x.txt; desktop
    # deleted both (tombstones dominate the old versions).
    folder, old = D("d", {"desktop": 1}), F("d/x.txt", "v1", {"desktop": 2})
    plan = run(
        base=held(folder, old),
        local=[D("d"), F("d/x.txt", "edited here")],
        tombstones=[
            ("desktop", gone("d/x.txt", {"desktop": 3})),
            ("desktop", gone("d", {"desktop": 4}, kind="dir")),
        ],
    )
    assert plan.local_deletes == []  # neither the file nor its folder goes
    kept = {e.path: e for e in plan.listed()}
    assert label(kept["d/x.txt"]) == "edited here"
    assert kept["d"].type == "dir"
    assert dominates(kept["d"].version, {"desktop": 4})  # republished over the tombstone
    assert plan.base["d"].entry == kept["d"]


def test_local_folder_delete_loses_to_a_remote_edit_below_it() -> None:
    # laptop deleted d/ and d/x.txt; desktop edited d/x.txt concurrently.
    folder, old = D("d", {"desktop": 1}), F("d/x.txt", "v1", {"desktop": 2})
    plan = run(
        base=held(folder, old),
        local=[],
        remotes=[remote_of("desktop", folder, F("d/x.txt", "edited there", {"desktop": 3}))],
    )
    downloads = {d.path: d.entry for d in plan.downloads}
    assert label(downloads["d/x.txt"]) == "edited there"
    assert downloads["d"].type == "dir"  # the folder comes back, recorded as such
    assert "d" not in {t.path for t in plan.tombstones}
    assert {e.path for e in plan.listed()} >= {"d", "d/x.txt"}


def test_a_folder_with_nothing_left_below_it_is_still_deleted() -> None:
    folder, old = D("d", {"desktop": 1}), F("d/x.txt", "v1", {"desktop": 2})
    plan = run(
        base=held(folder, old),
        local=[D("d"), F("d/x.txt", "v1")],
        tombstones=[
            ("desktop", gone("d/x.txt", {"desktop": 3}, of="v1")),
            ("desktop", gone("d", {"desktop": 4}, kind="dir")),
        ],
    )
    assert [d.path for d in plan.local_deletes] == ["d/x.txt", "d"]


@pytest.mark.parametrize("remote", ["local"], indirect=True)
def test_end_to_end_edit_below_a_folder_deleted_elsewhere(remote: Bucket, tmp_path: Path) -> None:
    a, c = devices(remote, tmp_path, "a", "c")
    a.write("keep.txt", "k\n")
    a.write("d/x.txt", "v1\n")
    a.sync()
    c.sync()
    shutil.rmtree(a.path("d"))
    c.write("d/x.txt", "edited on c\n")
    a.sync()
    assert c.sync().code == 0  # no "kept folder" problem: the edit keeps its folder
    assert c.status()["problems"] == []
    a.sync()
    assert a.read("d/x.txt") == b"edited on c\n"
    for device in (a, c):  # one more pass each is idle: they agree
        assert device.sync().json["snapshot"] is None
    assert tree(a.root) == tree(c.root)
