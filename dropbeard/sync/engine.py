"""One sync pass for one root, as a pipeline of named steps (SPEC 4): own head -> read
remotes -> scan -> reconcile what changed -> guard -> apply -> upload -> publish -> commit
(IO: composes the steps of `recovery`, `inputs`, `passscope`, `apply`, `publication` and
`commit`; the decisions are in `core`). The other devices are read before the scan so that
a pass over some paths also scans the paths they changed (`dropbeard.sync.passscope`).

Local state is committed only after the bucket writes it describes succeeded, so a pass
that fails anywhere can simply be run again.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

import anyio
import msgspec

from dropbeard.core.changes import PathChange, fetches, path_changes
from dropbeard.core.config import RootConfig
from dropbeard.core.ignore import IGNORE_FILE
from dropbeard.core.passrules import held_listing, racy_after_ns
from dropbeard.core.plan import PUBLISHES, Plan
from dropbeard.core.problems import Problem
from dropbeard.core.safety import DeleteGuard, counts_tracked, guard_deletes
from dropbeard.core.summary import Summary
from dropbeard.store.base import Store
from dropbeard.sync.ahead import first_sync_ahead
from dropbeard.sync.bases import Bases
from dropbeard.sync.batches import Batches, Done
from dropbeard.sync.catchup import catch_up
from dropbeard.sync.commit import PassOutcome, commit_pass
from dropbeard.sync.folderrows import with_slack
from dropbeard.sync.fullpass import PassIn, check_against_full
from dropbeard.sync.inputs import (
    Ignore,
    Loaded,
    RemoteSide,
    load_last_pass,
    plan_inputs,
    read_ignore,
    read_other_devices,
)
from dropbeard.sync.localscan import (
    LocalScan,
    add_sources,
    apply_to_folder,
    holds_something,
    scan_root,
)
from dropbeard.sync.passrun import PassOptions, PassRun
from dropbeard.sync.passscope import Changes, Scope, choose_scope, find_changes
from dropbeard.sync.publication import upload_plan_blobs
from dropbeard.sync.recovery import head_may_be_ahead, quiet, recover_own_head
from dropbeard.sync.root import RootPaths
from dropbeard.sync.state import State
from dropbeard.sync.treepublish import publish_if_changed, while_drafting
from dropbeard.sync.workers import unwrapped

__all__ = ["PassOptions", "run_pass"]


async def run_pass(
    paths: RootPaths, cfg: RootConfig, state: State, store: Store, opts: PassOptions
) -> Summary:
    """One idempotent pass (SPEC 4). The caller holds the root lock and checked identity.

    A pass that wrote a new `.dropbearignore` from another device reconciled with the old
    rules, so it runs once more with the new ones: what they stop ignoring arrives now,
    not at some later pass (a daemon might not run one until something else changes)."""
    summary, rules_changed = await _one_pass(paths, cfg, state, store, opts)
    if rules_changed:
        again, _ = await _one_pass(paths, cfg, state, store, opts)
        summary = summary.then(again)
    return summary


async def _one_pass(
    paths: RootPaths, cfg: RootConfig, state: State, store: Store, opts: PassOptions
) -> tuple[Summary, bool]:
    """The pass, and whether it wrote a new ignore file."""
    began = time.monotonic()
    run = PassRun.begin(paths, cfg, state, store, opts)
    pass_in = await _gather(run)
    loaded, local, remote, inputs = pass_in.loaded, pass_in.local, pass_in.remote, pass_in.inputs
    first = await anyio.to_thread.run_sync(inputs.plan, local.result.unreadable)
    if opts.check_full and local.targets is None and pass_in.changes.paths is not None:
        await check_against_full(run, pass_in, first)
    guard = await _guard(run, first, pass_in.bases, local)
    plan = guard.applied_to(first)
    summary = _planned(run, local, remote, guard, plan, pass_in.found)
    if opts.dry_run:
        await run.trees.settle()
        _tell(run, lambda: path_changes(plan, published=plan.publishes, problems=plan.problems))
        summary.finish(began, time.monotonic())
        return summary, False

    if plan.downloads or plan.conflict_copies:
        await anyio.to_thread.run_sync(add_sources, run.state, plan, local)
    _meter_downloads(run, plan, local)
    applied = await apply_to_folder(run, plan, local)
    base, untracked = pass_in.changes.base, pass_in.changes.untracked
    uploaded, draft = await while_drafting(  # the tree's nodes go up with the blobs
        run,
        loaded,
        held_listing(plan, applied.failed, base),
        pass_in.bases,
        base,
        untracked,
        lambda: upload_plan_blobs(
            run, inputs, guard, plan, local.result, remote.remotes, pass_in.batched.ahead
        ),
    )
    plan = uploaded.plan  # re-planned without the files that changed while uploaded
    settled = remote.settled(plan, applied.failed)
    held = held_listing(plan, applied.failed, base)
    publication = await publish_if_changed(
        run, loaded, held, settled, pass_in.bases, base, untracked, draft
    )
    outcome = PassOutcome(
        local,
        applied,
        uploaded,
        publication,
        settled,
        local.targets,
        found=pass_in.found,
        halted=guard.reported,
        untracked=pass_in.changes.untracked,
        ignore_digest=pass_in.ignore.digest,
        carried=pass_in.batched.pending,
    )
    await run.trees.settle()
    await anyio.to_thread.run_sync(commit_pass, state, outcome)
    _record(summary, outcome, pass_in.batched)
    _tell(run, lambda: _changes(outcome))
    summary.finish(began, time.monotonic())
    wrote_rules = any(
        d.path == IGNORE_FILE and d.path not in applied.failed for d in plan.downloads
    )
    return summary, wrote_rules


async def _gather(run: PassRun) -> PassIn:
    """The pass's inputs: this device's own head (read only when state.sqlite may be
    behind it or the pass has something to do: `dropbeard.sync.recovery`), the other
    devices, what to scan (the whole root, or the paths asked for and those that changed
    elsewhere or were left open), the scan, and the paths to reconcile with their bases."""
    loaded = await load_last_pass(run)
    recovered = await recover_own_head(run, loaded) if head_may_be_ahead(loaded) else None
    loaded = recovered.loaded if recovered is not None else loaded
    ignore = await read_ignore(run)
    if await anyio.to_thread.run_sync(_first_sync, run.state, loaded):
        loaded = msgspec.structs.replace(loaded, pending=set(), ignore_digest=ignore.digest)
    remote, local, loaded, batched = await _read_and_scan(run, loaded, ignore)
    changes = await _reconciled(run, loaded, ignore, remote, local)
    if recovered is None and not quiet(run, loaded, remote, changes):
        recovered = await recover_own_head(run, loaded)
        if recovered.loaded != loaded:  # taken back: scan and reconcile from there
            loaded = recovered.loaded
            scope = _scope(run, loaded, ignore, remote.changed)
            local = await scan_root(run, scope, ignore.rules, ignore.problem)
            changes = await _reconciled(run, loaded, ignore, remote, local)
    bases = Bases(run.state, loaded.taken)
    remote = await remote.looked_up(run.trees, changes.paths)
    inputs = plan_inputs(run, loaded, local, remote, changes, ignore, bases)
    found = [*(recovered.problems if recovered is not None else []), *batched.problems]
    return PassIn(loaded, ignore, remote, local, bases, changes, inputs, found, batched)


def _first_sync(state: State, loaded: Loaded) -> bool:
    """True if no pass ever committed: nothing tracked, nothing published or taken back.
    Every path is then one that changed, so the pass need not reconcile them all at once
    (a full reconcile of no base is the reconcile of what changed, whatever the ignore
    rules were), and can commit them in batches (`dropbeard.sync.batches`)."""
    fresh = loaded.pending is None and loaded.last_tree is None
    return fresh and not (loaded.taken or loaded.mend_head or state.tracks_anything())


async def _read_and_scan(
    run: PassRun, loaded: Loaded, ignore: Ignore
) -> tuple[RemoteSide, LocalScan, Loaded, Done]:
    """The other devices, and the scan (with the state its batches left, and what they
    did). A scan of the whole root that keeps every item does not depend on what they
    changed, so both run at once (the first request may wait for the store's client to
    be imported and created meanwhile); a scan of some paths covers the paths they
    changed too, and a whole-root scan that compares each folder with state.sqlite keeps
    the items of those paths (and batches what they did not change), so these come after."""
    whole = _scope(run, loaded, ignore, ())
    if run.opts.only is not None or not (whole.full or loaded.taken):
        batches = _batches(run, loaded, ignore)
        limit = None if batches is None else with_slack(max(1, run.opts.batch_paths))
        remote = await read_other_devices(run, loaded, limit)
        if batches is not None and remote.oversized:
            batches.remote = remote
            await catch_up(batches, remote)
            loaded = batches.loaded
        scope = _scope(run, loaded, ignore, remote.changed)
        local, loaded, batched = await _scan(run, loaded, scope, ignore, remote, batches)
        return remote, local, loaded, batched
    read: list[RemoteSide] = []

    async def read_remote() -> None:
        read.append(await read_other_devices(run, loaded))

    with unwrapped():
        async with anyio.create_task_group() as tg:
            tg.start_soon(read_remote)
            local = await scan_root(run, whole, ignore.rules, ignore.problem)
    return read[0], local, loaded, Done()


async def _scan(
    run: PassRun,
    loaded: Loaded,
    scope: Scope,
    ignore: Ignore,
    remote: RemoteSide,
    batches: Batches | None,
) -> tuple[LocalScan, Loaded, Done]:
    """Scan the root (or the scope's targets). A whole-root scan that need not see every
    path compares each folder with state.sqlite and keeps what changed and what the other
    devices or the last pass ask for, committing new paths in `batches` as it walks (if
    the pass may batch: `_batches`): returns the scan, the state as the batches left it,
    and what they did (the other devices' batches' too: `dropbeard.sync.catchup`)."""
    rules, problem = ignore.rules, ignore.problem
    done = Done() if batches is None else batches.done
    if scope.targets is not None or scope.full or loaded.taken:
        return await scan_root(run, scope, rules, problem), loaded, done
    keep = frozenset(remote.changed | (loaded.pending or set()))
    if batches is None or run.cfg.mode not in PUBLISHES:
        return await scan_root(run, scope, rules, problem, keep), loaded, done
    batches.remote = remote
    batches.ahead = await first_sync_ahead(run, loaded, remote)

    def flush(*batch: Any) -> None:
        anyio.from_thread.run(batches.flush, *batch)

    async def scan_and_flush() -> LocalScan:
        try:
            local = await scan_root(run, scope, rules, problem, keep, flush, batches.ahead)
        except BaseExceptionGroup:
            if batches.failed is not None:  # the pass fails as it would have, not a group
                raise batches.failed from None
            raise
        await batches.flush_left(local)
        if batches.ahead is not None:
            batches.done.ahead = await batches.ahead.finish()
        return local

    if batches.ahead is None:
        local = await scan_and_flush()
    else:
        with unwrapped():
            async with anyio.create_task_group() as tg:
                tg.start_soon(batches.ahead.run)
                local = await scan_and_flush()
    return local, batches.loaded, batches.done


def _batches(run: PassRun, loaded: Loaded, ignore: Ignore) -> Batches | None:
    """The batches a pass commits before its own commit (new local paths while it walks,
    in a mode that publishes; other devices' changes when they are too many, in one that
    pulls: `dropbeard.sync.catchup`), unless dry, checked against a full reconcile,
    mending its head or holding bases taken back from it; None when it may not."""
    opts = run.opts
    if opts.dry_run or opts.check_full or loaded.mend_head or loaded.taken:
        return None  # (bases taken back from the head are the pass's alone: no batch)
    return Batches(run, loaded, ignore, RemoteSide(None), racy_after_ns(run.now))


def _scope(run: PassRun, loaded: Loaded, ignore: Ignore, elsewhere: Collection[str]) -> Scope:
    """What the pass scans, given the paths other devices changed (`elsewhere`)."""
    return choose_scope(
        forced=run.opts.full_reconcile,
        pending=loaded.pending,
        ignore_changed=ignore.digest != loaded.ignore_digest,
        only=run.opts.only,
        elsewhere=elsewhere,
    )


async def _reconciled(
    run: PassRun, loaded: Loaded, ignore: Ignore, remote: RemoteSide, local: LocalScan
) -> Changes:
    """The paths the pass reconciles, with their bases."""
    bases = Bases(run.state, loaded.taken)
    pending, rules, root = loaded.pending or set(), ignore.rules, run.paths.root
    scope = _scope(run, loaded, ignore, remote.changed)
    changed = local.changed
    return await anyio.to_thread.run_sync(
        find_changes,
        bases,
        scope,
        local.entries if changed is None else changed,
        remote.changed,
        pending,
        rules,
        lambda path: holds_something(root / path),
        None if changed is None else local.vanished,
    )


async def _guard(run: PassRun, plan: Plan, bases: Bases, local: LocalScan) -> DeleteGuard:
    """The mass-delete verdict on the pass's first plan; the tracked files are counted
    only when the verdict depends on them (a big delete, or an emptied root)."""
    root_empty = local.result.root_empty
    tracked = 0
    if counts_tracked(plan, root_empty=root_empty):
        tracked = await anyio.to_thread.run_sync(bases.tracked_files)
    return guard_deletes(plan, tracked, root_empty=root_empty, allow=run.opts.allow_mass_delete)


def _changes(outcome: PassOutcome) -> list[PathChange]:
    published = outcome.publication.published is not None
    return path_changes(
        outcome.plan,
        failed=outcome.applied.failed,
        published=published,
        problems=outcome.problems,
    )


def _tell(run: PassRun, changes: Callable[[], list[PathChange]]) -> None:
    """Hand each changed path to the caller's `on_change` (listed only if there is one),
    and end the meter's stages."""
    if run.opts.meter is not None:
        run.opts.meter.end()
    if run.opts.on_change is not None:
        for change in changes():
            run.opts.on_change(change)


def _meter_downloads(run: PassRun, plan: Plan, local: LocalScan) -> None:
    """Tell the meter what apply will fetch: each blob once, none whose bytes are on disk."""
    meter = run.opts.meter
    if meter is None:
        return
    on_disk = {i.sha256 for i in local.result.items.values() if i.sha256}
    on_disk |= {c.sha256 for i in local.result.items.values() for c in i.chunks or ()}
    wanted = fetches(plan, on_disk)
    meter.name_blobs(wanted)
    meter.begin("downloading", len(wanted), sum(size for _, _, size in wanted))


def _planned(
    run: PassRun,
    local: LocalScan,
    remote: RemoteSide,
    guard: DeleteGuard,
    plan: Plan,
    found: list[Problem],
) -> Summary:
    """The summary as far as the plan goes: all a dry run reports (`found`: the problems
    of the steps before the scan)."""
    scanned = local.result
    summary = Summary(
        root=str(run.paths.root),
        root_id=run.cfg.root_id,
        device_id=run.cfg.device_id,
        mode=run.cfg.mode,
        dry_run=run.opts.dry_run,
        scanned=scanned.scanned,
        hashed=scanned.hashed_files,
        hashed_bytes=scanned.hashed_bytes,
        halted=guard.reported,
        problems=len(found) + len(scanned.problems) + len(remote.problems) + len(plan.problems),
    )
    summary.count_plan(plan)
    return summary


def _record(summary: Summary, outcome: PassOutcome, batched: Done) -> None:
    """Add what the pass did to its summary, with what its batches did."""
    applied, uploaded, publication = outcome.applied, outcome.uploaded, outcome.publication
    summary.downloaded = applied.downloaded + batched.downloaded
    summary.downloaded_bytes = applied.downloaded_bytes + batched.downloaded_bytes
    summary.deleted_local = applied.deleted
    written = [c for c in outcome.plan.conflict_copies if c.path not in applied.failed]
    summary.conflict_copies = len(written) + batched.conflict_copies
    summary.planned_downloads += batched.planned_downloads
    summary.planned_uploads += batched.planned_uploads
    summary.planned_conflict_copies += batched.conflict_copies
    summary.uploaded = uploaded.uploaded + batched.uploaded
    summary.uploaded_bytes = uploaded.uploaded_bytes + batched.uploaded_bytes
    summary.skipped_existing = uploaded.skipped_existing + batched.skipped_existing
    summary.snapshot = batched.snapshot
    if publication.published is not None:
        summary.snapshot = publication.published.snapshot
        summary.tombstones = publication.tombstones
    summary.problems = len(outcome.problems)
    summary.conflicts = len(outcome.plan.conflicts)
