"""Folders that must outlive their delete: a path whose delete won while a path below it
survives (an edit beats a concurrent delete, SPEC 4.1) is kept as a folder (pure)."""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Callable, Collection, Iterable, Iterator, Mapping

from dropbeard.core.model import Entry
from dropbeard.core.plan import Base, Download, Plan
from dropbeard.core.version import merge

DEFAULT_DIR_MODE = 0o755


BasesBelow = Callable[[str], Iterable[tuple[str, Base]]]
"""The bases of the paths below a folder (its subtree, the folder itself left out)."""


def bases_below_in(base: Mapping[str, Base]) -> BasesBelow:
    """`BasesBelow` over a map holding every base (sorted once, on first use)."""
    ordered: list[str] = []

    def below(folder: str) -> Iterator[tuple[str, Base]]:
        if not ordered:
            ordered.extend(sorted(base))
        prefix = folder + "/"
        for path in ordered[bisect_left(ordered, prefix) :]:
            if not path.startswith(prefix):
                return
            yield path, base[path]

    return below


def keep_needed_folders(
    plan: Plan,
    base: Mapping[str, Base],
    local: Mapping[str, Entry],
    base_below: BasesBelow,
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
    folder arrives) gives way to the folder. `base` holds the bases of the plan's paths,
    `base_below` those below any folder. `held`: paths left out of this pass below a
    file or symlink (a type clash): not on disk here and not published, so they keep no
    folder above them."""
    doomed = {p for p, new in plan.base.items() if new.entry is None and new.deleted is not None}
    if not doomed:
        return
    needed = _with_survivors(doomed, plan, base_below, held)
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


def _with_survivors(
    doomed: set[str], plan: Plan, base_below: BasesBelow, held: Collection[str]
) -> set[str]:
    """The paths of `doomed` with a path below them that exists after the plan (kept, or
    in conflict): one the plan decides so, or one it leaves as its base has it, but not
    one `held` below a file or symlink."""
    found = doomed & _ancestors_of_survivors(plan)
    for path in sorted(doomed - found):
        for below, old in base_below(path):
            if below not in plan.base and below not in held and _survives(old):
                found.add(path)
                break
    return found


def _ancestors_of_survivors(plan: Plan) -> set[str]:
    """Every folder above a path the plan leaves existing."""
    found: set[str] = set()
    for path, final in plan.base.items():
        if not _survives(final):
            continue
        parent = path.rpartition("/")[0]
        while parent and parent not in found:
            found.add(parent)
            parent = parent.rpartition("/")[0]
    return found


def _survives(final: Base) -> bool:
    return final.entry is not None or final.conflict is not None
