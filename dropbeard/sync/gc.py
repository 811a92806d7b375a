"""`gc`: apply the retention policy, then delete what nothing retained reaches (SPEC 8.1,
8.2), safely while other devices sync and another gc runs, without locks (IO: store).

1. Read the registry (policy, grace G), list the device folders, read every head.
2. Decide per device which snapshots stay, which tombstone batches every active device
   has processed, which retired folders go (`core.gcplan`).
3. Mark every node and blob the heads and the retained snapshots reach (`sync.reach`).
   Anything unreadable there stops gc before it deletes anything: what lies below a
   node it cannot read is unknown.
4. List `trees/` and `blobs/`; the candidates are unreached and older than G.
5. Delete the pruned snapshots, tombstone batches and retired folders; then the
   candidates, in batches: before each, every head is read again (a 304 when it did not
   move) and whatever a changed head reaches is marked and spared; each candidate's
   LastModified is checked again (a writer that relied on it refreshed it) just before
   it is deleted. Deleting twice is harmless, so two gcs may overlap.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import msgspec

from dropbeard.core.errors import UsageError
from dropbeard.core.gcplan import DeviceInput, RetentionPlan, plan_retention
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Registry
from dropbeard.core.retention import MIN_SAFE_GRACE, Policy, format_period
from dropbeard.core.sweep import Listed, sweep
from dropbeard.core.timestamps import parse_utc_iso
from dropbeard.store.base import Store
from dropbeard.sync.devicelog import DeviceFolder, SnapshotReader, list_devices
from dropbeard.sync.gcsweep import Candidate, GcStopped, Sweeper, stop_if
from dropbeard.sync.heads import Heads, read_heads
from dropbeard.sync.reach import Marker, list_contents
from dropbeard.sync.registry import read_registry
from dropbeard.sync.trees import TreeStore
from dropbeard.sync.workers import for_each

#: Candidates deleted between two re-reads of the heads.
RECHECK_EVERY = 1000
CONCURRENCY = 16
__all__ = ["GcReport", "GcStopped", "collect_garbage", "policy_of"]


def utc_now() -> datetime:
    return datetime.now(UTC)


class GcReport(msgspec.Struct):
    """What one gc deleted (or, dry, would delete), by kind, and what it spared."""

    policy: Policy
    dry_run: bool
    kept_snapshots: int = 0
    snapshots: list[Listed] = msgspec.field(default_factory=list)
    tombstones: list[Listed] = msgspec.field(default_factory=list)
    retired: list[Listed] = msgspec.field(default_factory=list)
    retired_devices: list[str] = msgspec.field(default_factory=list)
    trees: list[Listed] = msgspec.field(default_factory=list)
    blobs: list[Listed] = msgspec.field(default_factory=list)
    spared_young: int = 0  # unreached, younger than the grace period
    spared_late: int = 0  # refreshed, or reached by a head that moved, since the mark
    strays: int = 0  # keys under trees/ or blobs/ that are no node's or blob's

    @property
    def deleted(self) -> list[Listed]:
        return [*self.snapshots, *self.tombstones, *self.retired, *self.trees, *self.blobs]

    @property
    def freed_bytes(self) -> int:
        return sum(o.size for o in self.deleted)

    @property
    def warning(self) -> str | None:
        if self.policy.grace < MIN_SAFE_GRACE:
            return (
                f"the grace period is {format_period(self.policy.grace)}, under 1h: for "
                "tests only (a sync pass may take longer and lose objects to gc)"
            )
        return None


def policy_of(registry: Registry) -> Policy:
    """The registry's retention policy; a rule this dropbeard does not know stops gc
    (ignoring it could keep less than asked)."""
    try:
        return Policy.from_fields(registry.retention, registry.grace)
    except ValueError as exc:
        raise UsageError(f"registry.json: {exc}; upgrade dropbeard before running gc") from None


async def collect_garbage(
    store: Store,
    keys: RootKeys,
    trees: TreeStore,
    *,
    dry_run: bool = False,
    now: Callable[[], datetime] = utc_now,
    snapshots: SnapshotReader | None = None,
    recheck_every: int = RECHECK_EVERY,
) -> GcReport:
    """Run gc over the root at `keys` (see the module's docstring)."""
    registry, _ = await read_registry(store, keys)
    report = GcReport(policy_of(registry), dry_run)
    folders = await list_devices(store, keys)
    heads = await read_heads(store, keys, list(folders))
    stop_if(heads.failed.values(), "reading the heads")
    plan = plan_retention(_inputs(registry, folders, heads), now(), report.policy)
    report.retired_devices = plan.retired_devices
    marker = Marker(trees, light=True)
    await _mark_retained(store, keys, marker, heads, plan, snapshots, report)
    contents = await list_contents(store, keys, keep=True)
    report.strays = contents.strays
    grace = report.policy.grace
    found = [
        sweep(_unreached(objs, reached), set(), now(), grace)
        for objs, reached in ((contents.trees, marker.nodes), (contents.blobs, marker.blobs))
    ]
    report.spared_young = sum(s.spared_young for s in found)
    if dry_run:
        report.snapshots, report.tombstones = plan.snapshots, plan.tombstones
        report.retired, report.trees, report.blobs = plan.retired, found[0].delete, found[1].delete
        return report
    for objs, kept in (
        (plan.snapshots, report.snapshots),
        (plan.tombstones, report.tombstones),
        (plan.retired, report.retired),
    ):
        await for_each(objs, _deleter(store, kept), CONCURRENCY)
    candidates = [Candidate(o, marker.nodes, report.trees) for o in found[0].delete]
    candidates += [Candidate(o, marker.blobs, report.blobs) for o in found[1].delete]
    sweeper = Sweeper(store, keys, marker, heads, now, report.policy.grace)
    await sweeper.delete(candidates, [*contents.trees, *contents.blobs], recheck_every)
    report.spared_late = sweeper.spared
    for deleted in (
        report.snapshots,
        report.tombstones,
        report.retired,
        report.trees,
        report.blobs,
    ):
        deleted.sort(key=lambda o: o.key)  # in the order asked, not the order answered
    return report


def _inputs(
    registry: Registry, folders: dict[str, DeviceFolder], heads: Heads
) -> dict[str, DeviceInput]:
    out = {}
    for device in sorted(set(folders) | set(registry.devices)):
        folder = folders.get(device, DeviceFolder())
        record = registry.devices.get(device)
        head = heads.heads.get(device)
        retired_at = None
        if record is not None and record.retired_at is not None:
            retired_at = parse_utc_iso(record.retired_at)
        out[device] = DeviceInput(
            snapshots=folder.snapshots,
            tombstones=folder.tombstones,
            others=folder.other,
            has_head=head is not None,
            current=head.snapshot if head else None,
            seen={d: mark.tombstone_seq for d, mark in (head.seen if head else {}).items()},
            status=record.status if record is not None else None,
            retired_at=retired_at,
        )
    return out


async def _mark_retained(
    store: Store,
    keys: RootKeys,
    marker: Marker,
    heads: Heads,
    plan: RetentionPlan,
    snapshots: SnapshotReader | None,
    report: GcReport,
) -> None:
    reader = snapshots or SnapshotReader(store, keys)
    kept = await reader.read_all({d: sorted(ids) for d, ids in plan.kept.items()})
    stop_if(reader.failed.values(), "reading the retained snapshots")
    report.kept_snapshots = sum(len(s) for s in kept.values())
    going = set(plan.retired_devices)
    roots = [(f"{d} head", t) for d, t in heads.roots().items() if d not in going]
    roots += [(f"{d} {s.snapshot}", s.tree) for d, snaps in kept.items() for s in snaps.values()]
    await marker.mark(roots)
    stop_if([f.line() for f in marker.findings.values() if f.kind == "tree"], "marking")


def _unreached(objects: list[Listed], reached: set[str]) -> list[Listed]:
    return [o for o in objects if o.key[-64:] not in reached]  # keys end in their digest


def _deleter(store: Store, done: list[Listed]) -> Callable[[Listed], Awaitable[None]]:
    async def delete(obj: Listed) -> None:
        await store.delete(obj.key)
        done.append(obj)

    return delete
