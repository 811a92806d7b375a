"""When a device writes its head without publishing a snapshot (SPEC 1.3) (pure): a head
carries `seen`, how far the device processed every other one (`status` says who is caught
up from it, `gc` prunes tombstones by it). A device that publishes nothing writes one only
for that; a publishing device whose tree did not change rewrites its head for it. Either
does so when its marks moved, at most once every `HEAD_EVERY`, so that a device idle but
receiving still lets the others know without a write per poll.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta

from dropbeard.core.model import SeenMark
from dropbeard.core.passrules import ProcessedPeer

HEAD_EVERY = timedelta(minutes=10)


def head_due(
    seen: Mapping[str, SeenMark],
    written: Mapping[str, SeenMark] | None,
    written_at: datetime | None,
    now: datetime,
) -> bool:
    """True if the head must be written for its marks alone: `seen` (the marks now) is
    not empty and differs from `written` (those of the last head this device wrote, None
    if unknown), and that head was written at least `HEAD_EVERY` before `now` (or never,
    or when is unknown)."""
    if not seen or seen == written:
        return False
    return written_at is None or now - written_at >= HEAD_EVERY


def seen_marks(
    peers: Mapping[str, ProcessedPeer], heads: Mapping[str, ProcessedPeer]
) -> dict[str, SeenMark]:
    """The seen-marks to publish: how far this device processed each other device — the
    head processed this pass (`heads`, of the settled devices), else the one recorded."""
    seen = {
        d: SeenMark(snapshot=p.snapshot, tombstone_seq=p.tombstone_seq)
        for d, p in peers.items()
        if p.snapshot or p.tombstone_seq
    }
    for dev, head in heads.items():
        seen[dev] = SeenMark(snapshot=head.snapshot, tombstone_seq=head.tombstone_seq)
    return seen
