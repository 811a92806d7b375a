"""Bandwidth limits as rclone users write them (`--bwlimit 10M`, `bandwidth_limit = "512K"`)
(pure).

A number with an optional binary unit, in bytes per second: `B`, `K` (KiB, the unit of a
bare number, as in rclone), `M`, `G`, `T`; an optional trailing `/s` or `iB`/`iB/s` is
accepted (`10MiB/s`). `off` or `0` means no limit. rclone's timetables and separate
upload:download rates are not supported.
"""

from __future__ import annotations

import math
import re

_UNITS = {"b": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
_LIMIT = re.compile(r"((?:\d+(?:\.\d*)?|\.\d+))\s*([bkmgt])?(?:i?b)?(?:/s)?", re.ASCII | re.I)
#: Below this a transfer would crawl for minutes per MiB: surely a typo (units?).
MIN_LIMIT = 1024


def _invalid(text: object, why: str = "use e.g. 512K, 10M, 1G or off") -> ValueError:
    shown = str(text)
    if len(shown) > 40:
        shown = shown[:37] + "..."
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in shown)
    return ValueError(f"invalid bandwidth limit '{shown}': {why}")


def parse_bandwidth(text: str | int | float) -> int | None:
    """Bytes per second in `text`, or None for no limit; ValueError if unparsable,
    negative, or below MIN_LIMIT."""
    if isinstance(text, bool) or not isinstance(text, int | float | str):
        raise _invalid(text)
    body = str(text).strip()
    if body.lower() in ("off", ""):
        if body:
            return None
        raise _invalid(text)
    match = _LIMIT.fullmatch(body)
    if match is None:
        raise _invalid(text)
    value = float(match.group(1)) * _UNITS[(match.group(2) or "k").lower()]
    if not math.isfinite(value):
        raise _invalid(text)
    if value == 0:
        return None
    if value < MIN_LIMIT:
        raise _invalid(text, f"at least {MIN_LIMIT} bytes per second (1K), or off")
    return int(value)


def format_bandwidth(rate: int | None) -> str:
    """`rate` bytes per second as `parse_bandwidth` reads it back: `off`, `512K`, `1.5M`."""
    if rate is None:
        return "off"
    for unit in ("T", "G", "M", "K"):
        size = _UNITS[unit.lower()]
        if rate >= size and (rate * 10) % size == 0:
            return f"{rate / size:g}{unit}"
    return f"{rate}B"
