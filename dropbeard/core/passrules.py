"""The decisions of one sync pass around `reconcile` (SPEC 4) (pure): the local tree a
scan describes, which paths the pass cannot see, the listing this device really holds,
which devices' marks may advance, and which stat-cache rows to trust (the mass-delete
verdict is `dropbeard.core.safety`'s).

`dropbeard.sync.engine` does the IO around them. Nothing here reads a disk, the bucket or
the clock: the pass's `now` is passed in.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Container, Iterable, Mapping, Sequence
from datetime import datetime
from typing import Literal, Protocol, TypeVar

import msgspec

from dropbeard.core.chunking import Chunk
from dropbeard.core.folders import BasesBelow
from dropbeard.core.ignore import IgnoreRules, Unignored
from dropbeard.core.model import PERMISSIONS, Delete, Entry
from dropbeard.core.plan import Base, Mode, Plan, Remote, publishable
from dropbeard.core.problems import Problem, is_device_problem
from dropbeard.core.reconcile import reconcile

RACY_WINDOW_NS = 2_000_000_000
"""A file changed this close to the scan is not trusted to the stat cache: timestamps are
coarse (a kernel tick, or 2 s on FAT), so a same-size rewrite in the same tick would keep
every stamp the cache compares (git's "racily clean" problem). It is re-hashed."""

StatRow = tuple[int, int, int, int, str, tuple[Chunk, ...] | None]
"""A stat-cache row: size, mtime_ns, inode, ctime_ns, sha256 and a large file's chunk list
(as `sync.state` stores it)."""

Status = Literal["clean", "deleted", "conflict"]

_View = TypeVar("_View")


class ScannedStat(Protocol):
    """The stamps a scan recorded for a file (`dropbeard.sync.hashing.StatKey`)."""

    @property
    def size(self) -> int: ...
    @property
    def mtime_ns(self) -> int: ...
    @property
    def inode(self) -> int: ...
    @property
    def ctime_ns(self) -> int: ...


class ScannedItem(Protocol):
    """One path as a scan found it (`dropbeard.sync.scan.LocalItem`): `stat` and `sha256`
    for files only (and `chunks` for a file over 16 MiB), `target` for symlinks only."""

    @property
    def type(self) -> str: ...
    @property
    def mode(self) -> int: ...
    @property
    def stat(self) -> ScannedStat | None: ...
    @property
    def sha256(self) -> str | None: ...
    @property
    def chunks(self) -> tuple[Chunk, ...] | None: ...
    @property
    def target(self) -> str | None: ...


class ProcessedPeer(Protocol):
    """How far this device processed another one (`dropbeard.sync.state.Peer`);
    `snapshot` is None until one of its snapshots was processed."""

    @property
    def snapshot(self) -> str | None: ...
    @property
    def tombstone_seq(self) -> int: ...


# -- before reconcile -------------------------------------------------------------------


def local_entries(items: Mapping[str, ScannedItem]) -> dict[str, Entry]:
    """The scanned folder as entries for `reconcile`'s `local` (versions empty: reconcile
    decides them). A file is what its stamps, hash and chunk list say; a symlink its
    target."""
    local: dict[str, Entry] = {}
    for path, item in items.items():
        if item.type == "file":
            assert item.stat is not None
            local[path] = Entry(
                path=path,
                type="file",
                mode=item.mode,
                version={},
                size=item.stat.size,
                mtime_ns=item.stat.mtime_ns,
                sha256=item.sha256,
                chunks=None if item.chunks is None else list(item.chunks),
            )
        elif item.type == "symlink":
            local[path] = Entry(
                path=path, type="symlink", mode=item.mode, version={}, target=item.target
            )
        else:
            local[path] = Entry(path=path, type="dir", mode=item.mode, version={})
    return local


def leftovers(
    local: Mapping[str, Entry], base: Mapping[str, Base], holds_something: Callable[[str], bool]
) -> set[str]:
    """Folders that stay on disk only for what this device does not sync: deleted (the
    delete agreed: elsewhere, or here with ignored files left in it), holding no synced
    path now, but not empty (`holds_something`: ignored or special files). They are not
    local content: publishing them would bring back a folder everyone deleted. An empty
    folder made again, or one that gains a synced path, is content as usual."""
    found: set[str] = set()
    candidates = [
        p
        for p, e in local.items()
        if e.type == "dir"
        and (b := base.get(p)) is not None
        and b.entry is None
        and b.deleted is not None
    ]
    if not candidates:
        return found
    ordered = sorted(local)
    for folder in sorted(candidates, reverse=True):  # deepest first: a leftover may hold one
        prefix = folder + "/"
        below = ordered[bisect_left(ordered, prefix) : bisect_left(ordered, folder + "0")]
        if all(p in found for p in below) and holds_something(folder):
            found.add(folder)
    return found


def remote_entries(entries: Iterable[Entry]) -> dict[str, Entry]:
    """Another device's tree entries as `reconcile` takes them: by path, with only the
    permission bits of each mode, whatever the bucket holds (SPEC 1.1: setuid, setgid and
    sticky bits are never synced)."""
    by_path: dict[str, Entry] = {}
    for entry in entries:
        if entry.mode & ~PERMISSIONS:
            entry = msgspec.structs.replace(entry, mode=entry.mode & PERMISSIONS)
        by_path[entry.path] = entry
    return by_path


def newly_ignored(
    base: Mapping[str, Base], local: Container[str], ignore: IgnoreRules
) -> list[str]:
    """Tracked paths an ignore rule now covers (and the scan therefore skipped): they stop
    being tracked, with no local delete and no tombstone."""
    return [p for p, b in base.items() if p not in local and _ignored(ignore, p, b)]


def without_ignored(
    remotes: Sequence[Remote], tombstones: Sequence[tuple[str, Delete]], ignore: IgnoreRules
) -> tuple[list[Remote], list[tuple[str, Delete]]]:
    """The other devices' entries and tombstones for `reconcile`, without the paths an
    ignore rule covers: ignored paths are local-only both ways, never downloaded, nor
    replaced or deleted by a remote change (SPEC 2)."""
    if ignore.is_empty:
        return list(remotes), list(tombstones)
    kept = [
        Remote(r.device_id, r.snapshot, Unignored(r.entries, ignore), r.held_before)
        for r in remotes
    ]
    deletes = [
        (d, gone) for d, gone in tombstones if not ignore.matches(gone.path, gone.type == "dir")
    ]
    return kept, deletes


def under_any(path: str, roots: Collection[str]) -> bool:
    """True if `path` is one of `roots` or lies below one of them ('/'-separated)."""
    if not roots:
        return False
    if path in roots:
        return True
    parts = path.split("/")
    return any("/".join(parts[:i]) in roots for i in range(1, len(parts)))


def unknown_paths(
    unreadable: Collection[str], only: Collection[str] | None
) -> Callable[[str], bool]:
    """`reconcile`'s `unknown`: true for a path whose local state this pass could not
    establish — at or under an unreadable path, or outside `only` (a daemon pass over some
    paths; None means the whole root was scanned)."""

    def unknown(path: str) -> bool:
        if only is not None and not under_any(path, only):
            return True
        return under_any(path, unreadable)

    return unknown


class PlanInputs(msgspec.Struct, frozen=True):
    """Everything `reconcile` needs for one pass but the unreadable paths, so the pass can
    plan again when more paths turn out unreadable (a file that changed while uploaded).
    `base` is the base without the paths `newly_ignored` dropped. `tracked_only`: the
    ignore rules could not be read, so a path not tracked yet may be one the person
    ignores — it is left alone both ways, and the pass publishes no new path (SPEC 2).
    `paths` and `base_below` as `reconcile` takes them (None: a full reconcile)."""

    device_id: str
    mode: Mode
    base: Mapping[str, Base]
    local: Mapping[str, Entry]
    remotes: Sequence[Remote]
    tombstones: Sequence[tuple[str, Delete]]
    counter: int
    now: datetime
    only: frozenset[str] | None = None
    tracked_only: bool = False
    paths: frozenset[str] | None = None
    base_below: BasesBelow | None = None

    def plan(self, unreadable: Collection[str]) -> Plan:
        """The plan of this pass when `unreadable` (and everything under it) is unknown."""
        unknown = unknown_paths(unreadable, self.only)
        return reconcile(
            device_id=self.device_id,
            mode=self.mode,
            base=self.base,
            local=self.local,
            unknown=_or_untracked(unknown, self.base) if self.tracked_only else unknown,
            remotes=self.remotes,
            tombstones=self.tombstones,
            counter=self.counter,
            now=self.now,
            paths=self.paths,
            base_below=self.base_below,
        )


def _or_untracked(
    unknown: Callable[[str], bool], base: Mapping[str, Base]
) -> Callable[[str], bool]:
    """`unknown`, and also true for a path this device does not track (no base entry)."""

    def unknown_or_untracked(path: str) -> bool:
        agreed = base.get(path)
        return agreed is None or agreed.entry is None or unknown(path)

    return unknown_or_untracked


# -- upload and publish -------------------------------------------------------------------


def blobs_in_bucket(remotes: Iterable[Remote]) -> set[str]:
    """The blobs known to be in the bucket without asking it: those the other devices'
    entries the pass looked up reference, in trees read just now (a file's one blob, or
    its chunks: `blobs_of`; this device's own are `sync.state.State.holds_blob`)."""
    known: set[str] = set()
    for remote in remotes:
        for entry in remote.entries.values():
            known.update(blobs_of(entry))
    return known


def blobs_of(entry: Entry) -> list[str]:
    """The blobs holding a file's bytes: its chunks (SPEC 1.6), else its one blob."""
    if entry.chunks is not None:
        return [c.sha256 for c in entry.chunks]
    return [entry.sha256] if entry.sha256 else []


def blobs_to_upload(
    listing: Iterable[Entry | None], known: Container[str], scanned: Container[str]
) -> list[Entry]:
    """The listed files with a blob (or chunk) not known to be in the bucket and whose
    bytes this pass scanned on disk, whatever the reason they are new to the bucket."""
    return [
        e
        for e in listing
        if e and e.sha256 and e.path in scanned and not all(b in known for b in blobs_of(e))
    ]


def held_listing(plan: Plan, failed: Collection[str], base: Mapping[str, Base]) -> Plan:
    """`plan` with the listing of what this device really holds: a path whose download,
    copy or delete failed keeps its old base, so it is listed as that base says (its
    entry, or nothing), not as the version it could not write (which may not even fit
    the local tree: `link/x` under a local symlink)."""
    if not failed or not plan.publishes:
        return plan
    listing = dict(plan.listing)
    for path in failed:
        listing[path] = publishable(base.get(path))
    return msgspec.structs.replace(plan, listing=listing)


def listing_unchanged(plan: Plan, base: Mapping[str, Base]) -> bool:
    """True if the plan's listing changes nothing in what the agreed `base` (the bases of
    its paths before the pass) publishes: each path listed as its base had it."""
    return all(publishable(base.get(p)) == entry for p, entry in plan.listing.items())


def needs_publish(plan: Plan, tree: str, last_tree: str | None) -> bool:
    """True if the pass must publish: its tree is not the last published one (`tree`, the
    root key of what it lists: equal listings have equal keys; `last_tree` None if this
    device never published), or it has tombstones. An idle pass writes nothing."""
    return tree != last_tree or bool(plan.tombstones)


def settled_devices(
    devices: Mapping[str, _View],
    plan: Plan,
    failed: Container[str],
    tombstones: Iterable[tuple[str, Delete]],
) -> dict[str, _View]:
    """`devices` without those whose tombstones must be offered again: deferred for a path
    this pass could not see (a daemon pass with `only=`, an unreadable folder) or a local
    delete that failed. Their old marks stay, so the next pass re-reads those tombstones
    instead of losing the deletes."""
    held = {dev for dev, _ in plan.deferred_tombstones}
    held |= {dev for dev, gone in tombstones if gone.path in failed}
    return {d: v for d, v in devices.items() if d not in held}


# -- commit -------------------------------------------------------------------------------


def racy_after_ns(now: datetime) -> int:
    """Files whose mtime or ctime is at or after this (ns) are "racily clean" for a scan
    that began at `now`: their stat-cache rows are not recorded."""
    return int(now.timestamp() * 1e9) - RACY_WINDOW_NS


def stat_rows(
    items: Mapping[str, ScannedItem],
    cache: Mapping[str, StatRow],
    written: Mapping[str, StatRow],
    racy_after: int,
) -> list[tuple[str, StatRow]]:
    """The stat-cache rows to record: each hashed file whose row is new or changed and not
    racily clean (see `RACY_WINDOW_NS`), then every file this pass wrote (`written`, which
    wins over what the scan saw)."""
    rows: list[tuple[str, StatRow]] = []
    for path, item in items.items():
        if item.type != "file" or item.stat is None or item.sha256 is None:
            continue
        s = item.stat
        row = (s.size, s.mtime_ns, s.inode, s.ctime_ns, item.sha256, item.chunks)
        if max(s.mtime_ns, s.ctime_ns) >= racy_after:
            continue
        if cache.get(path) != row and path not in written:
            rows.append((path, row))
    rows.extend(written.items())
    return rows


def base_status(base: Base) -> Status:
    """The status a path's base is recorded with (what `status` counts)."""
    if base.conflict is not None:
        return "conflict"
    return "deleted" if base.entry is None else "clean"


def problems_after(
    earlier: Iterable[Problem], found: list[Problem], only: Collection[str] | None
) -> list[Problem]:
    """The problems to record after a pass that found `found`: a pass over the whole root
    (`only` None) replaces every earlier problem; one over some paths settles only the
    problems at or under them, those it found again, and those with other devices (it
    read them all)."""
    if only is None:
        return found
    again = {(p.path, p.kind) for p in found}
    kept = [
        p
        for p in earlier
        if not under_any(p.path, only)
        and (p.path, p.kind) not in again
        and not is_device_problem(p)
    ]
    return kept + found


def _ignored(ignore: IgnoreRules, path: str, base: Base) -> bool:
    is_dir = base.entry is not None and base.entry.type == "dir"
    return ignore.matches(path, is_dir)
