"""The inputs and output of `reconcile`: per-path base state, remotes, and the Plan (pure).

A `Plan` holds everything the engine must do after one reconciliation, already decided
and ordered: it never has to compare versions itself.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Literal

import msgspec

from dropbeard.core.model import Delete, Entry
from dropbeard.core.problems import Problem

Mode = Literal["bidirectional", "upload-only", "download-only", "archive-only"]

PULLS: frozenset[str] = frozenset({"bidirectional", "download-only", "archive-only"})
"""Modes that read other devices' trees and tombstones."""

PUBLISHES: frozenset[str] = frozenset({"bidirectional", "upload-only"})
"""Modes that publish a tree, blobs and tombstones."""

DELETES_LOCALLY: frozenset[str] = frozenset({"bidirectional", "download-only"})
"""Modes in which a winning remote delete removes the local file."""


class ConflictInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A path in conflict on this device (SPEC 4.4).

    `version` merges every version involved (and any that arrived while the conflict was
    open); `copies` are the conflict-copy paths written for it; `clashes` the devices whose
    version is a directory, which is not copied (type clash, reported as a problem every
    pass); `local` the content the path held when the conflict began, to tell "unchanged
    since the conflict". `since` is when this device found the conflict.
    """

    version: dict[str, int]
    copies: list[str] = []
    clashes: list[str] = []
    local: Entry | None = None
    since: datetime | None = None


class Base(msgspec.Struct, frozen=True, kw_only=True):
    """What this device last agreed on for one path (persisted by the engine).

    `entry` is the content and version vector; None when the agreed state is "deleted",
    in which case `deleted` keeps the tombstone so a stale remote entry it dominates cannot
    resurrect the file. While `conflict` is set the path is left out of the tree and
    `entry` is the content the path held when the conflict began. `refused` is a delete
    that dominates `entry` but names other bytes than the file (`core.refusals`): the file
    is kept, and the delete is reported every pass until the file changes or goes.
    """

    entry: Entry | None = None
    deleted: Delete | None = None
    conflict: ConflictInfo | None = None
    refused: Delete | None = None


def publishable(base: Base | None) -> Entry | None:
    """What this device's published listing holds for a path whose base is `base`: its
    entry when agreed (not deleted, not in conflict), else nothing. A folder in conflict
    (kept against a file or symlink that was to replace it) is listed as it was when the
    conflict began: a tree lists what the folder holds only under it, and what it holds
    still syncs (SPEC 4.4 leaves the conflicting path out; its folder entry is the
    version this device held, which the other side's replaced or clashes with)."""
    if base is None or base.entry is None:
        return None
    if base.conflict is not None and base.entry.type != "dir":
        return None
    return base.entry


class Remote(msgspec.Struct, frozen=True):
    """One other active device: the entries of its latest tree (those a pass looked up),
    and its snapshot id (`YYYYMMDDTHHMMSSZ`, used to name conflict copies of its
    versions). `held_before`: for paths its unprocessed tombstones delete, what the tree of
    it this device last processed held there (what this device saw it hold before it
    deleted them)."""

    device_id: str
    snapshot: str
    entries: Mapping[str, Entry]
    held_before: Mapping[str, Entry] = msgspec.field(default_factory=dict)


class Download(msgspec.Struct, frozen=True, kw_only=True):
    """Make the local `path` equal `entry`: a file from blob `sha256`, a symlink to
    `target`, or a directory (mkdir / chmod). Set mode and mtime from the entry."""

    path: str
    entry: Entry


class ConflictCopy(msgspec.Struct, frozen=True, kw_only=True):
    """Write `device_id`'s version `entry` of `path` beside it at `copy_path` (file or
    symlink; never a directory). Never uploaded, never tracked."""

    path: str
    copy_path: str
    device_id: str
    entry: Entry


class LocalDelete(msgspec.Struct, frozen=True, kw_only=True):
    """Remove the local `path`, but only if it still holds `expected` (re-stat first).
    A directory is removed only if it is empty once its tracked children are gone."""

    path: str
    expected: Entry


class Conflict(msgspec.Struct, frozen=True, kw_only=True):
    """A conflict this pass found, for reporting. `copy_path` is None when the other
    version is a directory (type clash: not copied)."""

    path: str
    device_id: str
    copy_path: str | None


class Removal(msgspec.Struct, frozen=True, kw_only=True):
    """A tracked path found missing locally whose deletion this plan records (and
    tombstones, in publishing modes), or a tracked folder this device replaced with a file
    or symlink. `previous` is its base before the pass and `published` the tree entry
    it had, so the safety guard can undo the removal."""

    path: str
    previous: Base
    published: Entry | None


class Plan(msgspec.Struct, kw_only=True):
    """The result of one reconciliation.

    Apply `local_deletes` (deepest first: children before their directory), `downloads`
    (sorted by path: parents before children) and `conflict_copies`; upload the blobs of
    `uploads`; publish `tombstones` then the listing (publishing modes only: `publishes`);
    then commit `base` (only changed paths) and `counter`.

    `listing` is what this device's published listing gains, loses or updates: path ->
    its entry, or None to leave the path out. The listing to publish is the last
    published one with these changes applied (`listed`); when `complete` (a full
    reconcile, which names every path it lists) it is `listing` alone.

    A path whose download, copy or delete failed must keep its old base so the next pass
    retries it. `deferred_tombstones` were offered for paths whose local state was
    unknown: offer them again next pass. `removals` lists the local deletes behind
    `tombstones` and deleted bases (for the mass-delete guard in `dropbeard.core.safety`).
    `unsettled` are the paths the plan leaves open (a conflict, a refused delete, a
    problem, an arrival it could not place or see): the next pass decides them again.
    """

    publishes: bool
    downloads: list[Download] = []
    conflict_copies: list[ConflictCopy] = []
    local_deletes: list[LocalDelete] = []
    uploads: list[Entry] = []
    listing: dict[str, Entry | None] = {}
    complete: bool = False
    tombstones: list[Delete] = []
    base: dict[str, Base] = {}
    conflicts: list[Conflict] = []
    problems: list[Problem] = []
    removals: list[Removal] = []
    deferred_tombstones: list[tuple[str, Delete]] = []
    unsettled: set[str] = set()
    counter: int = 0

    def listed(self, previous: Mapping[str, Entry] | None = None) -> list[Entry]:
        """The listing to publish, sorted by path: `previous` (the last published one, by
        path) with `listing` applied; `listing` alone when the plan is `complete`."""
        merged = {} if self.complete or previous is None else dict(previous)
        for path, entry in self.listing.items():
            if entry is None:
                merged.pop(path, None)
            else:
                merged[path] = entry
        return [merged[p] for p in sorted(merged)]
