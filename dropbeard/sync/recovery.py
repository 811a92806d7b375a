"""Step 1 of a pass (SPEC 4): this device's own head is the authority (IO: store,
state.sqlite, `.dropbear/published.sha256`).

One conditional GET per pass. When the head is ahead of state.sqlite — a crash between
the head write and the local commit, or `.dropbear/` restored from an older backup — the
pass takes back what it names (`dropbeard.core.recovery`: the published manifest, the
bases, the tombstone seq, the counter) and records it before anything else. Tombstone
batches after the head's seq were written by a publish that never reached its head: no
reader acts on them (readers stop at the head's seq), so they are deleted and their seqs
skipped, never used again. A dry run takes everything back in memory only.

A head an earlier holder of the device id left (found by `init`: a take-over, or an id
re-registered after retirement) is not this folder's: only its ids are taken (seq,
manifest id, counter), never its entries as bases, which would turn everything that folder
held and this one does not into deletes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import anyio
import msgspec

from dropbeard.core.errors import FormatError, IntegrityError, NotFound
from dropbeard.core.model import Delete, Head, decode_head
from dropbeard.core.passrules import base_status
from dropbeard.core.plan import Base
from dropbeard.core.problems import Problem
from dropbeard.core.recovery import highest_own_counter, recovered_bases
from dropbeard.sync.bases import Bases
from dropbeard.sync.inputs import Loaded
from dropbeard.sync.passrun import PassRun
from dropbeard.sync.publication import remember_published_shas
from dropbeard.sync.publish import entries_digest
from dropbeard.sync.remote import read_manifest, read_tombstones
from dropbeard.sync.state import State

_BASE_ENCODER = msgspec.json.Encoder()


@dataclass(frozen=True)
class Recovered:
    """The pass's `loaded` state once its own head was read, and the problems found."""

    loaded: Loaded
    problems: list[Problem] = field(default_factory=list)


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
        # Published anew this pass (no digest matches None), which mends the head.
        return Recovered(replace(loaded, last_digest=None), [_unreadable(key, exc)])
    if (head.manifest, head.manifest_sha256) == (loaded.last_manifest, loaded.last_sha256):
        loaded = replace(loaded, head_etag=etag)
        if not run.opts.dry_run:
            await anyio.to_thread.run_sync(run.state.set_meta, "head_etag", etag)
        seq = max(head.tombstone_seq, loaded.tombstone_seq)
        return Recovered(await _without_orphans(run, loaded, seq))
    return await _take_back(run, loaded, head, etag)


async def _take_back(run: PassRun, loaded: Loaded, head: Head, etag: str) -> Recovered:
    """`loaded` as the head says it is: its ids, and (when its manifest and tombstones
    can be read) its manifest, bases and counter. Recorded unless a dry run."""
    dev = run.cfg.device_id
    seq = max(loaded.tombstone_seq, head.tombstone_seq)
    floor = max(loaded.manifest_floor or "", head.manifest)
    taken = replace(loaded, tombstone_seq=seq, manifest_floor=floor, head_etag=etag)
    try:
        manifest = await read_manifest(run.store, run.keys, dev, head, None)
        mine = await _deleted_since(run, dev, loaded.tombstone_seq, head.tombstone_seq)
    except (FormatError, IntegrityError, NotFound) as exc:
        taken = replace(taken, last_digest=None)  # publish anew: that mends the head
        problems = [_unreadable(run.keys.head(dev), exc)]
        return Recovered(await _without_orphans(run, taken, head.tombstone_seq, True), problems)
    taken = replace(
        taken, counter=max(loaded.counter, highest_own_counter(dev, manifest.entries, mine))
    )
    bases: dict[str, Base] = {}
    if loaded.last_manifest is not None or etag != loaded.adopted_head:  # this folder's
        deleted = [*await _applied_deletes(run, loaded, head), *mine]
        named = {e.path for e in manifest.entries} | {gone.path for gone in deleted}
        current = await anyio.to_thread.run_sync(Bases(run.state, loaded.taken).of, named)
        bases = recovered_bases(current, manifest.entries, deleted)
        taken = replace(
            taken,
            taken={**loaded.taken, **bases},
            # every path is reconciled again once any was taken back
            pending=None if bases else loaded.pending,
            last_manifest=head.manifest,
            last_sha256=head.manifest_sha256,
            last_digest=entries_digest(manifest.entries),
        )
        if not run.opts.dry_run:
            await anyio.to_thread.run_sync(remember_published_shas, run.paths, manifest.entries)
    if not run.opts.dry_run:
        await anyio.to_thread.run_sync(_record, run.state, taken, bases)
    return Recovered(await _without_orphans(run, taken, head.tombstone_seq, True))


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
        state.put_bases((p, _BASE_ENCODER.encode(b), base_status(b)) for p, b in bases.items())
        if bases:
            state.replace_pending(None)
        state.set_meta("counter", str(taken.counter))
        state.set_meta("tombstone_seq", str(taken.tombstone_seq))
        for key, value in (
            ("last_manifest", taken.last_manifest),
            ("last_manifest_sha256", taken.last_sha256),
            ("last_published_at", taken.last_manifest),
            ("last_entries_digest", taken.last_digest),
            ("head_etag", taken.head_etag),
        ):
            if value is not None:
                state.set_meta(key, value)
    if taken.manifest_floor is not None:  # the head's manifest id, even if not this folder's
        state.reserve(taken.counter, taken.tombstone_seq, taken.manifest_floor)


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
        return replace(loaded, tombstone_seq=used, seq_floor=used)
    for seq in found:
        await run.store.delete(run.keys.tombstone(dev, seq))
    await anyio.to_thread.run_sync(_use_up, run.state, used)
    return replace(loaded, tombstone_seq=used, seq_floor=used)


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
