"""Reconciliation: (base, local, remotes, tombstones) -> Plan, one path at a time (pure).

Follows SPEC sections 3, 4.1, 4.2 and 4.4. Per path, the candidates are this device's
version (the base vector if the content is unchanged, a fresh bump if it changed or
vanished), every other device's manifest entry, every unprocessed tombstone and the base's
own tombstone. The maximal candidates under version dominance decide: one content wins,
all deletes win, an edit beats a concurrent delete, or different contents conflict.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import msgspec

from dropbeard.conflictname import conflict_name, parse_conflict_name
from dropbeard.model import Delete, Entry
from dropbeard.plan import (
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
from dropbeard.problems import Problem
from dropbeard.version import Order, bump, compare, dominates, merge

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
    "same_content",
]


def same_content(a: Entry, b: Entry) -> bool:
    """True if `a` and `b` hold the same content: type, mode, and the file's sha256 or the
    symlink's target. Size follows from sha256; mtime and version are not content."""
    if a.type != b.type or a.mode != b.mode:
        return False
    if a.type == "file":
        return a.sha256 == b.sha256
    if a.type == "symlink":
        return a.target == b.target
    return True


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
    outcome = _Outcome(base=Base())
    if content is None or not same_content(content, keep.entry):
        outcome.download = Download(path=path, entry=keep.entry)
    copies: list[str] = []
    clashes: list[str] = []
    for group in groups:
        if group is not keep_group:
            _preserve(ctx, path, group[0], outcome, copies, clashes)
    info = ConflictInfo(
        version=merged,
        copies=sorted(copies),
        clashes=sorted(clashes),
        local=keep.entry,
        since=ctx.now,
    )
    outcome.base = Base(entry=keep.entry, conflict=info)
    return outcome


def _preserve(
    ctx: _Context,
    path: str,
    other: _Candidate,
    outcome: _Outcome,
    copies: list[str],
    clashes: list[str],
) -> None:
    """Keep another device's concurrent version as a conflict copy beside `path`; a
    directory (type clash, remembered in `clashes`) or an impossible name becomes a
    problem instead."""
    assert other.entry is not None and other.manifest_id is not None
    device = other.device_id
    if other.entry.type == "dir":
        clashes.append(device)
        outcome.conflicts.append(Conflict(path=path, device_id=device, copy_path=None))
        outcome.problems.append(_clash_problem(path, device))
        return
    try:
        copy_path = conflict_name(path, device, other.manifest_id)
    except ValueError as exc:
        outcome.conflicts.append(Conflict(path=path, device_id=device, copy_path=None))
        outcome.problems.append(
            Problem(path=path, kind="conflict_copy", message=f"cannot name a conflict copy: {exc}")
        )
        return
    copies.append(copy_path)
    outcome.conflicts.append(Conflict(path=path, device_id=device, copy_path=copy_path))
    existing = ctx.copies_on_disk.get(copy_path)
    if existing is None:
        outcome.copies.append(
            ConflictCopy(path=path, copy_path=copy_path, device_id=device, entry=other.entry)
        )
    elif not same_content(existing, other.entry):
        outcome.problems.append(
            Problem(
                path=path,
                kind="conflict_copy",
                message=f"{copy_path} already exists with other content; left as it is",
            )
        )


def _clash_problem(path: str, device: str) -> Problem:
    return Problem(
        path=path,
        kind="type_clash",
        message=f"{device} holds a directory here; it was not copied (type clash)",
    )


# --- a path in conflict (SPEC 4.4) ----------------------------------------------------


def _in_conflict(
    ctx: _Context, path: str, agreed: Base, content: Entry | None, others: list[_Candidate]
) -> _Outcome:
    """Resolved elsewhere (a dominating version and the local file untouched since the
    conflict), resolved here (the copies are gone), or still open."""
    info = agreed.conflict
    assert info is not None
    unchanged = _same_or_both_absent(content, info.local)
    if unchanged and any(dominates(c.version, info.version) for c in others):
        mine = _as_of_conflict(ctx, path, info)
        return _decide(ctx, path, Base(entry=mine.entry), content, mine, [mine, *others])
    if info.copies:
        resolved = not any(p in ctx.copies_on_disk for p in info.copies)
    else:
        resolved = not unchanged  # nothing could be copied: the person acted on the path
    if resolved:
        mine = _resolution(ctx, path, info, content)
        return _decide(ctx, path, agreed, content, mine, [mine, *others])
    return _still_open(ctx, path, agreed, content, others)


def _as_of_conflict(ctx: _Context, path: str, info: ConflictInfo) -> _Candidate:
    """The local version while in conflict: its content, with the conflict's vector."""
    if info.local is None:
        gone = Delete(path=path, type="file", version=info.version)
        return _Candidate(info.version, ctx.device_id, None, gone)
    return _Candidate(info.version, ctx.device_id, _with_version(info.local, info.version))


def _resolution(ctx: _Context, path: str, info: ConflictInfo, content: Entry | None) -> _Candidate:
    """The content at the path (or its absence) as a new version dominating every version
    in the conflict."""
    version = ctx.next_version(info.version)
    if content is not None:
        return _Candidate(version, ctx.device_id, _with_version(content, version), fresh=True)
    kind = info.local.type if info.local else "file"
    sha256 = info.local.sha256 if info.local else None
    gone = Delete(path=path, type=kind, sha256=sha256, version=version)
    return _Candidate(version, ctx.device_id, None, gone, fresh=True)


def _still_open(
    ctx: _Context, path: str, agreed: Base, content: Entry | None, others: list[_Candidate]
) -> _Outcome:
    """The conflict stays; versions that arrived since it began join it (a new content
    gets its own copy) so none is lost while the person decides."""
    info = agreed.conflict
    assert info is not None
    arrived = [
        c for c in others if compare(c.version, info.version) in (Order.DOMINATES, Order.CONCURRENT)
    ]
    outcome = _Outcome(base=agreed)
    copies, clashes = list(info.copies), list(info.clashes)
    for group in _by_content(c for c in arrived if c.entry is not None):
        other = group[0]
        assert other.entry is not None and other.manifest_id is not None
        if content is not None and same_content(content, other.entry):
            continue
        if other.entry.type == "dir" and other.device_id in clashes:
            continue  # already reported as a type clash
        _preserve(ctx, path, other, outcome, copies, clashes)
    known = {p.message for p in outcome.problems}
    for device in sorted(set(clashes)):
        if _clash_problem(path, device).message not in known:
            outcome.problems.append(_clash_problem(path, device))
    updated = msgspec.structs.replace(
        info,
        version=merge(info.version, *(c.version for c in arrived)),
        copies=sorted(set(copies)),
        clashes=sorted(set(clashes)),
    )
    if updated != info:
        outcome.base = msgspec.structs.replace(agreed, conflict=updated)
    return outcome


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


def _same_or_both_absent(a: Entry | None, b: Entry | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return same_content(a, b)


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
