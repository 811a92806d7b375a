"""What `gc` keeps and deletes of the device folders (SPEC 8.1, 8.2): snapshots past
retention, tombstone batches every active device has processed, retired devices'
folders (pure: the caller lists the folders, reads the heads and passes `now`).

Devices in the bucket but not in the registry are treated as active (a device being
registered, or a registry that lost a race): gc never deletes on the strength of a
record it does not have.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime

import msgspec

from dropbeard.core.retention import Policy, kept_snapshots, retired_keeps
from dropbeard.core.sweep import Listed, prunable_tombstones


class DeviceInput(msgspec.Struct, frozen=True):
    """One device's folder as gc found it. `current` is its head's snapshot, `seen` its
    head's marks (other device -> tombstone seq processed); `status` its registry record
    (None: not in the registry), `retired_at` when it was retired."""

    snapshots: Mapping[str, Listed] = msgspec.field(default_factory=dict)
    tombstones: Mapping[int, Listed] = msgspec.field(default_factory=dict)
    others: Sequence[Listed] = ()
    has_head: bool = False
    current: str | None = None
    seen: Mapping[str, int] = msgspec.field(default_factory=dict)
    status: str | None = "active"
    retired_at: datetime | None = None

    @property
    def active(self) -> bool:
        return self.status != "retired"


class RetentionPlan(msgspec.Struct):
    """The snapshots each device keeps, and the device-folder objects that go."""

    kept: dict[str, set[str]] = msgspec.field(default_factory=dict)
    snapshots: list[Listed] = msgspec.field(default_factory=list)
    tombstones: list[Listed] = msgspec.field(default_factory=list)
    retired: list[Listed] = msgspec.field(default_factory=list)  # whole folders of retired devices
    retired_devices: list[str] = msgspec.field(default_factory=list)

    @property
    def objects(self) -> list[Listed]:
        return [*self.snapshots, *self.tombstones, *self.retired]


def plan_retention(
    devices: Mapping[str, DeviceInput], now: datetime, policy: Policy
) -> RetentionPlan:
    """Apply the retention policy to every device's folder."""
    plan = RetentionPlan()
    for device, d in sorted(devices.items()):
        if not d.active:
            retired_at = d.retired_at or now  # no time recorded: retired just now
            keep = retired_keeps(sorted(d.snapshots), retired_at, now, policy)
            if keep is None:
                plan.retired += [*d.snapshots.values(), *d.tombstones.values(), *d.others]
                plan.retired_devices.append(device)
                continue
        else:
            keep = kept_snapshots(d.snapshots, d.current, now, policy)
        plan.kept[device] = keep
        plan.snapshots += [obj for s, obj in sorted(d.snapshots.items()) if s not in keep]
        if d.active:
            seen_by = {
                other: o.seen.get(device, 0)
                for other, o in devices.items()
                if other != device and o.active
            }
            batches = [(seq, obj.last_modified) for seq, obj in d.tombstones.items()]
            prunable = prunable_tombstones(batches, seen_by, now, policy.grace)
            plan.tombstones += [d.tombstones[seq] for seq in prunable]
    return plan
