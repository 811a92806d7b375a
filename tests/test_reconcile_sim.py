"""Three devices sharing an in-memory bucket, driven by hypothesis (pure simulation).

Each device has an in-memory folder (path -> content, conflict copies included), a base,
a counter, and publishes a listing and tombstones into the bucket. People create, edit,
delete, rename and chmod files on any device, and devices sync in any order. At the end:
no content anyone wrote was lost (it is at a path or in a conflict copy on some device,
unless a person replaced or deleted it), and once the people resolve their conflicts by
deleting the copies (and follow each delete a device refused for naming other bytes than
its file, SPEC 4.1) and everybody syncs, every device holds the same tree. Every pass
reconciles only what changed for the device since its last pass, and must plan exactly
what a full reconcile of every path plans (`core.fullcheck`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import hypothesis.strategies as st
import msgspec
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from dropbeard.core.conflictname import parse_conflict_name
from dropbeard.core.conflicts import same_content
from dropbeard.core.folders import bases_below_in
from dropbeard.core.fullcheck import plan_differences
from dropbeard.core.model import Delete, Entry
from dropbeard.core.reconcile import Base, Mode, Plan, Remote, reconcile
from dropbeard.core.scope import listing_changes, local_changes, with_folders

EPOCH = datetime(2026, 5, 22, 18, 0, tzinfo=UTC)
Key = tuple[str, str, int]  # (type, sha256 or target, mode): a content, whatever its path


def key_of(entry: Entry) -> Key:
    return (entry.type, entry.sha256 or entry.target or "", entry.mode)


def content_of(entry: Entry) -> Entry:
    """What a scan would report for `entry` once on disk: the content, no version."""
    return msgspec.structs.replace(entry, version={})


def apply_plan(folder: dict[str, Entry], base: dict[str, Base], plan: Plan) -> None:
    """What the engine does with a plan, on an in-memory folder (nothing changes between
    the scan and the apply here, so every expectation holds)."""
    for delete in plan.local_deletes:
        current = folder.get(delete.path)
        assert current is not None and same_content(current, delete.expected)
        del folder[delete.path]
    for download in plan.downloads:
        folder[download.path] = content_of(download.entry)
    for copy in plan.conflict_copies:
        assert copy.copy_path not in folder
        folder[copy.copy_path] = content_of(copy.entry)
    base.update(plan.base)


def is_quiet(plan: Plan) -> bool:
    """A plan that changes nothing locally and has nothing new to publish."""
    return not (
        plan.downloads
        or plan.local_deletes
        or plan.conflict_copies
        or plan.uploads
        or plan.tombstones
        or plan.conflicts
        or plan.base
    )


@dataclass
class Device:
    device_id: str
    mode: Mode = "bidirectional"
    folder: dict[str, Entry] = field(default_factory=dict)
    base: dict[str, Base] = field(default_factory=dict)
    counter: int = 0
    listing: list[Entry] | None = None  # published
    snapshot: str = ""
    tombstones: list[Delete] = field(default_factory=list)  # published, in order
    processed: dict[str, int] = field(default_factory=dict)  # tombstones seen per device
    seen: dict[str, dict[str, Entry]] = field(default_factory=dict)  # listings processed
    unsettled: set[str] = field(default_factory=set)  # what the last pass left open

    def tree(self) -> dict[str, Key]:
        return {p: key_of(e) for p, e in self.folder.items() if parse_conflict_name(p) is None}


class Bucket:
    """The devices and what they published; `sync` is one pass of one device."""

    def __init__(self, devices: list[Device]) -> None:
        self.devices = {d.device_id: d for d in devices}
        self.clock = 0

    def inputs(self, me: Device) -> tuple[list[Remote], list[tuple[str, Delete]]]:
        others = [d for d in self.devices.values() if d is not me]
        fresh = [
            (d.device_id, t)
            for d in others
            for t in d.tombstones[me.processed.get(d.device_id, 0) :]
        ]
        remotes = []
        for d in others:
            if d.listing is not None:
                seen = me.seen.get(d.device_id, {})
                mine = [t.path for dev, t in fresh if dev == d.device_id and t.path in seen]
                held = {path: seen[path] for path in mine}
                entries = {e.path: e for e in d.listing}
                remotes.append(Remote(d.device_id, d.snapshot, entries, held))
        return remotes, fresh

    def plan(self, me: Device, paths: set[str] | None = None) -> Plan:
        """`me`'s plan: a full reconcile, or one of `paths` only (`base` then holds only
        theirs and their folders', as the engine loads them)."""
        remotes, fresh = self.inputs(me)
        base = me.base
        if paths is not None:
            base = {p: b for p, b in me.base.items() if p in with_folders(paths)}
        return reconcile(
            device_id=me.device_id,
            mode=me.mode,
            base=base,
            local=me.folder,
            unknown=lambda _: False,
            remotes=remotes,
            tombstones=fresh,
            counter=me.counter,
            now=EPOCH + timedelta(seconds=self.clock),
            paths=paths,
            base_below=bases_below_in(me.base),
        )

    def changed(self, me: Device) -> set[str]:
        """What changed for `me` since its last pass, as the engine finds it: its local
        changes, the entries other devices changed since `me` last read them, their new
        tombstones, and what its last pass left open."""
        changed = set(local_changes(sorted(me.base.items()), me.folder))
        for other in self.devices.values():
            if other is not me and other.listing is not None:
                now = {e.path: e for e in other.listing}
                changed |= listing_changes(me.seen.get(other.device_id, {}), now)
        _, fresh = self.inputs(me)
        return changed | {gone.path for _, gone in fresh} | me.unsettled

    def sync(self, me: Device) -> Plan:
        plan = self.plan(me)
        incremental = self.plan(me, self.changed(me))
        previous = {e.path: e for e in me.listing or []}
        assert plan_differences(plan, incremental, previous) == []
        apply_plan(me.folder, me.base, plan)
        me.counter = plan.counter
        me.unsettled = incremental.unsettled
        if plan.publishes and (plan.listed() != me.listing or plan.tombstones):
            self.clock += 1
            me.listing = plan.listed()
            me.snapshot = (EPOCH + timedelta(seconds=self.clock)).strftime("%Y%m%dT%H%M%SZ")
            me.tombstones += plan.tombstones
        for other in self.devices.values():
            if other is not me:
                me.processed[other.device_id] = len(other.tombstones)
                me.seen[other.device_id] = {e.path: e for e in other.listing or []}
        return plan


PATHS = ["a", "b.txt", "notes/c.md", "notes/d"]
DEVICES = ["alpha", "bravo", "charlie-2"]
MODES: list[Mode] = ["bidirectional", "upload-only", "download-only", "archive-only"]


class ThreeDevices(RuleBasedStateMachine):
    @initialize()
    def start(self) -> None:
        self.bucket = Bucket([Device(d) for d in DEVICES])
        self.serial = 0
        self.written: set[Key] = set()
        self.replaced: set[Key] = set()  # contents a person overwrote, deleted or chmod-ed

    def _new_content(self, path: str, kind: str = "file") -> Entry:
        self.serial += 1
        if kind == "symlink":
            return Entry(
                path=path, type="symlink", mode=0o777, version={}, target=f"t{self.serial}"
            )
        sha = f"{self.serial:064x}"
        return Entry(path=path, type="file", mode=0o644, version={}, size=1, sha256=sha)

    def _put(self, device: Device, path: str, entry: Entry) -> None:
        old = device.folder.get(path)
        if old is not None:
            self.replaced.add(key_of(old))
        device.folder[path] = msgspec.structs.replace(entry, path=path)
        self.written.add(key_of(entry))

    @rule(device=st.sampled_from(DEVICES), path=st.sampled_from(PATHS), link=st.booleans())
    def write(self, device: str, path: str, link: bool) -> None:
        dev = self.bucket.devices[device]
        self._put(dev, path, self._new_content(path, "symlink" if link else "file"))

    @rule(device=st.sampled_from(DEVICES), path=st.sampled_from(PATHS))
    def delete(self, device: str, path: str) -> None:
        dev = self.bucket.devices[device]
        old = dev.folder.pop(path, None)
        if old is not None:
            self.replaced.add(key_of(old))

    @rule(device=st.sampled_from(DEVICES), src=st.sampled_from(PATHS), dst=st.sampled_from(PATHS))
    def rename(self, device: str, src: str, dst: str) -> None:
        dev = self.bucket.devices[device]
        if src != dst and src in dev.folder and dst not in dev.folder:
            dev.folder[dst] = msgspec.structs.replace(dev.folder.pop(src), path=dst)

    @rule(device=st.sampled_from(DEVICES), path=st.sampled_from(PATHS))
    def chmod(self, device: str, path: str) -> None:
        dev = self.bucket.devices[device]
        old = dev.folder.get(path)
        if old is not None and old.type == "file":
            self._put(dev, path, msgspec.structs.replace(old, mode=old.mode ^ 0o044))

    @rule(device=st.sampled_from(DEVICES))
    def sync(self, device: str) -> None:
        dev = self.bucket.devices[device]
        self.bucket.sync(dev)
        again = self.bucket.plan(dev)
        assert is_quiet(again), f"second pass of {device} not idle: {again}"

    @invariant()
    def nothing_lost(self) -> None:
        held = {key_of(e) for d in self.bucket.devices.values() for e in d.folder.values()}
        lost = self.written - self.replaced - held
        assert not lost, f"contents lost: {lost}"

    def teardown(self) -> None:
        if not hasattr(self, "bucket"):
            return
        devices = list(self.bucket.devices.values())
        self._rounds(devices, 3)
        self.nothing_lost()
        # The people settle every conflict by deleting its copies, and follow every delete
        # refused for naming other bytes by deleting the file, one device at a time.
        for _ in range(4):
            for dev in devices:
                refused = [p for p, b in dev.base.items() if b.refused and p in dev.folder]
                if refused or any(b.conflict for b in dev.base.values()):
                    for path in [p for p in dev.folder if parse_conflict_name(p)] + refused:
                        del dev.folder[path]
                    self.bucket.sync(dev)
                    self._rounds(devices, 2)
        for dev in devices:
            assert not any(b.conflict for b in dev.base.values()), dev.device_id
            assert not any(b.refused for b in dev.base.values()), dev.device_id
        trees = {d.device_id: d.tree() for d in devices}
        first = trees[DEVICES[0]]
        assert all(t == first for t in trees.values()), trees
        assert all(is_quiet(self.bucket.plan(d)) for d in devices)

    def _rounds(self, devices: list[Device], n: int) -> None:
        for _ in range(n):
            for dev in devices:
                self.bucket.sync(dev)


class MixedModes(ThreeDevices):
    """The same people, but each device in any mode: devices need not converge (that is
    what the modes are for), yet no content is ever lost and every pass is idempotent."""

    @initialize(modes=st.lists(st.sampled_from(MODES), min_size=3, max_size=3))
    def start(self, modes: list[Mode]) -> None:
        self.bucket = Bucket([Device(d, mode) for d, mode in zip(DEVICES, modes, strict=True)])
        self.serial = 0
        self.written = set()
        self.replaced = set()

    def teardown(self) -> None:
        if hasattr(self, "bucket"):
            self._rounds(list(self.bucket.devices.values()), 3)
            self.nothing_lost()


SETTINGS = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
ThreeDevices.TestCase.settings = SETTINGS
MixedModes.TestCase.settings = SETTINGS
TestThreeDevices = ThreeDevices.TestCase
TestMixedModes = MixedModes.TestCase
