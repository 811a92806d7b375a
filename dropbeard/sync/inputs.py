"""The inputs of one pass, gathered: what the last pass recorded, the root as scanned, and
the other devices' latest state (IO: state.sqlite, the root, `.dropbearignore`, the store,
tree nodes).

These steps write nothing but `.dropbear/tmp/` (emptied) and the node cache.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection
from datetime import datetime
from typing import TypeVar

import anyio
import msgspec

from dropbeard.core.ignore import IGNORE_FILE, IgnoreRules
from dropbeard.core.model import Delete, Registry, SeenMark
from dropbeard.core.passrules import (
    PlanInputs,
    remote_entries,
    settled_devices,
    without_ignored,
)
from dropbeard.core.plan import PULLS, Base, Plan, Remote
from dropbeard.core.problems import Problem
from dropbeard.core.retention import parse_period
from dropbeard.sync.bases import Bases
from dropbeard.sync.localscan import LocalScan
from dropbeard.sync.passrun import PassRun
from dropbeard.sync.passscope import Changes
from dropbeard.sync.publish import LastIds
from dropbeard.sync.remote import UNREADABLE, RemoteRead, read_registry, read_remotes
from dropbeard.sync.root import RootPaths, reset_tmp
from dropbeard.sync.state import Peer, State
from dropbeard.sync.trees import TreeStore

_T = TypeVar("_T")


class Loaded(msgspec.Struct, frozen=True):
    """What the pass reads from state.sqlite up front (in one worker-thread call), as
    `dropbeard.sync.recovery` corrects it when this device's head is ahead. No base and no
    stat-cache row: the pass reads those by path, for what it scans and reconciles.

    `counter` is the highest version counter used or reserved; `tombstone_seq`,
    `last_snapshot` and `last_tree` what this device's head named at the last commit
    (`head_etag` its etag), `last_files` and `last_bytes` what that tree holds (None:
    unknown, counted again when needed); `seq_floor` and `snapshot_floor` the highest seq
    and snapshot id ever reserved, which no publish uses again. `adopted_head` is the etag
    of the head an earlier holder of this device id had left when this root was
    initialised. `pending` are the paths the last pass left open (None: unknown, so this
    pass reconciles every path), `ignore_digest` the ignore rules it ran with, and `taken`
    the bases recovery took back and state.sqlite does not hold (a dry run's). `mend_head`:
    this device's head could not be trusted, so the pass publishes even if nothing
    changed. `head_seen` and `head_written_at` are the seen-marks of the last head this
    device wrote and when (None: unknown), for `core.heads.head_due`. `taken_back`: this
    pass took bases back from its head, which may not publish what its last tree lists
    (`dropbeard.sync.treepublish` then reads that tree)."""

    counter: int
    tombstone_seq: int
    last_snapshot: str | None
    last_tree: str | None
    peers: dict[str, Peer]
    registry: Registry | None
    registry_etag: str | None
    last_files: int | None = None
    last_bytes: int | None = None
    head_etag: str | None = None
    seq_floor: int = 0
    snapshot_floor: str | None = None
    adopted_head: str | None = None
    pending: set[str] | None = None
    ignore_digest: str | None = None
    taken: dict[str, Base] = msgspec.field(default_factory=dict)
    mend_head: bool = False
    head_seen: dict[str, SeenMark] | None = None
    head_written_at: datetime | None = None
    taken_back: bool = False

    @property
    def last_ids(self) -> LastIds:
        """The ids the next publish must come after."""
        return LastIds(self.tombstone_seq, self.seq_floor, self.snapshot_floor)


async def load_last_pass(run: PassRun) -> Loaded:
    """Empty `.dropbear/tmp/` (leftovers of an interrupted pass) and read state.sqlite."""
    await anyio.to_thread.run_sync(reset_tmp, run.paths)
    return await anyio.to_thread.run_sync(_load, run.state)


def reload_last_pass(state: State) -> Loaded:
    """state.sqlite as a batch of a pass left it (`dropbeard.sync.batches`)."""
    return _load(state)


def _load(state: State) -> Loaded:
    last_snapshot = state.get_meta("last_snapshot")
    reserved_snapshot = state.get_meta("reserved_snapshot")
    files, size = state.get_meta("last_files"), state.get_meta("last_bytes")
    return Loaded(
        counter=max(state.get_int("counter"), state.get_int("reserved_counter")),
        tombstone_seq=state.get_int("tombstone_seq"),
        last_snapshot=last_snapshot,
        last_tree=state.get_meta("last_tree"),
        peers=state.peers(),
        registry=_cached_registry(state),
        registry_etag=state.get_meta("registry_etag"),
        last_files=None if files is None else int(files),
        last_bytes=None if size is None else int(size),
        head_etag=state.get_meta("head_etag"),
        seq_floor=state.get_int("reserved_seq"),
        snapshot_floor=max(last_snapshot or "", reserved_snapshot or "") or None,
        head_seen=_decoded(state.get_meta("head_seen"), dict[str, SeenMark]),
        head_written_at=_decoded(state.get_meta("head_written_at"), datetime),
        adopted_head=state.get_meta("adopted_head_etag"),
        pending=state.pending(),
        ignore_digest=state.get_meta("ignore_digest"),
    )


def _cache_registry(state: State, registry: Registry, etag: str) -> None:
    state.set_meta("registry_etag", etag)
    state.set_meta("registry_json", msgspec.json.encode(registry).decode())


def _cached_registry(state: State) -> Registry | None:
    return _decoded(state.get_meta("registry_json"), Registry)


def _decoded(data: str | None, kind: type[_T]) -> _T | None:
    """`data` (JSON kept in state.sqlite's meta) as `kind`; None if absent or damaged."""
    if data is None:
        return None
    try:
        return msgspec.json.decode(data, type=kind)
    except msgspec.DecodeError:
        return None


class Ignore(msgspec.Struct, frozen=True):
    """The root's ignore rules as read this pass: `unreadable` when the ignore file could
    not be read or decoded (`problem` says so: no new path syncs), `digest` what tells
    them apart from the last pass's."""

    rules: IgnoreRules
    problem: Problem | None
    digest: str

    @property
    def unreadable(self) -> bool:
        return self.problem is not None


async def read_ignore(run: PassRun) -> Ignore:
    """Read `.dropbearignore` (in a worker thread)."""
    return await anyio.to_thread.run_sync(_read_ignore, run.paths)


def _read_ignore(paths: RootPaths) -> Ignore:
    """The root's ignore rules, and a problem if `.dropbearignore` cannot be read (no
    rules then) or is not UTF-8 (the rules as far as they decode)."""
    try:
        data = paths.ignore_file.read_bytes()
    except FileNotFoundError:
        return Ignore(IgnoreRules.empty(), None, "none")
    except OSError as e:
        problem = _ignore_problem(f"cannot be read: {e.strerror or e}")
        return Ignore(IgnoreRules.empty(), problem, "unreadable")
    rules, error = IgnoreRules.decode(data)
    digest = hashlib.sha256(data).hexdigest()
    return Ignore(rules, None if error is None else _ignore_problem(error), digest)


def _ignore_problem(why: str) -> Problem:
    return Problem(
        path=IGNORE_FILE,
        kind="ignore_file",
        message=f"{IGNORE_FILE} {why}; no new path syncs until it is fixed",
    )


class RemoteSide(msgspec.Struct, frozen=True):
    """The other devices as this pass read them: `read` is None in a mode that does not
    pull; `changed` the paths they changed since this device last processed them, their
    tombstones' included. `remotes` are their entries of the paths a pass reconciles, once
    looked up (`looked_up`). A device whose objects could not be trusted is in none of
    them (`read.unreadable`)."""

    read: RemoteRead | None
    changed: set[str] = msgspec.field(default_factory=set)
    remotes: list[Remote] = msgspec.field(default_factory=list)

    @property
    def problems(self) -> list[Problem]:
        """The devices this pass skipped, each a problem naming it."""
        return [] if self.read is None else self.read.problems

    @property
    def oversized(self) -> list[str]:
        """The devices whose changes were too many to read at once (`catchup`)."""
        if self.read is None:
            return []
        return sorted(d for d, view in self.read.devices.items() if view.oversized)

    @property
    def unreadable(self) -> set[str]:
        """The devices this pass skipped: their objects could not be trusted."""
        return set() if self.read is None else set(self.read.unreadable)

    @property
    def tombstones(self) -> list[tuple[str, Delete]]:
        """The devices' tombstones not processed yet, as reconcile takes them."""
        if self.read is None:
            return []
        return [
            (dev, gone)
            for dev, view in sorted(self.read.devices.items())
            for _, gone in view.tombstones
        ]

    async def looked_up(self, trees: TreeStore, paths: Collection[str] | None) -> RemoteSide:
        """This side with the other devices' entries of `paths` (every entry when None):
        what reconcile looks up. A device whose tree fails to read is skipped in it (a
        problem names it), as when its head could not be read."""
        if self.read is None:
            return self
        read = msgspec.structs.replace(self.read, devices=dict(self.read.devices))
        read.unreadable = dict(self.read.unreadable)
        remotes: list[Remote] = []
        for dev, view in sorted(self.read.devices.items()):
            try:
                found = await view.entries_of(trees, paths)
            except UNREADABLE as exc:
                read.skip(dev, str(exc))
                continue
            snapshot = view.snapshot or ""
            remotes.append(Remote(dev, snapshot, remote_entries(found.values()), view.held_before))
        return msgspec.structs.replace(self, read=read, remotes=remotes)

    def settled(self, plan: Plan, failed: set[str]) -> RemoteRead | None:
        """`read` without the devices whose marks must not advance
        (`core.passrules.settled_devices`): what the pass records as processed."""
        if self.read is None:
            return None
        devices = settled_devices(self.read.devices, plan, failed, self.tombstones)
        return msgspec.structs.replace(self.read, devices=devices)


async def read_other_devices(run: PassRun, loaded: Loaded, limit: int | None = None) -> RemoteSide:
    """Every other active device's head, and what changed in its tree and tombstones since
    this device processed it (modes that pull). A device whose tree changed in more than
    `limit` paths is `oversized`: its changes are left for the pass to stream in batches
    (`dropbeard.sync.catchup`), and are not in `changed`."""
    if loaded.registry is not None:
        run.trees.present_for = parse_period(loaded.registry.grace).total_seconds() / 2
    if run.cfg.mode not in PULLS:
        # Not reading other devices, this pass still needs the root's grace period as it
        # is now (SPEC 8.2: what it may treat as present): a conditional GET.
        registry, etag = await read_registry(
            run.store, run.keys, loaded.registry, loaded.registry_etag
        )
        if etag is not None and etag != loaded.registry_etag and not run.opts.dry_run:
            await anyio.to_thread.run_sync(_cache_registry, run.state, registry, etag)
        run.trees.present_for = parse_period(registry.grace).total_seconds() / 2
        return RemoteSide(None)
    read = await read_remotes(
        run.store,
        run.keys,
        run.trees,
        device_id=run.cfg.device_id,
        peers=loaded.peers,
        registry=loaded.registry,
        registry_etag=loaded.registry_etag,
        limit=limit,
    )
    run.trees.present_for = parse_period(read.registry.grace).total_seconds() / 2
    changed: set[str] = set()
    for view in read.devices.values():
        changed.update(view.changes)
        changed.update(gone.path for _, gone in view.tombstones)
    return RemoteSide(read, changed)


def plan_inputs(
    run: PassRun,
    loaded: Loaded,
    local: LocalScan,
    remote: RemoteSide,
    changes: Changes,
    ignore: Ignore,
    bases: Bases,
) -> PlanInputs:
    """Reconcile's inputs for this pass (all but the unreadable paths): the changed paths
    (every path for a full reconcile) and their bases, the other devices' entries of them
    (`remote` as `RemoteSide.looked_up` made it) without their ignored paths, as this
    device's are left out by the scan."""
    remotes, tombstones = without_ignored(remote.remotes, remote.tombstones, ignore.rules)
    full = changes.paths is None
    return PlanInputs(
        device_id=run.cfg.device_id,
        mode=run.cfg.mode,
        base=changes.base,
        local=changes.local(local.entries),
        remotes=remotes,
        tombstones=tombstones,
        counter=loaded.counter,
        now=run.now,
        only=local.targets,
        tracked_only=ignore.unreadable,
        paths=changes.paths,
        base_below=None if full else bases.below,
    )
