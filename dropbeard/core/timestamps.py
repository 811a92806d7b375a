"""The two ways bucket objects write a time, `YYYY-MM-DDTHH:MM:SSZ` and snapshot ids
`YYYYMMDDTHHMMSSZ`: formatting, parsing and validating them (pure: times are passed in)."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from dropbeard.core.errors import quoted

_SNAPSHOT_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z")
_TIMESTAMP = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z")
_SNAPSHOT_ID_FORMAT = "%Y%m%dT%H%M%SZ"
_TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%SZ"


def utc_iso(ts: float | datetime) -> str:
    """`ts` (POSIX seconds or an aware datetime) as `YYYY-MM-DDTHH:MM:SSZ`, truncated to
    the second: the one way dropbeard writes a time, in the bucket and in `status`."""
    d = _utc(ts)
    return f"{d.year:04d}-{d.month:02d}-{d.day:02d}T{d.hour:02d}:{d.minute:02d}:{d.second:02d}Z"


def snapshot_id(ts: float | datetime) -> str:
    """`ts` as a snapshot id `YYYYMMDDTHHMMSSZ`, truncated to the second."""
    d = _utc(ts)
    return f"{d.year:04d}{d.month:02d}{d.day:02d}T{d.hour:02d}{d.minute:02d}{d.second:02d}Z"


def next_snapshot_id(now: datetime, previous: str | None) -> str:
    """The id for a snapshot published at `now` after `previous` (SPEC 1): `now`'s id, or
    `previous` plus one second if that would not sort after it, so keys sort in publish
    order even if the clock went backwards."""
    candidate = snapshot_id(now)
    if previous is None:
        return candidate
    last = parse_snapshot_id(previous)
    if candidate > previous:
        return candidate
    return snapshot_id(last + timedelta(seconds=1))


def parse_snapshot_id(value: str) -> datetime:
    """The UTC time a snapshot id `YYYYMMDDTHHMMSSZ` names; ValueError if it is not one."""
    return _parse_time(value, _SNAPSHOT_ID, _SNAPSHOT_ID_FORMAT, "snapshot id")


def parse_utc_iso(value: str) -> datetime:
    """The UTC time of a timestamp `YYYY-MM-DDTHH:MM:SSZ`; ValueError if it is not one."""
    return _parse_time(value, _TIMESTAMP, _TIMESTAMP_FORMAT, "timestamp")


def validate_snapshot_id(value: str) -> str:
    parse_snapshot_id(value)
    return value


def validate_timestamp(value: str) -> str:
    parse_utc_iso(value)
    return value


def _parse_time(value: str, pattern: re.Pattern[str], fmt: str, what: str) -> datetime:
    # The regex first: strptime alone accepts one-digit fields and non-ASCII digits.
    if pattern.fullmatch(value):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=UTC)
        except ValueError:
            pass
    example = datetime(2026, 5, 22, 18, 5, tzinfo=UTC).strftime(fmt)
    raise ValueError(f"{quoted(value)} is not a valid {what} (like {example})")


def _utc(ts: float | datetime) -> datetime:
    if isinstance(ts, datetime):
        if ts.tzinfo is None:
            raise ValueError("naive datetime: pass an aware one (UTC)")
        return ts.astimezone(UTC).replace(microsecond=0)
    return datetime.fromtimestamp(math.floor(ts), UTC)
