"""Which paths a pass reconciles (pure): the union of what changed since the last pass —
local changes, other devices' changed entries, new tombstones — and the paths the last
pass left open (`Plan.unsettled`). Every other path would be decided exactly as the last
pass left it, so reconcile looks it up by path instead of visiting it (SPEC 4, principle 4).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping

import msgspec

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
    bases: Iterable[tuple[str, Base]], local: Mapping[str, Entry]
) -> dict[str, Base | None]:
    """The paths changed here, each with its base (None: it has none): of `bases` (every
    base of the paths a scan covered, sorted by path), those `changed_here` says changed
    against `local` (what the scan found), and the paths of `local` with no base
    (conflict copies left out). One merge of two sorted sequences: nothing else is held."""
    changed: dict[str, Base | None] = {}
    found = iter(sorted(local))
    here = next(found, None)
    for path, base in bases:
        while here is not None and here < path:
            _new_here(changed, here)
            here = next(found, None)
        if here == path:
            here = next(found, None)
        if changed_here(base, local.get(path)):
            changed[path] = base
    while here is not None:
        _new_here(changed, here)
        here = next(found, None)
    return changed


def _new_here(changed: dict[str, Base | None], path: str) -> None:
    if parse_conflict_name(path) is None:
        changed[path] = None


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


def assumed_local(
    folders: Iterable[str], base: Mapping[str, Base], scanned: Callable[[str], bool]
) -> dict[str, Entry]:
    """What the folders of the reconciled paths hold here when a pass over some paths did
    not scan them (`scanned(path)` False): their agreed content, as nothing reported a
    change to them (the folder rules ask whether a folder is still one)."""
    found: dict[str, Entry] = {}
    for path in folders:
        agreed = base.get(path)
        if not scanned(path) and agreed is not None and agreed.entry is not None:
            found[path] = msgspec.structs.replace(agreed.entry, version={})
    return found
