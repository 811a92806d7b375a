"""Reconciliation: (base, local, remotes, tombstones) -> Plan, one path at a time (pure).

Follows SPEC sections 3, 4.1, 4.2 and 4.4. Per path, the candidates are this device's
version (the base vector if the content is unchanged, a fresh bump if it changed or
vanished), every other device's entry, every unprocessed tombstone and the base's
own tombstone. This module gathers them and collects each path's outcome into the plan;
which case applies and what it decides is `dropbeard.core.cases`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from datetime import datetime

from dropbeard.core.cases import folder_kept, in_conflict, settle, untouched
from dropbeard.core.conflictname import parse_conflict_name
from dropbeard.core.conflicts import same_content
from dropbeard.core.decision import Candidate, Outcome, PassContext
from dropbeard.core.folders import BasesBelow, bases_below_in, keep_needed_folders
from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import (
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
    publishable,
)
from dropbeard.core.problems import Problem
from dropbeard.core.typeclash import Decided, blocker, clash_problems, folders_kept

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
    paths: Collection[str] | None = None,
    base_below: BasesBelow | None = None,
) -> Plan:
    """Decide one sync pass for device `device_id`.

    `base`: the last agreed state per path. `local`: the scanned local content per path
    (versions ignored), conflict copies included (they are never tracked; they only show
    whether a conflict's copies still exist). `unknown(path)`: the path's local state could
    not be read this pass, so it is left exactly as it is. `remotes`: the latest trees of
    the other active devices. `tombstones`: (device_id, delete) not processed yet.
    `counter`: this device's last used version counter; the plan's `counter` is the new
    one. Remotes and tombstones are ignored in modes that do not pull; the result does not
    depend on their order.

    `paths` None is a full reconcile of every path named anywhere (the plan's listing is
    `complete`). Otherwise only `paths` and the tombstones' paths are decided (a pass's
    changed paths, `dropbeard.core.scope`) and the rest is looked up: `base` needs the
    bases of `paths` and their folders, `local` their content, their folders' and their
    conflict copies; `remotes` are asked only for `paths`; `base_below(folder)` gives the
    bases below a folder. The plan is then the full reconcile's for the same state, its
    listing the changes to the last published one.
    """
    tracked, copies_on_disk = _split_conflict_copies(local)
    wanted = None if paths is None else set(paths) | {gone.path for _, gone in tombstones}
    others = _other_candidates(remotes, tombstones, wanted) if mode in PULLS else {}
    impossible = _drop_impossible(device_id, counter, others)
    ctx = PassContext(
        device_id=device_id,
        mode=mode,
        now=now,
        copies_on_disk=copies_on_disk,
        counter=max(counter, _highest_counter(device_id, base.values(), others.values())),
    )
    plan = Plan(publishes=mode in PUBLISHES, complete=wanted is None)
    if wanted is None:
        wanted = base.keys() | tracked.keys() | others.keys()
    decided, held = _decide_all(ctx, plan, sorted(wanted), base, tracked, others, unknown)
    kept = folders_kept(decided, tracked, lambda: sorted(wanted | tracked.keys()))
    _keep_clashing_folders(ctx, plan, base, kept, decided)
    plan.problems += clash_problems(held, decided, tracked)
    keep_needed_folders(
        plan,
        base,
        tracked,
        base_below or bases_below_in(base),
        publishes=plan.publishes,
        next_version=ctx.next_version,
        held=held,
    )
    plan.problems += impossible
    plan.unsettled = _unsettled(plan, base, decided, held)
    _sort(plan)
    plan.counter = ctx.counter
    return plan


def _decide_all(
    ctx: PassContext,
    plan: Plan,
    paths: list[str],
    base: Mapping[str, Base],
    tracked: Mapping[str, Entry],
    others: Mapping[str, list[Candidate]],
    unknown: Callable[[str], bool],
) -> tuple[dict[str, Decided], dict[str, str]]:
    """Decide `paths` (sorted: folders before what is below them) into `plan`: the paths
    decided, and the arrivals held below a file or symlink (-> that file or symlink)."""
    decided: dict[str, Decided] = {}
    held: dict[str, str] = {}
    for path in paths:
        old, content = base.get(path), tracked.get(path)
        theirs = others.get(path, ())
        if old is not None and not theirs and _unchanged(old, content):
            # The common case, kept cheap: agreed, untouched here, nothing new elsewhere.
            if plan.publishes:
                plan.listing[path] = old.entry
            continue
        counter = ctx.counter
        is_unknown = unknown(path)
        outcome = _decide_path(ctx, path, old or Base(), content, theirs, is_unknown)
        if content is None and outcome.base.entry is not None:
            above = blocker(path, decided, tracked)
            if above is not None:  # below a file or symlink: left as it was, unlisted
                held[path] = above
                ctx.counter = counter  # and no fresh version spent on it
                if plan.publishes:
                    plan.listing[path] = None
                continue
        decided[path] = Decided(content, outcome, unknown=is_unknown and bool(theirs))
        _collect(plan, path, old, outcome)
    return decided, held


def _unsettled(
    plan: Plan, base: Mapping[str, Base], decided: Mapping[str, Decided], held: Mapping[str, str]
) -> set[str]:
    """The paths this plan leaves open, which the next pass must decide again even if
    nothing about them changes: in conflict, a delete refused, a problem, held below a
    file or symlink, or unknown here while other devices have something for them."""
    open_paths = set(held) | {p.path for p in plan.problems}
    open_paths |= {p for p, d in decided.items() if d.unknown}
    for path in decided:
        final = plan.base.get(path) or base.get(path)
        if final is not None and (final.conflict is not None or final.refused is not None):
            open_paths.add(path)
    return open_paths


def _split_conflict_copies(local: Mapping[str, Entry]) -> tuple[dict[str, Entry], dict[str, Entry]]:
    """(tracked paths, conflict copies) of the local content."""
    tracked: dict[str, Entry] = {}
    copies_on_disk: dict[str, Entry] = {}
    for path, entry in local.items():
        (copies_on_disk if parse_conflict_name(path) else tracked)[path] = entry
    return tracked, copies_on_disk


def _other_candidates(
    remotes: Sequence[Remote],
    tombstones: Sequence[tuple[str, Delete]],
    paths: Collection[str] | None,
) -> dict[str, list[Candidate]]:
    """Per path (of `paths`, or every path when None), the other devices' entries and the
    unprocessed tombstones (conflict copies left out), in an order that does not depend on
    the order given."""
    others: dict[str, list[Candidate]] = {}
    for remote in sorted(remotes, key=lambda r: r.device_id):
        for path, entry in _entries(remote.entries, paths):
            if parse_conflict_name(path) is None:
                others.setdefault(path, []).append(
                    Candidate(entry.version, remote.device_id, entry, None, remote.snapshot)
                )
    held = {r.device_id: r.held_before for r in remotes}
    for source, gone in sorted(tombstones, key=_tombstone_key):
        if parse_conflict_name(gone.path) is None:
            before = held.get(source, {}).get(gone.path)
            candidate = Candidate(gone.version, source, None, gone, held=before)
            others.setdefault(gone.path, []).append(candidate)
    return others


def _entries(
    entries: Mapping[str, Entry], paths: Collection[str] | None
) -> Iterable[tuple[str, Entry]]:
    """The entries of `paths` (every entry when None), sorted by path."""
    if paths is None:
        return sorted(entries.items())
    found = ((p, entries.get(p)) for p in sorted(paths))
    return [(p, e) for p, e in found if e is not None]


def _tombstone_key(item: tuple[str, Delete]) -> tuple[str, str, list[tuple[str, int]], str]:
    device, gone = item
    return (device, gone.path, sorted(gone.version.items()), gone.sha256 or "")


MAX_COUNTER = 2**62
"""No honest vector shows a device's counter above this (a change every nanosecond would
take a century and a half to get here)."""


def _drop_impossible(
    device_id: str, counter: int, others: dict[str, list[Candidate]]
) -> list[Problem]:
    """Take out (in place) every candidate claiming more of this device's counter than it
    can have made — above both `counter` and `MAX_COUNTER` —, one problem per path. Fresh
    versions continue from the highest counter of this device any vector shows, so such a
    claim would leave none to make (or dominate every edit made here)."""
    limit = max(counter, MAX_COUNTER)
    problems: list[Problem] = []
    for path, candidates in others.items():
        kept = [c for c in candidates if c.version.get(device_id, 0) <= limit]
        if len(kept) < len(candidates):
            bogus = sorted({c.device_id for c in candidates if c not in kept})
            message = (
                f"ignored {', '.join(bogus)}'s version: it claims more of {device_id}'s "
                f"version counter than {device_id} can have made"
            )
            problems.append(Problem(path=path, kind="impossible_version", message=message))
            candidates[:] = kept
    return problems


def _highest_counter(
    device_id: str, base: Iterable[Base], others: Iterable[list[Candidate]]
) -> int:
    """The highest counter of `device_id` in any known vector, so fresh versions always
    dominate (even if the device's own counter was lost)."""
    vectors: list[Mapping[str, int]] = []
    for agreed in base:
        for held in (agreed.entry, agreed.deleted, agreed.conflict, agreed.refused):
            if held is not None:
                vectors.append(held.version)
    for candidates in others:
        vectors += [c.version for c in candidates]
    return max((v.get(device_id, 0) for v in vectors), default=0)


def _decide_path(
    ctx: PassContext,
    path: str,
    agreed: Base,
    content: Entry | None,
    theirs: Sequence[Candidate],
    unknown: bool,
) -> Outcome:
    """The case `path` is in: its local state unknown, in conflict, or to be settled."""
    if unknown:
        return untouched(agreed, theirs)
    if agreed.conflict is not None:
        return in_conflict(ctx, path, agreed, content, theirs)
    return settle(ctx, path, agreed, content, theirs)


def _unchanged(old: Base, content: Entry | None) -> bool:
    """The path is agreed (no conflict, not deleted, no refused delete) and its local
    content is that entry: the full decision would keep everything as it is."""
    entry = old.entry
    return (
        entry is not None
        and content is not None
        and old.conflict is None
        and old.deleted is None
        and old.refused is None
        and same_content(content, entry)
    )


# --- collecting the plan --------------------------------------------------------------


def _collect(plan: Plan, path: str, old: Base | None, outcome: Outcome) -> None:
    new = outcome.base
    if new != (old or Base()):
        plan.base[path] = new
    if plan.publishes:
        plan.listing[path] = publishable(new)
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


def _keep_clashing_folders(
    ctx: PassContext,
    plan: Plan,
    base: Mapping[str, Base],
    folders: list[str],
    decided: Mapping[str, Decided],
) -> None:
    """Each of `folders`, which a file or symlink was to replace while something below
    it survives, stays: a conflict with the incoming item as its copy (SPEC 4.1)."""
    if not folders:
        return
    revised = set(folders)
    plan.base = {p: b for p, b in plan.base.items() if p not in revised}
    for path in folders:
        plan.listing.pop(path, None)
    plan.downloads = [d for d in plan.downloads if d.path not in revised]
    for path in folders:
        replaced = decided[path].outcome.replaced
        assert replaced is not None
        _collect(plan, path, base.get(path), folder_kept(ctx, path, replaced))


def _sort(plan: Plan) -> None:
    plan.downloads.sort(key=lambda d: d.path)  # parents before children
    plan.local_deletes.sort(key=lambda d: (-d.path.count("/"), d.path))  # deepest first
    plan.conflict_copies.sort(key=lambda c: (c.path, c.copy_path))
    plan.conflicts.sort(key=lambda c: (c.path, c.device_id))
    plan.problems.sort(key=lambda p: (p.path, p.kind, p.message))
