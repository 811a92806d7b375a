"""The progress a pass reports (issue 13, item 3): the scan's hashing counts, and the
meter's stages with done/total, percent, rate, ETA, the current file and the transfers in
flight by path — the figures the terminal display and the daemon's status show."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dropbeard.cli.status import progress_line
from dropbeard.core.errors import PreconditionFailed, Unavailable
from dropbeard.core.ignore import IgnoreRules
from dropbeard.sync.hashing import HashCounts
from dropbeard.sync.meter import PassMeter
from dropbeard.sync.scan import scan


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.mark.anyio
async def test_the_scan_reports_hashing_done_of_the_total(tmp_path: Path) -> None:
    sizes = [0, 10, 5000, 3 * 1024 * 1024]
    for i, size in enumerate(sizes):
        (tmp_path / f"f{i}").write_bytes(os.urandom(size))
    seen: list[HashCounts] = []
    result = await scan(tmp_path, ignore=IgnoreRules.empty(), cache=lambda p: None,
                        hashing=seen.append)  # fmt: skip
    assert result.hashed_files == 4
    assert seen[-1] == HashCounts(4, 4, sum(sizes), sum(sizes), None)
    assert all(c.files_total in (None, 4) for c in seen)
    assert [c.bytes for c in seen] == sorted(c.bytes for c in seen)


def test_a_stage_shows_done_of_total_percent_rate_eta_and_the_current_file() -> None:
    clock = Clock()
    meter = PassMeter(clock=clock)
    meter.name_blobs([("a" * 64, "photos/a.jpg", 400), ("b" * 64, "notes/b.md", 600)])
    meter.begin("downloading", 2, 1000)
    first = meter.transfer_started("roots/r/blobs/aa/aa/" + "a" * 64, "download", None)
    clock.now += 2
    meter.transfer_moved(first, 400)
    meter.transfer_ended(first, None)
    second = meter.transfer_started("roots/r/blobs/bb/bb/" + "b" * 64, "download", None)
    meter.transfer_moved(second, 100)
    view = meter.view()
    assert view is not None
    assert (view["files_done"], view["files_total"]) == (1, 2)
    assert (view["bytes_done"], view["bytes_total"]) == (500, 1000)
    assert view["percent"] == 50.0
    assert view["rate_bytes_per_s"] == 250 and view["eta_s"] == 2.0
    assert view["current"] == "notes/b.md"
    assert [(t["path"], t["bytes_done"], t["bytes_total"]) for t in meter.in_flight()] == [
        ("notes/b.md", 100, 600)
    ]
    assert progress_line(view) == (
        "downloading: 1/2 files, 500 B/1.0 KB, 50%, 250 B/s, ETA 2s, notes/b.md"
    )
    meter.transfer_ended(second, Unavailable("down"))  # failed: not done
    assert meter.view()["files_done"] == 1  # type: ignore[index]
    present = meter.transfer_started("roots/r/blobs/cc/cc/" + "c" * 64, "upload", 7)
    meter.transfer_ended(present, PreconditionFailed("there already"))
    assert meter.view()["files_done"] == 2  # type: ignore[index]
    assert meter.in_flight() == []
    meter.end()
    assert meter.view() is None


def test_no_eta_until_a_stage_has_moved_a_hundredth_or_run_two_seconds() -> None:
    # the first file of a stage is no measure of the rest: 4 KB of 16.8 MB in 0.1 s
    # would say "ETA 0:06:50", and its first byte alone hours
    clock = Clock()
    meter = PassMeter(clock=clock)
    meter.begin("uploading", 200, 16_800_000)
    note = meter.transfer_started("roots/r/blobs/aa/aa/" + "a" * 64, "upload", 4_000)
    clock.now += 0.1
    meter.transfer_moved(note, 4_000)
    view = meter.view()
    assert view is not None and view["eta_s"] is None and view["rate_bytes_per_s"] == 40_000
    assert "ETA" not in progress_line(view)
    big = meter.transfer_started("roots/r/blobs/bb/bb/" + "b" * 64, "upload", 16_796_000)
    meter.transfer_moved(big, 164_000)  # 168,000 bytes done: a hundredth
    assert meter.view()["eta_s"] == pytest.approx(9.9)  # type: ignore[index]
    slow = PassMeter(clock=clock)
    slow.begin("uploading", 1, 16_800_000)
    crawl = slow.transfer_started("roots/r/blobs/cc/cc/" + "c" * 64, "upload", 16_800_000)
    clock.now += 2.0
    slow.transfer_moved(crawl, 16_800)  # a thousandth in two seconds: told, as it is
    assert slow.view()["eta_s"] == pytest.approx(1998.0)  # type: ignore[index]


def test_what_goes_up_while_the_scan_hashes_is_not_counted_as_hashed() -> None:
    """A first sync sends files while it hashes (`sync.ahead`): the hashing stage shows
    the scan's counts (never past its totals) and the file being read, the uploads show
    as transfers in flight."""
    meter = PassMeter(clock=Clock())
    meter.hashing((3, 4), (30, 40), "c.txt")
    sent = meter.transfer_started("blobs/ab/cd/abcd", "upload", 1000)
    meter.transfer_moved(sent, 1000)
    view = meter.view()
    assert view is not None and view["current"] == "c.txt"
    assert [t["path"] for t in meter.in_flight()] == ["blobs/ab/cd/abcd"]
    meter.transfer_ended(sent, None)
    view = meter.view()
    assert view is not None and (view["files_done"], view["bytes_done"]) == (3, 30)
    assert view["percent"] == 75.0 and not meter.in_flight()


def test_hashing_starts_its_stage_and_totals_arrive_when_the_walk_ends() -> None:
    meter = PassMeter(clock=Clock())
    meter.hashing((1, None), (10, None), "a.txt")
    view = meter.view()
    assert view is not None and view["stage"] == "hashing"
    assert view["files_total"] is None and view["percent"] is None
    meter.hashing((3, 4), (30, 40), "c.txt")
    view = meter.view()
    assert view is not None and view["percent"] == 75.0 and view["current"] == "c.txt"
