"""Step 1 of a pass (SPEC 4): this device's own head is the authority (IO: store,
state.sqlite, tree nodes).

One conditional GET per pass that does something (`head_may_be_ahead`, `quiet`). When
the head is ahead of state.sqlite — a crash between
the head write and the local commit, or `.dropbear/` restored from an older backup — the
pass takes back what it names (`dropbeard.core.recovery`: the published tree, the bases of
what changed in it since the tree state.sqlite names, the tombstone seq, the counter) and
records it before anything else. Tombstone batches after the head's seq were written by a
publish that never reached its head: no reader acts on them (readers stop at the head's
seq), so they are deleted and their seqs skipped, never used again. A dry run takes
everything back in memory only.

An idle pass does not read the head (SPEC 4, principle 4: an idle poll is one listing and
one conditional GET per other device). It cannot be wrong to skip it: state.sqlite shows a
publish that may have died after its head write (ids reserved past its commit) or a head it
never recorded, and then the head is read first; otherwise a head ahead of state.sqlite
(`.dropbear/` restored from an older backup, a head-only write that died) published
something this state does not know, so the scan sees the folder changed from its bases or
the other devices' heads moved from its marks, and the pass is not quiet. A quiet pass
writes nothing to the bucket, so a stale state never reaches it; the first pass that would
write reads the head before it plans.

A head an earlier holder of the device id left (found by `init`: a take-over, or an id
re-registered after retirement) is not this folder's: only its ids are taken (seq,
snapshot id, counter), never its entries as bases, which would turn everything that
folder held and this one does not into deletes.
"""

from __future__ import annotations

import anyio
import msgspec

from dropbeard.core.errors import FormatError, IntegrityError, NotFound
from dropbeard.core.heads import head_due, seen_marks
from dropbeard.core.model import Delete, Entry, Head, decode_head
from dropbeard.core.plan import Base
from dropbeard.core.problems import Problem
from dropbeard.core.recovery import highest_own_counter, recovered_bases
from dropbeard.core.treediff import to_entry
from dropbeard.sync.bases import Bases
from dropbeard.sync.inputs import Loaded, RemoteSide
from dropbeard.sync.passrun import PassRun
from dropbeard.sync.passscope import Changes
from dropbeard.sync.remote import read_tombstones
from dropbeard.sync.state import State
from dropbeard.sync.treeread import diff, lookup

#: What makes this device's own head or what it names untrustworthy.
_UNREADABLE = (FormatError, IntegrityError, NotFound)


class Recovered(msgspec.Struct, frozen=True):
    """The pass's `loaded` state once its own head was read, and the problems found."""

    loaded: Loaded
    problems: list[Problem] = msgspec.field(default_factory=list)


def head_may_be_ahead(loaded: Loaded) -> bool:
    """True if state.sqlite itself says this device's head may be ahead of it, so the
    pass reads the head before anything else: no head recorded as written here (a first
    publish, a device id taken over), or ids reserved past the last commit (a publish
    that died, maybe after its head write, maybe leaving tombstone batches behind)."""
    return (
        loaded.head_etag is None
        or loaded.seq_floor > loaded.tombstone_seq
        or (loaded.snapshot_floor or "") > (loaded.last_snapshot or "")
    )


def quiet(run: PassRun, loaded: Loaded, remote: RemoteSide, changes: Changes) -> bool:
    """True if the pass, as gathered from `loaded`, has nothing to do and so writes
    nothing: no path to reconcile (none changed here, elsewhere or left open; not a full
    reconcile), no other device's head moved, and no head due for its seen-marks."""
    if changes.paths is None or changes.paths or changes.untracked:
        return False
    if remote.read is not None and (remote.read.changed or remote.read.unreadable):
        return False
    seen = seen_marks(loaded.peers, {})
    return not head_due(seen, loaded.head_seen, loaded.head_written_at, run.now)


async def recover_own_head(run: PassRun, loaded: Loaded) -> Recovered:
    """Read this device's head; take back what it names if it is ahead of `loaded`, and
    delete the tombstone batches no head named."""
    key = run.keys.head(run.cfg.device_id)
    try:
        got = await run.store.get_if_changed(key, loaded.head_etag)
    except NotFound:
        return Recovered(loaded)  # never published
    if got is None:  # unchanged since this device wrote it
        return Recovered(await _without_orphans(run, loaded, loaded.tombstone_seq))
    data, etag = got
    try:
        head = decode_head(data, key)
        if head.device_id != run.cfg.device_id:
            raise FormatError(f"{key} claims device {head.device_id!r}")
    except FormatError as exc:
        # Published anew this pass, which mends the head.
        return Recovered(msgspec.structs.replace(loaded, mend_head=True), [_unreadable(key, exc)])
    if (head.snapshot, head.tree) == (loaded.last_snapshot, loaded.last_tree):
        loaded = msgspec.structs.replace(loaded, head_etag=etag)
        if not run.opts.dry_run:
            await anyio.to_thread.run_sync(run.state.set_meta, "head_etag", etag)
        seq = max(head.tombstone_seq, loaded.tombstone_seq)
        return Recovered(await _without_orphans(run, loaded, seq))
    return await _take_back(run, loaded, head, etag)


async def _take_back(run: PassRun, loaded: Loaded, head: Head, etag: str) -> Recovered:
    """`loaded` as the head says it is: its ids, and (when its tree and tombstones can be
    read) its tree, the bases of what changed in it and its counter. Recorded unless a dry
    run."""
    dev = run.cfg.device_id
    seq = max(loaded.tombstone_seq, head.tombstone_seq)
    floor = max(loaded.snapshot_floor or "", head.snapshot or "") or None
    taken = msgspec.structs.replace(loaded, tombstone_seq=seq, snapshot_floor=floor, head_etag=etag)
    ours = loaded.last_tree is not None or etag != loaded.adopted_head  # this folder's
    try:
        mine = await _deleted_since(run, dev, loaded.tombstone_seq, head.tombstone_seq)
        published = await _published_since(run, loaded.last_tree if ours else None, head)
    except _UNREADABLE as exc:
        taken = msgspec.structs.replace(taken, mend_head=True)  # publish anew: that mends the head
        problems = [_unreadable(run.keys.head(dev), exc)]
        return Recovered(await _without_orphans(run, taken, head.tombstone_seq, True), problems)
    taken = msgspec.structs.replace(
        taken, counter=max(loaded.counter, highest_own_counter(dev, published, mine))
    )
    bases: dict[str, Base] = {}
    if ours:
        deleted = [*await _applied_deletes(run, loaded, head), *mine]
        deleted = [d for d in deleted if not await _listed(run, head, d.path)]
        named = {e.path for e in published} | {gone.path for gone in deleted}
        current = await anyio.to_thread.run_sync(Bases(run.state, loaded.taken).of, named)
        bases = recovered_bases(current, published, deleted)
        taken = msgspec.structs.replace(
            taken,
            taken={**loaded.taken, **bases},
            taken_back=bool(bases),
            # every path is reconciled again once any was taken back
            pending=None if bases else loaded.pending,
            last_snapshot=head.snapshot,
            last_tree=head.tree,
            last_files=None,
            last_bytes=None,
        )
    if not run.opts.dry_run:
        await anyio.to_thread.run_sync(_record, run.state, taken, bases)
    return Recovered(await _without_orphans(run, taken, head.tombstone_seq, True))


async def _published_since(run: PassRun, last_tree: str | None, head: Head) -> list[Entry]:
    """The entries of the head's tree that differ from `last_tree` (every entry when None,
    or when that tree cannot be read any more)."""
    if head.tree is None:
        return []
    try:
        return [to_entry(p, e) async for p, _, e in diff(run.trees, last_tree, head.tree) if e]
    except _UNREADABLE:
        if last_tree is None:
            raise
        return [to_entry(p, e) async for p, _, e in diff(run.trees, None, head.tree) if e]


async def _listed(run: PassRun, head: Head, path: str) -> bool:
    """True if the head's tree lists `path` (a delete of it was overtaken)."""
    return head.tree is not None and await lookup(run.trees, head.tree, path) is not None


async def _deleted_since(run: PassRun, dev: str, processed: int, upto: int) -> list[Delete]:
    """The deletes of device `dev`'s batches after `processed` up to `upto`."""
    if upto <= processed:
        return []
    batches = await read_tombstones(run.store, run.keys, dev, processed, upto)
    return [gone for _, gone in batches]


async def _applied_deletes(run: PassRun, loaded: Loaded, head: Head) -> list[Delete]:
    """The other devices' deletes the head says this device processed (its `seen`) and
    state.sqlite does not: the pass that wrote the head applied them. A device whose
    batches cannot be read now is left to the pass to read again."""
    found: list[Delete] = []
    for dev, mark in sorted(head.seen.items()):
        peer = loaded.peers.get(dev)
        try:
            found += await _deleted_since(
                run, dev, peer.tombstone_seq if peer else 0, mark.tombstone_seq
            )
        except (FormatError, NotFound, ValueError):
            continue
    return found


def _record(state: State, taken: Loaded, bases: dict[str, Base]) -> None:
    """Record what was taken back, as a commit would have (in a worker thread)."""
    with state.transaction():
        state.put_bases(bases.items())
        if bases:
            state.replace_pending(None)
        state.set_meta("counter", str(taken.counter))
        state.set_meta("tombstone_seq", str(taken.tombstone_seq))
        for key, value in (
            ("last_snapshot", taken.last_snapshot),
            ("last_tree", taken.last_tree),
            ("head_etag", taken.head_etag),
        ):
            if value is not None:
                state.set_meta(key, value)
        if taken.last_files is None:
            state.delete_meta("last_files")
            state.delete_meta("last_bytes")
    # the head's snapshot id, even if not this folder's
    state.reserve(taken.counter, taken.tombstone_seq, taken.snapshot_floor)


async def _without_orphans(
    run: PassRun, loaded: Loaded, head_seq: int, look: bool = False
) -> Loaded:
    """Delete this device's tombstone batches after `head_seq`, the last its head names,
    if a publish may have left some: a seq was reserved past it, or (`look`) the head
    moved on without this state. `loaded` with their seqs used up."""
    if not look and loaded.seq_floor <= head_seq:
        return loaded
    dev = run.cfg.device_id
    found: list[int] = []
    start = run.keys.tombstone(dev, head_seq)
    async for page in run.store.list(run.keys.tombstones_prefix(dev), start_after=start):
        for obj in page.objects:
            try:
                found.append(run.keys.seq_of(obj.key))
            except ValueError:
                continue  # not a batch this device wrote
    used = max([loaded.seq_floor, loaded.tombstone_seq, *found])
    if run.opts.dry_run:
        return msgspec.structs.replace(loaded, tombstone_seq=used, seq_floor=used)
    for seq in found:
        await run.store.delete(run.keys.tombstone(dev, seq))
    await anyio.to_thread.run_sync(_use_up, run.state, used)
    return msgspec.structs.replace(loaded, tombstone_seq=used, seq_floor=used)


def _use_up(state: State, seq: int) -> None:
    with state.transaction():
        state.set_meta("tombstone_seq", str(seq))
        state.set_meta("reserved_seq", str(seq))


def _unreadable(key: str, exc: Exception) -> Problem:
    return Problem(
        path=key,
        kind="integrity",
        message=f"this device's own head cannot be trusted ({exc}); publishing a new one",
    )
