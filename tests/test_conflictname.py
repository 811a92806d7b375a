"""Conflict-copy names (SPEC 4.4): where the copy goes, and recognising copies on disk."""

from __future__ import annotations

from datetime import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.conflictname import conflict_name, parse_conflict_name

TS = "20260522T180500Z"


@pytest.mark.parametrize(
    ("path", "device", "copy"),
    [
        pytest.param("docs/a.md", "laptop", "docs/a.conflict-laptop-20260522T180500Z.md", id="ext"),
        pytest.param(".bashrc", "dev", ".bashrc.conflict-dev-20260522T180500Z", id="leading-dot"),
        pytest.param("a.tar.gz", "dev", "a.tar.conflict-dev-20260522T180500Z.gz", id="last-ext"),
        pytest.param("Makefile", "dev", "Makefile.conflict-dev-20260522T180500Z", id="no-dot"),
        pytest.param(
            "x/y/z/.env.local",
            "dev",
            "x/y/z/.env.conflict-dev-20260522T180500Z.local",
            id="dotfile-ext",
        ),
        pytest.param(
            "notes.", "dev", "notes..conflict-dev-20260522T180500Z", id="trailing-dot-no-ext"
        ),
        pytest.param(
            "a.md", "old-phone", "a.conflict-old-phone-20260522T180500Z.md", id="hyphen-device"
        ),
        pytest.param(
            "dir.d/file", "dev", "dir.d/file.conflict-dev-20260522T180500Z", id="dot-in-dir"
        ),
    ],
)
def test_copy_sits_beside_the_original(path: str, device: str, copy: str) -> None:
    assert conflict_name(path, device, TS) == copy
    assert parse_conflict_name(copy) == (path, device, TS)


@pytest.mark.parametrize(
    "path",
    [
        "docs/a.md",
        "a.conflict-laptop.md",  # marker but no timestamp
        "a.conflict-laptop-20260522T180500Z.md/child",  # only the last name counts
        "a.conflict--20260522T180500Z.md",  # empty device id
        "a.conflict-Laptop-20260522T180500Z.md",  # invalid device id
        "a.conflict-laptop-20261399T180500Z.md",  # impossible date
        "a.conflict-laptop-20260522T180500Z.md.bak",  # timestamp not at the end
        ".conflict-laptop-20260522T180500Z",  # no stem
        "a.conflict-laptop_20260522T180500Z",  # no hyphen before the timestamp
        "",
    ],
)
def test_ordinary_names_are_not_conflict_copies(path: str) -> None:
    assert parse_conflict_name(path) is None


@pytest.mark.parametrize(
    ("path", "device", "ts"),
    [
        pytest.param("a.md", "Laptop", TS, id="bad-device"),
        pytest.param("a.md", "laptop", "2026-05-22T18:05:00Z", id="bad-snapshot-id"),
        pytest.param("../a.md", "laptop", TS, id="bad-path"),
        pytest.param("x" * 200 + ".md", "d" * 64, TS, id="name-too-long"),
    ],
)
def test_invalid_arguments_are_refused(path: str, device: str, ts: str) -> None:
    with pytest.raises(ValueError):
        conflict_name(path, device, ts)


def test_copy_of_a_copy_parses_back_to_the_first_copy() -> None:
    first = conflict_name("a.md", "laptop", TS)
    second = conflict_name(first, "desktop", "20260523T000000Z")
    assert parse_conflict_name(second) == (first, "desktop", "20260523T000000Z")


_name_chars = st.sampled_from("abcXYZ.-_ é文")
segments = (
    st.text(_name_chars, min_size=1, max_size=12)
    .filter(lambda s: s not in (".", ".."))
    .filter(lambda s: not s.casefold().startswith(".dropbear"))
)
paths = st.lists(segments, min_size=1, max_size=3).map("/".join)
device_ids = st.from_regex(r"[a-z0-9][a-z0-9._-]{0,20}", fullmatch=True).filter(
    lambda d: ".conflict-" not in d
)
snapshot_ids = st.datetimes(
    min_value=datetime(1971, 1, 1),
    max_value=datetime(2999, 12, 31),
).map(lambda d: d.strftime("%Y%m%dT%H%M%SZ"))


@settings(max_examples=300, deadline=None)
@given(paths, device_ids, snapshot_ids)
def test_parse_inverts_conflict_name(path: str, device: str, ts: str) -> None:
    copy = conflict_name(path, device, ts)
    assert copy.rpartition("/")[0] == path.rpartition("/")[0]
    assert parse_conflict_name(copy) == (path, device, ts)
