"""One sync pass for one root: scan -> read remotes -> reconcile -> apply -> upload ->
publish -> commit (IO: composes scan, remote, reconcile, apply, upload, publish, state).

Local state is committed only after the bucket writes it describes succeeded, so a pass
that fails anywhere can simply be run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import anyio
import msgspec

from dropbeard.core.config import RootConfig
from dropbeard.core.ignore import IgnoreRules
from dropbeard.core.keys import RootKeys
from dropbeard.core.model import Delete, Entry, Registry
from dropbeard.core.passrules import (
    PlanInputs,
    base_status,
    guard_deletes,
    held_entries,
    local_entries,
    newly_ignored,
    problems_after,
    racy_after_ns,
    seen_marks,
    settled_devices,
    stat_rows,
)
from dropbeard.core.plan import PULLS, Base, Plan, Remote
from dropbeard.core.problems import Problem
from dropbeard.core.summary import Summary
from dropbeard.store.base import Progress, Store
from dropbeard.sync.apply import Applied, apply_plan
from dropbeard.sync.hashing import StatKey
from dropbeard.sync.publish import Published, entries_digest, publish
from dropbeard.sync.remote import RemoteRead, read_remotes
from dropbeard.sync.root import RootPaths, reset_tmp
from dropbeard.sync.scan import ScanResult, scan
from dropbeard.sync.state import Journal, Peer, State, StatRow
from dropbeard.sync.upload import BlobSource, upload_blobs

_BASE_DECODER = msgspec.json.Decoder(Base)
_BASE_ENCODER = msgspec.json.Encoder()


@dataclass
class PassOptions:
    dry_run: bool = False
    allow_mass_delete: bool = False
    concurrency: int = 8
    progress: Progress | None = None
    #: rescan only these paths (daemon, after watcher events); None = the whole root
    only: frozenset[str] | None = None
    now: Callable[[], datetime] = field(default=lambda: datetime.now(UTC))


@dataclass
class Loaded:
    """What the pass reads from state.sqlite up front (in one worker-thread call)."""

    cache: dict[str, StatRow]
    bases: dict[str, Base]
    counter: int
    tombstone_seq: int
    last_manifest: str | None
    last_digest: str | None
    peers: dict[str, Peer]
    registry: Registry | None
    registry_etag: str | None


def _load(state: State) -> Loaded:
    return Loaded(
        cache=state.stat_cache(),
        bases={p: _BASE_DECODER.decode(b) for p, b in state.bases().items()},
        counter=state.get_int("counter"),
        tombstone_seq=state.get_int("tombstone_seq"),
        last_manifest=state.get_meta("last_manifest"),
        last_digest=state.get_meta("last_entries_digest"),
        peers=state.peers(),
        registry=_cached_registry(state),
        registry_etag=state.get_meta("registry_etag"),
    )


def _cached_registry(state: State) -> Registry | None:
    data = state.get_meta("registry_json")
    if data is None:
        return None
    try:
        return msgspec.json.decode(data, type=Registry)
    except msgspec.ValidationError:
        return None


def _read_ignore(paths: RootPaths) -> IgnoreRules:
    try:
        return IgnoreRules.parse(paths.ignore_file.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return IgnoreRules.empty()
    except (OSError, UnicodeDecodeError):
        return IgnoreRules.empty()


async def run_pass(
    paths: RootPaths, cfg: RootConfig, state: State, store: Store, opts: PassOptions
) -> Summary:
    """One idempotent pass (SPEC 4). The caller holds the root lock and checked identity."""
    began = time.monotonic()
    now = opts.now()
    keys = RootKeys(cfg.root_id)
    summary = Summary(
        root=str(paths.root),
        root_id=cfg.root_id,
        device_id=cfg.device_id,
        mode=cfg.mode,
        dry_run=opts.dry_run,
    )
    await anyio.to_thread.run_sync(reset_tmp, paths)
    loaded = await anyio.to_thread.run_sync(_load, state)
    ignore = await anyio.to_thread.run_sync(_read_ignore, paths)

    cache = loaded.cache

    def cached(path: str) -> tuple[StatKey, str] | None:
        row = cache.get(path)
        return None if row is None else (StatKey(row[0], row[1], row[2], row[3]), row[4])

    result = await scan(paths.root, ignore=ignore, cache=cached, only=opts.only, progress=None)
    summary.scanned, summary.hashed = result.scanned, result.hashed_files
    summary.hashed_bytes = result.hashed_bytes
    local = local_entries(result.items)

    # Paths a new ignore rule now covers stop being tracked: no delete, no tombstone.
    bases = dict(loaded.bases)
    untracked = newly_ignored(bases, local, ignore)
    for p in untracked:
        del bases[p]

    remote_read: RemoteRead | None = None
    remotes: list[Remote] = []
    tombstones: list[tuple[str, Delete]] = []
    if cfg.mode in PULLS:
        remote_read = await read_remotes(
            store,
            keys,
            device_id=cfg.device_id,
            peers=loaded.peers,
            registry=loaded.registry,
            registry_etag=loaded.registry_etag,
            cache_dir=paths.cache,
        )
        for dev, view in sorted(remote_read.devices.items()):
            remotes.append(
                Remote(dev, view.head.manifest, {e.path: e for e in view.manifest.entries})
            )
            tombstones.extend((dev, d) for _, d in view.tombstones)

    unreadable = set(result.unreadable)
    problems: list[Problem] = list(result.problems)
    inputs = PlanInputs(
        device_id=cfg.device_id,
        mode=cfg.mode,
        base=bases,
        local=local,
        remotes=remotes,
        tombstones=tombstones,
        counter=loaded.counter,
        now=now,
        only=opts.only,
    )
    first = inputs.plan(unreadable)
    guard = guard_deletes(first, bases.values(), allow=opts.allow_mass_delete)
    plan = guard.applied_to(first)
    summary.halted = guard.reported
    summary.count_plan(plan)
    if opts.dry_run:
        summary.problems = len(problems) + len(plan.problems)
        summary.finish(began, time.monotonic())
        return summary

    # Apply remote changes to the folder (downloads, deletes, conflict copies).
    applied = await apply_plan(
        paths, store, keys, plan, result, concurrency=opts.concurrency, progress=opts.progress
    )
    problems.extend(applied.problems)
    summary.downloaded, summary.downloaded_bytes = applied.downloaded, applied.downloaded_bytes
    summary.deleted_local = applied.deleted

    # Upload blobs; a file that changed while read is left for the next pass.
    published = None
    if plan.publishes:
        # Blobs known to be in the bucket: those our last manifest referenced and those
        # other devices published. Every other file of the new manifest is uploaded (a
        # create-only PUT or HEAD+upload), whatever the reason it is new to the bucket.
        known = await anyio.to_thread.run_sync(_published_shas, paths)
        for remote in remotes:
            known.update(e.sha256 for e in remote.entries.values() if e.sha256)
        for _attempt in range(3):
            sources = [
                BlobSource(
                    e.sha256,
                    e.size or 0,
                    e.path,
                    paths.root / (result.items[e.path].disk_path or e.path),
                )
                for e in plan.manifest
                if e.sha256 and e.sha256 not in known and e.path in result.items
            ]
            up = await upload_blobs(
                store,
                keys,
                sources,
                concurrency=opts.concurrency,
                journal=Journal(state, anyio.Lock()),
                progress=opts.progress,
            )
            summary.uploaded += up.uploaded
            summary.uploaded_bytes += up.uploaded_bytes
            summary.skipped_existing += up.skipped_existing
            if not up.changed:
                break
            for path in up.changed.values():
                unreadable.add(path)
                problems.append(
                    Problem(
                        path=path,
                        kind="changed_while_reading",
                        message=f"{path} changed while it was uploaded; "
                        "it will be synced on the next pass",
                    )
                )
            plan = guard.applied_to(inputs.plan(unreadable))
        manifest = held_entries(plan.manifest, applied.failed, bases)
        digest = entries_digest(manifest)
        if digest != loaded.last_digest or plan.tombstones or loaded.last_manifest is None:
            settled = _settled(remote_read, plan, applied.failed, tombstones)
            heads = {} if settled is None else {d: v.head for d, v in settled.devices.items()}
            seen = seen_marks(loaded.peers, heads)
            published = await publish(
                store,
                keys,
                root_id=cfg.root_id,
                device_id=cfg.device_id,
                entries=manifest,
                tombstones=plan.tombstones,
                previous_manifest=loaded.last_manifest,
                tombstone_seq=loaded.tombstone_seq,
                seen=seen,
                now=now,
            )
            summary.manifest = published.manifest_id
            await anyio.to_thread.run_sync(_remember_published_shas, paths, manifest)
            summary.tombstones = len(plan.tombstones)
            loaded.last_digest = digest

    all_problems = problems + plan.problems
    summary.problems = len(all_problems)
    summary.conflicts = len(plan.conflicts)
    if opts.only is not None:  # a pass over some paths settles only their problems
        only = opts.only
        earlier = await anyio.to_thread.run_sync(state.problems)
        all_problems = problems_after(earlier, all_problems, only)
    await anyio.to_thread.run_sync(
        _commit,
        state,
        plan,
        result,
        cache,
        untracked,
        applied,
        published,
        loaded.last_digest,
        _settled(remote_read, plan, applied.failed, tombstones),
        all_problems,
        racy_after_ns(now),
    )
    summary.finish(began, time.monotonic())
    return summary


def _published_shas(paths: RootPaths) -> set[str]:
    try:
        return set((paths.dot / "published.sha256").read_text().split())
    except (OSError, UnicodeDecodeError):
        return set()


def _remember_published_shas(paths: RootPaths, entries: list[Entry]) -> None:
    tmp = paths.dot / "published.sha256.tmp"
    tmp.write_text("\n".join(sorted({e.sha256 for e in entries if e.sha256})))
    tmp.replace(paths.dot / "published.sha256")


def _settled(
    read: RemoteRead | None, plan: Plan, failed: set[str], tombstones: list[tuple[str, Delete]]
) -> RemoteRead | None:
    if read is None:
        return None
    return replace(read, devices=settled_devices(read.devices, plan, failed, tombstones))


def _commit(
    state: State,
    plan: Plan,
    result: ScanResult,
    cache: dict[str, StatRow],
    untracked: list[str],
    applied: Applied,
    published: Published | None,
    digest: str | None,
    remote_read: RemoteRead | None,
    problems: list[Problem],
    racy_after_ns: int,
) -> None:
    """Record the pass: new bases, stat cache rows that changed, counters, peers."""
    rows = stat_rows(result.items, cache, applied.stats, racy_after_ns)
    failed = applied.failed
    bases = [
        (p, _BASE_ENCODER.encode(b), base_status(b))
        for p, b in plan.base.items()
        if p not in failed
    ]
    with state.transaction():
        state.put_bases(bases)
        state.put_bases((p, None, "clean") for p in untracked)
        state.put_stats(rows)
        state.set_meta("counter", str(plan.counter))
        if published is not None:
            state.set_meta("tombstone_seq", str(published.tombstone_seq))
            state.set_meta("last_manifest", published.manifest_id)
            state.set_meta("last_manifest_sha256", published.manifest_sha256)
            state.set_meta("last_published_at", published.manifest_id)
        if digest is not None:
            state.set_meta("last_entries_digest", digest)
        if remote_read is not None:
            if remote_read.registry_etag is not None:
                state.set_meta("registry_etag", remote_read.registry_etag)
                state.set_meta("registry_json", msgspec.json.encode(remote_read.registry).decode())
            for dev, view in remote_read.devices.items():
                state.put_peer(
                    Peer(
                        dev,
                        view.head_etag,
                        view.head.manifest,
                        view.head.manifest_sha256,
                        view.head.tombstone_seq,
                    )
                )
        state.replace_problems(problems)
