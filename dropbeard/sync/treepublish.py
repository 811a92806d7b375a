"""Publishing this device's listing (SPEC 4 step 7): the tree it published last with the
pass's changes applied — only the nodes on their paths rebuilt and uploaded — then its
tombstones, snapshot and head, when anything changed; else, when its seen-marks moved,
its head alone, at most every 10 minutes (`core.heads`; a device that publishes nothing
writes such a head only) (IO: tree nodes, store, state.sqlite through `Bases`).

A first publish builds the tree folder by folder (`treewrite.build`). So does a publish
whose last tree cannot be read any more (its nodes gone from the bucket and the cache, or
damaged): it is built again from what the agreed bases publish, which is the same listing.

`while_drafting` writes the nodes of the tree a plan would publish while its blobs are
uploaded (nodes are content-addressed and no head names them yet, so writing them early
is safe): the publish that follows finds its tree written, and writes only the tombstones,
the snapshot and the head. If the upload re-planned, the tree is updated again from the
new plan (the nodes the draft wrote and the new tree shares are not written twice; the
others are left for gc, as an interrupted publish leaves them).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator, Mapping
from datetime import datetime
from typing import TypeVar

import anyio
import msgspec

from dropbeard.core.errors import FormatError, IntegrityError, NotFound
from dropbeard.core.heads import head_due, seen_marks
from dropbeard.core.model import Entry, Head, SeenMark, encode
from dropbeard.core.plan import Base, Plan
from dropbeard.core.problems import Problem
from dropbeard.core.timestamps import utc_iso
from dropbeard.core.tree import TreeEntry
from dropbeard.core.treechanges import TreeChanges, tree_changes
from dropbeard.core.treediff import to_entry, to_tree_entry, tree_order
from dropbeard.sync.bases import Bases
from dropbeard.sync.inputs import Loaded
from dropbeard.sync.passrun import PassRun
from dropbeard.sync.publish import Listing, Published, Reservation, publish
from dropbeard.sync.remote import RemoteRead
from dropbeard.sync.treeread import walk
from dropbeard.sync.treewrite import build, update
from dropbeard.sync.workers import first_error

T = TypeVar("T")
#: This device's own tree failed to read: rebuilt from the local index instead.
_OWN_TREE_FAILED = (FormatError, IntegrityError, NotFound, ValueError)


class HeadWritten(msgspec.Struct, frozen=True):
    """A head this pass wrote: its etag, its seen-marks, when."""

    etag: str
    seen: dict[str, SeenMark]
    at: datetime


class Publication(msgspec.Struct, frozen=True):
    """The publish step's outcome: `published` is None when no snapshot was written (a
    mode that does not publish, or an idle pass), `head` the head written (with a
    snapshot, or alone); `problems` what it found (paths it could not list, its own last
    tree unreadable)."""

    published: Published | None
    tombstones: int = 0
    problems: list[Problem] = msgspec.field(default_factory=list)
    head: HeadWritten | None = None


class TreeDraft(msgspec.Struct, frozen=True):
    """A tree written ahead of its publish: `last` with `changes` applied is `root`; for
    a first publish (`last` None), the tree built from the whole listing, whose counts
    are `built`."""

    last: str | None
    changes: dict[str, TreeEntry | None]
    root: str
    built: Listing | None = None


async def while_drafting(
    run: PassRun,
    loaded: Loaded,
    plan: Plan,
    bases: Bases,
    base: Mapping[str, Base],
    untracked: list[str],
    upload: Callable[[], Awaitable[T]],
) -> tuple[T, TreeDraft | None]:
    """Await `upload()` while the nodes of the tree `plan` would publish (the last tree
    updated, or on a first publish the whole listing built: see `publish_if_changed`) are
    written; its result, and that tree (None when nothing was drafted: a plan listing
    every path, a head to mend, or a last tree that cannot be read, which
    `publish_if_changed` then reports)."""
    drafts: list[TreeDraft | None] = []

    async def draft() -> None:
        drafts.append(await _draft(run, loaded, plan, bases, base, untracked))

    with first_error():
        async with anyio.create_task_group() as tg:
            tg.start_soon(draft)
            result = await upload()
    return result, drafts[0]


async def _draft(
    run: PassRun,
    loaded: Loaded,
    plan: Plan,
    bases: Bases,
    base: Mapping[str, Base],
    untracked: list[str],
) -> TreeDraft | None:
    last = loaded.last_tree
    if not plan.publishes or loaded.mend_head:
        return None
    if last is None:  # a first publish: the whole tree, built while the blobs go up
        whole = await anyio.to_thread.run_sync(_changes, plan, bases, base, untracked, None)
        entries = await anyio.to_thread.run_sync(whole.tree_entries)
        built = await _built(run, bases, whole)
        return TreeDraft(None, entries, built.tree, built)
    if not (plan.listing or untracked):
        return None  # nothing listed or unlisted: an idle pass changes no tree
    if plan.complete:
        return None  # every path listed: the changes cost as much as the publish's own

    def changes() -> dict[str, TreeEntry | None]:
        return _changes(plan, bases, base, untracked, None).tree_entries()

    found = await anyio.to_thread.run_sync(changes)
    if not found:
        return None
    try:
        root = await update(run.trees, last, found)
    except _OWN_TREE_FAILED:
        return None  # the publish reads it again, and says why it cannot
    return TreeDraft(last, found, root)


def _changes(
    plan: Plan,
    bases: Bases,
    base: Mapping[str, Base],
    untracked: list[str],
    previous: Mapping[str, Entry] | None,
) -> TreeChanges:
    gone = bases.of(untracked) if untracked else None
    return tree_changes(plan, base, gone, previous)


async def publish_if_changed(
    run: PassRun,
    loaded: Loaded,
    plan: Plan,
    settled: RemoteRead | None,
    bases: Bases,
    base: Mapping[str, Base],
    untracked: list[str],
    draft: TreeDraft | None = None,
) -> Publication:
    """Publish the tree of what this device really holds (`plan`'s listing, with every
    path that failed as its base says: `core.passrules.held_listing`) and the plan's
    tombstones, with seen-marks for the settled devices, if the tree or the tombstones
    changed. `base` holds the bases of the plan's paths before the pass (every base for a
    full reconcile); `untracked` the paths no longer tracked, which leave the tree;
    `draft` the tree `while_drafting` wrote, used if it is the one to publish."""
    heads = {} if settled is None else settled.devices
    seen = seen_marks(loaded.peers, heads)
    if not plan.publishes:
        return await _head_alone(run, loaded, seen, [])

    problems: list[Problem] = []
    last, previous = loaded.last_tree, None
    if plan.complete and last is not None and (loaded.taken_back or run.opts.full_reconcile):
        # the bases may not publish what the last tree lists: against the tree itself
        previous = await _last_listing(run, last, problems)
        last = None if previous is None else last

    found = await anyio.to_thread.run_sync(_changes, plan, bases, base, untracked, previous)
    problems += [_unlisted(path) for path in found.orphans]
    first = last is None or loaded.mend_head
    if not (found.changes or plan.tombstones or first):
        return await _head_alone(run, loaded, seen, problems)
    listing = await _new_listing(run, last, loaded, found, bases, problems, draft)
    if listing.tree == loaded.last_tree and not (plan.tombstones or loaded.mend_head):
        return await _head_alone(run, loaded, seen, problems)

    async def reserve(ids: Reservation) -> None:
        await anyio.to_thread.run_sync(
            run.state.reserve, ids.counter, ids.tombstone_seq, ids.snapshot
        )

    published = await publish(
        run.store,
        run.keys,
        device_id=run.cfg.device_id,
        listing=listing,
        tombstones=plan.tombstones,
        last=loaded.last_ids,
        seen=seen,
        now=run.now,
        counter=plan.counter,
        reserve=reserve,
    )
    head = HeadWritten(published.head_etag, seen, run.now)
    return Publication(published, len(plan.tombstones), problems, head)


async def _last_listing(
    run: PassRun, last: str, problems: list[Problem]
) -> dict[str, Entry] | None:
    """Every entry of this device's last tree `last`; None (and a problem) if it cannot be
    read any more, so that the tree is built anew."""
    try:
        return {p: to_entry(p, e) async for p, e in walk(run.trees, last)}
    except _OWN_TREE_FAILED as exc:
        problems.append(_own_tree_unreadable(run.keys.tree(last), exc))
        return None


async def _head_alone(
    run: PassRun, loaded: Loaded, seen: dict[str, SeenMark], problems: list[Problem]
) -> Publication:
    """No snapshot to publish: the head alone, if its seen-marks are due (or it must be
    mended), naming the last snapshot and tree (None for a device that publishes none)."""
    due = head_due(seen, loaded.head_seen, loaded.head_written_at, run.now)
    if not (due or loaded.mend_head):
        return Publication(None, problems=problems)
    head = Head(
        device_id=run.cfg.device_id,
        snapshot=loaded.last_snapshot,
        tree=loaded.last_tree,
        published_at=utc_iso(run.now),
        tombstone_seq=loaded.tombstone_seq,
        seen=seen,
    )
    etag = await run.store.put(run.keys.head(run.cfg.device_id), encode(head))
    return Publication(None, problems=problems, head=HeadWritten(etag, seen, run.now))


async def _new_listing(
    run: PassRun,
    last: str | None,
    loaded: Loaded,
    found: TreeChanges,
    bases: Bases,
    problems: list[Problem],
    draft: TreeDraft | None,
) -> Listing:
    """The new tree, in the bucket, and what it holds: the last one (`last`) updated (the
    `draft`, if it made the same changes to it), or (first publish, or the last one
    unreadable) one built from the whole listing (the `draft`'s, on a first publish whose
    changes it drafted)."""
    if last is not None:
        try:
            changes = await anyio.to_thread.run_sync(found.tree_entries)
            if draft is not None and draft.last == last and draft.changes == changes:
                tree = draft.root
            else:
                tree = await update(run.trees, last, changes)
        except _OWN_TREE_FAILED as exc:
            problems.append(_own_tree_unreadable(run.keys.tree(last), exc))
        else:
            if loaded.last_files is None or loaded.last_bytes is None:
                return await _counted(run, tree)
            return Listing(tree, loaded.last_files + found.files, loaded.last_bytes + found.bytes)
    first = None if draft is None or draft.built is None or loaded.last_tree else draft
    if first is not None and first.changes == await anyio.to_thread.run_sync(found.tree_entries):
        assert first.built is not None
        return first.built
    return await _built(run, bases, found)


async def _built(run: PassRun, bases: Bases, found: TreeChanges) -> Listing:
    """The tree of the whole listing (the agreed bases with `found` applied), built."""
    ordered = await anyio.to_thread.run_sync(_whole_listing, bases, found)
    tree = await build(run.trees, _under_folders(ordered))
    files = [e for _, e in ordered if e.type == "file"]
    return Listing(tree, len(files), sum(e.size or 0 for e in files))


async def _counted(run: PassRun, tree: str) -> Listing:
    """`tree` with its files counted (once, when the count was not known: recovery)."""
    files = size = 0
    async for _, entry in walk(run.trees, tree):
        if entry.type == "file":
            files += 1
            size += entry.size or 0
    return Listing(tree, files, size)


def _whole_listing(bases: Bases, found: TreeChanges) -> list[tuple[str, Entry]]:
    """Every (path, entry) the new tree lists, in tree order: what the agreed bases
    publish with the changes applied."""
    listed = bases.listing()
    for path, (_, new) in found.changes.items():
        if new is None:
            listed.pop(path, None)
        else:
            listed[path] = new
    ordered = sorted(listed.items(), key=lambda item: tree_order(item[0]))
    listed.clear()
    return ordered


def _under_folders(ordered: list[tuple[str, Entry]]) -> Iterator[tuple[str, TreeEntry]]:
    """The entries of `ordered` (tree order) whose every folder is listed as a folder,
    as tree entries, made one at a time while the tree is built (not all at once)."""
    folders: set[str] = set()
    for path, entry in ordered:
        parent = path.rpartition("/")[0]
        if parent and parent not in folders:
            continue
        if entry.type == "dir":
            folders.add(path)
        yield path, to_tree_entry(entry)


def _unlisted(path: str) -> Problem:
    return Problem(
        path=path,
        kind="unlisted",
        message=f"{path} is not published: this device does not list its folder as one",
    )


def _own_tree_unreadable(key: str, exc: Exception) -> Problem:
    return Problem(
        path=key,
        kind="integrity",
        message=f"this device's last tree cannot be read ({exc}); published it anew",
    )
