"""This device's side of a pass going to the bucket (SPEC 4 steps 6-7): the blobs its plan
references, then its tombstones, manifest and head when they changed (IO: store, local
files, `.dropbear/published.sha256`)."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import anyio
import msgspec

from dropbeard.core.model import Entry, Manifest
from dropbeard.core.passrules import (
    PlanInputs,
    blobs_in_bucket,
    blobs_to_upload,
    listing_unchanged,
    needs_publish,
    seen_marks,
)
from dropbeard.core.plan import Base, Plan, Remote
from dropbeard.core.problems import Problem
from dropbeard.core.safety import DeleteGuard
from dropbeard.sync.bases import Bases
from dropbeard.sync.inputs import Loaded
from dropbeard.sync.passrun import PassRun
from dropbeard.sync.publish import Published, Reservation, entries_digest, publish
from dropbeard.sync.remote import RemoteRead
from dropbeard.sync.root import RootPaths
from dropbeard.sync.scan import ScanResult
from dropbeard.sync.state import Journal
from dropbeard.sync.upload import BlobSource, UploadResult, upload_blobs

PUBLISHED = "published.json"
"""This device's last published manifest, kept in `.dropbear/` (`previous_listing`)."""

_MANIFEST = msgspec.json.Decoder(Manifest)

UPLOAD_ROUNDS = 3
"""Upload rounds at most; each after the first follows a re-plan (see `upload_plan_blobs`)."""


@dataclass(frozen=True)
class Uploaded:
    """The upload step's outcome: `plan` is the plan to publish and commit (the one given,
    or its re-plan without the files that changed while read, each with a problem in
    `problems`); the counts add up every round."""

    plan: Plan
    problems: list[Problem] = field(default_factory=list)
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
) -> Uploaded:
    """Upload every blob the plan's manifest references that the bucket is not known to
    hold (modes that publish; else nothing to do).

    Why this may re-plan: a file whose bytes changed since the scan no longer matches the
    hash the plan would publish, so its blob cannot be uploaded and the manifest must not
    reference it. Its path becomes unreadable, so unknown to reconcile: it keeps its base,
    gets a `changed_while_reading` problem, and syncs next pass. The pass is then planned
    again (with the same delete verdict) rather than having its manifest patched, so that
    the path's base, tombstones and conflicts stay consistent; and the new plan's blobs are
    uploaded in turn, for at most `UPLOAD_ROUNDS` rounds. A digest is uploaded from any
    path that still holds its bytes (`upload_blobs`), so a re-plan only takes out paths
    whose blob could not be sent: the plan returned names no blob missing from the bucket.
    """
    if not plan.publishes or not blobs_to_upload(plan.listing.values(), (), scanned.items):
        return Uploaded(plan)  # no file to offer: the blobs known need not even be read
    published = await anyio.to_thread.run_sync(_published_shas, run.paths)
    known = blobs_in_bucket(published, remotes)
    journal = Journal(run.state, anyio.Lock())
    unreadable = set(scanned.unreadable)
    problems: list[Problem] = []
    sent = UploadResult()
    for _round in range(UPLOAD_ROUNDS):
        new = blobs_to_upload(plan.listing.values(), known, scanned.items)
        if not new:
            break
        sources = [_source(run.paths, scanned, e) for e in new]
        _meter_uploads(run, sources)
        up = await upload_blobs(
            run.store,
            run.keys,
            sources,
            budget=run.budget,
            journal=journal,
            on_done=lambda src: known.add(src.sha256),
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


def _meter_uploads(run: PassRun, sources: list[BlobSource]) -> None:
    """Tell the meter what this round uploads: each blob once, named by its path."""
    meter = run.opts.meter
    if meter is None:
        return
    unique = {s.sha256: s for s in sources}
    meter.name_blobs((s.sha256, s.path, s.size) for s in unique.values())
    meter.begin("uploading", len(unique), sum(s.size for s in unique.values()))


def _source(paths: RootPaths, scanned: ScanResult, entry: Entry) -> BlobSource:
    assert entry.sha256 is not None
    file = paths.root / (scanned.items[entry.path].disk_path or entry.path)
    return BlobSource(entry.sha256, entry.size or 0, entry.path, file)


def _changed_while_reading(path: str) -> Problem:
    return Problem(
        path=path,
        kind="changed_while_reading",
        message=f"{path} changed while it was uploaded; it will be synced on the next pass",
    )


@dataclass(frozen=True)
class Publication:
    """The publish step's outcome: `published` is None when nothing was written (a mode
    that does not publish, or an idle pass); `digest` the entries digest the commit
    records as last published."""

    published: Published | None
    digest: str | None
    tombstones: int = 0


async def publish_if_changed(
    run: PassRun,
    loaded: Loaded,
    plan: Plan,
    settled: RemoteRead | None,
    bases: Bases,
    base: Mapping[str, Base],
) -> Publication:
    """Publish the listing of what this device really holds (`plan`'s, with every path
    that failed as its base says: `core.passrules.held_listing`) and the plan's
    tombstones, with seen-marks for the settled devices, if anything changed
    (`core.passrules.needs_publish`); then remember the blobs it references.

    Format 1 publishes the whole listing: the last published one (what the agreed
    `bases` publish) with the plan's changes applied. When those change nothing (`base`:
    the bases of the plan's paths before the pass), the last listing is not even read."""
    if not plan.publishes:
        return Publication(None, loaded.last_digest)
    unchanged = not (plan.tombstones or plan.complete) and listing_unchanged(plan, base)
    if unchanged and loaded.last_digest is not None and loaded.last_manifest is not None:
        return Publication(None, loaded.last_digest)

    def listed() -> tuple[list[Entry], str]:
        previous = None if plan.complete else previous_listing(run.paths, loaded, bases)
        entries = plan.listed(previous)
        return entries, entries_digest(entries)

    held, digest = await anyio.to_thread.run_sync(listed)
    if not needs_publish(plan, digest, loaded.last_digest, loaded.last_manifest):
        return Publication(None, loaded.last_digest)
    heads = {} if settled is None else {d: v.head for d, v in settled.devices.items()}

    async def reserve(ids: Reservation) -> None:
        await anyio.to_thread.run_sync(
            run.state.reserve, ids.counter, ids.tombstone_seq, ids.manifest_id
        )

    published = await publish(
        run.store,
        run.keys,
        root_id=run.cfg.root_id,
        device_id=run.cfg.device_id,
        entries=held,
        tombstones=plan.tombstones,
        last=loaded.last_ids,
        seen=seen_marks(loaded.peers, heads),
        now=run.now,
        counter=plan.counter,
        reserve=reserve,
    )
    await anyio.to_thread.run_sync(remember_published, run.paths, published.manifest, held)
    return Publication(published, digest, len(plan.tombstones))


def previous_listing(paths: RootPaths, loaded: Loaded, bases: Bases) -> dict[str, Entry]:
    """The listing this device published last, by path: the manifest it keeps of it
    (`.dropbear/published.json`) if that is the one its state names, else what its agreed
    bases publish (the same listing: every path a pass leaves open it lists itself).
    Format 1 rewrites the whole listing, so this is O(files); format 2 updates a tree."""
    try:
        data = (paths.dot / PUBLISHED).read_bytes()
    except OSError:
        data = b""
    if data and hashlib.sha256(data).hexdigest() == loaded.last_sha256:
        try:
            return {e.path: e for e in _MANIFEST.decode(data).entries}
        except msgspec.DecodeError:
            pass
    return bases.listing()


def _published_shas(paths: RootPaths) -> set[str]:
    try:
        return set((paths.dot / "published.sha256").read_text().split())
    except (OSError, UnicodeDecodeError):
        return set()


def remember_published(paths: RootPaths, manifest: bytes, entries: Sequence[Entry]) -> None:
    """Keep the manifest just published (`previous_listing`) and its blobs."""
    tmp = paths.dot / f"{PUBLISHED}.tmp"
    tmp.write_bytes(manifest)
    tmp.replace(paths.dot / PUBLISHED)
    remember_published_shas(paths, entries)


def remember_published_shas(paths: RootPaths, entries: Sequence[Entry]) -> None:
    """Record the blobs `entries` reference as in the bucket (`.dropbear/published.sha256`)."""
    tmp = paths.dot / "published.sha256.tmp"
    tmp.write_text("\n".join(sorted({e.sha256 for e in entries if e.sha256})))
    tmp.replace(paths.dot / "published.sha256")
