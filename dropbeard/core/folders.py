"""Folders that must outlive their delete: a path whose delete won while a path below it
survives (an edit beats a concurrent delete, SPEC 4.1) is kept as a folder (pure)."""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping

from dropbeard.core.model import Entry
from dropbeard.core.plan import Base, Download, Plan
from dropbeard.core.version import merge

DEFAULT_DIR_MODE = 0o755


def keep_needed_folders(
    plan: Plan,
    base: Mapping[str, Base],
    local: Mapping[str, Entry],
    *,
    publishes: bool,
    next_version: Callable[[Mapping[str, int]], dict[str, int]],
    held: Collection[str] = (),
) -> None:
    """Revise `plan` in place: every path it deletes that still has a surviving path
    below it stays as a folder, with a fresh version after its tombstone's so it dominates
    that delete (`next_version` allocates this device's next counter).
    Without this the folder is recreated on disk as a side effect of the child's download
    but recorded (and published) as deleted, and devices take extra passes to agree. The
    deleted path need not have been a folder: a file or symlink deleted while another
    device grew a folder there (a type clash it kept as a conflict, so no entry of that
    folder arrives) gives way to the folder. `held`: paths left out of this pass below a
    file or symlink (a type clash): not on disk here and not published, so they keep no
    folder above them."""
    doomed = {p for p, new in plan.base.items() if new.entry is None and new.deleted is not None}
    if not doomed:
        return
    needed = doomed & _ancestors_of_survivors(plan, base, held)
    if not needed:
        return
    for path in sorted(needed):
        gone = plan.base[path].deleted
        assert gone is not None
        old = base.get(path)
        before = old.entry if old is not None and old.entry is not None else local.get(path)
        mode = before.mode if before is not None and before.type == "dir" else DEFAULT_DIR_MODE
        prior = before.version if before is not None and before.version else {}
        version = next_version(merge(prior, gone.version))
        kept = Entry(path=path, type="dir", mode=mode, version=version)
        plan.base[path] = Base(entry=kept)
        if publishes:
            plan.listing[path] = kept
        here = local.get(path)
        if here is None or here.type != "dir":  # a file or symlink here is deleted first
            plan.downloads.append(Download(path=path, entry=kept))
    plan.local_deletes = [
        d for d in plan.local_deletes if d.path not in needed or d.expected.type != "dir"
    ]
    plan.tombstones = [t for t in plan.tombstones if t.path not in needed]
    plan.removals = [r for r in plan.removals if r.path not in needed]
    plan.downloads.sort(key=lambda d: d.path)


def _ancestors_of_survivors(
    plan: Plan, base: Mapping[str, Base], held: Collection[str]
) -> set[str]:
    """Every folder above a path that exists after the plan (kept, or in conflict), but
    not above one `held` below a file or symlink."""
    found: set[str] = set()
    for path in (plan.base.keys() | base.keys()) - set(held):
        final = plan.base.get(path) or base.get(path)
        if final is None or (final.entry is None and final.conflict is None):
            continue
        parent = path.rpartition("/")[0]
        while parent and parent not in found:
            found.add(parent)
            parent = parent.rpartition("/")[0]
    return found
