"""Durations as people write them in config and flags (`500ms`, `30s`, `5m`, `2h`, `7d`) (pure).

A bare number means seconds. Units may be combined largest first (`1m30s`), which is what
`format_duration` writes, so every formatted duration parses back to the same value.
"""

from __future__ import annotations

import math
import re

_UNIT_MS: dict[str, int] = {"d": 86_400_000, "h": 3_600_000, "m": 60_000, "s": 1000, "ms": 1}
_NUMBER = r"(?:\d+(?:\.\d*)?|\.\d+)"
_BARE = re.compile(_NUMBER, re.ASCII)
# One or more number+unit parts; `ms` is tried before `m` so "500ms" is not "500m" + "s".
_PART = re.compile(rf"({_NUMBER})(ms|d|h|m|s)", re.ASCII)


def _invalid(text: object) -> ValueError:
    shown = str(text)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    # Keep the message on one line whatever was typed.
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
    return ValueError(f"invalid duration '{shown}': use e.g. 500ms, 30s, 5m, 2h, 7d")


def parse_duration(text: str | int | float) -> float:
    """Seconds in `text`; ValueError for negative, empty, non-finite or unparsable input."""
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise _invalid(text)
    if isinstance(text, int | float):
        try:
            seconds = float(text)
        except OverflowError:  # an int too large for a float
            raise _invalid(text) from None
        if not math.isfinite(seconds) or seconds < 0:
            raise _invalid(text)
        return seconds
    body = text.strip()
    seconds = float(body) if _BARE.fullmatch(body) else _parse_units(text, body)
    if not math.isfinite(seconds):  # a 400-digit number overflows to inf
        raise _invalid(text)
    return seconds


def _parse_units(text: str, body: str) -> float:
    total_ms = 0.0
    pos = 0
    order = list(_UNIT_MS)
    last_rank = -1
    while pos < len(body):
        match = _PART.match(body, pos)
        if match is None:
            raise _invalid(text)
        rank = order.index(match.group(2))
        if rank <= last_rank:  # each unit once, largest first: "5s1m" is a typo, not 65s
            raise _invalid(text)
        last_rank = rank
        total_ms += float(match.group(1)) * _UNIT_MS[match.group(2)]
        pos = match.end()
    if pos == 0:
        raise _invalid(text)
    return total_ms / 1000


def format_duration(seconds: float) -> str:
    """Short human form, rounded to the millisecond: 0.5 → `500ms`, 90 → `1m30s`, 0 → `0s`."""
    if not math.isfinite(seconds):
        raise ValueError(f"cannot format duration {seconds!r}")
    sign = "-" if seconds < 0 else ""
    millis = round(abs(seconds) * 1000)
    if millis == 0:
        return "0s"
    parts: list[str] = []
    for unit, unit_millis in _UNIT_MS.items():
        count, millis = divmod(millis, unit_millis)
        if count:
            parts.append(f"{count}{unit}")
    return sign + "".join(parts)
