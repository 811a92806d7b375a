"""The paths one pass changed, as a person is told of them — `uploaded`, `downloaded`,
`deleted`, `conflict`, `problem` — read off its plan, and what it will fetch, for its
progress (pure).

`sync -v` prints them, `sync --dry-run` lists them as planned, the daemon logs one event
each. They cost what the pass changed: nothing is listed for an unchanged path.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from typing import Literal

import msgspec

from dropbeard.core.plan import Plan
from dropbeard.core.problems import Problem

ChangeEvent = Literal["uploaded", "downloaded", "deleted", "conflict", "problem"]


class PathChange(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One changed path. `type` is file, dir or symlink (None for a conflict or a problem,
    whatever the path holds); `bytes` a file's size; `where`
    tells a `deleted` path removed here (another device deleted it: "here") from one
    deleted here whose delete was published ("everywhere"); `detail` is a conflict's copy
    (or why there is none) or a problem's message."""

    event: ChangeEvent
    path: str
    type: str | None = None
    bytes: int = 0
    where: str | None = None
    detail: str | None = None


def path_changes(
    plan: Plan,
    *,
    failed: Collection[str] = (),
    published: bool,
    problems: Iterable[Problem] = (),
) -> list[PathChange]:
    """What `plan` changed, without the paths that `failed` to apply (they keep their
    state and show up again next pass). `published`: its uploads and deletes went out (a
    dry run passes whether they would)."""
    out: list[PathChange] = []
    if published:
        out += [
            PathChange(event="uploaded", path=e.path, type=e.type, bytes=e.size or 0)
            for e in plan.uploads
        ]
    out += [
        PathChange(event="downloaded", path=d.path, type=d.entry.type, bytes=d.entry.size or 0)
        for d in plan.downloads
        if d.path not in failed
    ]
    out += [
        PathChange(event="deleted", path=d.path, type=d.expected.type, where="here")
        for d in plan.local_deletes
        if d.path not in failed
    ]
    if published:
        out += [
            PathChange(event="deleted", path=t.path, type=t.type, where="everywhere")
            for t in plan.tombstones
        ]
    out += [
        PathChange(
            event="conflict",
            path=c.path,
            detail=c.copy_path or f"{c.device_id}'s version is a folder: not copied",
        )
        for c in plan.conflicts
    ]
    out += [PathChange(event="problem", path=p.path, detail=p.message) for p in problems]
    return out


def fetches(plan: Plan, on_disk: Collection[str]) -> list[tuple[str, str, int]]:
    """The blobs applying `plan` will download, as (sha256, path, size): each blob once
    (the first path that needs it), none whose bytes are already `on_disk` (copied
    locally), for files and conflict copies; a file stored in chunks as the chunks it
    needs (`on_disk` names the chunks local files hold too)."""
    wanted: dict[str, tuple[str, str, int]] = {}
    files: set[str] = set()  # a file's second path is copied from its first
    entries = [(d.path, d.entry) for d in plan.downloads]
    entries += [(c.copy_path, c.entry) for c in plan.conflict_copies]
    for path, entry in entries:
        sha = entry.sha256
        if entry.type != "file" or not sha or sha in on_disk or sha in files:
            continue
        files.add(sha)
        blobs = [(c.sha256, c.size) for c in entry.chunks or ()] or [(sha, entry.size or 0)]
        for blob, size in blobs:
            if blob not in on_disk and blob not in wanted:
                wanted[blob] = (blob, path, size)
    return list(wanted.values())
