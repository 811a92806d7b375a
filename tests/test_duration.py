"""Durations as written in config files and flags."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dropbeard.core.duration import format_duration, parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("2h", 7200.0),
        ("7d", 604800.0),
        ("0s", 0.0),
        ("1.5s", 1.5),
        ("1.5h", 5400.0),
        (".5m", 30.0),
        ("1m30s", 90.0),
        ("1d2h3m4s5ms", 93784.005),
        (" 30s ", 30.0),
    ],
)
def test_units(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(30, 30.0), (0, 0.0), (1.5, 1.5), ("30", 30.0), ("1.5", 1.5), ("0", 0.0), ("2.", 2.0)],
)
def test_bare_numbers_are_seconds(value: str | int | float, seconds: float) -> None:
    assert parse_duration(value) == seconds
    assert isinstance(parse_duration(value), float)


@pytest.mark.parametrize(
    "value",
    [
        "5x",
        "",
        "   ",
        "-5s",
        "-1",
        -1,
        -0.5,
        "s",
        "5 s",
        "5S",
        "5sec",
        "1e3",
        "inf",
        "nan",
        math.inf,
        math.nan,
        "5s1m",  # units out of order: a typo, not 65 s
        "1m1m",
        "30s!",
        "٣s",  # non-ASCII digits
        "9" * 400,  # overflows to inf
        10**400,
    ],
)
def test_rejections(value: str | int | float) -> None:
    with pytest.raises(ValueError, match=r"invalid duration .*: use e\.g\. 500ms, 30s, 5m, 2h, 7d"):
        parse_duration(value)


def test_message_shows_what_was_typed() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("5x")
    assert str(info.value) == "invalid duration '5x': use e.g. 500ms, 30s, 5m, 2h, 7d"


def test_message_stays_on_one_line_and_short() -> None:
    with pytest.raises(ValueError) as info:
        parse_duration("5\nx" + "y" * 200)
    assert "\n" not in str(info.value)
    assert len(str(info.value)) < 120


def test_booleans_are_not_durations() -> None:
    with pytest.raises(ValueError):
        parse_duration(True)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (0.5, "500ms"),
        (1, "1s"),
        (30, "30s"),
        (90, "1m30s"),
        (300, "5m"),
        (7200, "2h"),
        (604800, "7d"),
        (3661.5, "1h1m1s500ms"),
        (0.0004, "0s"),
        (0.0006, "1ms"),
        (-3, "-3s"),
    ],
)
def test_format(seconds: float, text: str) -> None:
    assert format_duration(seconds) == text


def test_format_rejects_non_finite() -> None:
    with pytest.raises(ValueError):
        format_duration(math.inf)


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=10**12))
def test_formatted_durations_parse_back(millis: int) -> None:
    seconds = millis / 1000
    text = format_duration(seconds)
    assert math.isclose(parse_duration(text), seconds, rel_tol=1e-12, abs_tol=1e-9)
    assert format_duration(parse_duration(text)) == text
