"""Which snapshots `gc` keeps (SPEC 8.1), and the retention policy as `registry.json` and
the `retention` command write it (pure: the caller passes the snapshots and `now`).

For every device `gc` keeps its current head's snapshot; every snapshot that was current
at some time in the last grace period G (its successor is younger than G); every snapshot
younger than `all`; and the newest snapshot of each UTC hour younger than `hourly`, of
each UTC day younger than `daily`, of each ISO week younger than `weekly`. A retired
device keeps only its last snapshot until it has been retired for longer than G.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Sequence
from datetime import datetime, timedelta
from itertools import pairwise

import msgspec

from dropbeard.core.duration import format_duration, parse_duration
from dropbeard.core.timestamps import parse_snapshot_id

_LONG = re.compile(r"\s*(\d+)\s*([wy])\s*", re.ASCII)
_LONG_SECONDS = {"w": 7 * 86_400, "y": 365 * 86_400}

MIN_SAFE_GRACE = timedelta(hours=1)
"""A grace period under this is for tests only: a pass may take longer (SPEC 8.2)."""


def parse_period(text: str) -> timedelta:
    """A retention period as people write one: `48h`, `7d`, `90d`, or weeks and years
    (`2w`, `2y`, a year being 365 days), or `0` (keep none by that rule). ValueError with
    one line naming the text otherwise."""
    long = _LONG.fullmatch(text) if isinstance(text, str) else None
    if long is not None:
        return timedelta(seconds=int(long.group(1)) * _LONG_SECONDS[long.group(2)])
    try:
        return timedelta(seconds=parse_duration(text))
    except ValueError:
        raise ValueError(
            f"invalid period {text!r}: use e.g. 48h, 7d, 2w, 2y (or 0 for none)"
        ) from None


def format_period(period: timedelta) -> str:
    """The short form `parse_period` reads back: whole years or weeks as `2y`/`2w`."""
    seconds = period.total_seconds()
    for unit in ("y", "w"):
        size = _LONG_SECONDS[unit]
        if seconds >= size and seconds % size == 0:
            return f"{int(seconds // size)}{unit}"
    return format_duration(seconds)


class Policy(msgspec.Struct, frozen=True):
    """How long snapshots are kept (SPEC 1.5 `retention`, 8.1), and the grace period."""

    all: timedelta = timedelta(hours=48)
    hourly: timedelta = timedelta(days=7)
    daily: timedelta = timedelta(days=90)
    weekly: timedelta = timedelta(days=2 * 365)
    grace: timedelta = timedelta(hours=24)

    @classmethod
    def from_fields(cls, retention: dict[str, str], grace: str | None) -> Policy:
        """The policy a registry names (absent fields take the defaults); unknown rule
        names are refused, so a typo does not silently keep less than asked."""
        unknown = sorted(set(retention) - {"all", "hourly", "daily", "weekly"})
        if unknown:
            raise ValueError(
                f"unknown retention rule {unknown[0]!r}: use all, hourly, daily, weekly"
            )
        base = cls()
        return cls(
            all=_field(retention, "all", base.all),
            hourly=_field(retention, "hourly", base.hourly),
            daily=_field(retention, "daily", base.daily),
            weekly=_field(retention, "weekly", base.weekly),
            grace=parse_period(grace) if grace is not None else base.grace,
        )

    def fields(self) -> tuple[dict[str, str], str]:
        """(`retention`, `grace`) as the registry writes them."""
        rules = {"all": self.all, "hourly": self.hourly, "daily": self.daily}
        rules["weekly"] = self.weekly
        return {k: format_period(v) for k, v in rules.items()}, format_period(self.grace)


def _field(fields: dict[str, str], name: str, default: timedelta) -> timedelta:
    return parse_period(fields[name]) if name in fields else default


def kept_snapshots(
    snapshots: Iterable[str], current: str | None, now: datetime, policy: Policy
) -> set[str]:
    """The snapshot ids (`YYYYMMDDTHHMMSSZ`) of one active device that `gc` keeps, given
    every snapshot it has and `current`, the one its head names. The rest may go."""
    ordered = sorted(set(snapshots))
    if not ordered:
        return set()
    times = {s: parse_snapshot_id(s) for s in ordered}
    kept: set[str] = set()
    if current is not None:
        kept.add(current)
    kept.add(ordered[-1])  # the newest is current, or is about to be (a head being written)
    for older, newer in pairwise(ordered):
        if now - times[newer] < policy.grace:
            kept.add(older)  # it was current within the grace period
    kept.update(s for s in ordered if now - times[s] < policy.all)
    for period, bucket in (
        (policy.hourly, _hour),
        (policy.daily, _day),
        (policy.weekly, _iso_week),
    ):
        kept.update(_newest_per_bucket(ordered, times, now, period, bucket))
    return kept


def retired_keeps(
    snapshots: Sequence[str], retired_at: datetime, now: datetime, policy: Policy
) -> set[str] | None:
    """What a retired device keeps: its last snapshot until it has been retired for
    longer than the grace period; after that None: its whole subtree goes."""
    if now - retired_at > policy.grace:
        return None
    return {max(snapshots)} if snapshots else set()


def _newest_per_bucket(
    ordered: Sequence[str],
    times: dict[str, datetime],
    now: datetime,
    period: timedelta,
    bucket: Callable[[datetime], tuple[int, ...]],
) -> set[str]:
    newest: dict[tuple[int, ...], str] = {}
    for s in ordered:  # oldest first: a later one in the same bucket replaces it
        if now - times[s] < period:
            newest[bucket(times[s])] = s
    return set(newest.values())


def _hour(t: datetime) -> tuple[int, ...]:
    return (t.year, t.month, t.day, t.hour)


def _day(t: datetime) -> tuple[int, ...]:
    return (t.year, t.month, t.day)


def _iso_week(t: datetime) -> tuple[int, ...]:
    year, week, _ = t.isocalendar()
    return (year, week)
