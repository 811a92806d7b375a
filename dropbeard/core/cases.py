"""The cases of reconciling one path, one helper per case (pure): SPEC 4.1 (the maximal
candidates under version dominance decide: one content wins, all deletes win, an edit
beats a concurrent delete, or different contents conflict) and SPEC 4.4 (a path in
conflict: resolved elsewhere, resolved here, or still open; copies and open conflicts
are `dropbeard.core.conflicts`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import msgspec

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
from dropbeard.core.decision import Candidate, Outcome, PassContext, Replacement
from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import (
    DELETES_LOCALLY,
    PUBLISHES,
    Base,
    Download,
    LocalDelete,
    Removal,
)
from dropbeard.core.refusals import names_local_bytes, refusal_problem
from dropbeard.core.version import Order, compare, dominates, maximal, merge


def untouched(agreed: Base, others: Sequence[Candidate]) -> Outcome:
    """Unknown local state: keep the base (and the published entry); offer its new
    tombstones again next pass."""
    deferred = [(c.device_id, c.delete) for c in others if c.delete is not None]
    return Outcome(base=agreed, deferred=deferred)


def settle(
    ctx: PassContext, path: str, agreed: Base, content: Entry | None, others: Sequence[Candidate]
) -> Outcome:
    """A path not in conflict: the local candidate against everything else."""
    if agreed == _NOTHING:
        if content is not None and not others:
            return new_here(ctx, content)
        if content is None and len(others) == 1 and others[0].entry is not None:
            return arrived(path, others[0])
    mine = _local_candidate(ctx, path, agreed, content, others)
    candidates = [mine] if mine else []
    candidates += others
    for held in (agreed.deleted, agreed.refused):
        if held is not None:
            candidates.append(Candidate(held.version, ctx.device_id, None, held))
    return _decide(ctx, path, agreed, content, mine, candidates)


_NOTHING = Base()


def new_here(ctx: PassContext, content: Entry) -> Outcome:
    """A path new here that no other device has and none deleted (nearly every path of
    a first sync): what `_decide` finds over its one candidate, without the candidates —
    the content wins with a fresh version, and a file is uploaded where this mode
    publishes."""
    entry = _with_version(content, ctx.next_version({}))
    upload = entry if ctx.mode in PUBLISHES and entry.type == "file" else None
    return Outcome(base=Base(entry=entry), upload=upload)


def arrived(path: str, theirs: Candidate) -> Outcome:
    """A path new to this device that one other device holds and none deleted (nearly
    every path of a new device's first sync): what `_decide` finds over that one
    candidate, without the candidates — their entry wins as it is, and is downloaded."""
    assert theirs.entry is not None
    winner = _with_version(theirs.entry, merge(theirs.version))
    return Outcome(base=Base(entry=winner), download=Download(path=path, entry=winner))


def _local_candidate(
    ctx: PassContext, path: str, agreed: Base, content: Entry | None, others: Sequence[Candidate]
) -> Candidate | None:
    """Unchanged content keeps the base vector; content another device already holds takes
    its version (`_held_elsewhere`); any other change, creation or deletion bumps it."""
    me = ctx.device_id
    if content is None:
        if agreed.entry is None:
            return None
        version = ctx.next_version(agreed.entry.version)
        return Candidate(version, me, None, _delete_of(agreed.entry, version), fresh=True)
    if agreed.entry is not None and same_content(content, agreed.entry):
        return Candidate(agreed.entry.version, me, agreed.entry)
    prior = agreed.entry or agreed.deleted
    held = _held_elsewhere(content, prior.version if prior else None, others)
    if held is not None:
        return Candidate(held, me, _with_version(content, held))
    version = ctx.next_version(prior.version if prior else {})
    return Candidate(version, me, _with_version(content, version), fresh=True)


def _held_elsewhere(
    content: Entry, prior: Mapping[str, int] | None, others: Sequence[Candidate]
) -> dict[str, int] | None:
    """SPEC 3: the version of `content` to adopt when another device's current version
    (one no other candidate dominates) holds the very same content and this device's
    change only brings the path to it — the path is new here (a folder seeded by hand
    before its first pass), or that version comes after the base (`prior`). Agreeing with
    another device is not a change: it takes their vectors merged, with no fresh counter,
    so a device that never publishes does not carry a counter of its own that would make
    every later remote edit look concurrent. None otherwise: content matching only a
    superseded version is a change like any other (a conflict, never overwritten)."""
    current = maximal(others, lambda c: c.version)
    same = [c.version for c in current if c.entry is not None and same_content(c.entry, content)]
    if not same:
        return None
    if prior is not None and not any(dominates(v, prior) for v in same):
        return None
    return merge(*same)


def _decide(
    ctx: PassContext,
    path: str,
    agreed: Base,
    content: Entry | None,
    mine: Candidate | None,
    candidates: list[Candidate],
) -> Outcome:
    """SPEC 4.1: keep the candidates no other dominates, then pick the case."""
    top = maximal(candidates, lambda c: c.version)
    if not top:
        return Outcome(base=agreed)
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
    ctx: PassContext,
    path: str,
    agreed: Base,
    content: Entry | None,
    mine: Candidate | None,
    group: list[Candidate],
    merged: dict[str, int],
) -> Outcome:
    """One content wins (same content merges; an edit beats a concurrent delete): its
    vector merges every maximal one so it dominates them all."""
    chosen = mine if _holds(group, mine) else group[0]
    assert chosen is not None and chosen.entry is not None
    winner = _with_version(_with_chunks(chosen.entry, group), merged)
    outcome = Outcome(base=Base(entry=winner))
    if content is None or not same_content(content, winner):
        outcome.download = Download(path=path, entry=winner)
        if content is not None and mine is not None and content.type != winner.type:
            outcome.replaced = Replacement(mine, chosen, merged)
        return outcome
    if mine is None or not mine.fresh:
        return outcome
    if ctx.mode in PUBLISHES and winner.type == "file" and not _published_before(agreed, winner):
        outcome.upload = winner
    if agreed.entry is not None and agreed.entry.type == "dir" and winner.type != "dir":
        # This device replaced a tracked folder: what was below it is deleted with it, so
        # the mass-delete guard may hold the replacement back with those deletes.
        published = agreed.entry if agreed.conflict is None else None
        outcome.removal = Removal(path=path, previous=agreed, published=published)
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
    ctx: PassContext,
    path: str,
    agreed: Base,
    content: Entry | None,
    mine: Candidate | None,
    top: list[Candidate],
    merged: dict[str, int],
) -> Outcome:
    """Every maximal candidate is a delete: delete locally (or keep, in archive-only), and
    publish a tombstone when the delete happened here."""
    source = mine if _holds(top, mine) else top[0]
    assert source is not None and source.delete is not None
    gone = msgspec.structs.replace(source.delete, path=path, version=merged)
    if content is not None:
        # The local content is an unchanged, dominated version.
        if ctx.mode not in DELETES_LOCALLY:
            kept = _with_version(mine.entry if mine and mine.entry else content, merged)
            return Outcome(base=Base(entry=kept))
        deletes = [(c.delete, c.held) for c in top if c.delete is not None]
        if not names_local_bytes(path, content, deletes, ctx.copies_on_disk):
            # Kept, and remembered so the refusal is reported until the file changes.
            refused = msgspec.structs.replace(agreed, refused=gone)
            return Outcome(base=refused, problems=[refusal_problem(path, gone)])
        return Outcome(
            base=Base(deleted=gone), local_delete=LocalDelete(path=path, expected=content)
        )
    outcome = Outcome(base=Base(deleted=gone))
    if mine is not None and mine.fresh:
        published = agreed.entry if agreed.conflict is None else None
        outcome.removal = Removal(path=path, previous=agreed, published=published)
        if ctx.mode in PUBLISHES:
            outcome.tombstone = gone
    return outcome


def _conflict(
    ctx: PassContext,
    path: str,
    content: Entry | None,
    mine: Candidate | None,
    groups: list[list[Candidate]],
    merged: dict[str, int],
) -> Outcome:
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


def folder_kept(ctx: PassContext, path: str, replaced: Replacement) -> Outcome:
    """SPEC 4.1 type clash: a file or symlink won at `path`, but the local folder there
    still holds paths that survive this pass (changed here, or edited elsewhere). The
    folder stays and the incoming item is written beside it as a conflict copy."""
    mine, incoming = replaced.local, replaced.incoming
    assert mine.entry is not None
    version = merge(mine.version, replaced.version)
    info, kept = opened(path, mine.entry, [_rival(incoming)], version, ctx.now, ctx.copies_on_disk)
    return _conflict_outcome(Base(entry=mine.entry, conflict=info), kept)


# --- a path in conflict (SPEC 4.4) ----------------------------------------------------


def in_conflict(
    ctx: PassContext, path: str, agreed: Base, content: Entry | None, others: Sequence[Candidate]
) -> Outcome:
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
    ctx: PassContext, path: str, agreed: Base, content: Entry | None, others: Sequence[Candidate]
) -> Outcome:
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


def _mine(ctx: PassContext, held: Entry | Delete, *, fresh: bool) -> Candidate:
    if isinstance(held, Entry):
        return Candidate(held.version, ctx.device_id, held, fresh=fresh)
    return Candidate(held.version, ctx.device_id, None, held, fresh=fresh)


def _rival(other: Candidate) -> Rival:
    assert other.entry is not None and other.snapshot is not None
    return Rival(other.device_id, other.snapshot, other.entry)


def _conflict_outcome(base: Base, kept: Kept) -> Outcome:
    return Outcome(base=base, copies=kept.copies, conflicts=kept.conflicts, problems=kept.problems)


# --- small pieces ---------------------------------------------------------------------


def _by_content(candidates: Iterable[Candidate]) -> list[list[Candidate]]:
    """Candidates grouped by content, each group and the groups in a stable order."""
    groups: list[list[Candidate]] = []
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


def _holds(candidates: list[Candidate], mine: Candidate | None) -> bool:
    return any(c is mine for c in candidates)


def _lowest(groups: list[list[Candidate]]) -> list[Candidate]:
    """The group holding the lowest device id (groups are sorted that way)."""
    return groups[0]


def _with_chunks(entry: Entry, group: Sequence[Candidate]) -> Entry:
    """`entry`, with the chunk list (SPEC 1.6) another holder of the same bytes in `group`
    published, when it has none of its own (a local file as scanned): the chunks pass
    through from the other devices' trees into this device's, unchanged."""
    if entry.type != "file" or entry.chunks is not None:
        return entry
    for other in group:
        held = other.entry
        if held is not None and held.chunks is not None and held.sha256 == entry.sha256:
            return msgspec.structs.replace(entry, chunks=held.chunks)
    return entry


def _with_version(entry: Entry, version: dict[str, int]) -> Entry:
    return msgspec.structs.replace(entry, version=dict(version))


def _delete_of(entry: Entry, version: dict[str, int]) -> Delete:
    return Delete(path=entry.path, type=entry.type, sha256=entry.sha256, version=version)
