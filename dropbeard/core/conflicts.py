"""SPEC 4.4 conflicts (pure): what counts as the same content, keeping concurrent contents
as conflict copies beside a path, and whether a conflict ends this pass or stays open."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import datetime
from typing import Literal

import msgspec

from dropbeard.core.conflictname import conflict_name
from dropbeard.core.model import Delete, Entry
from dropbeard.core.plan import Conflict, ConflictCopy, ConflictInfo
from dropbeard.core.problems import Problem
from dropbeard.core.version import dominates, merge

Ending = Literal["elsewhere", "here"]


def same_content(a: Entry, b: Entry) -> bool:
    """True if `a` and `b` hold the same content: type, mode, and the file's sha256 or the
    symlink's target. Size follows from sha256; mtime and version are not content."""
    if a.type != b.type or a.mode != b.mode:
        return False
    if a.type == "file":
        return a.sha256 == b.sha256
    if a.type == "symlink":
        return a.target == b.target
    return True


class Rival(msgspec.Struct, frozen=True):
    """Another device's content of a path, concurrent with the one kept at the path, from
    that device's snapshot `snapshot` (which names the copy)."""

    device_id: str
    snapshot: str
    entry: Entry


class Kept(msgspec.Struct):
    """What keeping rivals beside a path asks of this pass: the copies to write, and the
    conflicts and problems to report."""

    copies: list[ConflictCopy] = msgspec.field(default_factory=list)
    conflicts: list[Conflict] = msgspec.field(default_factory=list)
    problems: list[Problem] = msgspec.field(default_factory=list)


def opened(
    path: str,
    local: Entry,
    rivals: Sequence[Rival],
    version: dict[str, int],
    now: datetime,
    on_disk: Mapping[str, Entry],
) -> tuple[ConflictInfo, Kept]:
    """A new conflict at `path`: `local` stays at the path and every rival (one per other
    content) is kept beside it. `version` merges every version involved; `on_disk` holds
    the conflict copies present locally."""
    kept = Kept()
    copies: list[str] = []
    clashes: list[str] = []
    for rival in rivals:
        _preserve(path, rival, on_disk, kept, copies, clashes)
    info = ConflictInfo(
        version=version,
        copies=sorted(copies),
        clashes=sorted(clashes),
        local=local,
        since=now,
    )
    return info, kept


def ending(
    info: ConflictInfo,
    content: Entry | None,
    versions: Iterable[Mapping[str, int]],
    on_disk: Mapping[str, Entry],
) -> Ending | None:
    """How the conflict `info` ends this pass, given the local `content` of its path and
    the `versions` other devices hold: "elsewhere" (a version dominating the conflict
    arrived and the path is untouched since the conflict), "here" (the copies are gone)
    or None (still open)."""
    unchanged = _same_or_both_absent(content, info.local)
    if unchanged and any(dominates(v, info.version) for v in versions):
        return "elsewhere"
    # Resolved here: every copy is gone or, if nothing could be copied, the path changed.
    resolved = not any(p in on_disk for p in info.copies) if info.copies else not unchanged
    return "here" if resolved else None


def as_of_conflict(path: str, info: ConflictInfo) -> Entry | Delete:
    """The local version while in conflict: its content, with the conflict's vector."""
    if info.local is None:
        return Delete(path=path, type="file", version=info.version)
    return msgspec.structs.replace(info.local, version=dict(info.version))


def resolution(
    path: str, info: ConflictInfo, content: Entry | None, version: dict[str, int]
) -> Entry | Delete:
    """The content at the path (or its absence) as the new version `version`, which
    dominates every version in the conflict."""
    if content is not None:
        return msgspec.structs.replace(content, version=dict(version))
    kind = info.local.type if info.local else "file"
    sha256 = info.local.sha256 if info.local else None
    return Delete(path=path, type=kind, sha256=sha256, version=version)


def still_open(
    path: str,
    info: ConflictInfo,
    content: Entry | None,
    rivals: Sequence[Rival],
    versions: Iterable[Mapping[str, int]],
    on_disk: Mapping[str, Entry],
) -> tuple[ConflictInfo, Kept]:
    """The conflict stays; versions that arrived since it began (`versions`; `rivals`: one
    per content among them) join it, a new content with its own copy, so none is lost
    while the person decides."""
    kept = Kept()
    copies, clashes = list(info.copies), list(info.clashes)
    for rival in rivals:
        if content is not None and same_content(content, rival.entry):
            continue
        if rival.entry.type == "dir" and rival.device_id in clashes:
            continue  # already reported as a type clash
        _preserve(path, rival, on_disk, kept, copies, clashes)
    known = {p.message for p in kept.problems}
    for device in sorted(set(clashes)):
        if _clash_problem(path, device).message not in known:
            kept.problems.append(_clash_problem(path, device))
    updated = msgspec.structs.replace(
        info,
        version=merge(info.version, *versions),
        copies=sorted(set(copies)),
        clashes=sorted(set(clashes)),
    )
    return updated, kept


def _preserve(
    path: str,
    rival: Rival,
    on_disk: Mapping[str, Entry],
    kept: Kept,
    copies: list[str],
    clashes: list[str],
) -> None:
    """Keep a rival as a conflict copy beside `path`; a directory (type clash, remembered
    in `clashes`) or an impossible name becomes a problem instead."""
    device = rival.device_id
    if rival.entry.type == "dir":
        clashes.append(device)
        kept.conflicts.append(Conflict(path=path, device_id=device, copy_path=None))
        kept.problems.append(_clash_problem(path, device))
        return
    try:
        copy_path = conflict_name(path, device, rival.snapshot)
    except ValueError as exc:
        kept.conflicts.append(Conflict(path=path, device_id=device, copy_path=None))
        kept.problems.append(
            Problem(path=path, kind="conflict_copy", message=f"cannot name a conflict copy: {exc}")
        )
        return
    copies.append(copy_path)
    kept.conflicts.append(Conflict(path=path, device_id=device, copy_path=copy_path))
    existing = on_disk.get(copy_path)
    if existing is None:
        kept.copies.append(
            ConflictCopy(path=path, copy_path=copy_path, device_id=device, entry=rival.entry)
        )
    elif not same_content(existing, rival.entry):
        kept.problems.append(
            Problem(
                path=path,
                kind="conflict_copy",
                message=f"{copy_path} already exists with other content; left as it is",
            )
        )


def _clash_problem(path: str, device: str) -> Problem:
    return Problem(
        path=path,
        kind="type_clash",
        message=f"{device} holds a directory here; it was not copied (type clash)",
    )


def _same_or_both_absent(a: Entry | None, b: Entry | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return same_content(a, b)
