"""A path's history across devices, and the times people name (pure: the caller reads the
snapshots and tombstones, and passes `now`).

`versions_of` turns what each device's retained snapshots held at a path (in snapshot
order) and the tombstones naming it into rows: one per version as it first appeared on
a device, and one per delete (from a tombstone, which records what was deleted, or from
the path vanishing between two of a device's snapshots). `choose_version` picks what
`restore` brings back; `parse_when` reads `--at`.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime, timedelta, tzinfo
from typing import Literal

import msgspec

from dropbeard.core.errors import UsageError
from dropbeard.core.model import Delete
from dropbeard.core.retention import parse_period
from dropbeard.core.timestamps import parse_snapshot_id, parse_utc_iso
from dropbeard.core.tree import TreeEntry

Kind = Literal["file", "dir", "symlink", "deleted"]
_RELATIVE = re.compile(r"\s*\d+(\.\d+)?\s*[a-z]+\s*", re.ASCII)
_SNAPSHOT_ID = re.compile(r"\d{8}T\d{6}Z")


class Version(msgspec.Struct, frozen=True):
    """One version of a path as one device held it. `snapshot` is the first snapshot
    that held it (None for a tombstone), `until` the last; `time` when it appeared (or
    was deleted). A delete keeps the sha256 of what was deleted."""

    device: str
    time: datetime
    kind: Kind
    snapshot: str | None = None
    until: str | None = None
    entry: TreeEntry | None = None
    sha256: str | None = None
    size: int | None = None
    version: Mapping[str, int] | None = None
    seq: int | None = None  # the tombstone batch, for a delete it recorded

    @property
    def present(self) -> bool:
        return self.kind != "deleted"


class Tombstone(msgspec.Struct, frozen=True):
    """One delete of the path, as a device's tombstone batch recorded it."""

    device: str
    seq: int
    created_at: str
    delete: Delete


def _same(a: TreeEntry, b: TreeEntry) -> bool:
    """The same version of a path: a folder's listing changing is not a new version of it."""
    return (a.type, a.sha256, a.target, a.mode, a.version) == (
        b.type, b.sha256, b.target, b.mode, b.version,
    )  # fmt: skip


def versions_of(
    held: Mapping[str, Sequence[tuple[str, TreeEntry | None]]],
    tombstones: Iterable[Tombstone] = (),
) -> list[Version]:
    """The rows of `versions`, oldest first: `held` maps each device to (snapshot id,
    entry at the path or None) for each of its retained snapshots, oldest first."""
    rows: list[Version] = []
    by_device: dict[str, list[datetime]] = {}
    for t in tombstones:
        when = parse_utc_iso(t.created_at)
        by_device.setdefault(t.device, []).append(when)
        d = t.delete
        rows.append(
            Version(t.device, when, "deleted", sha256=d.sha256, version=d.version, seq=t.seq)
        )
    for device, snaps in held.items():
        rows += _device_rows(device, snaps, by_device.get(device, []))
    return sorted(rows, key=lambda v: (v.time, v.device, v.kind == "deleted"))


def _device_rows(
    device: str, snaps: Sequence[tuple[str, TreeEntry | None]], deletes: list[datetime]
) -> list[Version]:
    rows: list[Version] = []
    current: TreeEntry | None = None
    previous_time: datetime | None = None
    for snapshot, entry in snaps:
        time = parse_snapshot_id(snapshot)
        if entry is None and current is not None:
            recorded = any(
                previous_time is not None and previous_time <= t <= time for t in deletes
            )
            if not recorded:  # gone without a tombstone of its own: applied from elsewhere
                rows.append(Version(device, time, "deleted", snapshot, sha256=current.sha256,
                                    version=current.version))  # fmt: skip
        elif entry is not None and (current is None or not _same(current, entry)):
            rows.append(Version(device, time, entry.type, snapshot, snapshot, entry,
                                entry.sha256, entry.size, entry.version))  # fmt: skip
        elif entry is not None and rows:
            rows[-1] = _until(rows[-1], snapshot)
        current, previous_time = entry, time
    return rows


def _until(row: Version, snapshot: str) -> Version:
    return Version(row.device, row.time, row.kind, row.snapshot, snapshot, row.entry,
                   row.sha256, row.size, row.version, row.seq)  # fmt: skip


def choose_version(
    versions: Sequence[Version], *, sha_prefix: str | None, current_sha256: str | None
) -> Version:
    """What `restore` brings back of a file: the version whose sha256 starts with
    `sha_prefix` (a snapshot's row rather than a tombstone's, which lacks the file's
    chunk list, size and mode); without it, the newest version whose content is not what
    the path holds now (`current_sha256`). UsageError when none or several match."""
    if sha_prefix is not None:
        prefix = sha_prefix.lower()
        matches = [v for v in versions if v.sha256 is not None and v.sha256.startswith(prefix)]
        digests = sorted({v.sha256 for v in matches if v.sha256 is not None})
        if not digests:
            raise UsageError(f"no retained version has a sha256 starting with {sha_prefix!r}")
        if len(digests) > 1:
            shown = ", ".join(d[:12] for d in digests)
            raise UsageError(f"--version {sha_prefix!r} matches several versions ({shown})")
        held = [v for v in matches if v.present and v.kind == "file"]
        return (held or matches)[-1]
    candidates = [
        v for v in versions if v.present and v.kind == "file" and v.sha256 != current_sha256
    ]
    if not candidates:
        deleted = [v for v in versions if v.sha256 is not None and v.sha256 != current_sha256]
        if deleted:  # known only from a tombstone
            return deleted[-1]
        raise UsageError("nothing to restore: no retained version differs from the file as it is")
    return candidates[-1]


def snapshot_at(snapshot_ids: Iterable[str], at: datetime) -> str | None:
    """The newest snapshot id taken at or before `at`."""
    best = None
    for s in snapshot_ids:
        if parse_snapshot_id(s) <= at and (best is None or s > best):
            best = s
    return best


def parse_when(text: str, now: datetime, local: tzinfo) -> datetime:
    """`--at`: a time ago (`90m`, `2h`, `3d`, `2w`) or a time: ISO 8601 (`2026-05-22`,
    `2026-05-22T18:05`, with a zone or in `local`), or a snapshot id as `versions` shows
    them. UsageError naming the text otherwise."""
    if _RELATIVE.fullmatch(text):
        try:
            return now - parse_period(text.strip())
        except ValueError:
            pass
    elif _SNAPSHOT_ID.fullmatch(text.strip()):
        return parse_snapshot_id(text.strip())
    else:
        try:
            parsed = datetime.fromisoformat(text.strip())
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=local)
    raise UsageError(
        f"cannot read the time {text!r}: give a time ago (90m, 2h, 3d, 2w) or one like "
        "2026-05-22T18:05 (local time unless it names a zone)"
    )


def short(sha256: str | None) -> str:
    return "-" if sha256 is None else sha256[:12]


def human_age(delta: timedelta) -> str:
    """`3d 2h ago`, to the largest two units."""
    seconds = int(delta.total_seconds())
    if seconds < 60:
        return "just now"
    parts = []
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= size:
            parts.append(f"{seconds // size}{unit}")
            seconds %= size
    return " ".join(parts[:2]) + " ago"
