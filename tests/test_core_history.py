"""A path's history as rows (core.history): one row per version as it first appeared on a
device, deletes from tombstones or from a path vanishing; which version restore picks;
and the times `--at` reads."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from dropbeard.core.errors import UsageError
from dropbeard.core.history import (
    Tombstone,
    choose_version,
    human_age,
    parse_when,
    snapshot_at,
    versions_of,
)
from dropbeard.core.model import Delete
from dropbeard.core.tree import TreeEntry

A, B, C = "a" * 64, "b" * 64, "c" * 64


def file(sha: str, **version: int) -> TreeEntry:
    return TreeEntry(
        name="x", type="file", size=3, mode=0o644, mtime_ns=0, sha256=sha,
        version=version or {"laptop": 1},
    )  # fmt: skip


def test_one_row_per_version_as_it_first_appeared_and_until_when() -> None:
    rows = versions_of(
        {
            "laptop": [
                ("20260101T000000Z", file(A, laptop=1)),
                ("20260102T000000Z", file(A, laptop=1)),
                ("20260103T000000Z", file(B, laptop=2)),
            ],
            "desk": [("20260101T120000Z", None), ("20260102T120000Z", file(A, laptop=1))],
        }
    )
    assert [(r.device, r.snapshot, r.until, r.sha256) for r in rows] == [
        ("laptop", "20260101T000000Z", "20260102T000000Z", A),
        ("desk", "20260102T120000Z", "20260102T120000Z", A),
        ("laptop", "20260103T000000Z", "20260103T000000Z", B),
    ]


def test_a_delete_shows_once_from_its_tombstone_and_where_it_was_applied() -> None:
    delete = Delete(path="x", type="file", sha256=A, version={"laptop": 2})
    rows = versions_of(
        {
            "laptop": [("20260101T000000Z", file(A)), ("20260102T000000Z", None)],
            "desk": [("20260101T000000Z", file(A)), ("20260103T000000Z", None)],
        },
        [Tombstone("laptop", 7, "2026-01-02T00:00:00Z", delete)],
    )
    assert [(r.device, r.kind, r.sha256, r.seq) for r in rows] == [
        ("desk", "file", A, None),
        ("laptop", "file", A, None),
        ("laptop", "deleted", A, 7),  # the tombstone; not the vanishing again
        ("desk", "deleted", A, None),  # desk applied it: its snapshot lost the file
    ]


def test_a_mode_change_is_a_version_but_a_folder_s_listing_changing_is_not() -> None:
    folder = TreeEntry(name="d", type="dir", mode=0o755, version={"laptop": 1}, tree=A)
    moved = TreeEntry(name="d", type="dir", mode=0o755, version={"laptop": 1}, tree=B)
    chmod = TreeEntry(name="x", type="file", size=3, mode=0o600, mtime_ns=0, sha256=A,
                      version={"laptop": 2})  # fmt: skip
    rows = versions_of({"laptop": [("20260101T000000Z", folder), ("20260102T000000Z", moved)]})
    assert len(rows) == 1
    rows = versions_of({"laptop": [("20260101T000000Z", file(A)), ("20260102T000000Z", chmod)]})
    assert len(rows) == 2


def test_restore_picks_the_newest_version_unlike_the_file_now() -> None:
    rows = versions_of(
        {
            "laptop": [
                ("20260101T000000Z", file(A, laptop=1)),
                ("20260102T000000Z", file(B, laptop=2)),
                ("20260103T000000Z", file(C, laptop=3)),
            ]
        }
    )
    assert choose_version(rows, sha_prefix=None, current_sha256=C).sha256 == B
    assert choose_version(rows, sha_prefix=None, current_sha256=None).sha256 == C  # deleted
    assert choose_version(rows, sha_prefix="aaaa", current_sha256=C).sha256 == A
    with pytest.raises(UsageError, match="no retained version has a sha256 starting with 'dd'"):
        choose_version(rows, sha_prefix="dd", current_sha256=C)
    same = versions_of({"laptop": [("20260101T000000Z", file(C))]})
    with pytest.raises(UsageError, match="nothing to restore"):
        choose_version(same, sha_prefix=None, current_sha256=C)


def test_an_ambiguous_prefix_is_refused_and_a_tombstone_alone_still_restores() -> None:
    ab = "ab" + "0" * 62
    ac = "ac" + "0" * 62
    rows = versions_of({"laptop": [("20260101T000000Z", file(ab)), ("20260102T000000Z", file(ac))]})
    with pytest.raises(UsageError, match="matches several versions"):
        choose_version(rows, sha_prefix="a", current_sha256=None)
    delete = Delete(path="x", type="file", sha256=A, version={"laptop": 2})
    only = versions_of({}, [Tombstone("laptop", 1, "2026-01-02T00:00:00Z", delete)])
    chosen = choose_version(only, sha_prefix=None, current_sha256=None)
    assert (chosen.kind, chosen.sha256) == ("deleted", A)


def test_snapshot_at_is_the_newest_taken_at_or_before() -> None:
    ids = ["20260101T000000Z", "20260102T000000Z", "20260103T000000Z"]
    assert snapshot_at(ids, datetime(2026, 1, 2, tzinfo=UTC)) == "20260102T000000Z"
    assert snapshot_at(ids, datetime(2026, 1, 2, 23, tzinfo=UTC)) == "20260102T000000Z"
    assert snapshot_at(ids, datetime(2025, 12, 31, tzinfo=UTC)) is None


def test_at_reads_times_ago_iso_times_and_snapshot_ids() -> None:
    now = datetime(2026, 5, 22, 18, 0, tzinfo=UTC)
    plus2 = timezone(timedelta(hours=2))
    assert parse_when("2h", now, UTC) == now - timedelta(hours=2)
    assert parse_when("3d", now, UTC) == now - timedelta(days=3)
    assert parse_when("2w", now, UTC) == now - timedelta(weeks=2)
    assert parse_when("2026-05-22T10:00", now, plus2) == datetime(2026, 5, 22, 8, tzinfo=UTC)
    assert parse_when("2026-05-22T10:00Z", now, plus2) == datetime(2026, 5, 22, 10, tzinfo=UTC)
    assert parse_when("2026-05-21", now, UTC) == datetime(2026, 5, 21, tzinfo=UTC)
    assert parse_when("20260522T180500Z", now, plus2) == datetime(2026, 5, 22, 18, 5, tzinfo=UTC)
    for bad in ("yesterday", "2x", "", "2026-13-01"):
        with pytest.raises(UsageError, match="cannot read the time"):
            parse_when(bad, now, UTC)


def test_ages_read_as_people_say_them() -> None:
    assert human_age(timedelta(seconds=5)) == "just now"
    assert human_age(timedelta(days=3, hours=2, minutes=5)) == "3d 2h ago"
