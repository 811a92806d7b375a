"""Deletes this device refuses (SPEC 4.1, pure): a delete removes a local file only if it
names bytes this device knows at that path — the file's own; or those of a version the
delete comes after that the deleting device was seen holding there (the file edited, then
deleted, while this device was away); or those of a conflict copy of it (a conflict
resolved elsewhere by deleting). Any other delete, even one whose vector dominates, is a
problem and the file stays: a vector alone, which anyone writing to the bucket can forge,
does not delete a file."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dropbeard.core.conflictname import parse_conflict_name
from dropbeard.core.model import Delete, Entry
from dropbeard.core.problems import Problem
from dropbeard.core.version import dominates


def names_local_bytes(
    path: str,
    content: Entry,
    deletes: Iterable[tuple[Delete, Entry | None]],
    copies_on_disk: Mapping[str, Entry],
) -> bool:
    """True if one of `deletes` of `path` — each with what its device was last seen
    holding there, if anything — may remove `content`, the local item there: it is not a
    file (nothing but its name to check), or the bytes it names or its device held before
    it are the file's, or those of a conflict copy of `path` on disk."""
    if content.type != "file":
        return True
    copies = [
        copy
        for name, copy in copies_on_disk.items()
        if (parsed := parse_conflict_name(name)) is not None and parsed[0] == path
    ]
    known = {e.sha256 for e in (content, *copies) if e.sha256 is not None}
    for gone, held in deletes:
        if gone.sha256 in known:
            return True
        if held is not None and held.sha256 in known and dominates(gone.version, held.version):
            return True
    return False


def refusal_problem(path: str, gone: Delete) -> Problem:
    """The problem a refused delete of `path` is reported as, every pass until the file
    changes or goes."""
    named = gone.sha256 or "no bytes at all"
    return Problem(
        path=path,
        kind="refused_delete",
        message=(
            f"not deleted: a delete from another device names other bytes ({named}) than "
            f"the file here; edit or delete {path} to settle it"
        ),
    )
