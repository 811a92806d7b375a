"""Reconciliation: (base, local, remotes, tombstones) -> Plan, one path at a time (pure).

Follows SPEC sections 3, 4.1, 4.2 and 4.4. Per path, the candidates are this device's
version (the base vector if the content is unchanged, a fresh bump if it changed or
vanished), every other device's manifest entry, every unprocessed tombstone and the base's
own tombstone. The maximal candidates under version dominance decide: one content wins,
all deletes win, an edit beats a concurrent delete, or different contents conflict (copies
and open conflicts: `dropbeard.core.conflicts`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from dropbeard.core.conflictname import parse_conflict_name
from dropbeard.core.conflicts import (
    Kept,
    Rival,
    as_of_conflict,
    ending,
    opened,
    resolution,
    same_content,
    still_open,
)
from dropbeard.core.folders import keep_needed_folders
from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import (
    DELETES_LOCALLY,
    PUBLISHES,
    PULLS,
    Base,
    Conflict,
    ConflictCopy,
    ConflictInfo,
    Download,
    LocalDelete,
    Mode,
    Plan,
    Remote,
    Removal,
)
from dropbeard.core.problems import Problem
from dropbeard.core.version import Order, bump, compare, dominates, merge

__all__ = [
    "Base",
    "Conflict",
    "ConflictCopy",
    "ConflictInfo",
    "Download",
    "LocalDelete",
    "Mode",
    "Plan",
    "Remote",
    "Removal",
    "reconcile",
]


def reconcile(
    *,
    device_id: str,
    mode: Mode,
    base: Mapping[str, Base],
    local: Mapping[str, Entry],
    unknown: Callable[[str], bool],
    remotes: Sequence[Remote],
    tombstones: Sequence[tuple[str, Delete]],
    counter: int,
    now: datetime,
) -> Plan:
    """Decide one sync pass for device `device_id`.

    `base`: the last agreed state per path. `local`: the scanned local content per path
    (versions ignored), conflict copies included (they are never tracked; they only show
    whether a conflict's copies still exist). `unknown(path)`: the path's local state could
    not be read this pass, so it is left exactly as it is. `remotes`: the latest manifests
    of the other active devices. `tombstones`: (device_id, delete) not processed yet.
    `counter`: this device's last used version counter; the plan's `counter` is the new
    one. Remotes and tombstones are ignored in modes that do not pull; the result does not
    depend on their order.
    """
    pulls = mode in PULLS
    ordered_remotes = sorted(remotes, key=lambda r: r.device_id) if pulls else []
    ordered_tombstones = sorted(tombstones, key=_tombstone_key) if pulls else []
    tracked: dict[str, Entry] = {}
    copies_on_disk: dict[str, Entry] = {}
    for path, entry in local.items():
        (copies_on_disk if parse_conflict_name(path) else tracked)[path] = entry

    others: dict[str, list[_Candidate]] = defaultdict(list)
    for remote in ordered_remotes:
        for path, entry in sorted(remote.entries.items()):
            if parse_conflict_name(path) is None:
                others[path].append(
                    _Candidate(entry.version, remote.device_id, entry, None, remote.manifest_id)
                )
    for source, gone in ordered_tombstones:
        if parse_conflict_name(gone.path) is None:
            others[gone.path].append(_Candidate(gone.version, source, None, gone))

    ctx = _Context(
        device_id=device_id,
        mode=mode,
        now=now,
        copies_on_disk=copies_on_disk,
        counter=max(counter, _highest_counter(device_id, base.values(), others.values())),
    )
    plan = Plan(publishes=mode in PUBLISHES)
    for path in sorted(base.keys() | tracked.keys() | others.keys()):
        old = base.get(path)
        if old is not None and path not in others and _unchanged(old, tracked.get(path)):
            # The common case, kept cheap: agreed, untouched here, nothing new elsewhere.
            if plan.publishes:
                plan.manifest.append(old.entry)  # type: ignore[arg-type]  # _unchanged checked
            continue
        agreed = old or Base()
        if unknown(path):
            outcome = _untouched(agreed, others[path])
        elif agreed.conflict is not None:
            outcome = _in_conflict(ctx, path, agreed, tracked.get(path), others[path])
        else:
            outcome = _settle(ctx, path, agreed, tracked.get(path), others[path])
        _collect(plan, path, old, outcome)
    keep_needed_folders(
        plan, base, tracked, publishes=plan.publishes, next_version=ctx.next_version
    )
    _sort(plan)
    plan.counter = ctx.counter
    return plan


def _unchanged(old: Base, content: Entry | None) -> bool:
    """The path is agreed (no conflict, not deleted) and its local content is that entry:
    the full decision would keep everything as it is."""
    entry = old.entry
    return (
        entry is not None
        and content is not None
        and old.conflict is None
        and old.deleted is None
        and same_content(content, entry)
    )


# --- candidates and per-path outcomes -------------------------------------------------


@dataclass(frozen=True)
class _Candidate:
    """One version of a path: an entry (content) or a delete. `fresh` marks this device's
    local change, bumped during this pass."""

    version: dict[str, int]
    device_id: str
    entry: Entry | None = None
    delete: Delete | None = None
    manifest_id: str | None = None
    fresh: bool = False


@dataclass
class _Context:
    device_id: str
    mode: Mode
    now: datetime
    copies_on_disk: Mapping[str, Entry]
    counter: int

    def next_version(self, vector: Mapping[str, int]) -> dict[str, int]:
        """A fresh local version after `vector` (allocates the next counter)."""
        self.counter += 1
        return bump(vector, self.device_id, self.counter)


@dataclass
class _Outcome:
    base: Base
    download: Download | None = None
    local_delete: LocalDelete | None = None
    copies: list[ConflictCopy] = field(default_factory=list)
    upload: Entry | None = None
    tombstone: Delete | None = None
    conflicts: list[Conflict] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    removal: Removal | None = None
    deferred: list[tuple[str, Delete]] = field(default_factory=list)


def _untouched(agreed: Base, others: list[_Candidate]) -> _Outcome:
    """Unknown local state: keep the base (and the published entry); offer its new
    tombstones again next pass."""
    deferred = [(c.device_id, c.delete) for c in others if c.delete is not None]
    return _Outcome(base=agreed, deferred=deferred)


def _settle(
    ctx: _Context, path: str, agreed: Base, content: Entry | None, others: list[_Candidate]
) -> _Outcome:
    """A path not in conflict: the local candidate against everything else."""
    mine = _local_candidate(ctx, path, agreed, content)
    candidates = [mine] if mine else []
    candidates += others
    if agreed.deleted is not None:
        candidates.append(_Candidate(agreed.deleted.version, ctx.device_id, None, agreed.deleted))
    return _decide(ctx, path, agreed, content, mine, candidates)


def _local_candidate(
    ctx: _Context, path: str, agreed: Base, content: Entry | None
) -> _Candidate | None:
    """Unchanged content keeps the base vector; a change, creation or deletion bumps it."""
    me = ctx.device_id
    if content is None:
        if agreed.entry is None:
            return None
        version = ctx.next_version(agreed.entry.version)
        return _Candidate(version, me, None, _delete_of(agreed.entry, version), fresh=True)
    if agreed.entry is not None and same_content(content, agreed.entry):
        return _Candidate(agreed.entry.version, me, agreed.entry)
    prior = agreed.entry or agreed.deleted
    version = ctx.next_version(prior.version if prior else {})
    return _Candidate(version, me, _with_version(content, version), fresh=True)


def _decide(
    ctx: _Context,
    path: str,
    agreed: Base,
    content: Entry | None,
    mine: _Candidate | None,
    candidates: list[_Candidate],
) -> _Outcome:
    """SPEC 4.1: keep the candidates no other dominates, then pick the case."""
    top = [c for c in candidates if not any(dominates(o.version, c.version) for o in candidates)]
    if not top:
        return _Outcome(base=agreed)
    merged = merge(*(c.version for c in top))
    groups = _by_content(c for c in top if c.entry is not None)
    if not groups:
        return _delete_wins(ctx, path, agreed, content, mine, top, merged)
    if len(groups) == 1:
        return _entry_wins(ctx, path, agreed, content, mine, groups[0], merged)
    if all(g[0].entry is not None and g[0].entry.type == "dir" for g in groups):
        # Concurrent permission changes of one directory: nothing to copy, so every device
        # settles on the same one (the lowest device id), vectors merged.
        return _entry_wins(ctx, path, agreed, content, mine, _lowest(groups), merged)
    return _conflict(ctx, path, content, mine, groups, merged)


def _entry_wins(
    ctx: _Context,
    path: str,
    agreed: Base,
    content: Entry | None,
    mine: _Candidate | None,
    group: list[_Candidate],
    merged: dict[str, int],
) -> _Outcome:
    """One content wins (same content merges; an edit beats a concurrent delete): its
    vector merges every maximal one so it dominates them all."""
    chosen = mine if _holds(group, mine) else group[0]
    assert chosen is not None and chosen.entry is not None
    winner = _with_version(chosen.entry, merged)
    outcome = _Outcome(base=Base(entry=winner))
    if content is None or not same_content(content, winner):
        outcome.download = Download(path=path, entry=winner)
    elif (
        ctx.mode in PUBLISHES
        and mine is not None
        and mine.fresh
        and winner.type == "file"
        and not _published_before(agreed, winner)
    ):
        outcome.upload = winner
    return outcome


def _published_before(agreed: Base, entry: Entry) -> bool:
    """True if the blob of `entry` is known to be in the bucket already (the agreed,
    non-conflicting base held the same bytes)."""
    old = agreed.entry
    return (
        agreed.conflict is None
        and old is not None
        and old.type == "file"
        and old.sha256 == entry.sha256
    )


def _delete_wins(
    ctx: _Context,
    path: str,
    agreed: Base,
    content: Entry | None,
    mine: _Candidate | None,
    top: list[_Candidate],
    merged: dict[str, int],
) -> _Outcome:
    """Every maximal candidate is a delete: delete locally (or keep, in archive-only), and
    publish a tombstone when the delete happened here."""
    source = mine if _holds(top, mine) else top[0]
    assert source is not None and source.delete is not None
    gone = msgspec.structs.replace(source.delete, path=path, version=merged)
    if content is not None:
        # The local content is an unchanged, dominated version.
        if ctx.mode not in DELETES_LOCALLY:
            kept = _with_version(mine.entry if mine and mine.entry else content, merged)
            return _Outcome(base=Base(entry=kept))
        return _Outcome(
            base=Base(deleted=gone), local_delete=LocalDelete(path=path, expected=content)
        )
    outcome = _Outcome(base=Base(deleted=gone))
    if mine is not None and mine.fresh:
        published = agreed.entry if agreed.conflict is None else None
        outcome.removal = Removal(path=path, previous=agreed, published=published)
        if ctx.mode in PUBLISHES:
            outcome.tombstone = gone
    return outcome


def _conflict(
    ctx: _Context,
    path: str,
    content: Entry | None,
    mine: _Candidate | None,
    groups: list[list[_Candidate]],
    merged: dict[str, int],
) -> _Outcome:
    """SPEC 4.4: different concurrent contents. The local version stays (if the local one
    is older than all of them, the lowest device id's takes its place); every other
    content is written beside it as a conflict copy, one per content."""
    keep_group = next((g for g in groups if _holds(g, mine)), None) or _lowest(groups)
    keep = mine if _holds(keep_group, mine) else keep_group[0]
    assert keep is not None and keep.entry is not None
    rivals = [_rival(g[0]) for g in groups if g is not keep_group]
    info, kept = opened(path, keep.entry, rivals, merged, ctx.now, ctx.copies_on_disk)
    outcome = _conflict_outcome(Base(entry=keep.entry, conflict=info), kept)
    if content is None or not same_content(content, keep.entry):
        outcome.download = Download(path=path, entry=keep.entry)
    return outcome


# --- a path in conflict (SPEC 4.4) ----------------------------------------------------


def _in_conflict(
    ctx: _Context, path: str, agreed: Base, content: Entry | None, others: list[_Candidate]
) -> _Outcome:
    """Resolved elsewhere: the local version as of the conflict meets the newer ones.
    Resolved here: the path's content (or its absence) is a new version. Else still open."""
    info = agreed.conflict
    assert info is not None
    end = ending(info, content, (c.version for c in others), ctx.copies_on_disk)
    if end == "elsewhere":
        mine = _mine(ctx, as_of_conflict(path, info), fresh=False)
        return _decide(ctx, path, Base(entry=mine.entry), content, mine, [mine, *others])
    if end == "here":
        version = ctx.next_version(info.version)
        mine = _mine(ctx, resolution(path, info, content, version), fresh=True)
        return _decide(ctx, path, agreed, content, mine, [mine, *others])
    return _still_open(ctx, path, agreed, content, others)


def _still_open(
    ctx: _Context, path: str, agreed: Base, content: Entry | None, others: list[_Candidate]
) -> _Outcome:
    """The conflict stays; the versions that arrived since it began join it."""
    info = agreed.conflict
    assert info is not None
    arrived = [
        c for c in others if compare(c.version, info.version) in (Order.DOMINATES, Order.CONCURRENT)
    ]
    rivals = [_rival(g[0]) for g in _by_content(c for c in arrived if c.entry is not None)]
    versions = [c.version for c in arrived]
    updated, kept = still_open(path, info, content, rivals, versions, ctx.copies_on_disk)
    base = agreed if updated == info else msgspec.structs.replace(agreed, conflict=updated)
    return _conflict_outcome(base, kept)


def _mine(ctx: _Context, held: Entry | Delete, *, fresh: bool) -> _Candidate:
    if isinstance(held, Entry):
        return _Candidate(held.version, ctx.device_id, held, fresh=fresh)
    return _Candidate(held.version, ctx.device_id, None, held, fresh=fresh)


def _rival(other: _Candidate) -> Rival:
    assert other.entry is not None and other.manifest_id is not None
    return Rival(other.device_id, other.manifest_id, other.entry)


def _conflict_outcome(base: Base, kept: Kept) -> _Outcome:
    return _Outcome(base=base, copies=kept.copies, conflicts=kept.conflicts, problems=kept.problems)


# --- collecting the plan --------------------------------------------------------------


def _collect(plan: Plan, path: str, old: Base | None, outcome: _Outcome) -> None:
    new = outcome.base
    if new != (old or Base()):
        plan.base[path] = new
    if plan.publishes and new.entry is not None and new.conflict is None:
        plan.manifest.append(new.entry)
    if outcome.download is not None:
        plan.downloads.append(outcome.download)
    if outcome.local_delete is not None:
        plan.local_deletes.append(outcome.local_delete)
    if outcome.upload is not None:
        plan.uploads.append(outcome.upload)
    if outcome.tombstone is not None:
        plan.tombstones.append(outcome.tombstone)
    if outcome.removal is not None:
        plan.removals.append(outcome.removal)
    plan.conflict_copies += outcome.copies
    plan.conflicts += outcome.conflicts
    plan.problems += outcome.problems
    plan.deferred_tombstones += outcome.deferred


def _sort(plan: Plan) -> None:
    plan.downloads.sort(key=lambda d: d.path)  # parents before children
    plan.local_deletes.sort(key=lambda d: (-d.path.count("/"), d.path))  # deepest first
    plan.conflict_copies.sort(key=lambda c: (c.path, c.copy_path))
    plan.conflicts.sort(key=lambda c: (c.path, c.device_id))
    plan.problems.sort(key=lambda p: (p.path, p.kind, p.message))


# --- small pieces ---------------------------------------------------------------------


def _by_content(candidates: Iterable[_Candidate]) -> list[list[_Candidate]]:
    """Candidates grouped by content, each group and the groups in a stable order."""
    groups: list[list[_Candidate]] = []
    for candidate in candidates:
        assert candidate.entry is not None
        for group in groups:
            first = group[0].entry
            if first is not None and same_content(first, candidate.entry):
                group.append(candidate)
                break
        else:
            groups.append([candidate])
    for group in groups:
        group.sort(key=lambda c: c.device_id)
    groups.sort(key=lambda g: g[0].device_id)
    return groups


def _holds(candidates: list[_Candidate], mine: _Candidate | None) -> bool:
    return any(c is mine for c in candidates)


def _lowest(groups: list[list[_Candidate]]) -> list[_Candidate]:
    """The group holding the lowest device id (groups are sorted that way)."""
    return groups[0]


def _with_version(entry: Entry, version: dict[str, int]) -> Entry:
    return msgspec.structs.replace(entry, version=dict(version))


def _delete_of(entry: Entry, version: dict[str, int]) -> Delete:
    return Delete(path=entry.path, type=entry.type, sha256=entry.sha256, version=version)


def _tombstone_key(item: tuple[str, Delete]) -> tuple[str, str, list[tuple[str, int]], str]:
    device, gone = item
    return (device, gone.path, sorted(gone.version.items()), gone.sha256 or "")


def _highest_counter(
    device_id: str, base: Iterable[Base], others: Iterable[list[_Candidate]]
) -> int:
    """The highest counter of `device_id` in any known vector, so fresh versions always
    dominate (even if the device's own counter was lost)."""
    vectors: list[Mapping[str, int]] = []
    for agreed in base:
        for held in (agreed.entry, agreed.deleted, agreed.conflict):
            if held is not None:
                vectors.append(held.version)
    for candidates in others:
        vectors += [c.version for c in candidates]
    return max((v.get(device_id, 0) for v in vectors), default=0)
