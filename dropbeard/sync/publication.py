"""Uploading the blobs a pass's plan references (SPEC 4 step 6), re-planning without a
file that changed while read (IO: store, local files, state.sqlite). Publishing what the
plan lists is `dropbeard.sync.treepublish`."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import anyio
import msgspec

from dropbeard.core.chunking import Chunk
from dropbeard.core.model import Entry
from dropbeard.core.passrules import PlanInputs, blobs_in_bucket, blobs_of, blobs_to_upload
from dropbeard.core.plan import Plan, Remote
from dropbeard.core.problems import Problem
from dropbeard.core.safety import DeleteGuard
from dropbeard.sync.ahead import Sent
from dropbeard.sync.passrun import PassRun
from dropbeard.sync.root import RootPaths
from dropbeard.sync.scan import ScanResult
from dropbeard.sync.state import State
from dropbeard.sync.upload import BlobSource, UploadResult, upload_blobs

UPLOAD_ROUNDS = 3
"""Upload rounds at most; each after the first follows a re-plan (see `upload_plan_blobs`)."""


class Uploaded(msgspec.Struct, frozen=True):
    """The upload step's outcome: `plan` is the plan to publish and commit (the one given,
    or its re-plan without the files that changed while read, each with a problem in
    `problems`); the counts add up every round."""

    plan: Plan
    problems: list[Problem] = msgspec.field(default_factory=list)
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped_existing: int = 0


async def upload_plan_blobs(
    run: PassRun,
    inputs: PlanInputs,
    guard: DeleteGuard,
    plan: Plan,
    scanned: ScanResult,
    remotes: list[Remote],
    ahead: Sent | None = None,
) -> Uploaded:
    """Upload every blob the plan's listing references that the bucket is not known to
    hold (modes that publish; else nothing to do): referenced by the other devices'
    entries of the plan's paths, or by an agreed path of this device's own listing.

    Why this may re-plan: a file whose bytes changed since the scan no longer matches the
    hash the plan would publish, so its blob cannot be uploaded and the tree must not
    reference it. Its path becomes unreadable, so unknown to reconcile: it keeps its base,
    gets a `changed_while_reading` problem, and syncs next pass. The pass is then planned
    again (with the same delete verdict) rather than having its listing patched, so that
    the path's base, tombstones and conflicts stay consistent; and the new plan's blobs are
    uploaded in turn, for at most `UPLOAD_ROUNDS` rounds. A digest is uploaded from any
    path that still holds its bytes (`upload_blobs`), so a re-plan only takes out paths
    whose blob could not be sent: the plan returned names no blob missing from the bucket.

    What is known present relies on trees read when the pass began, for half the grace
    period G at most (SPEC 8.2): a round that starts later asks the bucket for every blob
    again. A blob found there but written more than G/2 ago is written again (refreshed)
    so that gc spares it until the head naming it is written.

    `ahead`: the blobs a first sync sent while it scanned (`sync.ahead`), in the bucket
    since `run.now` at the earliest; those the plan needs are counted as this step's.
    """
    if not plan.publishes or not blobs_to_upload(plan.listing.values(), (), scanned.items):
        return Uploaded(plan)  # no file to offer: the blobs known need not even be read
    known = blobs_in_bucket(remotes)
    half_grace = timedelta(seconds=run.trees.present_for)
    relied_until = run.now + half_grace  # the trees behind `known` were read after run.now
    unreadable = set(scanned.unreadable)
    problems: list[Problem] = []
    sent = UploadResult()
    for _round in range(UPLOAD_ROUNDS):
        now = run.opts.now()
        stale = now >= relied_until
        if stale:
            # The trees read when the pass began may no longer be retained by the time
            # its head is written: what they reach is asked for again (SPEC 8.2).
            known.clear()
            relied_until = now + half_grace
        new = blobs_to_upload(plan.listing.values(), known, scanned.items)
        if not stale:
            new = await anyio.to_thread.run_sync(_not_held, run.state, new, known)
            if ahead is not None and _round == 0:
                new = _sent_ahead(new, ahead, known, sent)
        if not new:
            break
        sources = [_source(run.paths, scanned, e) for e in new]
        _meter_uploads(run, sources, known)
        up = await upload_blobs(
            run.store,
            run.keys,
            sources,
            budget=run.budget,
            on_done=lambda src: known.update(_blobs_of_source(src)),
            known_chunk=known.__contains__,
            fresh_since=(now - half_grace).timestamp(),
        )
        sent.uploaded += up.uploaded
        sent.uploaded_bytes += up.uploaded_bytes
        sent.skipped_existing += up.skipped_existing
        if up.changed:
            plan = await _without(inputs, guard, unreadable, up.changed, problems)
    return Uploaded(plan, problems, sent.uploaded, sent.uploaded_bytes, sent.skipped_existing)


async def _without(
    inputs: PlanInputs,
    guard: DeleteGuard,
    unreadable: set[str],
    changed: set[str],
    problems: list[Problem],
) -> Plan:
    """The pass planned again (in a worker thread: it may read bases) with `changed`
    unreadable too (adding each to `unreadable`, and to `problems` once)."""
    problems.extend(_changed_while_reading(p) for p in sorted(changed - unreadable))
    unreadable |= changed
    return guard.applied_to(await anyio.to_thread.run_sync(inputs.plan, frozenset(unreadable)))


def _not_held(state: State, entries: list[Entry], known: set[str]) -> list[Entry]:
    """Those of `entries` with a blob (or chunk) neither `known` nor referenced by this
    device's listing already (`State.holds_blob`: it is in the bucket); the blobs and
    chunks found held join `known`, so a file's chunks already there are not asked for."""
    new: list[Entry] = []
    for entry in entries:
        blobs = blobs_of(entry)
        known.update(b for b in blobs if b not in known and state.holds_blob(b))
        if not all(b in known for b in blobs):
            new.append(entry)
    return new


def _sent_ahead(new: list[Entry], ahead: Sent, known: set[str], sent: UploadResult) -> list[Entry]:
    """Those of `new` whose blob (or some chunk) was not sent ahead; the blobs and chunks
    that were join `known`, counted in `sent` once each (a file in chunks as one upload
    once all its chunks are in, the bytes of each as they went)."""
    left: list[Entry] = []
    for entry in new:
        blob = entry.sha256
        if entry.chunks is not None:
            if _chunks_sent_ahead(entry.chunks, ahead, known, sent):
                left.append(entry)
        elif blob is None or blob not in ahead.blobs:
            left.append(entry)
        elif blob not in known:
            known.add(blob)
            if ahead.blobs[blob]:
                sent.uploaded += 1
                sent.uploaded_bytes += entry.size or 0
            else:
                sent.skipped_existing += 1
    return left


def _chunks_sent_ahead(
    chunks: Sequence[Chunk], ahead: Sent, known: set[str], sent: UploadResult
) -> bool:
    """`_sent_ahead` for one file in chunks: True if it is left to the upload step (a
    chunk is still to send, or none of its chunks was sent ahead), which counts the file
    if it sends a byte of it."""
    added = went_up = False
    for chunk in chunks:
        if chunk.sha256 in ahead.blobs and chunk.sha256 not in known:
            known.add(chunk.sha256)
            added = True
            if ahead.blobs[chunk.sha256]:
                went_up = True
                sent.uploaded_bytes += chunk.size
    if not added or any(chunk.sha256 not in known for chunk in chunks):
        return True
    if went_up:
        sent.uploaded += 1
    else:
        sent.skipped_existing += 1
    return False


def _meter_uploads(run: PassRun, sources: list[BlobSource], known: set[str]) -> None:
    """Tell the meter what this round uploads: each blob (or chunk not `known` in the
    bucket) once, named by its file's path."""
    meter = run.opts.meter
    if meter is None:
        return
    unique: dict[str, tuple[str, str, int]] = {}
    for s in sources:
        for blob, size in [(c.sha256, c.size) for c in s.chunks or ()] or [(s.sha256, s.size)]:
            if blob not in known:
                unique.setdefault(blob, (blob, s.path, size))
    meter.name_blobs(unique.values())
    meter.begin("uploading", len(unique), sum(size for _, _, size in unique.values()))


def _source(paths: RootPaths, scanned: ScanResult, entry: Entry) -> BlobSource:
    assert entry.sha256 is not None
    item = scanned.items[entry.path]
    file = paths.root / (item.disk_path or entry.path)
    chunks = None if entry.chunks is None else tuple(entry.chunks)
    return BlobSource(entry.sha256, entry.size or 0, entry.path, file, chunks, item.stat)


def _blobs_of_source(src: BlobSource) -> list[str]:
    return [src.sha256] if src.chunks is None else [c.sha256 for c in src.chunks]


def _changed_while_reading(path: str) -> Problem:
    return Problem(
        path=path,
        kind="changed_while_reading",
        message=f"{path} changed while it was uploaded; it will be synced on the next pass",
    )
