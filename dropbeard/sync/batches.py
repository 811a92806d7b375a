"""New local paths committed in batches while a whole-root scan is still walking, so a
first sync of a million files holds a batch of them at a time, not the whole root (IO:
composes the steps of a pass over the batch: reconcile, guard, apply, upload, publish,
commit).

A batch is what a pass over exactly those paths would do: its new files and symlinks,
with the folders above them, reconciled against their bases and the other devices'
entries of them, their blobs uploaded, this device's tree updated with them and
published, and state.sqlite committed. Only paths with no base go in a batch: edits,
deletes (the mass-delete guard counts them all at once), other devices' changes and
tombstones, and the paths the last pass left open are for the pass itself, once the walk
is over. Every batch is a pass that committed, so a crash between two leaves a
consistent index and a published tree listing what it committed (SPEC 4: an absence is
never a delete, so other devices only see the folder arrive in steps).
"""

from __future__ import annotations

import anyio
import msgspec

from dropbeard.core.passrules import PlanInputs, held_listing, local_entries, without_ignored
from dropbeard.core.problems import Problem
from dropbeard.core.safety import counts_tracked, guard_deletes
from dropbeard.core.scope import with_folders
from dropbeard.sync.ahead import Ahead, Sent
from dropbeard.sync.bases import Bases
from dropbeard.sync.commit import PassOutcome, commit_pass
from dropbeard.sync.folderrows import Cached
from dropbeard.sync.inputs import Ignore, Loaded, RemoteSide, reload_last_pass
from dropbeard.sync.localscan import LocalScan, apply_to_folder, holds_something, scan_root
from dropbeard.sync.passrun import PassRun
from dropbeard.sync.passscope import Changes, Scope, find_changes
from dropbeard.sync.publication import upload_plan_blobs
from dropbeard.sync.scan import LocalItem, ScanResult
from dropbeard.sync.treepublish import publish_if_changed, while_drafting


class Done(msgspec.Struct):
    """What the batches of one pass did, for its summary and its own commit: counts, the
    paths they left open (`pending`) and the problems they found."""

    batches: int = 0
    paths: int = 0
    uploaded: int = 0
    uploaded_bytes: int = 0
    skipped_existing: int = 0
    downloaded: int = 0
    downloaded_bytes: int = 0
    conflict_copies: int = 0
    #: what the batches' plans intended (a batch deletes nothing and writes no tombstone)
    planned_downloads: int = 0
    planned_uploads: int = 0
    snapshot: str | None = None
    #: the blobs sent while the scan hashed (`sync.ahead`), for the pass's own upload
    ahead: Sent | None = None
    pending: set[str] = msgspec.field(default_factory=set)
    problems: list[Problem] = msgspec.field(default_factory=list)


class Batches:
    """The batches of one pass (see the module docstring): `loaded` is what the last one
    committed, for the next one and for the pass itself."""

    def __init__(
        self, run: PassRun, loaded: Loaded, ignore: Ignore, remote: RemoteSide, racy: int
    ) -> None:
        self.run = run
        self.loaded = loaded
        self.ignore = ignore
        self.remote = remote
        self.racy = racy
        self.bases = Bases(run.state)
        self.done = Done()
        #: sends a first sync's small files while the scan hashes (`engine._scan`)
        self.ahead: Ahead | None = None
        #: why a batch failed (the pass then fails with it, after the scan stopped)
        self.failed: Exception | None = None

    async def flush(
        self,
        batch: dict[str, LocalItem],
        folders: dict[str, LocalItem],
        cached: dict[str, Cached],
    ) -> None:
        """Reconcile, apply, upload, publish and commit `batch` (new paths on disk, with
        the `folders` above them and their stat-cache rows `cached`)."""
        try:
            await self._flush(batch, folders, cached)
        except Exception as exc:
            self.failed = exc
            raise

    async def _flush(
        self,
        batch: dict[str, LocalItem],
        folders: dict[str, LocalItem],
        cached: dict[str, Cached],
    ) -> None:
        items = {**folders, **batch}
        local = LocalScan(
            ScanResult(items, [], set(), True, 0, 0, 0),
            local_entries(items),
            {p: (k.size, k.mtime_ns, k.inode, k.ctime_ns, s, c) for p, (k, s, c) in cached.items()},
            self.racy,
            frozenset(items),
        )
        await self._carry_out(
            local, (), [], msgspec.structs.replace(self.remote, changed=set()), len(batch)
        )

    async def flush_left(self, local: LocalScan) -> None:
        """Commit in batches the new paths the scan found after its last batch (those the
        hash threads still held when the walk ended: up to about three batches' worth),
        taking them out of `local`, so the pass itself reconciles no more than a batch:
        if there are a batch of them or more, all of them, a batch at a time (fewer are
        left to the pass)."""
        compared, items = local.result.compared, local.result.items
        bound = max(1, self.run.opts.batch_paths)
        assert compared is not None
        new = [p for p, item in items.items() if item.type != "dir" and compared.new(p)]
        if len(new) < bound:
            return
        for start in range(0, len(new), bound):
            batch = {p: items.pop(p) for p in new[start : start + bound]}
            for path in batch:
                local.entries.pop(path, None)
                local.cache.pop(path, None)
            folders = {f: items[f] for f in with_folders(batch) if f in items}
            cached = {p: compared.cached.pop(p) for p in batch if p in compared.cached}
            await self.flush(batch, folders, cached)

    async def flush_remote(self, side: RemoteSide, paths: frozenset[str]) -> None:
        """Reconcile, apply, publish and commit `paths`, some of what other devices
        changed (`side` holds their entries of them: `dropbeard.sync.catchup`), with what
        the folder holds at exactly those paths."""
        run, ignore = self.run, self.ignore
        scanned = await scan_root(run, Scope(False, paths), ignore.rules, ignore.problem)
        local = _at(scanned, paths)
        vanished = [p for p in paths if p not in local.entries]
        try:
            await self._carry_out(local, paths, vanished, side, len(paths))
        except Exception as exc:
            self.failed = exc
            raise

    async def _carry_out(
        self,
        local: LocalScan,
        elsewhere: frozenset[str] | tuple[()],
        vanished: list[str],
        side: RemoteSide,
        paths: int,
    ) -> None:
        """One batch from reconcile to commit: `local` the folder at its paths (the
        tracked ones of them it did not find are `vanished`: only the bases of its paths
        are read, never what is below a folder among them), `elsewhere` the paths other
        devices changed (`side` their entries)."""
        run = self.run
        inputs, changes, remote = await self._inputs(local, elsewhere, vanished, side)
        plan = await anyio.to_thread.run_sync(inputs.plan, local.result.unreadable)
        tracked = 0
        if counts_tracked(plan, root_empty=False):
            tracked = await anyio.to_thread.run_sync(self.bases.tracked_files)
        guard = guard_deletes(plan, tracked, root_empty=False, allow=run.opts.allow_mass_delete)
        plan = guard.applied_to(plan)
        applied = await apply_to_folder(run, plan, local)
        sent = None if self.ahead is None else await self.ahead.finish()
        uploaded, draft = await while_drafting(  # the tree's nodes go up with the blobs
            run,
            self.loaded,
            held_listing(plan, applied.failed, changes.base),
            self.bases,
            changes.base,
            [],
            lambda: upload_plan_blobs(run, inputs, guard, plan, local.result, remote.remotes, sent),
        )
        held = held_listing(uploaded.plan, applied.failed, changes.base)
        publication = await publish_if_changed(
            run, self.loaded, held, None, self.bases, changes.base, [], draft
        )
        outcome = PassOutcome(
            local,
            applied,
            uploaded,
            publication,
            None,
            local.targets,
            halted=guard.reported,
            ignore_digest=self.ignore.digest,  # the rules its paths were reconciled with
            carried=self.done.pending,
        )
        await anyio.to_thread.run_sync(commit_pass, run.state, outcome)
        fresh = await anyio.to_thread.run_sync(reload_last_pass, run.state)
        self.loaded = _published(self.loaded, fresh)
        self._count(outcome, paths)

    async def _inputs(
        self,
        local: LocalScan,
        elsewhere: frozenset[str] | tuple[()],
        vanished: list[str],
        side: RemoteSide,
    ) -> tuple[PlanInputs, Changes, RemoteSide]:
        """Reconcile's inputs for a batch (`local`): its changed paths and their bases,
        the other devices' entries of them (their new tombstones are for the pass)."""
        run, rules, root = self.run, self.ignore.rules, self.run.paths.root
        assert local.targets is not None
        changes = await anyio.to_thread.run_sync(
            find_changes,
            self.bases,
            Scope(False, local.targets),
            local.entries,
            elsewhere,
            (),
            rules,
            lambda path: holds_something(root / path),
            vanished,
        )
        remote = await side.looked_up(run.trees, changes.paths)
        remotes, _ = without_ignored(remote.remotes, [], rules)
        inputs = PlanInputs(
            device_id=run.cfg.device_id,
            mode=run.cfg.mode,
            base=changes.base,
            local=changes.local(local.entries),
            remotes=remotes,
            tombstones=[],
            counter=self.loaded.counter,
            now=run.now,
            only=local.targets,
            paths=changes.paths,
            base_below=self.bases.below,
        )
        return inputs, changes, remote

    def _count(self, outcome: PassOutcome, paths: int) -> None:
        done, applied, uploaded = self.done, outcome.applied, outcome.uploaded
        done.batches += 1
        done.paths += paths
        done.uploaded += uploaded.uploaded
        done.uploaded_bytes += uploaded.uploaded_bytes
        done.skipped_existing += uploaded.skipped_existing
        done.downloaded += applied.downloaded
        done.downloaded_bytes += applied.downloaded_bytes
        done.conflict_copies += len(outcome.plan.conflict_copies)
        done.planned_downloads += len(outcome.plan.downloads)
        done.planned_uploads += len(outcome.plan.uploads)
        if outcome.publication.published is not None:
            done.snapshot = outcome.publication.published.snapshot
        done.pending = outcome.pending
        done.problems += outcome.problems


def _at(scanned: LocalScan, paths: frozenset[str]) -> LocalScan:
    """`scanned` (a scan of `paths`, which covers what is below the folders among them)
    at exactly `paths`: a batch of other devices' changes reconciles those alone."""
    result = scanned.result
    if all(p in paths for p in result.items):
        return scanned
    items = {p: i for p, i in result.items.items() if p in paths}
    kept = msgspec.structs.replace(result, items=items)
    entries = {p: e for p, e in scanned.entries.items() if p in paths}
    cache = {p: r for p, r in scanned.cache.items() if p in paths}
    return msgspec.structs.replace(scanned, result=kept, entries=entries, cache=cache)


def _published(loaded: Loaded, fresh: Loaded) -> Loaded:
    """`loaded` (as the pass began: its peers, ignore rules and open paths) with what a
    batch committed of this device's own publishing (`fresh`): ids, last tree and head."""
    return msgspec.structs.replace(
        loaded,
        counter=fresh.counter,
        tombstone_seq=fresh.tombstone_seq,
        last_snapshot=fresh.last_snapshot,
        last_tree=fresh.last_tree,
        last_files=fresh.last_files,
        last_bytes=fresh.last_bytes,
        head_etag=fresh.head_etag,
        seq_floor=fresh.seq_floor,
        snapshot_floor=fresh.snapshot_floor,
        head_seen=fresh.head_seen,
        head_written_at=fresh.head_written_at,
    )
