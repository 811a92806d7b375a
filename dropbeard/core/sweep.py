"""What `gc` may delete (SPEC 8.2), decided from what it read (pure: the caller lists the
bucket, marks what retained snapshots and current heads reach, and passes `now`).

The rules that make a sweep safe without locks, while other devices sync and another gc
runs:

- an object goes only if nothing retained reaches it **and** it is older than the grace
  period G (a writer that relies on an object refreshes it, so its LastModified is new);
- the caller checks each candidate's LastModified again just before deleting it, and
  re-reads every head, sparing whatever a changed head reaches (`still_garbage`);
- a tombstone batch goes once every active device's `seen` covers it and it is older than
  G (a device that has not processed it yet still needs it);
- deleting the same garbage twice is harmless, so two gc runs may overlap.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime, timedelta

import msgspec


class Listed(msgspec.Struct, frozen=True):
    """One object as a listing showed it."""

    key: str
    size: int
    last_modified: datetime


class Sweep(msgspec.Struct):
    """What one gc run deletes, and what it frees."""

    delete: list[Listed] = msgspec.field(default_factory=list)
    spared_young: int = 0
    """Unreached objects younger than the grace period: a writer may be about to name them."""

    @property
    def freed_bytes(self) -> int:
        return sum(o.size for o in self.delete)


def sweep(listed: Iterable[Listed], reached: set[str], now: datetime, grace: timedelta) -> Sweep:
    """The objects of a listing of `trees/` or `blobs/` that gc deletes: unreached (by
    key, as `reached` names them) and older than `grace`."""
    result = Sweep()
    for obj in listed:
        if obj.key in reached:
            continue
        if now - obj.last_modified < grace:
            result.spared_young += 1
        else:
            result.delete.append(obj)
    return result


def still_garbage(
    obj: Listed,
    last_modified_now: datetime | None,
    reached_now: set[str],
    now: datetime,
    grace: timedelta,
) -> bool:
    """Check one candidate again just before deleting it: gone already (None: nothing to
    do), refreshed by a writer since the listing, or reached by a head that changed since
    the mark, and it stays."""
    if last_modified_now is None or obj.key in reached_now:
        return False
    return now - last_modified_now >= grace


def prunable_tombstones(
    batches: Iterable[tuple[int, datetime]],
    seen_by: Mapping[str, int],
    now: datetime,
    grace: timedelta,
) -> list[int]:
    """The seqs of one device's tombstone batches that may go: every other active device
    has processed them (`seen_by`: device -> the tombstone seq its head's `seen` names for
    this device; a device with no mark yet holds them all back), and they are older than
    `grace`. With no other active device, nobody needs them once older than `grace`."""
    floor = min(seen_by.values(), default=None)
    prunable = []
    for seq, created in sorted(batches):
        if floor is not None and seq > floor:
            break
        if now - created >= grace:
            prunable.append(seq)
    return prunable
