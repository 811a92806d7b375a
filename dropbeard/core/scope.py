"""Which paths a pass reconciles (pure): the union of what changed since the last pass —
local changes, other devices' changed entries, new tombstones — and the paths the last
pass left open (`Plan.unsettled`). Every other path would be decided exactly as the last
pass left it, so reconcile looks it up by path instead of visiting it (SPEC 4, principle 4).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from dropbeard.core.conflictname import parse_conflict_name
from dropbeard.core.conflicts import same_content
from dropbeard.core.model import Entry
from dropbeard.core.plan import Base


def changed_here(base: Base | None, content: Entry | None) -> bool:
    """True if the local content of a path is not what its base agreed on: a new path, an
    edit (content, mode or type), a tracked path gone, or anything at a path whose base is
    open (in conflict, a delete refused). False for an agreed path holding its entry and
    for a path deleted everywhere that is still absent."""
    if base is None:
        return content is not None
    if base.conflict is not None or base.refused is not None:
        return True
    if base.entry is None:
        return content is not None
    return content is None or not same_content(content, base.entry)


def local_changes(
    bases: Iterable[tuple[str, Base]], local: Mapping[str, Entry], seen: Iterable[str]
) -> set[str]:
    """The paths changed here: those of `bases` (every base of the paths a scan covered,
    in any order) that `changed_here` says changed against `local` (what the scan found),
    and the paths of `seen` (what the scan found, conflict copies left out) that have no
    base at all."""
    changed: set[str] = set()
    based: set[str] = set()
    for path, base in bases:
        based.add(path)
        if changed_here(base, local.get(path)):
            changed.add(path)
    for path in seen:
        if path not in based and parse_conflict_name(path) is None:
            changed.add(path)
    return changed


def listing_changes(old: Mapping[str, Entry], new: Mapping[str, Entry]) -> set[str]:
    """The paths whose entry differs between two listings of one device (added, removed,
    or changed in any field): what changed on it between them."""
    changed = {p for p, e in new.items() if old.get(p) != e}
    changed.update(p for p in old if p not in new)
    return changed


def with_folders(paths: Iterable[str]) -> set[str]:
    """`paths` and every folder above them."""
    found: set[str] = set()
    for path in paths:
        found.add(path)
        parent = path.rpartition("/")[0]
        while parent and parent not in found:
            found.add(parent)
            parent = parent.rpartition("/")[0]
    return found
